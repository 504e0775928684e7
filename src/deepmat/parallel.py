"""Independent chunks of work run with Dask, returned in order, a bounded number at a time.

Generating and labelling microstructures is embarrassingly parallel: each chunk of samples is
one task. On one machine the tasks run on Dask's local threaded, multiprocessing or
synchronous scheduler; given a ``distributed.Client`` or a scheduler address they run on that
cluster. Results come back in chunk order, and at most ``window`` chunks are in flight or held
at once, so a caller can stream them to disk without keeping the whole data set in memory.
Which worker ran a chunk never changes its result: every chunk carries its own seeds. A
local worker process ends with the process that started it: killed mid-run, a job leaves no
orphan behind that goes on training into the same directories as the job restarted.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from deepmat.errors import ConfigError

if TYPE_CHECKING:
    from distributed import Client

T = TypeVar("T")
R = TypeVar("R")

LOCAL_SCHEDULERS = ("threads", "processes", "synchronous")


def map_chunks(
    func: Callable[[T], R],
    chunks: Sequence[T],
    *,
    client: Client | str | None = None,
    scheduler: str = "threads",
    workers: int | None = None,
    window: int | None = None,
) -> Iterator[R]:
    """Yield ``func(chunk)`` for every chunk, in order, computed in parallel by Dask.

    ``client`` (a ``distributed.Client`` or a scheduler address such as ``tcp://host:8786``)
    runs the chunks on that cluster; otherwise ``scheduler`` names a local Dask scheduler
    (threads, processes or synchronous) with ``workers`` workers (default: the CPU count).
    ``func`` and the chunks must pickle for the processes scheduler and for a cluster.
    ``window`` (default twice the number of workers) bounds the chunks held at once.
    """
    if client is None and scheduler not in LOCAL_SCHEDULERS:
        raise ConfigError(
            f"scheduler must be one of {', '.join(LOCAL_SCHEDULERS)} or a cluster client, "
            f"got {scheduler!r}"
        )
    if workers is not None and workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    if window is not None and window < 1:
        raise ConfigError(f"window must be at least 1, got {window}")
    if client is not None:
        return _on_cluster(func, chunks, client, window)
    return _on_local(func, chunks, scheduler, workers, window)


def runs_in_parallel(
    client: Client | str | None, scheduler: str = "threads", workers: int | None = None
) -> bool:
    """Whether several chunks may run at once (then each task should use one torch thread)."""
    if client is not None:
        return True
    if scheduler == "synchronous":
        return False
    return (workers or os.cpu_count() or 1) > 1


def _on_local(
    func: Callable[[T], R],
    chunks: Sequence[T],
    scheduler: str,
    workers: int | None,
    window: int | None,
) -> Iterator[R]:
    import dask

    workers = workers or os.cpu_count() or 1
    window = window or 2 * workers
    # one task per dispatch: Dask's process pool otherwise hands a worker six at a time, so
    # a window of a few long tasks would run one after another in a single process
    options = {"scheduler": scheduler, "num_workers": workers, "chunksize": 1}
    if scheduler == "processes":
        options["initializer"] = partial(_end_with_parent, os.getpid())
    for start in range(0, len(chunks), window):
        batch = [dask.delayed(func, pure=False)(chunk) for chunk in chunks[start : start + window]]
        yield from dask.compute(*batch, **options)


def _end_with_parent(parent: int, interval: float = 0.5) -> None:
    """Start a watchdog in a worker process that ends it as soon as ``parent``, the process
    that started it, is gone (the worker is then adopted by another): Dask's process pool
    would otherwise let a worker finish its task, a long training, after its job was killed."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="end-with-parent", daemon=True).start()


def _on_cluster(
    func: Callable[[T], R], chunks: Sequence[T], client: Client | str, window: int | None
) -> Iterator[R]:
    with _connected(client) as connected:
        window = window or 2 * max(1, sum(connected.nthreads().values()))
        remaining = iter(chunks)
        pending: deque[Any] = deque()
        for chunk in remaining:
            pending.append(connected.submit(func, chunk, pure=False))
            if len(pending) == window:
                break
        while pending:
            future = pending.popleft()
            result = future.result()
            future.release()
            for chunk in remaining:
                pending.append(connected.submit(func, chunk, pure=False))
                break
            yield result


@contextmanager
def _connected(client: Client | str) -> Iterator[Client]:
    """The client itself, or a client connected to the address for the duration."""
    if not isinstance(client, str):
        yield client
        return
    from distributed import Client

    try:
        connected = Client(client, timeout=30)
    except OSError as exc:
        raise ConfigError(f"cannot connect to the Dask scheduler at {client}: {exc}") from exc
    with connected:
        yield connected


def progress_bar(console: Console | None = None, enabled: bool = True) -> Progress:
    """The rich progress bar of chunked jobs: description, bar, count, elapsed, remaining."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console or Console(stderr=True),
        disable=not enabled,
    )


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` intra-op torch threads, then restore the count. Small
    problems (a 2-D solve, a GP on a hundred points) run fastest on one thread, and far
    slower on threads that compete with another process for the cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
