"""A service's periodic jobs (the quiet-account sweep, gauges, clean-ups), run on its
event loop by APScheduler, and stopped so that nothing of them outlives the service.

APScheduler's asyncio executor stops by cancelling a running job's task without waiting
for it (its ``shutdown`` is not a coroutine). The service then closes its database
engine while that task may still be unwinding, its connection's clean-up racing the
pool's disposal; and whatever is left pending is found, and waited for, by whoever
closes the event loop. ``Jobs.running()`` waits for the cancelled jobs to end first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from shared.worker import describe, is_transient

log = logging.getLogger(__name__)

# How long a stopping service waits for a cancelled job to unwind (its transaction rolled
# back, its connection returned). Unwinding takes milliseconds; a job still running after
# 10 s is stuck, and the stop must go on rather than hang behind it.
JOB_STOP_TIMEOUT_S = 10.0


async def quietly(job: Callable[..., Awaitable[object]], *args: object) -> None:
    """Run a scheduled job; a failure (the database down) is a warning, and the next
    run retries it."""
    try:
        await job(*args)
    except Exception as exc:
        if not is_transient(exc):
            raise  # a bug: APScheduler logs it with its traceback
        log.warning(
            "%s failed (%s); next run retries", getattr(job, "__qualname__", job), describe(exc)
        )


class Jobs:
    """Jobs run every so many seconds, one run of each at a time; a run that falls due
    while the last is still going is skipped, not queued."""

    def __init__(self) -> None:
        self._scheduler = AsyncIOScheduler()
        self._runs: set[asyncio.Task[Any]] = set()
        self._stopping = False

    def every(
        self,
        seconds: float,
        job: Callable[..., Awaitable[object]],
        *args: object,
        name: str,
        first_now: bool = True,
    ) -> None:
        """Run ``job(*args)`` every ``seconds``, first at once or after ``seconds``."""
        when = {"next_run_time": datetime.now(UTC)} if first_now else {}
        self._scheduler.add_job(
            self._run,
            "interval",
            args=[job, *args],
            name=name,
            seconds=seconds,
            max_instances=1,
            coalesce=True,
            **when,
        )

    async def _run(self, job: Callable[..., Awaitable[object]], *args: object) -> None:
        task = asyncio.current_task()
        assert task is not None  # APScheduler runs coroutine jobs as tasks
        self._runs.add(task)
        try:
            await quietly(job, *args)
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            # Cancelled by stop(): an end, not a failure for APScheduler to log as one.
            log.info("%s stopped with the service", getattr(job, "__qualname__", job))
        finally:
            self._runs.discard(task)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The jobs run inside the block; on leaving it, a job still running is
        cancelled and waited for."""
        self._scheduler.start()
        try:
            yield
        finally:
            await self.stop()

    async def stop(self) -> None:
        self._stopping = True
        self._scheduler.shutdown(wait=False)
        runs = list(self._runs)
        for task in runs:
            task.cancel()
        if not runs:
            return
        _, pending = await asyncio.wait(runs, timeout=JOB_STOP_TIMEOUT_S)
        for task in pending:
            log.warning("job %s did not stop within %ss; left behind", task, JOB_STOP_TIMEOUT_S)
