"""Lanes: the same loop of chunks run several times at once in one process, each chunk
in its own transaction, so one lane scores while another waits for the database.

The sweep and an import's days score chunks of accounts one transaction after another;
about a fifth of a one-process sweep's time was spent waiting for PostgreSQL (its reads,
writes and commits), with the process idle. The lanes of a loop must split its work
between them (a shared iterator, or rows each transaction locks with SKIP LOCKED).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncEngine

# Lanes at once on PostgreSQL. Two hide most of a one-process sweep's waits
# (sweep_bench.py, 100,000 accounts: 71.1 → 63.5 s, 58.6 s of it CPU); more would only
# add transactions competing for the same CPU, as two processes already do (39.7 and
# 40.1 s). SQLite has one writer: a second lane would only wait for the first's lock.
LANES = 2


async def in_lanes(engine: AsyncEngine, lane: Callable[[], Awaitable[None]]) -> None:
    """Run ``lane()`` LANES times at once on PostgreSQL, once on SQLite. The first lane
    to fail stops the others (a chunk stopped midway rolls back) and its exception is
    raised as it is, not in a group: callers tell a transient failure from others by
    the exception."""
    count = LANES if engine.dialect.name == "postgresql" else 1
    tasks = [asyncio.ensure_future(lane()) for _ in range(count)]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
