#!/usr/bin/env python3
"""Ingest-path throughput: HTTP ``POST /v1/events`` against a bare aiokafka producer.

Both sides write the same events, serialized to the same bytes, to the same real Kafka
broker in the same run, with the same producer settings (acks=all, idempotence on,
linger 5 ms) and the same topic layout (``<prefix>.usage``, same partition count,
keyed by account id). The figure of merit is events/s acknowledged by the broker;
the report is their ratio ``http_rate / bare_rate``.

* **http**: ``healthwatch ingest`` in its own process (stock asyncio loop, uvicorn with
  httptools), driven from this process by ``--concurrency`` httpx clients, each with
  one keep-alive connection, posting pre-serialized batches of ``--batch`` events and
  waiting for each 202 (which the server sends only once Kafka acked the batch).
* **bare**: one ``AIOKafkaProducer`` in this process; ``--concurrency`` tasks each send
  a ``--batch`` of messages and wait for their acks before the next: what the server
  does per request (``KafkaProducer.send_many``), without HTTP and validation. Of the
  two ways of driving the bare producer measured here it is the faster one, so the
  ratio does not flatter the HTTP path.
* **bare, stream** (supplementary): the same producer, ``--concurrency`` coroutines
  calling ``send()`` for every message without waiting, then waiting for all acks.

The database only serves API-key lookups (cached in-process by ``KeyStore``), so a
SQLite file in the temp dir stands in for PostgreSQL.

Run: ``python bench/ingest_bench.py`` (see ``bench/README.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from lib.console import err, make_progress, out
from lib.measure import (
    cores_between,
    cpu_seconds,
    git_state,
    machine_info,
    percentile,
    system_busy_seconds,
)
from lib.processes import scratch_dir, service_env, spawn, stop_process, tail
from lib.results import add_output_options, pyplot, save_figure, save_results
from lib.services import (
    Broker,
    add_service_options,
)
from rich.progress import (
    Progress,
)
from rich.table import Table

import devservices
from shared.auth import Scope, create_key
from shared.bus.kafka import ensure_topics
from shared.config import Settings
from shared.contracts.events import EVENT_ADAPTER
from shared.contracts.wire import encode_event
from shared.storage.db import create_engine, migrate

DATABASE_NOTE = (
    "SQLite file in the temp dir: it only serves API-key lookups, "
    "which KeyStore caches in-process (no database round trip per request)"
)
EVENT_NAMES = ("login", "view_report", "export", "search", "create_invoice", "comment")
MODULES = ("reports", "billing", "projects", "admin")
KIND = "usage"
SIDES = ("http", "bare", "bare_stream")


# --------------------------------------------------------------------------- local services


# --------------------------------------------------------------------------- measurements


@dataclass
class CpuMeter:
    """CPU used during a phase by this process, the ingest server, the broker, and
    everything else on the machine ("other": a shared machine is a noisy one)."""

    pids: dict[str, int | None]
    _start: dict[str, float | None] = field(default_factory=dict)

    def _now(self) -> dict[str, float | None]:
        now: dict[str, float | None] = {"bench": time.process_time()}
        for name, pid in self.pids.items():
            now[name] = cpu_seconds(pid)
        now["machine"] = system_busy_seconds()
        return now

    def start(self) -> None:
        self._start = self._now()

    def cores(self, wall_s: float) -> dict[str, float | None]:
        """Average CPU cores busy per process over ``wall_s`` (1.0 = one core flat out)."""
        return cores_between(self._start, self._now(), wall_s, digits=None)


@dataclass
class Phase:
    """One measured run of one side."""

    side: str
    events: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    cpu_cores: dict[str, float | None] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    def summary(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "events": self.events,
            "seconds": round(self.seconds, 4),
            "events_per_s": round(self.rate, 1),
            "cpu_cores": {k: None if v is None else round(v, 3) for k, v in self.cpu_cores.items()},
            "cpu_us_per_event": {
                k: None if v is None else round(v * self.seconds / self.events * 1e6, 1)
                for k, v in self.cpu_cores.items()
                if k != "other"
            },
        }
        if self.latencies_ms:
            data["batch_latency_ms"] = {
                f"p{q}": round(percentile(self.latencies_ms, q), 2) for q in (50, 95, 99)
            }
        data.update({k: round(v, 4) for k, v in self.extra.items()})
        return data


# --------------------------------------------------------------------------- workload


@dataclass
class Workload:
    """The same events as HTTP bodies and as the bytes the server puts on Kafka."""

    raw: list[dict[str, Any]]
    bodies: list[bytes]  # one JSON body per batch: {"events": [...]}
    batch_sizes: list[int]
    messages: list[tuple[bytes, bytes]]  # (key, value) exactly as the ingest publisher makes them
    validate_encode_us: float  # per event: pydantic validation + model_copy + encode_event

    @property
    def events(self) -> int:
        return len(self.raw)

    def message_batches(self) -> list[list[tuple[bytes, bytes]]]:
        batches: list[list[tuple[bytes, bytes]]] = []
        start = 0
        for size in self.batch_sizes:
            batches.append(self.messages[start : start + size])
            start += size
        return batches


def make_workload(n: int, batch: int, rng: random.Random, tag: str, accounts: int) -> Workload:
    now = datetime.now(UTC)
    raw: list[dict[str, Any]] = []
    for i in range(n):
        account = rng.randrange(accounts)
        event: dict[str, Any] = {
            "kind": KIND,
            "event_id": f"{tag}-{i:07d}-{rng.getrandbits(40):010x}",
            "account_id": f"acct-{account:05d}",
            "user_id": f"acct-{account:05d}-u{rng.randrange(40):02d}",
            "event": rng.choice(EVENT_NAMES),
            "occurred_at": (now - timedelta(seconds=rng.uniform(0, 3 * 86400))).isoformat(),
        }
        if rng.random() < 0.5:
            event["module"] = rng.choice(MODULES)
        raw.append(event)
    chunks = [raw[i : i + batch] for i in range(0, n, batch)]
    # The server stamps received_at and encodes with the same function (see
    # services/ingest/publisher.py), so the bare side sends byte-identical records
    # apart from the received_at instant.
    received_at = datetime.now(UTC)
    messages = []
    started = time.perf_counter()
    for item in raw:
        model = EVENT_ADAPTER.validate_python(item)
        value = encode_event(model.model_copy(update={"received_at": received_at}))
        messages.append((model.account_id.encode(), value))
    validate_encode_us = (time.perf_counter() - started) / n * 1e6
    return Workload(
        raw=raw,
        bodies=[orjson.dumps({"events": c}) for c in chunks],
        batch_sizes=[len(c) for c in chunks],
        messages=messages,
        validate_encode_us=validate_encode_us,
    )


# --------------------------------------------------------------------------- the two sides


def new_producer(bootstrap: str, settings: Settings) -> AIOKafkaProducer:
    """Configured like ``shared.bus.kafka.KafkaProducer`` (the ingest server's producer)."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id="healthwatch-bench",
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        request_timeout_ms=int(settings.produce_timeout_s * 1000),
    )


