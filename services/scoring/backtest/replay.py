"""Replay history through the scoring code, scoring every account every few days.

Events are fed in time order into a throwaway embedded database; at each evaluation
day the quiet-account sweep brings every account to that day, so each account has a
score for each evaluation day, exactly as the live service would have had it.
"""

from __future__ import annotations

import csv
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.scoring.backfill import read_lines
from services.scoring.backtest.baselines import history_baselines
from services.scoring.metrics import ScoringMetrics
from services.scoring.model.store import ModelStore
from services.scoring.processor import ScoringProcessor
from services.scoring.sweep import QuietAccountSweep
from shared.bus.base import DiscardingProducer, OutMessage, Record
from shared.config import Settings
from shared.contracts.events import EVENT_ADAPTER, AccountFacts, Event, LifecycleStage
from shared.contracts.wire import decode_alert, encode_event
from shared.storage.db import create_engine, migrate
from shared.storage.tables import health_daily

# Accounts need some history before a score means anything.
WARM_UP_DAYS = 28


@dataclass(frozen=True)
class Snapshot:
    account_id: str
    day: date
    score: int | None
    band: str
    inputs: dict[str, Any]
    groups: dict[str, float]
    # Naive baselines from the raw history (baselines.py), beside the scoring's inputs.
    history: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Firing:
    """An alert rule that fired for an account on a day of the replay."""

    account_id: str
    rule: str
    day: date


@dataclass
class Replay:
    snapshots: list[Snapshot] = field(default_factory=list)
    firings: list[Firing] = field(default_factory=list)
    churn: dict[str, date] = field(default_factory=dict)
    events: int = 0
    rejected: int = 0
    first_day: date | None = None
    last_day: date | None = None
    # Accounts whose facts ever named a go-live date (the checks warn when none did).
    go_live_accounts: int = 0


class _FiringRecorder(DiscardingProducer):
    """Sends nothing; keeps each alert's first firing, for the rules' churn figures."""

    def __init__(self, firings: list[Firing]):
        self._firings = firings

    async def send_many(
        self, messages: Sequence[OutMessage], conn: AsyncConnection | None = None
    ) -> None:
        for message in messages:
            if "reason" in message.headers:
                continue  # a dead letter, not an alert
            alert = decode_alert(message.value)
            if alert.status == "firing" and alert.revision == 0:
                day = alert.fired_at.astimezone(UTC).date()
                self._firings.append(Firing(alert.account_id, alert.rule, day))


def read_churn_csv(path: Path) -> dict[str, date]:
    """``account_id,churn_date`` rows (a header line is expected)."""
    with path.open(newline="", encoding="utf-8") as file:
        return {
            row["account_id"]: date.fromisoformat(row["churn_date"][:10])
            for row in csv.DictReader(file)
            if row.get("account_id") and row.get("churn_date")
        }


def load_events(paths: Iterable[Path]) -> tuple[list[Event], int]:
    events: list[Event] = []
    rejected = 0
    for path in paths:
        for line in read_lines(path):
            if not line.strip():
                continue
            try:
                events.append(EVENT_ADAPTER.validate_json(line))
            except ValidationError:
                rejected += 1
    events.sort(key=lambda event: (event.occurred_at, event.event_id))
    return events, rejected


async def replay(
    paths: Sequence[Path],
    *,
    churn: dict[str, date] | None = None,
    model_source: str | None = None,
    step_days: int = 7,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> Replay:
    events, rejected = load_events(paths)
    result = Replay(rejected=rejected, events=len(events), churn=dict(churn or {}))
    live: set[str] = set()
    for event in events:  # a facts update to stage "churned" is a churn outcome too
        if isinstance(event, AccountFacts) and event.lifecycle_stage is LifecycleStage.churned:
            result.churn.setdefault(event.account_id, event.occurred_at.astimezone(UTC).date())
        if isinstance(event, AccountFacts) and event.go_live is not None:
            live.add(event.account_id)
    result.go_live_accounts = len(live)
    if not events:
        return result
    first = events[0].occurred_at.astimezone(UTC).date()
    last = events[-1].occurred_at.astimezone(UTC).date()
    result.first_day, result.last_day = first, last
    span = (last - first).days + 1
    days = [first + timedelta(days=offset) for offset in range(WARM_UP_DAYS, span, step_days)]
    with tempfile.TemporaryDirectory(prefix="healthwatch-backtest-") as tmp:
        settings = Settings(
            _env_file=None,
            database_url=f"sqlite+aiosqlite:///{tmp}/bt.db",
        )
        engine = create_engine(settings.database_url)
        try:
            await migrate(engine)
            await _score_days(engine, settings, events, days, result, model_source, progress)
        finally:
            await engine.dispose()
    scored = [(snapshot.account_id, snapshot.day) for snapshot in result.snapshots]
    result.snapshots = [
        replace(snapshot, history=baselines)
        for snapshot, baselines in zip(
            result.snapshots, history_baselines(events, scored), strict=True
        )
    ]
    return result


async def _score_days(
    engine: AsyncEngine,
    settings: Settings,
    events: list[Event],
    days: list[date],
    result: Replay,
    model_source: str | None,
    progress: Callable[[int, int], None],
) -> None:
    """Feed the events up to the end of each day, sweep, and keep the day's scores."""
    clock_now = [datetime.combine(result.first_day or days[0], time(), UTC)]
    recorder = _FiringRecorder(result.firings)
    processor = ScoringProcessor(
        engine,
        recorder,
        settings,
        ScoringMetrics(CollectorRegistry()),
        models=ModelStore(model_source) if model_source else ModelStore(),
        clock=lambda: clock_now[0],
    )
    sweep = QuietAccountSweep(engine, recorder, processor, clock=lambda: clock_now[0])
    fed = 0
    for number, day in enumerate(days, 1):
        end = datetime.combine(day + timedelta(days=1), time(), UTC)
        clock_now[0] = end - timedelta(seconds=1)
        fed = await _feed(processor, events, fed, end)
        await sweep.run_once()
        result.snapshots += await _snapshots(engine, day, result.churn)
        progress(number, len(days))


# Events handed to the processor at once, as one batch of records.
FEED_BATCH = 2000


async def _feed(processor: ScoringProcessor, events: list[Event], fed: int, end: datetime) -> int:
    """Hand the processor the events before ``end`` after the first ``fed``; return how
    many are fed now."""
    upto = fed
    while upto < len(events) and events[upto].occurred_at < end:
        upto += 1
    for start in range(fed, upto, FEED_BATCH):
        chunk = events[start : min(upto, start + FEED_BATCH)]
        records = [
            Record("backtest", 0, start + position, None, encode_event(event))
            for position, event in enumerate(chunk)
        ]
        await processor.handle(records)
    return upto


async def _snapshots(engine: AsyncEngine, day: date, churn: dict[str, date]) -> list[Snapshot]:
    """The scores of ``day``, of the accounts that had not churned by then."""
    snapshots = []
    async with engine.connect() as conn:
        for row in await conn.execute(select(health_daily).where(health_daily.c.day == day)):
            gone = churn.get(row.account_id)
            if gone is not None and gone <= day:
                continue
            groups = row.explanation.get("groups", {})
            snapshots.append(Snapshot(row.account_id, day, row.score, row.band, row.inputs, groups))
    return snapshots
