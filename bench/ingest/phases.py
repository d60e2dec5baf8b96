"""The ingest bench's run: the server and topics set up, the warm-up and the rounds measured side
by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shlex
import signal
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from lib.console import err, make_progress
from lib.processes import stop_process, tail
from lib.services import Broker

import devservices
from ingest.meter import Phase, median
from ingest.options import Options
from ingest.server import compare_payloads, end_offsets, ingest_command, spawn_server, wait_until_up
from ingest.sides import SIDES, Sides, new_producer
from ingest.workload import KIND, Workload, make_workload
from shared.auth import Scope, create_key
from shared.bus.kafka import ensure_topics
from shared.config import Settings
from shared.storage.db import create_engine, migrate


@dataclass
class Outcome:
    phases: list[Phase]
    checks: dict[str, Any]
    settings: Settings
    kafka_version: str
    validate_encode_us: float


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