async def http_side(
    clients: Sequence[httpx.AsyncClient],
    work: Workload,
    progress: Progress,
    label: str,
) -> Phase:
    task = progress.add_task(label, total=work.events)
    jobs: Iterator[tuple[bytes, int]] = iter(zip(work.bodies, work.batch_sizes, strict=True))
    latencies: list[float] = []
    accepted = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal accepted
        for body, size in jobs:  # shared iterator: each batch goes to exactly one client
            sent = time.perf_counter()
            response = await client.post(
                "/v1/events", content=body, headers={"Content-Type": "application/json"}
            )
            latencies.append((time.perf_counter() - sent) * 1000)
            if response.status_code != 202:
                raise RuntimeError(
                    f"POST /v1/events answered {response.status_code}: {response.text[:500]}"
                )
            got = int(response.json()["accepted"])
            if got != size:
                raise RuntimeError(f"server accepted {got} of {size} events")
            accepted += got
            progress.advance(task, size)

    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for client in clients:
            group.create_task(worker(client))
    seconds = time.perf_counter() - started
    return Phase("http", accepted, seconds, latencies)


async def bare_stream_side(
    producer: AIOKafkaProducer,
    topic: str,
    work: Workload,
    concurrency: int,
    progress: Progress,
    label: str,
) -> Phase:
    """Send everything without waiting for acks in between; wait for all at the end.

    ``concurrency`` coroutines share the message list: aiokafka's ``send()`` blocks
    while the batch of the message's partition is full, so a single sender would
    stall on one partition while the others have room."""
    task = progress.add_task(label, total=work.events)
    messages = iter(work.messages)
    futures: list[asyncio.Future[Any]] = []

    async def sender() -> None:
        for count, (key, value) in enumerate(messages, 1):
            futures.append(await producer.send(topic, value, key=key))
            if count % 100 == 0:
                progress.advance(task, 100)

    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(sender())
    await asyncio.gather(*futures)
    seconds = time.perf_counter() - started
    progress.update(task, completed=work.events)
    return Phase("bare_stream", len(futures), seconds)


