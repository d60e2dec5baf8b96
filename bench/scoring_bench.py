#!/usr/bin/env python3
"""Scoring throughput, state size per account and ``healthwatch import`` speed, in one run.

Real services: a Kafka broker and a PostgreSQL server, started by the script with
``devservices`` (or given with ``--bootstrap`` / ``--postgres-url``).

The workload: ``--accounts`` accounts (about ``--users`` users each) with one account
facts event each, then ``--events`` usage events spread over the last ``--days`` days,
in event-time order (as a live stream would have delivered them), each with an event
name, a module and a platform (shapes of ``services/simulate.py``).

1. **Scoring through the full consumer path.** The workload is produced once to the
   event topics with ``shared.bus.kafka.KafkaProducer`` and ``encode_event``. Then, for
   each ``--batches`` value (``scoring_batch_max``; default 500 and 5000, the service's
   default), each side in its own consumer group:

   * **bare**: an ``AIOKafkaConsumer`` subscribed to the same topics, configured like the
     scoring consumer, reads to the end with ``getmany`` and only counts records;
   * **scoring**: ``services.runtime.open_runtime`` + ``run_scoring`` into a fresh,
     migrated PostgreSQL database, timed until ``processed_events`` holds every event.

   Headline: ``scoring_rate / bare_rate`` per configuration (the project's target: >= 0.5).
2. **State size per account**: ``pg_total_relation_size`` of the state tables and,
   apart, of ``processed_events`` (the dedup log), over the number of accounts: after
   each scoring run, after the PostgreSQL import below, and, with ``--state-accounts``
   (e.g. 10000; not in the default run, it takes ~10 min per 10,000 accounts), for larger
   states built with the import path at the same events per account. As the run
   leaves them, and after ``VACUUM FULL``.
3. **``healthwatch import``**: the same events as an NDJSON file through
   ``services.scoring.backfill.import_files`` (as ``services/cli.py`` calls it), into a
   fresh PostgreSQL database and into a fresh SQLite file (target: >= 100k events/s).

Run: ``python bench/scoring_bench.py`` (see ``bench/README.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import importlib.metadata
import inspect
import os
import random
import re
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from lib.baseline import bare_consume
from lib.console import err, make_progress, out
from lib.measure import (
    PhaseMeter,
    git_state,
    machine_info,
    rate,
)
from lib.processes import service_command, service_env, spawn, stop_process, tail
from lib.results import add_output_options, pyplot, save_figure, save_results
from lib.services import (
    Services,
    add_service_options,
    create_database,
    plain_dsn,
    quiet_logging,
    run_with_services,
)
from lib.watch import ScoringWatch
from prometheus_client import CollectorRegistry
from rich.progress import Progress
from rich.table import Table
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

import devservices
import services.scoring.processor as processor_module
from services.runtime import open_runtime, run_scoring
from services.scoring.backfill import import_files
from services.scoring.metrics import ScoringMetrics
from services.scoring.processor import ScoringProcessor
from services.simulate import MODULES, TIERS
from shared.bus.base import OutMessage
from shared.bus.factory import all_topics, event_topics
from shared.bus.kafka import KafkaProducer, ensure_topics
from shared.config import Settings
from shared.contracts.events import EVENT_ADAPTER
from shared.contracts.wire import encode_event
from shared.storage.db import create_engine, migrate
from shared.storage.tables import activity_daily, processed_events

ROOT = Path(__file__).resolve().parent.parent

EVENT_NAMES = ("login", "view", "create", "run", "use", "export", "search", "comment")
PLATFORMS = ("pc", "app", "api")
PLATFORM_WEIGHTS = (0.7, 0.2, 0.1)
SEATS = (10, 15, 20, 25, 40, 50)
# The state tables the brief names; any other table not listed in NOT_STATE that the
# schema has (it grows) is counted as state too, and named in the results.
STATE_TABLES = (
    "account_health",
    "accounts",
    "activity_daily",
    "activity_daily_users",
    "activity_daily_names",
    "tickets",
    "health_daily",
    "band_changes",
    "rule_state",
)
DEDUP_TABLE = "processed_events"
NOT_STATE = {
    DEDUP_TABLE,
    "consumer_offsets",
    "api_keys",
    "health_models",
    "alembic_version",
    "alerts",
    "deliveries",
    "bus_log",
}
STALL_S = 60.0  # give up a scoring phase that made no progress for this long
SEND_CHUNK = 2000  # messages per KafkaProducer.send_many, as tests/integration does


# --------------------------------------------------------------------------- workload


@dataclass(frozen=True)
class Account:
    account_id: str
    users: tuple[str, ...]
    seats: int
    weight: float  # relative share of the usage events


def make_accounts(n: int, users_mean: float, rng: random.Random) -> list[Account]:
    accounts = []
    for i in range(n):
        account_id = f"acct-{i:06d}"
        users = max(1, round(rng.gauss(users_mean, users_mean * 0.3)))
        accounts.append(
            Account(
                account_id=account_id,
                users=tuple(f"{account_id}-u{u}" for u in range(users)),
                seats=max(users, rng.choice(SEATS)),
                weight=rng.lognormvariate(0, 0.5),
            )
        )
    return accounts


def facts_event(a: Account, at: datetime, rng: random.Random) -> dict[str, Any]:
    """Account facts as the CRM sends them (the shape of ``services.simulate.facts``)."""
    csm = rng.randrange(5)
    start = (at - timedelta(days=rng.randint(30, 700))).date()
    return {
        "kind": "account",
        "event_id": f"facts-{a.account_id}",
        "account_id": a.account_id,
        "occurred_at": at.isoformat(),
        "name": f"Customer {a.account_id}",
        "seats_purchased": a.seats,
        "plan": "pro",
        "arr": a.seats * 1200.0,
        "tier": rng.choice(TIERS),
        "industry": rng.choice(["manufacturing", "retail", "software", "finance"]),
        "region": rng.choice(["north", "east", "south", "west"]),
        "owner": {"email": f"csm{csm}@example.com", "slack_id": f"U0CSM{csm}"},
        "contract_start": start.isoformat(),
        "contract_end": (start + timedelta(days=730)).isoformat(),
        "lifecycle_stage": "stable",
    }


def iter_workload(
    accounts: Sequence[Account],
    events: int,
    days: int,
    now: datetime,
    rng: random.Random,
    cohort: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Facts, then ``events`` usage events in event-time order over the ``days`` days
    before ``now``; generated a day at a time (bounded memory).

    With ``cohort``, the accounts are taken ``cohort`` at a time, each group's history
    complete before the next one's (events shared out by account count). A cohort the
    size of the main run gives every import batch one day of one cohort, so each account
    is scored once per active day, as in the streaming run; all accounts' days
    interleaved would score each account several times a day, and a file sorted by
    account would score each account once and keep one day of score history."""
    size = cohort or len(accounts) or 1
    for first in range(0, len(accounts), size):
        group = accounts[first : first + size]
        share = round(events * (first + len(group)) / len(accounts)) - round(
            events * first / len(accounts)
        )
        yield from _cohort(group, share, days, now, rng)


