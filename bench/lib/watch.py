"""Watching a scoring run from the outside: rows in the dedup log and records consumed
per the committed offsets, polled from an engine of the bench's own."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from rich.progress import Progress, TaskID
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.config import Settings
from shared.storage.tables import consumer_offsets, processed_events

POLL_S = 0.25  # how often the scoring phase counts processed_events


async def scoring_progress(engine: AsyncEngine, settings: Settings) -> tuple[int, int]:
    """(rows in processed_events, records consumed per the offsets committed with them)."""
    async with engine.connect() as conn:
        processed = (
            await conn.execute(select(func.count()).select_from(processed_events))
        ).scalar_one()
        consumed = (
            await conn.execute(
                select(func.coalesce(func.sum(consumer_offsets.c.next_offset), 0)).where(
                    consumer_offsets.c.group_id == settings.consumer_group_scoring
                )
            )
        ).scalar_one()
    return int(processed), int(consumed)


@dataclass
class ScoringWatch:
    """Polls a scoring run's progress every POLL_S from its own engine: rows in the dedup
    log and records consumed per the committed offsets, and when the first rows came."""

    engine: AsyncEngine
    settings: Settings
    total: int
    progress: Progress
    task: TaskID
    count: int = 0
    consumed: int = 0
    first: tuple[float, int] | None = None  # (when, count) of the first rows seen
    now: float = 0.0

    async def poll(self) -> bool:
        """Wait POLL_S and look; True once every record is in."""
        await asyncio.sleep(POLL_S)
        self.count, self.consumed = await scoring_progress(self.engine, self.settings)
        self.now = time.perf_counter()
        if self.count and self.first is None:
            self.first = (self.now, self.count)
        self.progress.update(self.task, completed=self.count)
        # The committed offsets are the fallback should the dedup log ever be pruned
        # within the run (late_grace_days shorter than --days).
        return self.count >= self.total or self.consumed >= self.total

    @property
    def handled(self) -> int:
        return max(self.count, self.consumed)