async def bare_batched_side(
    producer: AIOKafkaProducer,
    topic: str,
    work: Workload,
    concurrency: int,
    progress: Progress,
    label: str,
) -> Phase:
    task = progress.add_task(label, total=work.events)
    batches = iter(work.message_batches())
    latencies: list[float] = []

    async def worker() -> None:
        for batch in batches:
            sent = time.perf_counter()
            # What shared.bus.kafka.KafkaProducer.send_many does for one request.
            futures = [await producer.send(topic, value, key=key) for key, value in batch]
            await asyncio.gather(*futures)
            latencies.append((time.perf_counter() - sent) * 1000)
            progress.advance(task, len(batch))

    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())
    seconds = time.perf_counter() - started
    return Phase("bare", work.events, seconds, latencies)


# --------------------------------------------------------------------------- ingest server


def ingest_command() -> list[str]:
    script = Path(sys.executable).parent / "healthwatch"
    if script.is_file():
        return [str(script), "ingest"]
    found = shutil.which("healthwatch")
    if found:
        return [found, "ingest"]
    return [sys.executable, "-m", "services.cli", "ingest"]


def spawn_server(settings: Settings, workdir: Path, log: Path) -> subprocess.Popen[bytes]:
    """``healthwatch ingest`` in its own process (and session), logging to ``log``."""
    return spawn(ingest_command(), service_env(settings, {}), workdir, log)


async def wait_until_up(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(base_url=url, timeout=2) as client:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"ingest server exited with {proc.returncode}:\n{tail(log)}")
            with contextlib.suppress(httpx.TransportError):
                if (await client.get("/readyz")).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"ingest server not ready after 60 s:\n{tail(log)}")
            await asyncio.sleep(0.2)


async def produce_seconds(client: httpx.AsyncClient) -> tuple[float, float]:
    """(sum, count) of the server's ``healthwatch_ingest_produce_seconds`` histogram."""
    text = (await client.get("/metrics")).raise_for_status().text
    values: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(r"healthwatch_ingest_produce_seconds_(sum|count) (\S+)", line)
        if match:
            values[match.group(1)] = float(match.group(2))
    return values.get("sum", 0.0), values.get("count", 0.0)


# --------------------------------------------------------------------------- checks


async def end_offsets(bootstrap: str, topic: str, partitions: int) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        offsets: dict[Any, int] = await consumer.end_offsets(tps)
        return sum(offsets.values())
    finally:
        await consumer.stop()


