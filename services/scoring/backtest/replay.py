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

import asyncio
import csv
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.scoring.backtest.baselines import Baselines
from services.scoring.backtest.history_index import HistoryIndex, Shard, index_history
from services.scoring.backtest.pool import run_in_processes
from services.scoring.metrics import ScoringMetrics
from services.scoring.model.store import ModelStore
from services.scoring.processor import ScoringProcessor, batch_span
from services.scoring.sweep import CHUNK
from services.scoring.usage_store import HeldStates
from shared.bus.base import DiscardingProducer, OutMessage, Record
from shared.clock import Clock, utcnow
from shared.config import Settings
from shared.contracts.wire import decode_alert
from shared.storage.db import create_engine, migrate
from shared.storage.tables import account_health

log = logging.getLogger(__name__)

# Accounts need some history before a score means anything.
WARM_UP_DAYS = 28
ONE_SECOND = timedelta(seconds=1)


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
    events: int = 0  # lines of events read (a resent event's each time)
    repeated: int = 0  # of them, events resent within the dedup window: counted once
    rejected: int = 0
    # The first rejected lines (file, line, why): where the input was, not what the
    # replay gave, so two replays of the same events in other files compare equal.
    rejects: list[tuple[str, int, str]] = field(default_factory=list, compare=False)
    first_day: date | None = None
    last_day: date | None = None
    # Accounts whose facts ever named a go-live date (the checks warn when none did).
    go_live_accounts: int = 0
    # Every account an event of the history names (empty: not known); for the checks'
    # words, not a figure: two replays of the same events compare equal without it.
    accounts: frozenset[str] = field(default_factory=frozenset, compare=False)


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


class ChurnFileError(ValueError):
    """The churn file cannot be read: the message says what to fix."""


CHURN_COLUMNS = ("account_id", "churn_date")


