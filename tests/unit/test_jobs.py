"""Periodic jobs: a transient failure is retried by the next run, and a job still
running when the service stops has ended, clean-up done, before the stop returns."""

from __future__ import annotations

import asyncio
import logging

import pytest

from shared.jobs import Jobs

# Short enough for a test, long enough that runs do not pile up on a busy machine.
INTERVAL_S = 0.05
WAIT_S = 10.0


async def test_a_job_running_at_stop_has_unwound_when_the_stop_returns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    started = asyncio.Event()
    unwound: list[str] = []

    async def long_job() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0)  # clean-up that itself awaits, as a rollback does
            unwound.append("rolled back")

    jobs = Jobs()
    jobs.every(3600, long_job, name="long")
    with caplog.at_level(logging.INFO):
        async with jobs.running():
            await asyncio.wait_for(started.wait(), WAIT_S)
        assert unwound == ["rolled back"]  # before, not after, the block has ended
        # No run of a job is left for the event loop's closer to find.
        left = [t for t in asyncio.all_tasks() if t.get_coro().__qualname__ == "run_coroutine_job"]
        assert left == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert "stopped with the service" in caplog.text


async def test_a_transient_failure_is_a_warning_and_the_next_run_retries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs: list[int] = []
    done = asyncio.Event()

    async def flaky() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            raise ConnectionResetError("the database restarted")
        done.set()

    jobs = Jobs()
    jobs.every(INTERVAL_S, flaky, name="flaky")
    async with jobs.running():
        await asyncio.wait_for(done.wait(), WAIT_S)
    assert len(runs) >= 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("next run retries" in r.getMessage() for r in warnings), caplog.text


async def test_a_job_not_due_at_once_waits_its_interval() -> None:
    runs: list[int] = []

    async def job() -> None:
        runs.append(1)

    jobs = Jobs()
    jobs.every(3600, job, name="hourly", first_now=False)
    async with jobs.running():
        await asyncio.sleep(INTERVAL_S * 4)
    assert runs == []
