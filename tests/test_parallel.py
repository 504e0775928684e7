"""deepmat.parallel: chunks computed by Dask, in order, spread over the workers."""

import os
import time

import pytest

from deepmat.errors import ConfigError
from deepmat.parallel import map_chunks


def pid_after_pause(chunk: int) -> tuple[int, int]:
    """The chunk and the process that computed it, after a pause long enough that a second
    worker is asked for the next chunk while this one runs."""
    time.sleep(1.0)
    return chunk, os.getpid()


def test_process_workers_share_a_few_long_chunks():
    results = list(map_chunks(pid_after_pause, range(4), scheduler="processes", workers=2))
    assert [chunk for chunk, _ in results] == [0, 1, 2, 3]
    pids = {pid for _, pid in results}
    assert len(pids) == 2 and os.getpid() not in pids


def test_synchronous_chunks_run_here_in_order():
    results = list(map_chunks(pid_after_pause, range(2), scheduler="synchronous"))
    assert results == [(0, os.getpid()), (1, os.getpid())]


def test_an_unknown_scheduler_is_refused():
    with pytest.raises(ConfigError, match="scheduler must be one of"):
        list(map_chunks(pid_after_pause, range(2), scheduler="gpu"))