def read_churn_csv(path: Path) -> dict[str, date]:
    """``account_id,churn_date`` rows (a header line is expected; a spreadsheet's
    byte-order mark is skipped). ChurnFileError names the problem and its line."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as file:
            reader = csv.DictReader(file)
            if not set(CHURN_COLUMNS) <= set(reader.fieldnames or ()):
                raise ChurnFileError(
                    f"{path.name}: the first line must name the columns account_id,churn_date "
                    f"(comma-separated); it names {reader.fieldnames or 'nothing'}"
                )
            churn: dict[str, date] = {}
            lines: dict[str, int] = {}  # account → the line that gave its date
            for row in reader:
                # Spaces around a cell are a spreadsheet's ("sub-0011, 2026-11-01 "), not
                # part of the id or the day; the whole file had been refused for them.
                account, day = ((row.get(c) or "").strip() for c in CHURN_COLUMNS)
                if not (account and day):
                    continue
                try:
                    churned = date.fromisoformat(day[:10])
                except ValueError:
                    raise ChurnFileError(
                        f"{path.name}:{reader.line_num}: churn_date {row['churn_date']!r} is "
                        "not a day: write YYYY-MM-DD"
                    ) from None
                # Two days for one account: the last had won without a word, and moved
                # the figures (found from outside). A backtest knows one churn an account.
                if churn.setdefault(account, churned) != churned:
                    raise ChurnFileError(
                        f"{path.name}:{reader.line_num}: {account!r} churned on "
                        f"{churn[account]} already (line {lines[account]}): keep one day "
                        "an account, the churn the backtest is to foresee"
                    )
                lines.setdefault(account, reader.line_num)
            return churn
    except UnicodeDecodeError:
        raise ChurnFileError(f"{path.name}: not UTF-8 text: save it as CSV UTF-8") from None


async def replay(
    paths: Sequence[Path],
    *,
    churn: dict[str, date] | None = None,
    model_source: str | None = None,
    step_days: int = 7,
    progress: Callable[[int, int], None] = lambda done, total: None,
    reading: Callable[[int], None] = lambda lines: None,
    clock: Clock = utcnow,
    workers: int | None = None,
) -> Replay:
    """``reading`` hears the lines read by the first pass, ``progress`` the days scored.
    A line dated more than the settings' ``max_future_skew`` past its receipt (``clock()``
    when it has none or a later one) is rejected, as ingest would reject it.
    ``workers``: processes replaying the accounts, a share each (``worker_count``); the
    result is the same whatever the number.

    Memory is bounded by the index (history_index.py, ~26 bytes plus the event id per
    event) and the per-account state, not by the history: events are decoded when fed.
    """
    with tempfile.TemporaryDirectory(prefix="healthwatch-backtest-") as tmp:
        folder = Path(tmp)
        settings = Settings(_env_file=None, database_url=f"sqlite+aiosqlite:///{folder}/bt.db")
        now, skew = clock(), settings.max_future_skew
        index = index_history(paths, folder, reading, now=now, skew=skew)
        result = Replay(
            rejected=index.rejected,
            rejects=index.rejects,
            events=len(index),
            churn=dict(churn or {}),
        )
        for account_id, day in index.churned:  # facts naming stage "churned" count too
            result.churn.setdefault(account_id, day)
        result.go_live_accounts = index.go_live_accounts
        result.accounts = index.account_ids
        if len(index):
            result.first_day, result.last_day = index.first_day, index.last_day
            count = worker_count(workers, len(index))
            jobs = _jobs(index, settings, folder, result, model_source, step_days, count)
            del index  # the shards hold what the workers need
            await _run(jobs, result, progress)
    return result


# Events per worker below which another worker costs more than it saves: a worker
# process starts in about 2 s (imports, its database's migration), some 20 k events
# of replay.
EVENTS_PER_WORKER = 200_000


def worker_count(requested: int | None, events: int) -> int:
    """``requested`` (``--workers``), but no more than the cores this process may use:
    each worker is an interpreter holding its share of the accounts' states, and workers
    past the cores only take turns on them. None: one per core, but not for a small
    history."""
    cores = len(os.sched_getaffinity(0))
    if requested is None:
        return max(1, min(cores, events // EVENTS_PER_WORKER))
    if requested > cores:
        log.warning(
            "%d workers asked for, but this process may use %d cores: replaying with %d",
            requested,
            cores,
            cores,
        )
    return max(1, min(requested, cores))


@dataclass(frozen=True)
class ShardJob:
    """One worker's part of a replay: its accounts' events and what to do with them
    (pickled into a worker process)."""

    shard: Shard
    days: list[date]  # the evaluation days
    plan: list[list[tuple[int, int]]]  # per day, its feed batches (whole-history positions)
    settings: Settings  # its own throwaway database
    model_source: str | None
    churn: dict[str, date]
    first_day: date


@dataclass
class ShardResult:
    snapshots: list[Snapshot]
    firings: list[Firing]
    repeated: int = 0  # lines fed whose event id was counted already (a resent event)


def _jobs(
    index: HistoryIndex,
    settings: Settings,
    folder: Path,
    result: Replay,
    model_source: str | None,
    step_days: int,
    workers: int,
) -> list[ShardJob]:
    """Score every account every ``step_days`` after the warm-up: the days, each day's
    feed batches (cut on the whole history, so every shard's batches are the same
    slices of time as one worker's), and a job per shard."""
    first, last = index.first_day, index.last_day
    span = (last - first).days + 1
    days = [first + timedelta(days=offset) for offset in range(WARM_UP_DAYS, span, step_days)]
    plan = feed_plan(index, days, batch_span(settings))
    return [
        ShardJob(
            shard,
            days,
            plan,
            settings.model_copy(
                update={"database_url": f"sqlite+aiosqlite:///{folder}/shard-{number}.db"}
            ),
            model_source,
            result.churn,
            first,
        )
        for number, shard in enumerate(index.shards(workers))
    ]


async def _run(jobs: list[ShardJob], result: Replay, progress: Callable[[int, int], None]) -> None:
    """Replay the shards (in this process when there is one), and merge what they found
    in one order: the snapshots by day and account (as one database lists them), the
    firings by day, account and rule."""
    total = len(jobs[0].days) if jobs else 0
    if len(jobs) == 1:
        parts = [await replay_shard(jobs[0], lambda done: progress(done, total))]
    else:
        parts = await run_in_processes(
            replay_shard_in_process, jobs, lambda done: progress(min(done), total)
        )
    result.snapshots = sorted(
        (snapshot for part in parts for snapshot in part.snapshots),
        key=lambda snapshot: (snapshot.day, snapshot.account_id),
    )
    result.firings = sorted((firing for part in parts for firing in part.firings), key=firing_order)
    result.repeated = sum(part.repeated for part in parts)


def firing_order(firing: Firing) -> tuple[date, str, str]:
    return firing.day, firing.account_id, firing.rule


def replay_shard_in_process(job: ShardJob, tick: Callable[[int], None]) -> ShardResult:
    """A worker process's replay of its shard (``pool.run_in_processes``)."""
    return asyncio.run(replay_shard(job, tick))


async def replay_shard(job: ShardJob, tick: Callable[[int], None]) -> ShardResult:
    """Replay one shard in its throwaway database; ``tick`` hears the days scored."""
    engine = create_engine(job.settings.database_url)
    try:
        await migrate(engine)
        return await _score_days(engine, job, tick)
    finally:
        await engine.dispose()


async def _score_days(
    engine: AsyncEngine, job: ShardJob, tick: Callable[[int], None]
) -> ShardResult:
    """Feed the events up to the end of each day, score every account as of the day,
    and keep the day's scores with the baselines of that day."""
    out = ShardResult([], [])
    clock_now = [datetime.combine(job.first_day, time(), UTC)]
    recorder = _FiringRecorder(out.firings)
    processor = ScoringProcessor(
        engine,
        recorder,
        job.settings,
        ScoringMetrics(CollectorRegistry()),
        models=ModelStore(job.model_source) if job.model_source else ModelStore(),
        clock=lambda: clock_now[0],
        states=HeldStates(),  # a throwaway database: the states need not be written
    )
    baselines = Baselines()
    with job.shard.reader() as read:
        for number, (day, batches) in enumerate(zip(job.days, job.plan, strict=True), 1):
            clock_now[0] = datetime.combine(day + timedelta(days=1), time(), UTC) - ONE_SECOND
            out.repeated += await _feed(processor, baselines, job.shard, read, batches)
            await _score_all(processor, recorder, day, clock_now[0])
            out.snapshots.extend(
                replace(snapshot, history=baselines.as_of(snapshot.account_id, day))
                for snapshot in await _snapshots(engine, day, job.churn)
            )
            tick(number)
    return out


# At most this many events are handed to the processor at once, as one batch of
# records: the lines and their events in memory meanwhile, some 100 MB. A batch spans
# a limited stretch of event time too (``processor.batch_span``).
FEED_BATCH = 100_000


def feed_plan(
    index: HistoryIndex, days: Sequence[date], span: timedelta
) -> list[list[tuple[int, int]]]:
    """For each day, the batches (positions ``start`` to ``stop`` of the whole history)
    that feed the events before its end not fed before: ``span`` of event time a batch
    at most, and ``FEED_BATCH`` events."""
    plan: list[list[tuple[int, int]]] = []
    start = 0
    for day in days:
        upto = index.before(datetime.combine(day + timedelta(days=1), time(), UTC))
        batches = []
        while start < upto:
            stop = min(upto, start + FEED_BATCH, index.before(index.moment(start) + span))
            batches.append((start, stop))
            start = stop
        plan.append(batches)
    return plan


async def _feed(
    processor: ScoringProcessor,
    baselines: Baselines,
    shard: Shard,
    read: Callable[[slice], list[bytes]],
    batches: Sequence[tuple[int, int]],
) -> int:
    """Hand the processor the shard's events of each batch, one batch at a time, and
    the baselines the events it counted. The processor reads the lines as they are in
    the files, as an import's (the index kept only the lines its decoder takes).
    Returns how many lines it did not count: events resent (their id counted already)."""
    repeated = 0
    for start, stop in batches:
        where = shard.between(start, stop)
        positions = shard.positions[where].tolist()
        records = [
            Record("backtest", 0, position, None, line)
            for position, line in zip(positions, read(where), strict=True)
        ]
        # The events as the scoring step decoded and counted them (a line decoded once;
        # a resent event once, as the score counts it).
        counted = await processor.handle(records, score=False, counted=baselines.take)
        repeated += len(records) - counted
    return repeated


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
