"""Replay history through the scoring code, scoring every account every few days.

Events are fed in time order into a throwaway embedded database, applied to the
accounts' state without scoring them; at the end of each evaluation day every account
is scored as of that day, as the live service's sweep scores a quiet account, and its
alert rules step then. Scoring each event's account as the events came in (as the live
service does) cost most of the replay, for scores nobody read: a 4.5 M-event history
rescored accounts some 2 M times for 150 k evaluation scores. The rules therefore step
on evaluation days only (``step_days`` 1 steps them daily).
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

from services.scoring.backtest.baselines import Baselines
from services.scoring.backtest.history_index import HistoryIndex, index_history
from services.scoring.history_files import read_lines
from services.scoring.metrics import ScoringMetrics
from services.scoring.model.store import ModelStore
from services.scoring.processor import ScoringProcessor
from services.scoring.sweep import CHUNK
from services.scoring.usage import DEDUP_HOURS
from shared.bus.base import DiscardingProducer, OutMessage, Record
from shared.clock import Clock, utcnow
from shared.config import Settings
from shared.contracts.events import EVENT_ADAPTER, Event
from shared.contracts.wire import decode_alert
from shared.storage.db import create_engine, migrate
from shared.storage.tables import account_health

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
    """Every event of the files in memory, in time order, and the rejected lines' count
    (for a small history; replay reads through an index instead)."""
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
    reading: Callable[[int], None] = lambda lines: None,
    clock: Clock = utcnow,
) -> Replay:
    """``reading`` hears the lines read by the first pass, ``progress`` the days scored.
    A line dated more than the settings' ``max_future_skew`` past its receipt (``clock()``
    when it has none or a later one) is rejected, as ingest would reject it.

    Memory is bounded by the index (history_index.py, ~22 bytes plus the event id per
    event) and the per-account state, not by the history: events are decoded when fed.
    """
    with tempfile.TemporaryDirectory(prefix="healthwatch-backtest-") as tmp:
        folder = Path(tmp)
        settings = Settings(_env_file=None, database_url=f"sqlite+aiosqlite:///{folder}/bt.db")
        now, skew = clock(), settings.max_future_skew
        with index_history(paths, folder, reading, now=now, skew=skew) as index:
            result = Replay(rejected=index.rejected, events=len(index), churn=dict(churn or {}))
            for account_id, day in index.churned:  # facts naming stage "churned" count too
                result.churn.setdefault(account_id, day)
            result.go_live_accounts = index.go_live_accounts
            if len(index):
                await _replay_days(index, settings, result, model_source, step_days, progress)
    return result


async def _replay_days(
    index: HistoryIndex,
    settings: Settings,
    result: Replay,
    model_source: str | None,
    step_days: int,
    progress: Callable[[int, int], None],
) -> None:
    """Score every account every ``step_days`` after the warm-up, in the throwaway
    database of ``settings``."""
    first, last = index.first_day, index.last_day
    result.first_day, result.last_day = first, last
    span = (last - first).days + 1
    days = [first + timedelta(days=offset) for offset in range(WARM_UP_DAYS, span, step_days)]
    engine = create_engine(settings.database_url)
    try:
        await migrate(engine)
        await _score_days(engine, settings, index, days, result, model_source, progress)
    finally:
        await engine.dispose()


async def _score_days(
    engine: AsyncEngine,
    settings: Settings,
    index: HistoryIndex,
    days: list[date],
    result: Replay,
    model_source: str | None,
    progress: Callable[[int, int], None],
) -> None:
    """Feed the events up to the end of each day, score every account as of the day,
    and keep the day's scores with the baselines of that day."""
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
    baselines = Baselines()
    fed = 0
    for number, day in enumerate(days, 1):
        end = datetime.combine(day + timedelta(days=1), time(), UTC)
        clock_now[0] = end - timedelta(seconds=1)
        fed = await _feed(processor, baselines, index, fed, end, feed_span(settings))
        await _score_all(processor, recorder, day, clock_now[0])
        result.snapshots += [
            replace(snapshot, history=baselines.as_of(snapshot.account_id, day))
            for snapshot in await _snapshots(engine, day, result.churn)
        ]
        progress(number, len(days))


# At most this many events are handed to the processor at once, as one batch of
# records: the lines and their events in memory meanwhile, some 100 MB. A batch spans
# a limited stretch of event time too (``feed_span``).
FEED_BATCH = 100_000


def feed_span(settings: Settings) -> timedelta:
    """The event time one batch may span. Batching is part of the scoring step's meaning:
    a batch's newest event decides which of its usage events are too late to count (the
    late grace), and ids repeated within a batch count once however far apart. So a
    batch spans no more than the dedup window (48 hours) or the late grace, whichever is
    shorter; not less, since the accounts' states are saved once a batch (batches of a
    day at most took a 4.5 M-event replay from 11 to 16 minutes)."""
    grace = timedelta(days=min(settings.late_grace_days, settings.window_days))
    return min(timedelta(hours=DEDUP_HOURS), grace)


async def _feed(
    processor: ScoringProcessor,
    baselines: Baselines,
    index: HistoryIndex,
    fed: int,
    end: datetime,
    span: timedelta,
) -> int:
    """Hand the processor the events before ``end`` after the first ``fed``, ``span`` of
    event time a batch at most, and the baselines the events it counted; return how many
    are fed now. The processor reads the lines as they are in the files, as an import's
    (the index kept only the lines its decoder takes)."""
    upto = index.before(end)
    start = fed
    while start < upto:
        stop = min(upto, start + FEED_BATCH, index.before(index.moment(start) + span))
        records = [
            Record("backtest", 0, start + position, None, line)
            for position, line in enumerate(index.lines(start, stop))
        ]
        # The events as the scoring step decoded and counted them (a line decoded once;
        # a resent event once, as the score counts it).
        for event in await processor.handle(records, score=False):
            baselines.take(event)
        start = stop
    return upto


async def _score_all(
    processor: ScoringProcessor, recorder: _FiringRecorder, day: date, now: datetime
) -> None:
    """Score every account as of ``day``, its rules stepping at ``now``, a chunk of
    accounts per transaction (as the sweep does)."""
    engine = processor.engine
    async with engine.connect() as conn:
        ids = sorted((await conn.execute(select(account_health.c.account_id))).scalars())
    for start in range(0, len(ids), CHUNK):
        async with engine.begin() as conn:
            alerts = await processor.rescore(conn, set(ids[start : start + CHUNK]), now, as_of=day)
            if alerts:
                await recorder.send_many(processor.alert_messages(alerts), conn)


async def _snapshots(engine: AsyncEngine, day: date, churn: dict[str, date]) -> list[Snapshot]:
    """The scores of ``day`` (every account was just scored as of it; one whose score
    did not change wrote no row for the day, so the accounts' current scores are read),
    of the accounts scored and not churned by then."""
    h = account_health.c
    query = (
        select(h.account_id, h.score, h.band, h.inputs, h.components)
        .where(h.band.is_not(None))
        .order_by(h.account_id)
    )
    snapshots = []
    async with engine.connect() as conn:
        for row in await conn.execute(query):
            gone = churn.get(row.account_id)
            if gone is not None and gone <= day:
                continue
            groups = (row.components or {}).get("groups", {})
            snapshots.append(Snapshot(row.account_id, day, row.score, row.band, row.inputs, groups))
    return snapshots