async def compare_payloads(
    bootstrap: str, topic: str, expected: dict[str, bytes], sample: int = 300
) -> dict[str, Any]:
    """Read records the server wrote; compare with the bare bytes of the same event."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        records: list[Any] = []
        deadline = time.monotonic() + 10
        while len(records) < sample and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000, max_records=sample - len(records))
            for messages in batches.values():
                records.extend(messages)
    finally:
        await consumer.stop()
    same = 0
    http_sizes: list[int] = []
    bare_sizes: list[int] = []
    for record in records:
        server = orjson.loads(record.value)
        bare_value = expected.get(server.get("event_id"))
        if bare_value is None:
            continue
        bare = orjson.loads(bare_value)
        http_sizes.append(len(record.value))
        bare_sizes.append(len(bare_value))
        server.pop("received_at", None)
        bare.pop("received_at", None)
        same += server == bare
    compared = len(http_sizes)
    return {
        "records_compared": compared,
        "identical_apart_from_received_at": same,
        "mean_value_bytes_http": round(sum(http_sizes) / compared, 1) if compared else None,
        "mean_value_bytes_bare": round(sum(bare_sizes) / compared, 1) if compared else None,
    }


# --------------------------------------------------------------------------- environment


# --------------------------------------------------------------------------- run


@dataclass
class Options:
    events: int
    batch: int
    concurrency: int
    warmup: int
    rounds: int
    accounts: int
    bootstrap: str | None
    out: Path
    plot: Path
    seed: int
    keep: bool


@dataclass
class Outcome:
    phases: list[Phase]
    checks: dict[str, Any]
    settings: Settings
    kafka_version: str
    validate_encode_us: float


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


@dataclass
class Sides:
    """The two paths of a round and what measures them."""

    opts: Options
    clients: list[httpx.AsyncClient]  # one keep-alive connection each, with the ingest key
    ops: httpx.AsyncClient  # the server's /metrics, with the metrics key
    producer: AIOKafkaProducer  # the bare side's, in this process
    bare_topic: str
    progress: Progress
    meter_pids: dict[str, int | None]  # the server's and the broker's

    async def run(self, side: str, work: Workload, label: str) -> Phase:
        if side == "http":
            return await http_side(self.clients, work, self.progress, label)
        concurrency = self.opts.concurrency
        if side == "bare_stream":
            return await bare_stream_side(
                self.producer, self.bare_topic, work, concurrency, self.progress, label
            )
        return await bare_batched_side(
            self.producer, self.bare_topic, work, concurrency, self.progress, label
        )

    async def measure(self, side: str, work: Workload, tag: str) -> Phase:
        """One side of a round with its CPU use and, for http, the server's mean wait
        for Kafka's acks (from its /metrics)."""
        meter = CpuMeter(self.meter_pids)
        before = await produce_seconds(self.ops) if side == "http" else None
        meter.start()
        label = {"http": "http", "bare_stream": "bare (stream)"}.get(side, "bare")
        phase = await self.run(side, work, f"{tag} {label}")
        phase.cpu_cores = meter.cores(phase.seconds)
        if before is not None:
            after = await produce_seconds(self.ops)
            count = after[1] - before[1]
            if count:
                phase.extra["server_ack_wait_ms_mean"] = (after[0] - before[0]) / count * 1000
        return phase


async def prepare_database(settings: Settings) -> tuple[str, str]:
    """Migrate and create the keys here; the server process only reads them."""
    engine = create_engine(settings.database_url)
    try:
        await migrate(engine)
        key = await create_key(engine, "bench-ingest", [Scope.ingest])
        metrics_key = await create_key(engine, "bench-metrics", [Scope.metrics])
    finally:
        await engine.dispose()
    return key, metrics_key


