"""Watching a scoring run from the outside: records consumed per the offsets committed with
the state, polled from an engine of the bench's own; and, at the end, the distinct events
the accounts' usage states say were applied."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from rich.progress import Progress, TaskID
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scoring.usage import decode
from shared.config import Settings
from shared.storage.tables import account_usage, consumer_offsets

# How often the scoring phase reads the committed offsets: the end is resolved to this,
# and one cheap aggregate query per poll keeps the watcher's share of the CPU negligible.
POLL_S = 0.25


async def records_consumed(engine: AsyncEngine, settings: Settings) -> int:
    """Records consumed per the offsets the scoring group committed (in the transaction
    that wrote their state, so a record counted here is applied)."""
    async with engine.connect() as conn:
        consumed = (
            await conn.execute(
                select(func.coalesce(func.sum(consumer_offsets.c.next_offset), 0)).where(
                    consumer_offsets.c.group_id == settings.consumer_group_scoring
                )
            )
        ).scalar_one()
    return int(consumed)


async def events_seen(engine: AsyncEngine) -> int:
    """Distinct events applied, over all accounts (``AccountUsage.events_seen``: every
    kind, late ones included): a check after a run, too costly to poll (every state is
    decoded)."""
    async with engine.connect() as conn:
        rows = await conn.execute(select(account_usage.c.state))
        return sum(decode(row.state).events_seen for row in rows)


@dataclass
class ScoringWatch:
    """Polls a scoring run's progress every POLL_S from its own engine (records consumed
    per the committed offsets), and when the first ones came."""

    engine: AsyncEngine
    settings: Settings
    total: int
    progress: Progress
    task: TaskID
    count: int = 0
    first: tuple[float, int] | None = None  # (when, count) of the first records seen
    now: float = 0.0

    async def poll(self) -> bool:
        """Wait POLL_S and look; True once every record is in."""
        await asyncio.sleep(POLL_S)
        self.count = await records_consumed(self.engine, self.settings)
        self.now = time.perf_counter()
        if self.count and self.first is None:
            self.first = (self.now, self.count)
        self.progress.update(self.task, completed=self.count)
        return self.count >= self.total

    @property
    def handled(self) -> int:
        return self.count