def _cohort(
    accounts: Sequence[Account], events: int, days: int, now: datetime, rng: random.Random
) -> Iterator[dict[str, Any]]:
    start = now - timedelta(days=days)
    for a in accounts:
        yield facts_event(a, start - timedelta(hours=1), rng)
    cum: list[float] = []
    total = 0.0
    for a in accounts:
        total += a.weight
        cum.append(total)
    per_day = [events // days + (1 if d < events % days else 0) for d in range(days)]
    base = start.timestamp()
    for d, count in enumerate(per_day):
        lo = base + d * 86400
        hi = min(lo + 86400, now.timestamp() - 1)
        chosen = rng.choices(accounts, cum_weights=cum, k=count)
        moments = sorted(rng.uniform(lo, hi) for _ in range(count))
        for a, moment in zip(chosen, moments, strict=True):
            yield {
                "kind": "usage",
                "event_id": str(uuid.UUID(int=rng.getrandbits(128))),
                "account_id": a.account_id,
                "user_id": rng.choice(a.users),
                "event": rng.choice(EVENT_NAMES),
                "module": rng.choice(MODULES),
                "platform": rng.choices(PLATFORMS, PLATFORM_WEIGHTS)[0],
                "duration_s": round(rng.uniform(5, 900), 1),
                "occurred_at": datetime.fromtimestamp(moment, UTC).isoformat(
                    timespec="milliseconds"
                ),
            }


def to_messages(raw: Sequence[dict[str, Any]], settings: Settings) -> list[OutMessage]:
    """What the ingest service puts on Kafka: validated, ``received_at`` stamped, encoded."""
    received_at = datetime.now(UTC)
    messages = []
    for item in raw:
        model = EVENT_ADAPTER.validate_python(item)
        model = model.model_copy(update={"received_at": received_at})
        messages.append(
            OutMessage(settings.topic(model.kind), model.account_id.encode(), encode_event(model))
        )
    return messages


def write_ndjson(
    path: Path, items: Iterator[dict[str, Any]], progress: Progress, total: int
) -> int:
    task = progress.add_task(f"write {path.name}", total=total)
    lines = 0
    with path.open("wb") as fh:
        for item in items:
            fh.write(orjson.dumps(item) + b"\n")
            lines += 1
            if lines % 5000 == 0:
                progress.update(task, completed=lines)
    progress.update(task, completed=lines)
    return lines


# --------------------------------------------------------------------------- measurement


_KIND_PATTERNS = (
    re.compile(r"^\s*(INSERT)\s+INTO\s+\"?(\w+)", re.I),
    re.compile(r"^\s*(UPDATE)\s+\"?(\w+)", re.I),
    re.compile(r"^\s*(DELETE)\s+FROM\s+\"?(\w+)", re.I),
    re.compile(r"^\s*(SELECT|WITH)\b.*?\bFROM\s+\"?(\w+)", re.I | re.S),
)


def statement_kind(sql: str) -> str:
    for pattern in _KIND_PATTERNS:
        match = pattern.match(sql)
        if match:
            return f"{match.group(1).upper()} {match.group(2)}"
    return " ".join(sql.split()[:2]).upper()[:40]


class SqlTimer:
    """Counts and times the statements an engine sends (SQLAlchemy cursor events).

    The time of a statement is the wall time from handing it to the driver until its
    result is back: the round trip, the server's work, and whatever other coroutines
    the event loop ran meanwhile. Transaction BEGIN/COMMIT of asyncpg are not cursor
    executions and are not counted."""

    def __init__(self, engine: AsyncEngine, steps: StepTimer | None = None) -> None:
        self._sync = engine.sync_engine
        self._steps = steps
        self.statements = 0
        self.seconds = 0.0
        self.by_kind: dict[str, list[float]] = {}
        self._kinds: dict[str, str] = {}
        event.listen(self._sync, "before_cursor_execute", self._before)
        event.listen(self._sync, "after_cursor_execute", self._after)

    def _before(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        conn.info["bench_t0"] = time.perf_counter()

    def _after(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        started = conn.info.pop("bench_t0", None)
        if started is None:
            return
        took = time.perf_counter() - started
        kind = self._kinds.get(statement)
        if kind is None:
            kind = self._kinds[statement] = statement_kind(statement)
        self.statements += 1
        self.seconds += took
        if self._steps is not None:
            self._steps.add_sql(took)
        slot = self.by_kind.setdefault(kind, [0, 0.0])
        slot[0] += 1
        slot[1] += took

    def detach(self) -> None:
        event.remove(self._sync, "before_cursor_execute", self._before)
        event.remove(self._sync, "after_cursor_execute", self._after)

    def summary(self, wall_s: float, batches: float | None = None) -> dict[str, Any]:
        top = sorted(self.by_kind.items(), key=lambda kv: -kv[1][1])
        data: dict[str, Any] = {
            "statements": self.statements,
            "seconds": round(self.seconds, 3),
            "share_of_wall": round(self.seconds / wall_s, 3) if wall_s else None,
            "by_statement": {
                k: {
                    "count": int(v[0]),
                    "seconds": round(v[1], 3),
                    "ms_mean": round(v[1] / v[0] * 1e3, 3),
                }
                for k, v in top
            },
        }
        if batches:
            data["statements_per_batch"] = round(self.statements / batches, 1)
            data["sql_ms_per_batch"] = round(self.seconds / batches * 1e3, 2)
        return data


STEPS = ("decode", "dedup", "apply", "rescore", "publish", "offsets")


class StepTimer:
    """Splits ``ScoringProcessor.handle`` into its steps by wrapping them while a phase
    runs (the service code is not changed, only looked up through): ``decode``,
    ``dedup`` (the processed_events insert), ``apply`` (``apply_events``: the state
    tables), ``rescore`` (measures, model, history), ``publish`` (alerts to Kafka),
    ``offsets``; the rest of ``handle`` (transaction begin/commit, metrics) is "other".
    A step missing from the code (renamed) is skipped and reported as absent."""

    def __init__(self, publisher: Any = None) -> None:
        self.current: list[str] = []
        self.seconds: dict[str, float] = dict.fromkeys(("handle", *STEPS), 0.0)
        self.calls: dict[str, int] = dict.fromkeys(("handle", *STEPS), 0)
        self.sql: dict[str, float] = {}
        self.outside: dict[str, float] = {}
        self.absent: list[str] = []
        self._undo: list[Callable[[], None]] = []
        targets: list[tuple[Any, str, str]] = [
            (ScoringProcessor, "handle", "handle"),
            (ScoringProcessor, "_decode", "decode"),
            (ScoringProcessor, "_drop_duplicates", "dedup"),
            (processor_module, "apply_events", "apply"),
            (ScoringProcessor, "rescore", "rescore"),
            (processor_module, "save_offsets", "offsets"),
        ]
        if publisher is not None:
            targets.append((publisher, "send_many", "publish"))
        for owner, name, step in targets:
            self._wrap(owner, name, step)

    def _wrap(self, owner: Any, name: str, step: str) -> None:
        original = getattr(owner, name, None)
        if original is None:
            self.absent.append(step)
            return
        timer = self
        wrapper: Callable[..., Any]
        if inspect.iscoroutinefunction(original):

            @functools.wraps(original)
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                timer.current.append(step)
                started = time.perf_counter()
                try:
                    return await original(*args, **kwargs)
                finally:
                    timer.current.pop()
                    timer.record(step, time.perf_counter() - started)

        else:

            @functools.wraps(original)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                timer.current.append(step)
                started = time.perf_counter()
                try:
                    return original(*args, **kwargs)
                finally:
                    timer.current.pop()
                    timer.record(step, time.perf_counter() - started)

        setattr(owner, name, wrapper)
        self._undo.append(lambda: setattr(owner, name, original))

    def record(self, step: str, took: float) -> None:
        if step == "handle" or "handle" in self.current:
            self.seconds[step] += took
            self.calls[step] += 1
        else:  # e.g. the sweep's rescore, outside any batch
            self.outside[step] = self.outside.get(step, 0.0) + took

    def add_sql(self, took: float) -> None:
        inside = "handle" in self.current
        step = self.current[-1] if inside else "outside handle"
        self.sql[step] = self.sql.get(step, 0.0) + took

    def detach(self) -> None:
        while self._undo:
            self._undo.pop()()

    def summary(self) -> dict[str, Any]:
        handle = self.seconds["handle"]
        batches = self.calls["handle"]
        inner = sum(self.seconds[s] for s in STEPS)
        steps: dict[str, Any] = {}
        for step in (*STEPS, "other"):
            took = handle - inner if step == "other" else self.seconds[step]
            sql = self.sql.get("handle" if step == "other" else step, 0.0)
            steps[step] = {
                "seconds": round(took, 3),
                "share_of_handle": round(took / handle, 3) if handle else None,
                "ms_per_batch": round(took / batches * 1e3, 2) if batches else None,
                "sql_seconds": round(sql, 3),
            }
        return {
            "handle_calls": batches,
            "handle_seconds": round(handle, 3),
            "steps": steps,
            "outside_handle_seconds": {k: round(v, 3) for k, v in self.outside.items()},
            "sql_outside_handle_seconds": round(self.sql.get("outside handle", 0.0), 3),
            "absent_steps": self.absent,
        }


def metric_sum(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    total = 0.0
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


# --------------------------------------------------------------------------- databases


async def count_rows(engine: AsyncEngine, table: Any) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def usage_in_state(engine: AsyncEngine) -> int:
    """Usage events counted in activity_daily: a check that every event was applied."""
    async with engine.connect() as conn:
        value = (await conn.execute(select(func.sum(activity_daily.c.events)))).scalar()
    return int(value or 0)


async def state_size(url: str, vacuum: bool) -> dict[str, Any]:
    """Bytes of each table (``pg_total_relation_size``: heap, TOAST and indexes) and
    rows, as left by the run and, with ``vacuum``, after ``VACUUM FULL``."""
    conn = await asyncpg.connect(plain_dsn(url))
    try:

        async def sizes() -> dict[str, dict[str, int]]:
            rows = await conn.fetch(
                "SELECT c.relname, pg_total_relation_size(c.oid) AS total, "
                "pg_indexes_size(c.oid) AS indexes FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY c.relname"
            )
            return {r["relname"]: {"bytes": r["total"], "index_bytes": r["indexes"]} for r in rows}

        as_run = await sizes()
        for name in as_run:
            as_run[name]["rows"] = int(await conn.fetchval(f'SELECT count(*) FROM "{name}"'))
        accounts = as_run.get("account_health", {}).get("rows", 0)
        compacted = None
        if vacuum:
            await conn.execute("VACUUM (FULL, ANALYZE)")
            compacted = await sizes()
        version = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()

    state_names = sorted(
        {n for n in as_run if n not in NOT_STATE} | {n for n in STATE_TABLES if n in as_run}
    )

    def per_account(tables: dict[str, dict[str, int]]) -> dict[str, Any]:
        state = sum(tables[n]["bytes"] for n in state_names)
        dedup = tables.get(DEDUP_TABLE, {}).get("bytes", 0)
        return {
            "state_bytes": state,
            "dedup_bytes": dedup,
            "state_bytes_per_account": round(state / accounts, 1) if accounts else None,
            "dedup_bytes_per_account": round(dedup / accounts, 1) if accounts else None,
            "tables_bytes_per_account": {
                n: round(tables[n]["bytes"] / accounts, 1) if accounts else None
                for n in [*state_names, DEDUP_TABLE]
                if n in tables
            },
        }

    dedup_rows = as_run.get(DEDUP_TABLE, {}).get("rows", 0)
    result: dict[str, Any] = {
        "accounts": accounts,
        "dedup_rows": dedup_rows,
        "state_tables": state_names,
        "extra_state_tables": [n for n in state_names if n not in STATE_TABLES],
        "server_version": version,
        "as_run": per_account(as_run),
        "tables_as_run": as_run,
    }
    if compacted is not None:
        result["vacuum_full"] = per_account(compacted)
        result["tables_vacuum_full"] = compacted
        if dedup_rows:
            result["dedup_bytes_per_event_vacuum_full"] = round(
                compacted.get(DEDUP_TABLE, {}).get("bytes", 0) / dedup_rows, 1
            )
    return result


# --------------------------------------------------------------------------- phases


def bench_settings(**values: Any) -> Settings:
    """Settings from the given values only (no ``.env``; ``HEALTHWATCH_*`` variables of
    the environment would still apply to fields not given)."""
    return Settings(_env_file=None, log_level="WARNING", **values)


async def produce(settings: Settings, messages: Sequence[OutMessage], progress: Progress) -> float:
    """Send with the project's producer, as ``tests/integration`` ``produce()`` does."""
    task = progress.add_task("produce to Kafka", total=len(messages))
    producer = KafkaProducer(settings.kafka_bootstrap, ack_timeout_s=30)
    await producer.start()
    started = time.perf_counter()
    try:
        for i in range(0, len(messages), SEND_CHUNK):
            chunk = messages[i : i + SEND_CHUNK]
            await producer.send_many(chunk)
            progress.advance(task, len(chunk))
    finally:
        await producer.stop()
    return time.perf_counter() - started


async def wait_for_leaders(bootstrap: str, topics: Sequence[str], timeout_s: float = 30) -> None:
    """Until every partition of ``topics`` has a leader (fresh topics take a moment; a
    producer would meanwhile log NotLeaderForPartition and retry)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            described = await admin.describe_topics(list(topics))
            if len(described) == len(topics) and all(
                t["error_code"] == 0
                and t["partitions"]
                and all(p["error_code"] == 0 and p["leader"] >= 0 for p in t["partitions"])
                for t in described
            ):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"topics without leaders after {timeout_s} s: {described}")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def records_in_topics(bootstrap: str, topics: Sequence[str], partitions: int) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(partitions)]
        ends: dict[Any, int] = await consumer.end_offsets(tps)
        return sum(ends.values())
    finally:
        await consumer.stop()


async def scoring_run(
    settings: Settings,
    total: int,
    usage_events: int,
    meter: PhaseMeter,
    progress: Progress,
    label: str,
    timeout_s: float,
) -> dict[str, Any]:
    """``open_runtime`` + ``run_scoring``; timed until ``processed_events`` has ``total``
    rows (counted every POLL_S from another engine), then stopped gracefully."""
    counter = create_engine(settings.database_url)
    watch = ScoringWatch(counter, settings, total, progress, progress.add_task(label, total=total))
    registry = CollectorRegistry()
    done: float | None = None
    meter.start()
    started = time.perf_counter()
    try:
        async with open_runtime(settings, registry=registry) as rt:
            ready = time.perf_counter()
            steps = StepTimer(rt.bus.producer)
            sql = SqlTimer(rt.engine, steps)
            stop = asyncio.Event()
            consumer = asyncio.create_task(run_scoring(rt, stop))
            last = (time.perf_counter(), 0)  # (when, count) of the last progress seen
            try:
                while True:
                    if await watch.poll():
                        done = watch.now
                        break
                    now, count = watch.now, watch.count  # for the stall check below
                    if consumer.done():
                        await consumer  # raises what stopped it
                        raise RuntimeError("the scoring consumer stopped before the end")
                    if count != last[1]:
                        last = (now, count)
                    stalled = now - last[0] > STALL_S
                    if now - started > timeout_s or stalled:
                        why = f"no progress for {STALL_S:.0f} s" if stalled else "timed out"
                        err.print(f"[red]{label}: {why} at {count:,} of {total:,}[/]")
                        done = now
                        break
                cores = meter.cores()
            finally:
                stop.set()
                await consumer
                sql.detach()
                steps.detach()
        applied = await usage_in_state(counter)
    finally:
        await counter.dispose()
    assert done is not None
    seconds = done - started
    batches = metric_sum(registry, "healthwatch_scoring_batch_seconds_count")
    in_batches = metric_sum(registry, "healthwatch_scoring_batch_seconds_sum")
    handled, first = watch.handled, watch.first
    result: dict[str, Any] = {
        "processed": watch.count,
        "records_consumed_per_offsets": watch.consumed,
        "complete": handled >= total,
        "seconds": round(seconds, 3),
        "events_per_s": rate(handled, seconds),
        "seconds_to_ready": round(ready - started, 3),
        "seconds_to_first_processed": round(first[0] - started, 3) if first else None,
        "events_per_s_after_first_poll": (
            rate(handled - first[1], done - first[0]) if first and done > first[0] else None
        ),
        "batches": int(batches),
        "records_per_batch_mean": round(handled / batches, 1) if batches else None,
        "batch_ms_mean": round(in_batches / batches * 1e3, 2) if batches else None,
        "share_of_wall_in_batches": round(in_batches / seconds, 3) if seconds else None,
        "events_scored": int(
            metric_sum(registry, "healthwatch_scoring_events_total", outcome="scored")
        ),
        "duplicates": int(
            metric_sum(registry, "healthwatch_scoring_events_total", outcome="duplicate")
        ),
        "alerts_published": int(metric_sum(registry, "healthwatch_scoring_alerts_total")),
        "late_events": int(metric_sum(registry, "healthwatch_scoring_late_events_total")),
        "usage_events_in_activity_daily": applied,
        "usage_events_expected": usage_events,
        "sql": sql.summary(seconds, batches),
        "steps": steps.summary(),
        "cpu_cores": cores,
    }
    return result


async def processes_run(
    settings: Settings,
    total: int,
    processes: int,
    workdir: Path,
    meter: PhaseMeter,
    progress: Progress,
    timeout_s: float,
) -> dict[str, Any]:
    """``processes`` × ``healthwatch scoring``, one consumer group, as production scales;
    timed from their start until ``processed_events`` has ``total`` rows."""
    env = service_env(settings, {"HEALTHWATCH_LOG_LEVEL": "WARNING"})
    engine = create_engine(settings.database_url)
    await migrate(engine)  # as `healthwatch migrate` does before production services start
    task = progress.add_task(f"scoring, {processes} process(es)", total=total)
    watch = ScoringWatch(engine, settings, total, progress, task)
    procs: list[subprocess.Popen[bytes]] = []
    logs = [workdir / f"scoring-{processes}-{i}.log" for i in range(processes)]
    meter.start()
    started = time.perf_counter()
    try:
        for log_path in logs:
            port = {"HEALTHWATCH_SCORING_PORT": str(devservices.free_port())}
            procs.append(spawn(service_command("scoring"), {**env, **port}, workdir, log_path))
        while not await watch.poll():
            for proc, log_path in zip(procs, logs, strict=True):
                if proc.poll() is not None:
                    raise RuntimeError(f"a scoring process exited:\n{tail(log_path)}")
            if watch.now - started > timeout_s:
                raise TimeoutError(f"{processes} processes: {watch.count:,} of {total:,}")
        done = watch.now
        cores = meter.cores()
    finally:
        for proc in procs:
            stop_process(proc)
        await engine.dispose()
    handled, first = watch.handled, watch.first
    return {
        "processes": processes,
        "scoring_batch_max": settings.scoring_batch_max,
        "seconds": round(done - started, 3),
        "events_per_s": rate(handled, done - started),
        "seconds_to_first_processed": round(first[0] - started, 3) if first else None,
        # Start-up (interpreter, imports, the group join) is not scoring: the rate after
        # the first rows appeared is the one to compare between process counts.
        "events_per_s_after_first_poll": (
            rate(handled - first[1], done - first[0]) if first and done > first[0] else None
        ),
        "cpu_cores": cores,
    }


async def import_run(
    url: str,
    path: Path,
    lines: int,
    usage_events: int,
    meter: PhaseMeter,
    progress: Progress,
    label: str,
) -> dict[str, Any]:
    """``import_files`` exactly as ``healthwatch import`` calls it, into ``url``."""
    settings = bench_settings(database_url=url)
    engine = create_engine(url)
    task = progress.add_task(label, total=lines)
    lines_done: float | None = None
    try:
        if url.startswith("sqlite"):
            await migrate(engine)  # what the CLI does for the embedded database
        metrics = ScoringMetrics(CollectorRegistry())
        steps = StepTimer()
        sql = SqlTimer(engine, steps)

        def report(name: str, seen: int) -> None:
            nonlocal lines_done
            progress.update(task, completed=seen)
            if seen >= lines:
                lines_done = time.perf_counter()

        meter.start()
        started = time.perf_counter()
        try:
            result = await import_files(
                [path],
                lambda sink: ScoringProcessor(engine, sink, settings, metrics),
                progress=report,
            )
            seconds = time.perf_counter() - started
            cores = meter.cores()
        finally:
            sql.detach()
            steps.detach()
        applied = await usage_in_state(engine)
        processed_rows = await count_rows(engine, processed_events)
    finally:
        await engine.dispose()
    lines_s = (lines_done - started) if lines_done else None
    data: dict[str, Any] = {
        "lines": lines,
        "imported": result.imported,
        "rejected": len(result.rejected),
        "swept_accounts": result.swept,
        "alerts_not_sent": result.alerts_not_sent,
        "seconds": round(seconds, 3),
        "events_per_s": rate(result.imported, seconds),
        "seconds_lines_only": round(lines_s, 3) if lines_s else None,
        "events_per_s_lines_only": rate(result.imported, lines_s),
        "seconds_sweep": round(seconds - lines_s, 3) if lines_s else None,
        "transactions_of_lines": -(-lines // 5000),
        "usage_events_in_activity_daily": applied,
        "usage_events_expected": usage_events,
        "processed_events_rows": processed_rows,
        "sql": sql.summary(seconds, steps.calls["handle"]),
        "steps": steps.summary(),
        "cpu_cores": cores,
    }
    if url.startswith("sqlite"):
        file = Path(url.split("///", 1)[1])
        data["sqlite_file_bytes"] = sum(
            p.stat().st_size for p in file.parent.glob(file.name + "*") if p.is_file()
        )
    return data


# --------------------------------------------------------------------------- run


@dataclass
class Options:
    events: int
    accounts: int
    users: float
    days: int
    batches: list[int]
    state_accounts: list[int]
    state_events_per_account: float | None
    partitions: int | None
    scoring_timeout: float
    bare_rounds: int
    processes: list[int]
    vacuum: bool
    bootstrap: str | None
    postgres_url: str | None
    out: Path
    plot: Path
    seed: int
    keep: bool


@dataclass
class Phases:
    """What every phase of a run shares: the options, the services, the settings every
    run starts from, the CPU meter and the progress bars."""

    opts: Options
    services: Services
    workdir: Path
    run_id: str
    base: Settings  # Kafka, topics and partitions of the run; each phase adds its database
    meter: PhaseMeter
    progress: Progress
    total: int  # records of the workload (usage events + account facts)

    async def database(self, name: str) -> str:
        return await create_database(self.services.postgres_url, f"bench_{self.run_id}_{name}")

    async def state(
        self, url: str, source: str, per_account: float, note: str = ""
    ) -> dict[str, Any]:
        if note:
            err.print(f"  measuring state size of {note}")
        return {
            "source": source,
            "events_per_account": round(per_account, 1),
            **await state_size(url, self.opts.vacuum),
        }


def make_workload(
    opts: Options, base: Settings, now: datetime, rng: random.Random
) -> tuple[list[dict[str, Any]], list[OutMessage], dict[str, Any]]:
    """The raw events, their Kafka messages and the workload's description."""
    err.print(
        f"[bold]workload[/]: {opts.accounts:,} accounts, {opts.events:,} usage events over "
        f"{opts.days} days (+{opts.accounts:,} account facts)"
    )
    accounts = make_accounts(opts.accounts, opts.users, rng)
    raw = list(iter_workload(accounts, opts.events, opts.days, now, rng))
    total = len(raw)
    started = time.perf_counter()
    messages = to_messages(raw, base)
    encode_us = (time.perf_counter() - started) / total * 1e6
    return (
        raw,
        messages,
        {
            "accounts": opts.accounts,
            "usage_events": opts.events,
            "account_facts_events": opts.accounts,
            "records_total": total,
            "users_per_account_mean": round(sum(len(a.users) for a in accounts) / len(accounts), 2),
            "days": opts.days,
            "mean_record_bytes": round(sum(len(m.value) for m in messages) / total, 1),
            "validate_encode_us_per_event": round(encode_us, 1),
        },
    )


async def fill_kafka(p: Phases, messages: Sequence[OutMessage]) -> float:
    """Create the topics and produce the workload; the produce rate. Checks that every
    record is in Kafka."""
    bootstrap, topics = p.services.bootstrap, all_topics(p.base)
    await ensure_topics(
        bootstrap,
        topics,
        partitions=p.base.kafka_partitions,
        replication=p.base.kafka_replication,
    )
    await wait_for_leaders(bootstrap, topics)
    produce_s = await produce(p.base, messages, p.progress)
    in_kafka = await records_in_topics(bootstrap, event_topics(p.base), p.base.kafka_partitions)
    if in_kafka != p.total:
        raise RuntimeError(f"{in_kafka} records in Kafka, expected {p.total}")
    return produce_s


async def batch_phase(p: Phases, batch: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The bare consumer and the scoring consumer path at one ``scoring_batch_max``; their
    figures and the state size the scoring run left."""
    opts, tag = p.opts, f"b{batch}"
    # The bare read takes well under a second: several rounds, each with a fresh
    # group, and the median round is the figure the ratio uses.
    rounds = [
        await bare_consume(
            p.services.bootstrap,
            event_topics(p.base),
            p.total,
            batch,
            p.meter,
            p.progress,
            f"bare consumer, {batch} #{i + 1}",
            opts.scoring_timeout,
        )
        for i in range(opts.bare_rounds)
    ]
    ordered = sorted(rounds, key=lambda r: r["events_per_s"] or 0.0)
    bare = {**ordered[len(ordered) // 2], "rounds": rounds}
    url = await p.database(f"scoring_{tag}")
    settings = p.base.model_copy(
        update={
            "database_url": url,
            "consumer_group_scoring": f"bench-{p.run_id}-scoring-{tag}",
            "consumer_group_alerts": f"bench-{p.run_id}-alerts-{tag}",
            "scoring_batch_max": batch,
        }
    )
    scoring = await scoring_run(
        settings,
        p.total,
        opts.events,
        p.meter,
        p.progress,
        f"scoring, batch {batch}",
        opts.scoring_timeout,
    )
    figures = {
        "scoring_batch_max": batch,
        "bare": bare,
        "scoring": scoring,
        "ratio": (
            round(scoring["events_per_s"] / bare["events_per_s"], 4)
            if scoring["events_per_s"] and bare["events_per_s"]
            else None
        ),
    }
    source = f"Kafka scoring run, scoring_batch_max={batch}"
    state = await p.state(url, source, opts.events / opts.accounts, f"the batch-{batch} database")
    return figures, state


async def processes_phase(p: Phases) -> dict[str, Any]:
    """Scoring in N ``healthwatch scoring`` processes of one group, per ``--processes``.
    A count may repeat (e.g. 2,2,2: three cold starts of a two-member group)."""
    found: dict[str, Any] = {}
    for i, n in enumerate(p.opts.processes):
        url = await p.database(f"procs_{i}_{n}")
        settings = p.base.model_copy(
            update={
                "database_url": url,
                "consumer_group_scoring": f"bench-{p.run_id}-procs-{i}-{n}",
            }
        )
        key = str(n) if p.opts.processes.index(n) == i else f"{n} (start {i + 1})"
        found[key] = await processes_run(
            settings, p.total, n, p.workdir, p.meter, p.progress, p.opts.scoring_timeout
        )
    return found


async def import_phase(p: Phases, ndjson: Path, results: dict[str, Any]) -> None:
    """``healthwatch import`` of the same events (``ndjson``) into PostgreSQL and SQLite."""
    opts = p.opts
    url = await p.database("import")
    results["import"]["postgresql"] = await import_run(
        url, ndjson, p.total, opts.events, p.meter, p.progress, "import → PostgreSQL"
    )
    results["state"]["import_pg"] = await p.state(
        url,
        "healthwatch import into PostgreSQL (same events as the Kafka run)",
        opts.events / opts.accounts,
    )
    sqlite_url = f"sqlite+aiosqlite:///{p.workdir / 'import.db'}"
    results["import"]["sqlite"] = await import_run(
        sqlite_url, ndjson, p.total, opts.events, p.meter, p.progress, "import → SQLite"
    )


async def larger_states_phase(p: Phases, now: datetime, results: dict[str, Any]) -> None:
    """State size of ``--state-accounts`` accounts, imported (the fast path there)."""
    opts = p.opts
    per_account = opts.state_events_per_account or opts.events / opts.accounts
    for size in opts.state_accounts:
        events = round(size * per_account)
        state_rng = random.Random(opts.seed * 1000 + size)
        path = p.workdir / f"state-{size}.ndjson"
        workload = iter_workload(
            make_accounts(size, opts.users, state_rng),
            events,
            opts.days,
            now,
            state_rng,
            cohort=opts.accounts,
        )
        lines = write_ndjson(path, workload, p.progress, size + events)
        url = await p.database(f"state_{size}")
        results["import"][f"postgresql_{size}_accounts"] = await import_run(
            url, path, lines, events, p.meter, p.progress, f"import {size:,} accounts"
        )
        path.unlink()
        results["state"][f"import_{size}"] = await p.state(
            url,
            f"healthwatch import into PostgreSQL, {size:,} accounts",
            per_account,
            f"{size:,} accounts",
        )


async def run(opts: Options, workdir: Path, services: Services) -> dict[str, Any]:
    rng = random.Random(opts.seed)
    run_id = uuid.uuid4().hex[:8]
    now = datetime.now(UTC)
    base = bench_settings(kafka_bootstrap=services.bootstrap, topic_prefix=f"bench-{run_id}")
    partitions = opts.partitions or base.kafka_partitions
    base = base.model_copy(update={"kafka_partitions": partitions})
    results: dict[str, Any] = {"partitions": partitions, "scoring": {}, "state": {}, "import": {}}
    raw, messages, results["workload"] = make_workload(opts, base, now, rng)
    total = len(raw)
    with make_progress() as progress:
        meter = PhaseMeter(services.broker_pid, services.postgres_pid)
        p = Phases(opts, services, workdir, run_id, base, meter, progress, total)
        # 1. The Kafka path: the bare consumer and scoring at each batch size.
        produce_s = await fill_kafka(p, messages)
        results["workload"]["produce_events_per_s"] = rate(total, produce_s)
        del messages
        for batch in opts.batches:
            figures, state = await batch_phase(p, batch)
            results["scoring"][f"b{batch}"] = figures
            results["state"][f"kafka_b{batch}"] = state
        if opts.processes:
            results["processes"] = await processes_phase(p)
        # 3. Import; 2. larger states through the import path.
        ndjson = workdir / "events.ndjson"
        write_ndjson(ndjson, iter(raw), progress, total)
        del raw
        await import_phase(p, ndjson, results)
        ndjson.unlink()
        await larger_states_phase(p, now, results)
    results["checks"] = {"records_in_kafka": total, "records_produced": total}
    return results


def versions() -> dict[str, str]:
    found = {}
    for lib in ("asyncpg", "sqlalchemy", "aiosqlite", "aiokafka", "pydantic", "orjson", "alembic"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[lib] = importlib.metadata.version(lib)
    return found


def changed_files() -> list[str]:
    proc = subprocess.run(
        ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    return [line[3:] for line in proc.stdout.splitlines() if line.strip()]


def report(
    opts: Options, results: dict[str, Any], services: Services, argv: Sequence[str]
) -> dict[str, Any]:
    machine = machine_info(services.kafka_version)
    machine["libraries"].update(versions())
    pg_versions = {s.get("server_version") for s in results["state"].values()}
    machine["postgresql"] = ", ".join(sorted(v for v in pg_versions if v))
    return {
        "benchmark": "scoring: consumer path vs bare consumer; state size; healthwatch import",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": shlex.join(["python", *argv]),
        "git": {**git_state(), "changed_files": changed_files()},
        # Where services/ and shared/ were imported from (a snapshot via PYTHONPATH, or ROOT).
        "code_root": str(Path(processor_module.__file__).resolve().parents[2]),
        "machine": machine,
        "config": {
            "events": opts.events,
            "accounts": opts.accounts,
            "users_per_account": opts.users,
            "days": opts.days,
            "scoring_batch_max": opts.batches,
            "state_accounts": opts.state_accounts,
            "state_events_per_account": opts.state_events_per_account,
            "partitions": results["partitions"],
            "scoring_timeout_s": opts.scoring_timeout,
            "bare_rounds": opts.bare_rounds,
            "vacuum_full": opts.vacuum,
            "seed": opts.seed,
            "broker": f"external {opts.bootstrap}" if opts.bootstrap else "local single-node KRaft",
            "postgresql": "external" if opts.postgres_url else "local cluster (devservices)",
        },
        **{k: v for k, v in results.items() if k != "partitions"},
    }


# --------------------------------------------------------------------------- output


def _n(value: float | None, fmt: str = ",.0f") -> str:
    return "-" if value is None else format(value, fmt)


def _cores(c: dict[str, float | None]) -> str:
    return "/".join(
        "-" if c.get(k) is None else f"{c[k]:.2f}" for k in ("bench", "broker", "postgres", "other")
    )


def print_tables(result: dict[str, Any]) -> None:
    wl = result["workload"]
    out.print(
        f"workload: {wl['accounts']:,} accounts (~{wl['users_per_account_mean']} users), "
        f"{wl['usage_events']:,} usage events over {wl['days']} days + "
        f"{wl['account_facts_events']:,} account facts = {wl['records_total']:,} records "
        f"(mean {wl['mean_record_bytes']} bytes on Kafka); produced at "
        f"{_n(wl['produce_events_per_s'])} events/s"
    )
    table = Table(title="scoring through the consumer path vs a bare consumer (events/s)")
    for header in (
        "batch max",
        "bare",
        "scoring",
        "ratio",
        "scoring s",
        "batches",
        "ms/batch",
        "SQL stmts/batch",
        "SQL share",
        "CPU bench/kafka/pg/other",
    ):
        table.add_column(header, justify="right")
    for data in result["scoring"].values():
        bare, sc = data["bare"], data["scoring"]
        table.add_row(
            str(data["scoring_batch_max"]),
            _n(bare["events_per_s"]),
            _n(sc["events_per_s"]) + ("" if sc["complete"] else " (incomplete)"),
            _n(data["ratio"], ".3f"),
            f"{sc['seconds']:.1f}",
            f"{sc['batches']:,}",
            _n(sc["batch_ms_mean"], ".1f"),
            _n(sc["sql"].get("statements_per_batch"), ".1f"),
            _n(sc["sql"]["share_of_wall"], ".2f"),
            _cores(sc["cpu_cores"]),
        )
    out.print(table)
    for data in result["scoring"].values():
        rounds = data["bare"].get("rounds", [])
        out.print(
            f"bare consumer rounds, max_records={data['scoring_batch_max']}: "
            + ", ".join(f"{_n(r['events_per_s'])} ({r['seconds']:.2f} s)" for r in rounds)
            + " events/s; the median is used"
        )
    out.print(
        "ratio = scoring events/s ÷ bare consumer events/s, both from start to last record; "
        "target ≥ 0.5. SQL share = time inside SQL statements ÷ scoring wall time."
    )
    if result.get("processes"):
        table = Table(title="scoring in N `healthwatch scoring` processes, one consumer group")
        for header in ("processes", "batch max", "s", "events/s", "events/s after first", "CPU"):
            table.add_column(header, justify="right")
        for data in result["processes"].values():
            table.add_row(
                str(data["processes"]),
                str(data["scoring_batch_max"]),
                f"{data['seconds']:.1f}",
                _n(data["events_per_s"]),
                _n(data["events_per_s_after_first_poll"]),
                _cores(data["cpu_cores"]),
            )
        out.print(table)
        out.print("'after first' leaves out start-up: imports, the group join, the first fetch.")

    table = Table(title="state size per account (PostgreSQL, pg_total_relation_size)")
    for header in (
        "state",
        "accounts",
        "events/acct",
        "state B/acct",
        "dedup B/acct",
        "state B/acct (as run)",
        "dedup B/acct (as run)",
    ):
        table.add_column(header, justify="right")
    for name, s in result["state"].items():
        vac = s.get("vacuum_full", s["as_run"])
        table.add_row(
            name,
            f"{s['accounts']:,}",
            _n(s["events_per_account"], ".0f"),
            _n(vac["state_bytes_per_account"]),
            _n(vac["dedup_bytes_per_account"]),
            _n(s["as_run"]["state_bytes_per_account"]),
            _n(s["as_run"]["dedup_bytes_per_account"]),
        )
    out.print(table)
    out.print(
        "B/acct columns without '(as run)' are after VACUUM FULL (live data); dedup = "
        "processed_events, the dedup log (one row per event ever processed)."
    )

    table = Table(title="healthwatch import (import_files), events/s")
    for header in (
        "target",
        "events",
        "seconds",
        "events/s",
        "lines only ev/s",
        "sweep s",
        "SQL share",
        "CPU bench/kafka/pg/other",
    ):
        table.add_column(header, justify="right")
    for name, data in result["import"].items():
        table.add_row(
            name,
            f"{data['imported']:,}",
            f"{data['seconds']:.1f}",
            _n(data["events_per_s"]),
            _n(data["events_per_s_lines_only"]),
            _n(data["seconds_sweep"], ".1f"),
            _n(data["sql"]["share_of_wall"], ".2f"),
            _cores(data["cpu_cores"]),
        )
    out.print(table)
    out.print("target ≥ 100k events/s. 'lines only' excludes the closing sweep of quiet accounts.")
    table = Table(title="where a batch's time goes: ms per batch (of it in SQL statements)")
    table.add_column("run")
    table.add_column("records/batch", justify="right")
    for step in (*STEPS, "other"):
        table.add_column(step, justify="right")
    rows = [(f"scoring {k}", d["scoring"]) for k, d in result["scoring"].items()]
    rows += [(f"import {k}", d) for k, d in result["import"].items()]
    for name, data in rows:
        steps = data["steps"]
        calls = steps["handle_calls"]
        per = data["imported"] / calls if "imported" in data and calls else None
        per = data.get("records_per_batch_mean", per)
        cells = []
        for step in (*STEPS, "other"):
            st = steps["steps"][step]
            sql_ms = st["sql_seconds"] / calls * 1e3 if calls else None
            cells.append(f"{_n(st['ms_per_batch'], '.1f')} ({_n(sql_ms, '.1f')})")
        table.add_row(name, _n(per), *cells)
    out.print(table)
    out.print(
        "decode = JSON → pydantic; dedup = processed_events insert; apply = apply_events (state "
        "tables); rescore = measures, model, history; publish = alerts to Kafka; other = "
        "transaction begin/commit, metrics. The sweep's rescoring (outside batches) is not "
        "included."
    )
    for warning in result.get("warnings", []):
        out.print(f"[yellow]warning: {warning}[/]")


def warnings_for(result: dict[str, Any]) -> list[str]:
    found = []
    phases: list[tuple[str, dict[str, Any]]] = []
    for tag, data in result["scoring"].items():
        phases += [(f"bare {tag}", data["bare"]), (f"scoring {tag}", data["scoring"])]
        sc = data["scoring"]
        if not sc["complete"]:
            found.append(f"scoring {tag} did not finish within the timeout")
        if sc["usage_events_in_activity_daily"] != sc["usage_events_expected"]:
            found.append(
                f"scoring {tag}: {sc['usage_events_in_activity_daily']} usage events in "
                f"activity_daily, expected {sc['usage_events_expected']}"
            )
    for name, data in result["import"].items():
        phases.append((f"import {name}", data))
        if (
            data["rejected"]
            or data["usage_events_in_activity_daily"] != data["usage_events_expected"]
        ):
            found.append(
                f"import {name}: {data['rejected']} rejected lines, "
                f"{data['usage_events_in_activity_daily']} usage events in state, "
                f"expected {data['usage_events_expected']}"
            )
    for name, data in phases:
        other = data["cpu_cores"].get("other")
        if other is not None and other > 0.25:
            found.append(f"{name}: other processes used {other:.2f} cores (busy machine)")
    return found


def plot(result: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    from matplotlib.ticker import StrMethodFormatter

    fig, (left, right) = plt.subplots(
        1, 2, figsize=(8, 4.5), dpi=100, gridspec_kw={"width_ratios": [3, 2]}
    )
    labels, values, colors = [], [], []
    for data in result["scoring"].values():
        b = data["scoring_batch_max"]
        labels += [f"bare\nconsumer\n({b})", f"scoring\nbatch {b}"]
        values += [data["bare"]["events_per_s"] or 0, data["scoring"]["events_per_s"] or 0]
        colors += ["#8c8c8c", "#4c72b0"]
    for name, label in (("postgresql", "import\nPostgreSQL"), ("sqlite", "import\nSQLite")):
        if name in result["import"]:
            labels.append(label)
            values.append(result["import"][name]["events_per_s"] or 0)
            colors.append("#55a868")
    bars = left.bar(range(len(values)), values, color=colors)
    left.set_xticks(range(len(values)), labels, fontsize=7)
    left.set_yscale("log")
    left.set_ylim(min(v for v in values if v > 0) / 3, max(values) * 4)
    left.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    for bar, value in zip(bars, values, strict=True):
        left.annotate(
            f"{value:,.0f}",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=7,
            xytext=(0, 2),
            textcoords="offset points",
        )
    ratios = ", ".join(
        f"{d['scoring_batch_max']}: {d['ratio']:.3f}"
        for d in result["scoring"].values()
        if d["ratio"] is not None
    )
    left.axhline(100_000, color="#55a868", linestyle="--", linewidth=0.8)
    left.annotate(
        "import target 100k/s",
        (len(values) - 0.5, 100_000),
        ha="right",
        va="bottom",
        fontsize=7,
        color="#55a868",
    )
    left.set_ylim(top=max(max(values), 100_000) * 4)
    left.set_title(f"events/s (log scale); scoring/bare {ratios}", fontsize=9)
    left.grid(axis="y", alpha=0.3)
    left.set_axisbelow(True)

    names, state, dedup = [], [], []
    for key, s in result["state"].items():
        vac = s.get("vacuum_full", s["as_run"])
        how = key.replace("kafka_", "Kafka ") if key.startswith("kafka_") else "import"
        names.append(f"{s['accounts']:,}\n{how}")
        state.append((vac["state_bytes_per_account"] or 0) / 1024)
        dedup.append((vac["dedup_bytes_per_account"] or 0) / 1024)
    xs = range(len(names))
    right.bar(xs, state, color="#4c72b0", label="state tables")
    right.bar(xs, dedup, bottom=state, color="#dd8452", label="processed_events")
    right.set_xticks(xs, names, fontsize=7)
    right.set_ylabel("KiB per account", fontsize=8)
    right.set_title("state size per account (VACUUM FULL)", fontsize=9)
    right.set_ylim(0, max(a + b for a, b in zip(state, dedup, strict=True)) * 1.3 or 1)
    right.legend(fontsize=7, loc="upper center", ncol=2)
    right.grid(axis="y", alpha=0.3)
    right.set_axisbelow(True)
    m = result["machine"]
    pg = str(m.get("postgresql") or "?").split()[0]
    fig.suptitle(
        f"healthwatch scoring: {result['workload']['records_total']:,} records, "
        f"{result['workload']['accounts']:,} accounts; {m['nproc']} CPUs, Kafka {m['kafka']}, "
        f"PostgreSQL {pg}, {result['date'][:10]}",
        fontsize=9,
    )
    save_figure(fig, path)


# --------------------------------------------------------------------------- main


def _int_list(text: str) -> list[int]:
    return [int(x.replace("_", "")) for x in text.split(",") if x.strip()]


def parse_args(argv: Sequence[str]) -> Options:
    parser = argparse.ArgumentParser(
        description="Scoring throughput (consumer path vs bare consumer), state size per "
        "account, and healthwatch import events/s."
    )
    parser.add_argument("--events", type=int, default=100_000, help="usage events")
    parser.add_argument("--accounts", type=int, default=1_000, help="accounts of the main run")
    parser.add_argument("--users", type=float, default=10, help="mean users per account")
    parser.add_argument("--days", type=int, default=20, help="days the events spread over")
    parser.add_argument(
        "--batches",
        type=_int_list,
        default=[500, 5000],
        help="scoring_batch_max values to measure, comma-separated",
    )
    parser.add_argument(
        "--state-accounts",
        type=_int_list,
        default=[],
        help="account counts of extra state-size runs through the import path, e.g. 10000 "
        "(about 10 min per 10,000 accounts at 100 events each on 2 cores); default none",
    )
    parser.add_argument(
        "--state-events-per-account",
        type=float,
        default=None,
        help="usage events per account in those runs (default: --events / --accounts)",
    )
    parser.add_argument("--partitions", type=int, help="partitions per topic (default: settings)")
    parser.add_argument(
        "--scoring-timeout", type=float, default=300, help="give up a consumer phase after s"
    )
    parser.add_argument(
        "--bare-rounds", type=int, default=3, help="bare reads per batch size (median used)"
    )
    parser.add_argument(
        "--processes",
        type=_int_list,
        default=[],
        help="also score with this many `healthwatch scoring` processes in one group, "
        "comma-separated (e.g. 1,2; a repeated count starts a new group again); default none",
    )
    parser.add_argument("--no-vacuum", action="store_true", help="skip VACUUM FULL sizes")
    add_service_options(parser)
    add_output_options(parser, "scoring")
    args = parser.parse_args(argv)
    if args.events < args.days or args.accounts < 1 or args.days < 1 or not args.batches:
        parser.error("need --events >= --days >= 1, --accounts >= 1 and at least one batch")
    if args.bare_rounds < 1:
        parser.error("--bare-rounds must be >= 1")
    return Options(
        events=args.events,
        accounts=args.accounts,
        users=args.users,
        days=args.days,
        batches=args.batches,
        state_accounts=args.state_accounts,
        state_events_per_account=args.state_events_per_account,
        partitions=args.partitions,
        scoring_timeout=args.scoring_timeout,
        bare_rounds=args.bare_rounds,
        processes=args.processes,
        vacuum=not args.no_vacuum,
        bootstrap=args.bootstrap,
        postgres_url=args.postgres_url,
        out=args.out,
        plot=args.plot,
        seed=args.seed,
        keep=args.keep,
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    opts = parse_args(argv)
    quiet_logging()
    started = time.monotonic()
    services, results = run_with_services(
        opts.bootstrap,
        opts.postgres_url,
        prefix="healthwatch-scoring-bench-",
        keep=opts.keep,
        body=functools.partial(run, opts),
    )
    result = report(opts, results, services, [os.path.relpath(__file__), *argv])
    result["warnings"] = warnings_for(result)
    result["wall_seconds_total"] = round(time.monotonic() - started, 1)
    print_tables(result)
    save_results(result, opts.out, opts.plot, plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