def make_rounds(opts: Options) -> tuple[Workload, list[Workload]]:
    """The warm-up and ``--rounds`` workloads, validated and encoded before any timing."""
    rng = random.Random(opts.seed)
    err.print("[bold]preparing events[/] (validated and encoded outside the timed region)")
    warm = make_workload(opts.warmup, opts.batch, rng, "warm", opts.accounts)
    per_round = [opts.events // opts.rounds] * opts.rounds
    per_round[-1] += opts.events - sum(per_round)
    rounds = [
        make_workload(n, opts.batch, rng, f"r{i}", opts.accounts) for i, n in enumerate(per_round)
    ]
    return warm, rounds


async def measure_rounds(sides: Sides, warm: Workload, rounds: Sequence[Workload]) -> list[Phase]:
    """The warm-up (connections, key cache, producer metadata, broker JIT), then every
    round, each side once, the order rotated so that no side always goes first."""
    await sides.run("http", warm, "warm-up http")
    await sides.run("bare", warm, "warm-up bare")
    phases: list[Phase] = []
    for index, work in enumerate(rounds, 1):
        shift = (index - 1) % len(SIDES)
        for side in SIDES[shift:] + SIDES[:shift]:
            phases.append(await sides.measure(side, work, f"r{index}/{sides.opts.rounds}"))
    return phases


async def check_kafka(
    opts: Options, settings: Settings, bare_topic: str, works: Sequence[Workload]
) -> dict[str, Any]:
    """Records in each topic against what was sent, and the payloads compared."""
    err.print("[bold]checking what reached Kafka[/]")
    bootstrap, http_topic = settings.kafka_bootstrap, settings.topic(KIND)
    partitions = settings.kafka_partitions
    expected_http = opts.warmup + opts.events
    expected_bare = opts.warmup + 2 * opts.events
    got_http = await end_offsets(bootstrap, http_topic, partitions)
    got_bare = await end_offsets(bootstrap, bare_topic, partitions)
    bare_bytes = {
        str(item["event_id"]): value
        for work in works
        for item, (_, value) in zip(work.raw, work.messages, strict=True)
    }
    for side, got, want in (("http", got_http, expected_http), ("bare", got_bare, expected_bare)):
        if got != want:
            err.print(f"[red]{side}: {got} records in Kafka, expected {want}[/]")
    return {
        "http_topic": http_topic,
        "bare_topic": bare_topic,
        "partitions": partitions,
        "http_records_in_kafka": got_http,
        "http_records_expected": expected_http,
        "bare_records_in_kafka": got_bare,
        "bare_records_expected": expected_bare,
        "payloads": await compare_payloads(bootstrap, http_topic, bare_bytes),
    }


async def run(opts: Options, workdir: Path, broker: Broker | None, kafka_version: str) -> Outcome:
    bootstrap = opts.bootstrap or (broker.bootstrap if broker else "")
    run_id = uuid.uuid4().hex[:8]
    settings = Settings(
        kafka_bootstrap=bootstrap,
        database_url=f"sqlite+aiosqlite:///{workdir / 'bench.db'}",
        topic_prefix=f"bench-{run_id}-http",
        ingest_port=devservices.free_port(),
        host="127.0.0.1",
        log_level="WARNING",
    )
    bare_topic = f"bench-{run_id}-bare.{KIND}"
    key, metrics_key = await prepare_database(settings)
    # Same layout as the topics the server creates on start (bus.prepare()).
    await ensure_topics(
        bootstrap,
        [bare_topic],
        partitions=settings.kafka_partitions,
        replication=settings.kafka_replication,
    )
    warm, rounds = make_rounds(opts)
    log = workdir / "ingest.log"
    url = f"http://{settings.host}:{settings.ingest_port}"
    err.print(f"[bold]starting ingest server[/] {shlex.join(ingest_command())} on {url}")
    proc = spawn_server(settings, workdir, log)
    producer = new_producer(bootstrap, settings)
    try:
        await wait_until_up(url, proc, log)
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        headers = {"Authorization": f"Bearer {key}"}
        async with contextlib.AsyncExitStack() as stack:
            clients = [
                await stack.enter_async_context(
                    httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30)
                )
                for _ in range(opts.concurrency)
            ]
            ops = await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=url, headers={"Authorization": f"Bearer {metrics_key}"}, timeout=10
                )
            )
            await producer.start()
            with make_progress() as progress:
                pids = {"server": proc.pid, "broker": broker.pid if broker else None}
                sides = Sides(opts, clients, ops, producer, bare_topic, progress, pids)
                phases = await measure_rounds(sides, warm, rounds)
    finally:
        with contextlib.suppress(Exception):
            await producer.stop()
        await asyncio.to_thread(stop_process, proc)
    if proc.returncode not in (0, -signal.SIGTERM):
        err.print(f"[yellow]ingest server exit code {proc.returncode}[/]; log:\n{tail(log)}")
    checks = await check_kafka(opts, settings, bare_topic, [warm, *rounds])
    validate_encode_us = median([w.validate_encode_us for w in rounds])
    return Outcome(phases, checks, settings, kafka_version, validate_encode_us)


