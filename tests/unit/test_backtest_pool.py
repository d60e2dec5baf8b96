"""Jobs in worker processes (the backtest's replay workers): results in order, progress
heard, a failure or a dead worker raised with what happened, never a hang."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable

import pytest

from services.scoring.backtest.pool import WorkerFailed, run_in_processes
from services.scoring.backtest.replay import EVENTS_PER_WORKER, worker_count


def _count_to(job: int, tick: Callable[[int], None]) -> dict[str, int]:
    print("a job printing to standard output does not garble the answer")
    for count in range(1, job + 1):
        tick(count)
    return {"job": job, "pid": os.getpid()}


def _fail_on_two(job: int, tick: Callable[[int], None]) -> int:
    if job == 2:
        raise ValueError("job two refuses")
    time.sleep(30 if job == 1 else 0)  # stopped when job two fails, not waited for
    return job


def _die(job: int, tick: Callable[[int], None]) -> int:
    tick(1)
    os._exit(3)


def test_results_come_in_the_jobs_order_from_processes_of_their_own() -> None:
    heard: list[list[int]] = []
    results = asyncio.run(run_in_processes(_count_to, [3, 1, 2], heard.append))
    assert [result["job"] for result in results] == [3, 1, 2]
    assert len({result["pid"] for result in results} | {os.getpid()}) == 4
    assert heard[-1] == [3, 1, 2] and len(heard) == 6  # every tick heard


def test_a_job_that_raises_stops_them_all_with_its_traceback() -> None:
    started = time.monotonic()
    with pytest.raises(WorkerFailed, match=r"(?s)worker 2 failed.*ValueError: job two refuses"):
        asyncio.run(run_in_processes(_fail_on_two, [1, 0, 2], lambda done: None))
    assert time.monotonic() - started < 25  # job one's sleep was cut short


def test_a_worker_that_dies_is_reported_not_waited_for() -> None:
    with pytest.raises(WorkerFailed, match="worker 0 stopped with exit code 3"):
        asyncio.run(run_in_processes(_die, [0], lambda done: None))


def test_workers_past_the_cores_are_not_started(caplog: pytest.LogCaptureFixture) -> None:
    """``--workers 500`` would start 500 interpreters, each with its share of the states;
    past the cores they only take turns."""
    cores = len(os.sched_getaffinity(0))
    assert worker_count(cores + 10, 10**7) == cores
    assert f"{cores + 10} workers asked for" in caplog.text
    assert worker_count(1, 10**7) == 1
    assert worker_count(None, EVENTS_PER_WORKER - 1) == 1  # a small history: one
    assert worker_count(None, 10**9) == cores
