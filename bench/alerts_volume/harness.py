"""Scoring in process over an embedded database, as the backtest replays history: the
events go through the same ``ScoringProcessor`` the consumer runs, and every alert it
would publish is kept (nothing is sent)."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scoring.metrics import ScoringMetrics
from services.scoring.processor import ScoringProcessor
from services.scoring.sweep import QuietAccountSweep
from shared.alerting.store import AlertingStore
from shared.bus.base import DiscardingProducer, OutMessage, Record
from shared.config import Settings
from shared.contracts.alerts import AlertEvent
from shared.contracts.events import Event
from shared.contracts.wire import decode_alert, encode_event
from shared.storage.db import create_engine, migrate


class AlertKeeper(DiscardingProducer):
    """Sends nothing; keeps every alert message scoring publishes, in order."""

    def __init__(self) -> None:
        self.alerts: list[AlertEvent] = []

    async def send_many(
        self, messages: Sequence[OutMessage], conn: AsyncConnection | None = None
    ) -> None:
        self.alerts += [decode_alert(m.value) for m in messages if "reason" not in m.headers]


@dataclass
class Scoring:
    """A processor and its sweep on a throwaway database, with a settable clock."""

    processor: ScoringProcessor
    sweep: QuietAccountSweep
    keeper: AlertKeeper
    now: list[datetime] = field(default_factory=list)
    offset: int = 0

    async def feed(self, events: Sequence[Event], at: datetime) -> None:
        """One batch of records, handled at wall-clock time ``at``."""
        self.now[0] = at
        records = [
            Record("bench", 0, self.offset + n, None, encode_event(e)) for n, e in enumerate(events)
        ]
        self.offset += len(records)
        if records:
            await self.processor.handle(records)


@asynccontextmanager
async def scoring(start: datetime, alerting: str) -> AsyncIterator[Scoring]:
    """Scoring with the alerting file ``alerting`` (its text)."""
    with tempfile.TemporaryDirectory(prefix="healthwatch-alerts-volume-") as tmp:
        settings = Settings(_env_file=None, database_url=f"sqlite+aiosqlite:///{tmp}/v.db")
        engine = create_engine(settings.database_url)
        try:
            await migrate(engine)
            now = [start]
            keeper = AlertKeeper()
            metrics = ScoringMetrics(CollectorRegistry())
            processor = ScoringProcessor(
                engine,
                keeper,
                settings,
                metrics,
                alerting=AlertingStore(alerting),
                clock=lambda: now[0],
            )
            sweep = QuietAccountSweep(engine, keeper, processor, clock=lambda: now[0])
            yield Scoring(processor, sweep, keeper, now)
        finally:
            await engine.dispose()