def aggregate(phases: Sequence[Phase], side: str) -> dict[str, Any]:
    mine = [p for p in phases if p.side == side]
    latencies = [x for p in mine for x in p.latencies_ms]
    events = sum(p.events for p in mine)
    seconds = sum(p.seconds for p in mine)
    data: dict[str, Any] = {
        "events": events,
        "seconds": round(seconds, 4),
        # Headline: all measured events over all measured time (rounds summed).
        "events_per_s": round(events / seconds, 1),
        "events_per_s_median_round": round(median([p.rate for p in mine]), 1),
        "rounds": [p.summary() for p in mine],
    }
    if latencies:
        data["batch_latency_ms"] = {
            f"p{q}": round(percentile(latencies, q), 2) for q in (50, 95, 99)
        }
    cpu: dict[str, float | None] = {}
    for name in ("bench", "server", "broker", "other"):
        seen = [v for p in mine if (v := p.cpu_cores.get(name)) is not None]
        cpu[name] = round(sum(seen) / len(seen), 3) if seen else None
    data["cpu_cores_mean"] = cpu
    per_event: dict[str, float | None] = {}
    for name in ("bench", "server", "broker"):
        used = [(v, p) for p in mine if (v := p.cpu_cores.get(name)) is not None]
        per_event[name] = (
            round(sum(v * p.seconds for v, p in used) / sum(p.events for _, p in used) * 1e6, 1)
            if used
            else None
        )
    data["cpu_us_per_event"] = per_event
    for name in sorted({k for p in mine for k in p.extra}):
        seen_extra = [p.extra[name] for p in mine if name in p.extra]
        data[name] = round(sum(seen_extra) / len(seen_extra), 3)
    return data


BUSY_OTHER_CORES = 0.25


def busy_warnings(phases: Sequence[Phase]) -> list[str]:
    """Phases during which other processes took noticeable CPU (a shared machine)."""
    warnings = []
    for p in phases:
        other = p.cpu_cores.get("other")
        if other is not None and other > BUSY_OTHER_CORES:
            note = " (with --bootstrap this includes the broker's CPU)"
            warnings.append(
                f"{p.side} ({p.events:,} events): other processes used {other:.2f} cores"
                + (note if p.cpu_cores.get("broker") is None else "")
            )
    return warnings


def report(opts: Options, outcome: Outcome, argv: Sequence[str]) -> dict[str, Any]:
    sides = {s: aggregate(outcome.phases, s) for s in SIDES}
    http_rate = sides["http"]["events_per_s"]
    bare_rate = sides["bare"]["events_per_s"]
    return {
        "benchmark": "ingest: POST /v1/events vs bare aiokafka producer",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": shlex.join(["python", *argv]),
        "git": git_state(),
        "machine": machine_info(outcome.kafka_version),
        "config": {
            "events_per_side": opts.events,
            "batch_events": opts.batch,
            "concurrency": opts.concurrency,
            "warmup_events": opts.warmup,
            "rounds": opts.rounds,
            "accounts": opts.accounts,
            "seed": opts.seed,
            "partitions": outcome.settings.kafka_partitions,
            "producer": {"acks": "all", "enable_idempotence": True, "linger_ms": 5},
            "broker": f"external {opts.bootstrap}" if opts.bootstrap else "local single-node KRaft",
            "database": DATABASE_NOTE,
        },
        "results": sides,
        "ratio": round(http_rate / bare_rate, 4),
        "ratio_vs_stream_bare": round(http_rate / sides["bare_stream"]["events_per_s"], 4),
        "validate_encode_us_per_event": round(outcome.validate_encode_us, 1),
        "busy_machine_warnings": busy_warnings(outcome.phases),
        "checks": outcome.checks,
    }


