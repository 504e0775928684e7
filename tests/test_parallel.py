"""deepmat.parallel: chunks computed by Dask, in order, spread over the workers."""

import functools
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deepmat.errors import ConfigError
from deepmat.parallel import map_chunks


def meet_another_process(board: Path, chunk: int, wait: float = 60.0) -> tuple[int, int, bool]:
    """Sign ``board`` with this process's id, then wait until another process has signed
    it too: the chunk, the process, and whether they met. Chunks dispatched one after
    another to a single worker never meet, however busy the machine."""
    (board / str(os.getpid())).touch()
    deadline = time.monotonic() + wait
    while len(list(board.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    return chunk, os.getpid(), len(list(board.iterdir())) >= 2


def test_process_workers_take_long_chunks_at_the_same_time(tmp_path):
    meet = functools.partial(meet_another_process, tmp_path, wait=30.0)
    results = list(map_chunks(meet, range(2), scheduler="processes", workers=2))
    assert [chunk for chunk, _, _ in results] == [0, 1]
    assert all(met for _, _, met in results)
    assert len({pid for _, pid, _ in results}) == 2


def test_synchronous_chunks_run_here_in_order(tmp_path):
    meet = functools.partial(meet_another_process, tmp_path, wait=0.0)
    results = list(map_chunks(meet, range(3), scheduler="synchronous"))
    assert results == [(0, os.getpid(), False), (1, os.getpid(), False), (2, os.getpid(), False)]


def test_an_unknown_scheduler_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="scheduler must be one of"):
        list(map_chunks(functools.partial(meet_another_process, tmp_path), [0], scheduler="gpu"))


def sign_and_sleep(board: Path, chunk: int) -> int:
    (board / str(os.getpid())).touch()
    time.sleep(120)
    return chunk


JOB = """
import functools, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_parallel import sign_and_sleep
from deepmat.parallel import map_chunks
list(map_chunks(functools.partial(sign_and_sleep, Path({board!r})), range(2),
                scheduler="processes", workers=2))
"""


def test_worker_processes_end_when_their_job_is_killed(tmp_path):
    """A job killed mid-run leaves no worker process behind still running its chunk."""
    psutil = pytest.importorskip("psutil")
    board = tmp_path / "board"
    board.mkdir()
    script = JOB.format(tests=str(Path(__file__).parent), board=str(board))
    job = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 300
    while len(list(board.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    workers = [int(p.name) for p in board.iterdir()]
    assert len(workers) == 2, "the workers never started"
    job.kill()
    job.wait()

    def running(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    deadline = time.monotonic() + 60
    while any(running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [pid for pid in workers if running(pid)]
    for pid in left:
        psutil.Process(pid).kill()
    assert not left, f"worker processes {left} outlived their killed job"