def print_table(result: dict[str, Any]) -> None:
    table = Table(title="ingest throughput, events/s acknowledged by Kafka (acks=all)")
    table.add_column("path")
    for header in ("events", "seconds", "events/s", "per round", "p50 ms", "p99 ms"):
        table.add_column(header, justify="right")
    table.add_column("CPU cores bench/srv/kafka/other", justify="right")
    labels = {"http": "http", "bare": "bare", "bare_stream": "bare, stream*"}

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    for side, label in labels.items():
        data = result["results"][side]
        lat = data.get("batch_latency_ms")
        cpu = [data["cpu_cores_mean"][k] for k in ("bench", "server", "broker", "other")]
        table.add_row(
            label,
            f"{data['events']:,}",
            f"{data['seconds']:.2f}",
            f"{data['events_per_s']:,.0f}",
            " ".join(f"{r['events_per_s'] / 1000:.1f}k" for r in data["rounds"]),
            f"{lat['p50']:.1f}" if lat else "-",
            f"{lat['p99']:.1f}" if lat else "-",
            "/".join(fmt(v) for v in cpu),
        )
    out.print(table)
    cfg = result["config"]
    out.print(
        f"http: {cfg['concurrency']} httpx clients -> `healthwatch ingest` process, "
        f"{cfg['batch_events']} events per POST; p50/p99 = request latency\n"
        f"bare: one AIOKafkaProducer, {cfg['concurrency']} tasks each sending "
        f"{cfg['batch_events']} events and awaiting their acks (what the server does per "
        "request); p50/p99 = batch latency\n"
        f"* supplementary: the same producer, {cfg['concurrency']} coroutines send() every "
        "event without waiting, then wait for all acks"
    )
    out.print(f"[bold]ratio http_rate / bare_rate = {result['ratio']:.3f}[/]")
    out.print(f"ratio http_rate / stream bare rate = {result['ratio_vs_stream_bare']:.3f}")
    ack = result["results"]["http"].get("server_ack_wait_ms_mean")
    if ack is not None:
        out.print(f"server-side mean wait for the Kafka ack per request: {ack:.1f} ms")
    checks = result["checks"]
    pay = checks["payloads"]
    out.print(
        f"records in Kafka: http {checks['http_records_in_kafka']:,} "
        f"(expected {checks['http_records_expected']:,}), bare {checks['bare_records_in_kafka']:,} "
        f"(expected {checks['bare_records_expected']:,})\npayload check: "
        f"{pay['identical_apart_from_received_at']}/{pay['records_compared']} server records "
        "equal the bare bytes' JSON apart from received_at "
        f"(mean {pay['mean_value_bytes_http']} vs {pay['mean_value_bytes_bare']} bytes)"
    )
    out.print(
        "pydantic validate + model_copy + encode_event, measured in this process: "
        f"{result['validate_encode_us_per_event']:.1f} µs/event"
    )
    server_us = result["results"]["http"]["cpu_us_per_event"]["server"]
    bare_us = result["results"]["bare"]["cpu_us_per_event"]["bench"]
    if server_us is not None:
        out.print(
            f"CPU per event: ingest server {server_us:.1f} µs (http), "
            f"bare producer process {bare_us:.1f} µs (bare)"
        )
    out.print(f"database: {DATABASE_NOTE}")
    for warning in result["busy_machine_warnings"]:
        out.print(f"[yellow]warning: busy machine: {warning}[/]")


def plot(result: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    from matplotlib.ticker import StrMethodFormatter

    http_rate = float(result["results"]["http"]["events_per_s"])
    bare_rate = float(result["results"]["bare"]["events_per_s"])
    cfg = result["config"]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    labels = [
        f"HTTP POST /v1/events\n(healthwatch ingest, {cfg['concurrency']} clients)",
        "bare aiokafka producer\n(same bytes, topic layout, batching)",
    ]
    bars = ax.bar(labels, [http_rate, bare_rate], color=["#4c72b0", "#8c8c8c"], width=0.5)
    for bar, value in zip(bars, (http_rate, bare_rate), strict=True):
        ax.annotate(
            f"{value:,.0f} events/s",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            xytext=(0, 3),
            textcoords="offset points",
        )
    ax.set_ylabel("events/s acknowledged by Kafka")
    ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    ax.set_ylim(0, max(http_rate, bare_rate) * 1.3)
    ax.set_title(f"healthwatch ingest throughput: http / bare = {result['ratio']:.2f}")
    machine = result["machine"]
    ax.text(
        0.01,
        0.98,
        f"{cfg['events_per_side']:,} events per side, batches of {cfg['batch_events']}; "
        f"acks=all, idempotent\nKafka {machine['kafka']}, {machine['nproc']} CPUs, "
        f"Python {machine['python']}, {result['date'][:10]}\n"
        f"bare: {cfg['concurrency']} tasks x {cfg['batch_events']}-event batches, "
        f"awaiting acks (as the server); http / stream bare: {result['ratio_vs_stream_bare']:.2f}",
        transform=ax.transAxes,
        ha="left",
        va="top",
        fontsize=8,
        color="#555555",
    )
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    save_figure(fig, path)


def parse_args(argv: Sequence[str]) -> Options:
    parser = argparse.ArgumentParser(
        description="Ingest throughput: HTTP POST /v1/events vs a bare aiokafka producer."
    )
    parser.add_argument("--events", type=int, default=50_000, help="measured events per side")
    parser.add_argument("--batch", type=int, default=100, help="events per HTTP request")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent HTTP clients")
    parser.add_argument("--warmup", type=int, default=5_000, help="warm-up events per side")
    parser.add_argument(
        "--rounds", type=int, default=3, help="split --events over rounds; report the median"
    )
    parser.add_argument("--accounts", type=int, default=2_000, help="distinct account ids (keys)")
    add_service_options(parser, postgres=False)
    add_output_options(parser, "ingest")
    args = parser.parse_args(argv)
    if args.events < args.rounds or args.batch < 1 or args.concurrency < 1 or args.warmup < 1:
        parser.error("--events >= --rounds, and --batch, --concurrency, --warmup >= 1")
    return Options(
        events=args.events,
        batch=args.batch,
        concurrency=args.concurrency,
        warmup=args.warmup,
        rounds=args.rounds,
        accounts=args.accounts,
        bootstrap=args.bootstrap,
        out=args.out,
        plot=args.plot,
        seed=args.seed,
        keep=args.keep,
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    opts = parse_args(argv)
    broker: Broker | None = None
    kafka_version = "unknown (external broker)"
    started = time.monotonic()
    with scratch_dir("healthwatch-bench-", opts.keep) as workdir:
        try:
            if opts.bootstrap is None:
                services = devservices
                kafka_version = str(services.KAFKA_VERSION)
                broker = services.KafkaBroker(workdir / "kafka")
                assert broker is not None
                err.print(f"[bold]starting Kafka {kafka_version}[/] in {workdir / 'kafka'}")
                broker.start()
            outcome = asyncio.run(run(opts, workdir, broker, kafka_version))
        finally:
            if broker is not None:
                broker.stop()
    result = report(opts, outcome, [os.path.relpath(__file__), *argv])
    result["wall_seconds_total"] = round(time.monotonic() - started, 1)
    print_table(result)
    save_results(result, opts.out, opts.plot, plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
