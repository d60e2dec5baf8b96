#!/usr/bin/env python3
"""End-to-end alert latency: HTTP ingest → Kafka → scoring → Kafka → alerts → Slack.

The production topology, every service in its own process (``healthwatch ingest``,
``healthwatch scoring``, ``healthwatch alerts``, configured by ``HEALTHWATCH_*``
variables), a real Kafka broker and a real PostgreSQL server (started by the script
with ``devservices``, as ``scoring_bench.py`` does), and a Slack
stand-in: a small HTTP server in its own process that notes ``time.time()`` when each
request arrives and which trigger accounts the posted message names.

* **Background load**: ``--background-accounts`` healthy accounts (every user active,
  seats = users) send usage events at ``--rate`` events/s (default 1,000) through
  ``POST /v1/events``, ``--batch`` events per request, paced open-loop (a request is
  due every ``batch / rate`` s, up to ``--concurrency`` in flight).
* **Triggers**: every ``--trigger-interval`` s a fresh trigger account (facts sent and
  scored before the measured phase: 50 seats, its own owner) gets its 8-day history in
  one request: 4 users active on each of the last 8 days, 32 events. That makes its
  active-user share 8 % with 8 days of history, so the only rule of the bench's
  alerting file (``low_activity``: share < 20 % and >= 7 days of history) fires once.
* **Latency** of a trigger: Slack stand-in receipt time minus the time the trigger
  request was answered 202 (headline), and minus the time it was sent (reported too).

Alert grouping is off (``notify.group_wait = "0s"`` in the bench's alerting file). The
Slack pace (``slack_min_interval_s``, default 1 s per destination, and an incoming
webhook is one destination) is set with ``--slack-min-interval`` (bench default 0: see
``bench/README.md``).

Run: ``python bench/alert_latency_bench.py`` (see ``bench/README.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.server
import itertools
import logging
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from lib.console import err, out
from lib.measure import (
    cpu_seconds,
    git_state,
    machine_info,
    percentile,
    system_busy_seconds,
    tree_cpu_seconds,
)
from lib.processes import scratch_dir, service_command, service_env, spawn, stop_process, tail
from lib.results import save_results
from lib.services import (
    Services,
    create_database,
    plain_dsn,
    start_services,
)
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

import devservices
import shared.config as config_module
from shared.auth import Scope, create_key
from shared.bus.factory import ALERTS_TOPIC
from shared.config import Settings
from shared.storage.db import create_engine

SCRIPT = Path(__file__).resolve()
ROOT = SCRIPT.parent.parent
RESULTS = ROOT / "bench" / "results"
SERVICES = ("ingest", "scoring", "alerts")
TARGET_P99_S = 1.0  # the target, grouping off
TRIGGER_SEATS = 50
TRIGGER_USERS = 4  # active users a day: 4 / 50 = 8 % < 20 %
TRIGGER_DAYS = 8  # >= 7 days of history
EVENT_NAMES = ("login", "view", "create", "run", "export", "search")
MODULES = ("reports", "billing", "projects", "admin")
SAMPLE_S = 1.0  # timeline resolution

ALERTING_TOML = """\
# Written by bench/alert_latency_bench.py: one rule, so only the triggers fire.
version = "bench-latency"

[[rule]]
id = "low_activity"
type = "threshold"
severity = "critical"
when = [
  { measure = "active_user_share_7d", op = "<", value = 0.20 },
  { measure = "history_days", op = ">=", value = 7 },
]
recover = [{ measure = "active_user_share_7d", op = ">=", value = 0.25 }]
title = "{name}: only {active_user_share_7d:.0%} of seats active"

[notify]
group_wait = "0s"
digest_hour = -1
send_resolved = false
"""


# --------------------------------------------------------------------------- Slack stand-in


def serve_slack_standin(port: int, log_path: Path, pattern: str) -> None:
    """A Slack stand-in (incoming webhook and Web API ``chat.postMessage``): answers 200
    at once and appends ``{"t": receipt time, "accounts": [...], ...}`` per request to
    ``log_path``. Runs in its own process so that the load generator cannot delay the
    receipt timestamps."""
    regex = re.compile(pattern.encode())
    log = log_path.open("ab", buffering=0)
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            received = time.time()
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            found = sorted({m.decode() for m in regex.findall(body)})
            line = orjson.dumps(
                {"t": received, "path": self.path, "bytes": len(body), "accounts": found}
            )
            with lock:
                log.write(line + b"\n")
            api = self.path.startswith("/api/")
            reply = b'{"ok": true, "ts": "1.0"}' if api else b"ok"
            self.send_response(200)
            self.send_header("Content-Type", "application/json" if api else "text/plain")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever(poll_interval=0.05)


def read_slack_log(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_bytes().splitlines()
    except OSError:
        return []
    return [orjson.loads(line) for line in lines if line.strip()]


# --------------------------------------------------------------------------- processes


async def wait_ready(
    url: str, path: str, procs: dict[str, subprocess.Popen[bytes]], logs: dict[str, Path]
) -> None:
    deadline = time.monotonic() + 90
    async with httpx.AsyncClient(base_url=url, timeout=2) as client:
        while True:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail(logs[name])}")
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(path)).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url}{path} not ready after 90 s")
            await asyncio.sleep(0.2)


async def scrape(client: httpx.AsyncClient, names: Sequence[str]) -> dict[str, float]:
    """Sum of every sample of each metric name (all label values) on ``/metrics``."""
    text = (await client.get("/metrics")).raise_for_status().text
    sums = dict.fromkeys(names, 0.0)
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        metric, _, value = line.rpartition(" ")
        base = metric.split("{", 1)[0]
        if base in sums:
            with contextlib.suppress(ValueError):
                sums[base] += float(value)
    return sums


# --------------------------------------------------------------------------- measurement


class Meter:
    """CPU seconds so far of each of our processes, PostgreSQL (all its processes), the
    broker, this process (load generator and trigger thread), and the whole machine."""

    def __init__(self, pids: dict[str, int | None], postgres_pid: int | None) -> None:
        self.pids = pids
        self.postgres_pid = postgres_pid

    def now(self) -> dict[str, float | None]:
        values: dict[str, float | None] = {"bench": time.process_time()}
        for name, pid in self.pids.items():
            values[name] = cpu_seconds(pid)
        values["postgres"] = tree_cpu_seconds(self.postgres_pid)
        values["machine"] = system_busy_seconds()
        return values

    @staticmethod
    def cores(
        begin: dict[str, float | None], end: dict[str, float | None], wall: float
    ) -> dict[str, float | None]:
        used: dict[str, float | None] = {}
        for name, stop in end.items():
            start = begin.get(name)
            used[name] = None if stop is None or start is None else (stop - start) / wall
        machine = used.pop("machine")
        ours = sum(v for v in used.values() if v is not None)
        used["other"] = None if machine is None else max(0.0, machine - ours)
        return {k: None if v is None else round(v, 3) for k, v in used.items()}


@dataclass
class Trigger:
    account_id: str
    phase: str  # warmup / measured
    body: bytes
    sent: float = 0.0  # time.time() just before the request
    answered: float = 0.0  # time.time() when the 202 was back
    status: int = 0


@dataclass
class Load:
    """Background load bookkeeping (the asyncio side)."""

    accepted: int = 0
    requests: int = 0
    failures: int = 0
    late_starts: int = 0  # requests that started > 1 s after their due time
    latencies_ms: list[float] = field(default_factory=list)
    accepted_at: list[tuple[float, int]] = field(default_factory=list)  # (time, events)
    last_error: str = ""


# --------------------------------------------------------------------------- workload


def background_accounts(n: int, users: int, run_id: str) -> list[tuple[str, list[str]]]:
    return [
        (f"bg-{run_id}-{i:04d}", [f"bg-{run_id}-{i:04d}-u{u}" for u in range(users)])
        for i in range(n)
    ]


def owner(i: int) -> dict[str, str]:
    return {"email": f"csm{i}@example.com", "slack_id": f"UBENCH{i:05d}"}


def facts_body(account_id: str, seats: int, i: int) -> dict[str, Any]:
    """Account facts as the CRM sends them (the shape of ``tests/support/harness.facts``)."""
    return {
        "account_id": account_id,
        "name": f"{account_id} Inc",
        "seats_purchased": seats,
        "occurred_at": (datetime.now(UTC) - timedelta(days=30)).isoformat(),
        "owner": owner(i),
        "tier": "enterprise",
        "lifecycle_stage": "stable",
    }


def trigger_body(account_id: str) -> bytes:
    """Its 8-day history in one request: ``TRIGGER_USERS`` users active on each of the
    last ``TRIGGER_DAYS`` days (``tests/support/harness.low_activity_history``)."""
    now = datetime.now(UTC)
    events = [
        {
            "kind": "usage",
            "event_id": uuid.uuid4().hex,
            "account_id": account_id,
            "user_id": f"{account_id}-u{u}",
            "event": "login",
            "occurred_at": (now - timedelta(days=d + 0.01)).isoformat(),
        }
        for d in range(TRIGGER_DAYS)
        for u in range(TRIGGER_USERS)
    ]
    return orjson.dumps({"events": events})


def background_body(
    accounts: Sequence[tuple[str, list[str]]], batch: int, cursor: int, rng: random.Random
) -> bytes:
    now = datetime.now(UTC).isoformat()
    events = []
    for k in range(batch):
        account_id, users = accounts[(cursor + k) % len(accounts)]
        events.append(
            {
                "kind": "usage",
                "event_id": uuid.UUID(int=rng.getrandbits(128)).hex,
                "account_id": account_id,
                "user_id": users[(cursor + k) // len(accounts) % len(users)],
                "event": rng.choice(EVENT_NAMES),
                "module": rng.choice(MODULES),
                "occurred_at": now,
            }
        )
    return orjson.dumps({"events": events})


# --------------------------------------------------------------------------- drivers


async def background(
    url: str,
    key: str,
    accounts: Sequence[tuple[str, list[str]]],
    opts: Options,
    stop: asyncio.Event,
    load: Load,
    progress: Progress,
    task: Any,
) -> None:
    """Open-loop load: a request is due every ``batch / rate`` s; at most
    ``concurrency`` in flight (a due request waits for a free slot: counted late)."""
    rng = random.Random(opts.seed)
    interval = opts.batch / opts.rate
    slots = asyncio.Semaphore(opts.concurrency)
    limits = httpx.Limits(max_connections=opts.concurrency)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    pending: set[asyncio.Task[None]] = set()
    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, timeout=30
    ) as client:

        async def one(body: bytes, due: float) -> None:
            try:
                started = time.monotonic()
                if started - due > 1.0:
                    load.late_starts += 1
                response = await client.post("/v1/events", content=body)
                load.latencies_ms.append((time.monotonic() - started) * 1000)
                load.requests += 1
                if response.status_code == 202:
                    got = int(response.json()["accepted"])
                    load.accepted += got
                    load.accepted_at.append((time.time(), got))
                    progress.advance(task, got)
                else:
                    load.failures += 1
                    load.last_error = f"{response.status_code}: {response.text[:300]}"
            except httpx.HTTPError as exc:
                load.failures += 1
                load.last_error = repr(exc)
            finally:
                slots.release()

        start = time.monotonic()
        k = 0
        while not stop.is_set():
            due = start + k * interval
            delay = due - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                if stop.is_set():
                    break
            await slots.acquire()
            body = background_body(accounts, opts.batch, k * opts.batch, rng)
            job = asyncio.create_task(one(body, due))
            pending.add(job)
            job.add_done_callback(pending.discard)
            k += 1
        if pending:
            await asyncio.gather(*pending)


def send_triggers(
    url: str,
    key: str,
    triggers: Sequence[Trigger],
    offsets: Sequence[float],
    abort: threading.Event,
    on_sent: Callable[[], None],
) -> None:
    """In a thread of its own, with a blocking client: the 202 time is taken the moment
    the response is back, not when a busy event loop gets round to it. Trigger ``i`` is
    due ``offsets[i]`` s after the start (open loop: a slow answer delays only the next
    trigger that falls due meanwhile)."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        start = time.monotonic()
        for i, trig in enumerate(triggers):
            delay = start + offsets[i] - time.monotonic()
            if delay > 0 and abort.wait(delay):
                return
            if abort.is_set():
                return
            trig.sent = time.time()
            try:
                response = client.post("/v1/events", content=trig.body)
                trig.answered = time.time()
                trig.status = response.status_code
            except httpx.HTTPError:
                trig.answered = time.time()
                trig.status = -1
            on_sent()


# --------------------------------------------------------------------------- run


@dataclass
class Options:
    rate: float
    batch: int
    concurrency: int
    background_accounts: int
    users: int
    duration: float
    warmup: float
    trigger_interval: float
    slack_min_interval: float
    slack_mode: str
    scoring_batch_max: int | None
    service_env: dict[str, str]
    drain_timeout: float
    bootstrap: str | None
    postgres_url: str | None
    out: Path
    plot: Path
    seed: int
    keep: bool


async def post_json(client: httpx.AsyncClient, path: str, body: Any) -> int:
    response = await client.post(path, content=orjson.dumps(body))
    if response.status_code != 202:
        raise RuntimeError(f"POST {path} answered {response.status_code}: {response.text[:500]}")
    return int(response.json()["accepted"])


async def scored_total(client: httpx.AsyncClient) -> float:
    return (await scrape(client, ["healthwatch_scoring_events_total"]))[
        "healthwatch_scoring_events_total"
    ]


async def wait_scored(client: httpx.AsyncClient, total: int, limit_s: float, what: str) -> float:
    started = time.monotonic()
    while (seen := await scored_total(client)) < total:
        if time.monotonic() - started > limit_s:
            raise TimeoutError(f"{what}: scored {seen:.0f} of {total} after {limit_s:.0f} s")
        await asyncio.sleep(0.2)
    return time.monotonic() - started


async def stage_times(url: str, accounts: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per trigger account: when the alerts service stored the alert and when it marked
    the Slack delivery delivered (its own clock). Best effort: the columns are the
    schema's as of writing."""
    conn = await asyncpg.connect(plain_dsn(url))
    try:
        rows = await conn.fetch(
            "SELECT a.account_id, a.stored_at, d.delivered_at FROM alerts a "
            "LEFT JOIN deliveries d ON d.alert_id = a.alert_id AND d.channel = 'slack' "
            "WHERE a.account_id = ANY($1::text[])",
            list(accounts),
        )
    finally:
        await conn.close()
    found: dict[str, dict[str, float]] = {}
    for r in rows:
        item = {"stored": r["stored_at"].timestamp()}
        if r["delivered_at"] is not None:
            item["delivered"] = r["delivered_at"].timestamp()
        found[r["account_id"]] = item
    return found


async def published_times(
    bootstrap: str, topic: str, partitions: int, accounts: set[str]
) -> dict[str, float]:
    """Per trigger account: the Kafka timestamp (CreateTime, set by the scoring
    service's producer when it sent the record) of its first record on the alerts topic."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    found: dict[str, float] = {}
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends: dict[Any, int] = await consumer.end_offsets(tps)
        deadline = time.monotonic() + 30

        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in tps])

        while time.monotonic() < deadline and await behind():
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batches.values():
                for record in records:
                    account = (record.key or b"").decode(errors="replace")
                    if account in accounts:
                        moment = record.timestamp / 1000
                        found[account] = min(found.get(account, moment), moment)
    finally:
        await consumer.stop()
    return found


def timeline_rows(samples: Sequence[dict[str, Any]], setup: int) -> list[dict[str, Any]]:
    """Per sample: events accepted and scored so far (setup excluded), the scoring lag,
    Slack requests so far, and the CPU cores the machine and "other" processes used
    since the previous sample."""
    rows = []
    for prev, cur in zip([None, *samples[:-1]], samples, strict=True):
        row = {
            "t": cur["t"],
            "accepted": cur["accepted"],
            "scored": round(cur["scored"] - setup),
            "lag": max(0, round(cur["accepted"] + setup - cur["scored"])),
            "slack": cur["slack"],
        }
        if prev is not None:
            cores = Meter.cores(prev["cpu"], cur["cpu"], max(1e-3, cur["t"] - prev["t"]))
            busy = sum(v for k, v in cores.items() if v is not None)
            row["machine_cores"] = round(busy, 2)
            row["other_cores"] = cores.get("other")
        rows.append(row)
    return rows


def summarize(values: Sequence[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": round(percentile(values, 50), 4),
        "p95": round(percentile(values, 95), 4),
        "p99": round(percentile(values, 99), 4),
        "max": round(max(values), 4),
        "min": round(min(values), 4),
        "mean": round(sum(values) / len(values), 4),
    }


async def run(opts: Options, workdir: Path, services: Services) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:6]
    free_port: Callable[[], int] = devservices.free_port
    url = await create_database(services.postgres_url, f"bench_{run_id}_alert_latency")
    values: dict[str, Any] = {}
    if opts.scoring_batch_max:
        values["scoring_batch_max"] = opts.scoring_batch_max
    settings = Settings(
        _env_file=None,
        kafka_bootstrap=services.bootstrap,
        database_url=url,
        topic_prefix=f"bench-{run_id}",
        ingest_port=free_port(),
        scoring_port=free_port(),
        alerts_port=free_port(),
        host="127.0.0.1",
        consumer_group_scoring=f"bench-{run_id}-scoring",
        consumer_group_alerts=f"bench-{run_id}-alerts",
        log_level="WARNING",
        **values,
    )
    engine = create_engine(url)
    try:
        key = await create_key(engine, "bench-ingest", [Scope.ingest, Scope.crm])
        metrics_key = await create_key(engine, "bench-metrics", [Scope.metrics])
    finally:
        await engine.dispose()

    alerting = workdir / "alerting.toml"
    alerting.write_text(ALERTING_TOML)
    slack_port = free_port()
    slack_log = workdir / "slack.jsonl"
    slack_log.touch()
    trigger_pattern = rf"trig-{run_id}-\d{{5}}"
    extra = {
        "HEALTHWATCH_ALERTING_FILE": str(alerting),
        "HEALTHWATCH_SLACK_MIN_INTERVAL_S": str(opts.slack_min_interval),
        "HEALTHWATCH_PUBLIC_URL": "http://127.0.0.1:8000",
        **opts.service_env,
    }
    if opts.slack_mode == "webhook":
        extra["HEALTHWATCH_SLACK_WEBHOOK_URL"] = (
            f"http://127.0.0.1:{slack_port}/services/T000/B000/XXXX"
        )
    else:
        extra["HEALTHWATCH_SLACK_BOT_TOKEN"] = "xoxb-bench"
        extra["HEALTHWATCH_SLACK_API_URL"] = f"http://127.0.0.1:{slack_port}/api/"
    env = service_env(settings, extra)

    logs = {name: workdir / f"{name}.log" for name in (*SERVICES, "slack")}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    procs["slack"] = spawn(
        [
            sys.executable,
            str(SCRIPT),
            "_slack_standin",
            str(slack_port),
            str(slack_log),
            trigger_pattern,
        ],
        dict(os.environ),
        workdir,
        logs["slack"],
    )
    err.print(f"[bold]starting[/] {', '.join(shlex.join(service_command(s)) for s in SERVICES)}")
    for name in SERVICES:
        procs[name] = spawn(service_command(name), env, workdir, logs[name])

    rng = random.Random(opts.seed)
    bg = background_accounts(opts.background_accounts, opts.users, run_id)
    n_measured = max(1, int(opts.duration / opts.trigger_interval))
    n_warm = max(1, int(opts.warmup / opts.trigger_interval)) if opts.warmup > 0 else 0
    triggers = [
        Trigger(f"trig-{run_id}-{i:05d}", "warmup" if i < n_warm else "measured", b"")
        for i in range(n_warm + n_measured)
    ]
    result: dict[str, Any] = {"run_id": run_id, "settings_env": {**extra}}
    meter = Meter(
        {
            "ingest": procs["ingest"].pid,
            "scoring": procs["scoring"].pid,
            "alerts": procs["alerts"].pid,
            "slack": procs["slack"].pid,
            "broker": services.broker_pid,
        },
        services.postgres_pid,
    )
    base = f"http://{settings.host}"
    auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    ops_auth = {"Authorization": f"Bearer {metrics_key}"}
    try:
        await wait_ready(f"{base}:{settings.ingest_port}", "/readyz", procs, logs)
        await wait_ready(f"{base}:{settings.scoring_port}", "/healthz", procs, logs)
        await wait_ready(f"{base}:{settings.alerts_port}", "/healthz", procs, logs)
        async with (
            httpx.AsyncClient(
                base_url=f"{base}:{settings.ingest_port}", headers=auth, timeout=30
            ) as ingest,
            httpx.AsyncClient(
                base_url=f"{base}:{settings.scoring_port}", headers=ops_auth, timeout=10
            ) as scoring_ops,
            httpx.AsyncClient(
                base_url=f"{base}:{settings.alerts_port}", headers=ops_auth, timeout=10
            ) as alerts_ops,
        ):
            # ---------------------------------------------------------- setup
            err.print(
                f"[bold]setup[/]: facts of {len(bg)} background and {len(triggers)} trigger "
                "accounts, one day of background activity; waiting until scored"
            )
            facts = [facts_body(a, len(users), i) for i, (a, users) in enumerate(bg)]
            facts += [
                facts_body(t.account_id, TRIGGER_SEATS, len(bg) + i) for i, t in enumerate(triggers)
            ]
            sent = 0
            for i in range(0, len(facts), 500):
                sent += await post_json(ingest, "/v1/accounts", {"accounts": facts[i : i + 500]})
            # Every background user active once, so the accounts start out healthy.
            first = orjson.loads(background_body(bg, len(bg) * opts.users, 0, rng))["events"]
            for i in range(0, len(first), 500):
                sent += await post_json(ingest, "/v1/events", {"events": first[i : i + 500]})
            setup_s = await wait_scored(scoring_ops, sent, 300, "setup")
            result["setup"] = {"records": sent, "scored_in_s": round(setup_s, 2)}
            early = read_slack_log(slack_log)
            if early:
                err.print(f"[yellow]{len(early)} Slack messages during setup (none expected)[/]")
            result["setup"]["slack_messages"] = len(early)

            for trig in triggers:
                trig.body = trigger_body(trig.account_id)
            # Poisson arrivals (exponential gaps, mean --trigger-interval): a fixed period
            # would beat against the services' own periodic polls (the outbox looks for
            # due deliveries every delivery_poll_interval_s) and sample one phase of them.
            offsets = list(
                itertools.accumulate(
                    rng.expovariate(1 / opts.trigger_interval) for _ in range(len(triggers))
                )
            )

            # ---------------------------------------------------------- load
            load = Load()
            stop_bg = asyncio.Event()
            abort = threading.Event()
            timeline: list[dict[str, Any]] = []
            total_time = 2.0 + offsets[-1]
            with Progress(
                TextColumn("{task.description:<22}"),
                BarColumn(bar_width=20),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[info]}"),
                console=err,
                refresh_per_second=4,
            ) as progress:
                bg_task = progress.add_task(
                    "background events",
                    total=int(opts.rate * (total_time + 5)),
                    info="",
                )
                sent_task = progress.add_task("triggers sent", total=len(triggers), info="")
                got_task = progress.add_task("alerts on Slack", total=len(triggers), info="")
                loop = asyncio.get_running_loop()
                load_job = asyncio.create_task(
                    background(
                        f"{base}:{settings.ingest_port}",
                        key,
                        bg,
                        opts,
                        stop_bg,
                        load,
                        progress,
                        bg_task,
                    )
                )
                await asyncio.sleep(2.0)  # the load settles before the first trigger
                wall0 = time.time()
                cpu0 = meter.now()
                thread = threading.Thread(
                    target=send_triggers,
                    args=(
                        f"{base}:{settings.ingest_port}",
                        key,
                        triggers,
                        offsets,
                        abort,
                        lambda: loop.call_soon_threadsafe(progress.advance, sent_task, 1),
                    ),
                    daemon=True,
                )
                thread.start()
                drain_deadline: float | None = None
                scored = 0.0
                measured_start = wall0
                measured_cpu: dict[str, float | None] = {}
                measured_window: tuple[float, float] | None = None
                cpu_m0: dict[str, float | None] | None = None
                while True:
                    await asyncio.sleep(SAMPLE_S)
                    now = time.time()
                    received = read_slack_log(slack_log)
                    got = {a for r in received for a in r["accounts"]}
                    with contextlib.suppress(httpx.HTTPError):
                        scored = await scored_total(scoring_ops)
                    accepted = load.accepted + sum(
                        TRIGGER_USERS * TRIGGER_DAYS for t in triggers if t.status == 202
                    )
                    sample = {
                        "t": round(now - wall0, 2),
                        "accepted": accepted,
                        "scored": scored,
                        "slack": len(received),
                        "cpu": meter.now(),
                    }
                    timeline.append(sample)
                    lag = accepted + sent - scored
                    progress.update(got_task, completed=len(got))
                    lat = sorted(
                        r["t"] - t.answered
                        for t in triggers
                        if t.answered and t.phase == "measured"
                        for r in received[-200:]
                        if t.account_id in r["accounts"]
                    )
                    progress.update(bg_task, info=f"scoring lag {max(0, lag):,.0f} events")
                    if lat:
                        progress.update(
                            got_task,
                            info=f"p50 {percentile(lat, 50):.3f} s (last 200)",
                        )
                    first_measured = next(
                        (t for t in triggers if t.phase == "measured" and t.sent), None
                    )
                    if cpu_m0 is None and first_measured is not None:
                        cpu_m0 = meter.now()
                        measured_start = time.time()
                    if not thread.is_alive():
                        if measured_window is None and cpu_m0 is not None:
                            measured_window = (measured_start, time.time())
                            measured_cpu = Meter.cores(
                                cpu_m0, meter.now(), measured_window[1] - measured_window[0]
                            )
                        if drain_deadline is None:
                            drain_deadline = time.monotonic() + opts.drain_timeout
                        if {t.account_id for t in triggers if t.status == 202} <= got:
                            break
                        if time.monotonic() > drain_deadline:
                            err.print("[yellow]drain timeout: some alerts did not arrive[/]")
                            break
                    for name, proc in procs.items():
                        if proc.poll() is not None:
                            abort.set()
                            raise RuntimeError(
                                f"{name} exited with {proc.returncode}:\n{tail(logs[name])}"
                            )
                # A little longer: a doubled message would arrive late.
                await asyncio.sleep(2.0)
                stop_bg.set()
                await load_job
                thread.join(5)
            cpu_total = Meter.cores(cpu0, meter.now(), time.time() - wall0)
            metrics_end = await scrape(
                alerts_ops,
                [
                    "healthwatch_alert_delivery_latency_seconds_sum",
                    "healthwatch_alert_delivery_latency_seconds_count",
                ],
            )
            scoring_batches = await scrape(
                scoring_ops,
                [
                    "healthwatch_scoring_batch_seconds_sum",
                    "healthwatch_scoring_batch_seconds_count",
                ],
            )
            try:
                result["stages"] = await stage_times(url, [t.account_id for t in triggers])
            except Exception as exc:  # the schema may have moved on: the split is optional
                err.print(f"[yellow]no stored_at split: {exc!r}[/]")
            try:
                result["published"] = await published_times(
                    services.bootstrap,
                    settings.topic(ALERTS_TOPIC),
                    settings.kafka_partitions,
                    {t.account_id for t in triggers},
                )
            except Exception as exc:
                err.print(f"[yellow]no publish-time split: {exc!r}[/]")
    finally:
        for name in (*SERVICES, "slack"):
            if name in procs:
                await asyncio.to_thread(stop_process, procs[name])
    for name in SERVICES:
        if procs[name].returncode not in (0, -signal.SIGTERM):
            err.print(f"[yellow]{name} exit code {procs[name].returncode}[/]:\n{tail(logs[name])}")
    errors = {
        name: [
            line
            for line in logs[name].read_text(errors="replace").splitlines()
            if ("ERROR" in line or "Traceback" in line)
            # A fresh broker elects the group coordinator a moment after the services start.
            and "GroupCoordinatorNotAvailableError" not in line
        ][:20]
        for name in SERVICES
    }

    # ---------------------------------------------------------------- results
    received = read_slack_log(slack_log)
    by_account: dict[str, list[float]] = {}
    for r in received:
        for a in r["accounts"]:
            by_account.setdefault(a, []).append(r["t"])
    stages = result.pop("stages", {})
    published = result.pop("published", {})
    rows = []
    for t in triggers:
        times = sorted(by_account.get(t.account_id, []))
        row: dict[str, Any] = {
            "account_id": t.account_id,
            "phase": t.phase,
            "sent": round(t.sent - wall0, 4) if t.sent else None,
            "status": t.status,
            "request_s": round(t.answered - t.sent, 4) if t.sent else None,
            "slack_messages": len(times),
        }
        if times and t.answered:
            row["latency_from_202_s"] = round(times[0] - t.answered, 4)
            row["latency_from_send_s"] = round(times[0] - t.sent, 4)
        if t.account_id in published and t.answered:
            row["published_after_202_s"] = round(published[t.account_id] - t.answered, 4)
        stage = stages.get(t.account_id)
        if stage and t.answered:
            row["stored_after_202_s"] = round(stage["stored"] - t.answered, 4)
            if "delivered" in stage and times:
                row["delivered_mark_after_202_s"] = round(stage["delivered"] - t.answered, 4)
        rows.append(row)
    measured = [r for r in rows if r["phase"] == "measured" and r["status"] == 202]
    lat = [r["latency_from_202_s"] for r in measured if "latency_from_202_s" in r]
    lat_send = [r["latency_from_send_s"] for r in measured if "latency_from_send_s" in r]
    stored = [r["stored_after_202_s"] for r in measured if "stored_after_202_s" in r]
    trigger_ids = {t.account_id for t in triggers}
    window = measured_window or (wall0, time.time())
    in_window = sum(n for at, n in load.accepted_at if window[0] <= at <= window[1])
    result.update(
        {
            "latency_s": {
                "from_202": summarize(lat),
                "from_request_start": summarize(lat_send),
                "published_by_scoring_after_202": summarize(
                    [r["published_after_202_s"] for r in measured if "published_after_202_s" in r]
                ),
                "published_to_stored": summarize(
                    [
                        r["stored_after_202_s"] - r["published_after_202_s"]
                        for r in measured
                        if "stored_after_202_s" in r and "published_after_202_s" in r
                    ]
                ),
                "stored_by_alerts_service_after_202": summarize(stored),
                "stored_to_slack": summarize(
                    [
                        r["latency_from_202_s"] - r["stored_after_202_s"]
                        for r in measured
                        if "latency_from_202_s" in r and "stored_after_202_s" in r
                    ]
                ),
            },
            "triggers": {
                "sent_measured": sum(1 for t in triggers if t.phase == "measured" and t.sent),
                "accepted_measured": len(measured),
                "alerts_received_measured": sum(1 for r in measured if r["slack_messages"]),
                "lost": sum(1 for r in measured if not r["slack_messages"]),
                "doubled": sum(1 for r in rows if r["slack_messages"] > 1),
                "warmup_sent": sum(1 for t in triggers if t.phase == "warmup" and t.sent),
                "warmup_received": sum(
                    1 for r in rows if r["phase"] == "warmup" and r["slack_messages"]
                ),
                "trigger_request_ms": summarize(
                    [r["request_s"] * 1000 for r in measured if r["request_s"] is not None]
                ),
            },
            "slack": {
                "requests": len(received),
                "unexpected": sum(1 for r in received if not set(r["accounts"]) & trigger_ids),
                "multi_account_messages": sum(1 for r in received if len(r["accounts"]) > 1),
            },
            "background": {
                "target_events_per_s": opts.rate,
                "measured_window_s": round(window[1] - window[0], 2),
                "events_accepted_in_window": in_window,
                "events_per_s": round(in_window / max(1e-9, window[1] - window[0]), 1),
                "events_accepted_total": load.accepted,
                "requests": load.requests,
                "failed_requests": load.failures,
                "late_starts": load.late_starts,
                "last_error": load.last_error,
                "request_ms": summarize(load.latencies_ms),
            },
            "cpu_cores_measured": measured_cpu,
            "cpu_cores_whole_load": cpu_total,
            "scoring_batches": {
                "count": scoring_batches["healthwatch_scoring_batch_seconds_count"],
                "mean_s": round(
                    scoring_batches["healthwatch_scoring_batch_seconds_sum"]
                    / max(1.0, scoring_batches["healthwatch_scoring_batch_seconds_count"]),
                    4,
                ),
            },
            "alerts_delivery_latency_metric": {
                "count": metrics_end["healthwatch_alert_delivery_latency_seconds_count"],
                "mean_s": round(
                    metrics_end["healthwatch_alert_delivery_latency_seconds_sum"]
                    / max(1.0, metrics_end["healthwatch_alert_delivery_latency_seconds_count"]),
                    4,
                ),
            },
            "timeline": timeline_rows(timeline, sent),
            "per_trigger": rows,
            "service_log_errors": {k: v for k, v in errors.items() if v},
        }
    )
    return result


# --------------------------------------------------------------------------- report


BUSY_OTHER_CORES = 0.25


def report(
    opts: Options, results: dict[str, Any], services: Services, argv: Sequence[str]
) -> dict[str, Any]:
    machine = machine_info(services.kafka_version)
    for lib in ("asyncpg", "sqlalchemy", "slack_sdk", "aiohttp"):
        with contextlib.suppress(Exception):
            import importlib.metadata

            machine["libraries"][lib] = importlib.metadata.version(lib)
    proc = subprocess.run(
        ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    warnings = []
    other = (results.get("cpu_cores_measured") or {}).get("other")
    if other is not None and other > BUSY_OTHER_CORES:
        warnings.append(
            f"other processes used {other:.2f} cores during the measured phase: busy machine"
        )
    bg = results["background"]
    if bg["events_per_s"] < 0.95 * opts.rate:
        warnings.append(
            f"background load reached {bg['events_per_s']:,.0f} events/s of {opts.rate:,.0f}"
        )
    trig = results["triggers"]
    if trig["lost"] or trig["doubled"] or trig["sent_measured"] != trig["accepted_measured"]:
        warnings.append(
            f"triggers: {trig['sent_measured']} sent, {trig['accepted_measured']} accepted, "
            f"{trig['alerts_received_measured']} alerts received, {trig['lost']} lost, "
            f"{trig['doubled']} doubled"
        )
    if results["slack"]["unexpected"]:
        warnings.append(f"{results['slack']['unexpected']} Slack messages for no trigger account")
    lag_end = max((row["lag"] for row in results["timeline"][-5:]), default=0)
    if lag_end > 5 * opts.rate:
        warnings.append(f"scoring lag {lag_end:,} events near the end: scoring fell behind")
    return {
        "benchmark": "alert latency: HTTP ingest to Slack stand-in, under background load",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": shlex.join(["python", *argv]),
        "git": {**git_state(), "changed_files": [ln[3:] for ln in proc.stdout.splitlines()]},
        # Where services/ and shared/ were imported from (a snapshot via PYTHONPATH, or ROOT).
        "code_root": str(Path(config_module.__file__).resolve().parents[1]),
        "machine": machine,
        "config": {
            "background_rate_events_per_s": opts.rate,
            "batch_events": opts.batch,
            "concurrency": opts.concurrency,
            "background_accounts": opts.background_accounts,
            "users_per_background_account": opts.users,
            "measured_s": opts.duration,
            "warmup_s": opts.warmup,
            "trigger_interval_s": opts.trigger_interval,
            "trigger_events": TRIGGER_USERS * TRIGGER_DAYS,
            "slack_mode": opts.slack_mode,
            "slack_min_interval_s": opts.slack_min_interval,
            "grouping": "off (notify.group_wait = 0s)",
            "service_env": opts.service_env,
            "scoring_batch_max": opts.scoring_batch_max
            or Settings(_env_file=None).scoring_batch_max,
            "seed": opts.seed,
            "alerting_file": ALERTING_TOML,
            "broker": f"external {opts.bootstrap}" if opts.bootstrap else "local single-node KRaft",
            "postgresql": "external" if opts.postgres_url else "local cluster (devservices)",
        },
        "target_p99_s": TARGET_P99_S,
        **results,
        "warnings": warnings,
    }


def print_table(result: dict[str, Any]) -> None:
    cfg = result["config"]
    table = Table(
        title=(
            f"alert latency, ingest → Slack stand-in; background "
            f"{result['background']['events_per_s']:,.0f} events/s; "
            f"slack_min_interval_s={cfg['slack_min_interval_s']:g}"
        )
    )
    table.add_column("measured from")
    for header in ("n", "p50 s", "p95 s", "p99 s", "max s", "mean s"):
        table.add_column(header, justify="right")
    labels = {
        "from_202": "trigger answered 202 → Slack",
        "from_request_start": "trigger sent → Slack",
        "published_by_scoring_after_202": "  202 → alert on Kafka (scoring)",
        "published_to_stored": "  alert on Kafka → stored (alerts)",
        "stored_by_alerts_service_after_202": "  202 → alert stored",
        "stored_to_slack": "  alert stored → Slack (outbox)",
    }
    for key, label in labels.items():
        s = result["latency_s"][key]
        if not s["n"]:
            table.add_row(label, "0", "-", "-", "-", "-", "-")
            continue
        table.add_row(
            label,
            str(s["n"]),
            *(f"{s[q]:.3f}" for q in ("p50", "p95", "p99", "max", "mean")),
        )
    out.print(table)
    trig = result["triggers"]
    bg = result["background"]
    out.print(
        f"triggers (measured): {trig['sent_measured']} sent, {trig['accepted_measured']} "
        f"answered 202, {trig['alerts_received_measured']} alerts received on Slack, "
        f"{trig['lost']} lost, {trig['doubled']} doubled; Slack requests in all: "
        f"{result['slack']['requests']} ({result['slack']['unexpected']} for no trigger); "
        f"warm-up {trig['warmup_received']}/{trig['warmup_sent']}"
    )
    out.print(
        f"background: {bg['events_per_s']:,.0f} events/s accepted over the measured "
        f"{bg['measured_window_s']:.0f} s (target {bg['target_events_per_s']:,.0f}), "
        f"{bg['requests']:,} requests of {cfg['batch_events']} in all (warm-up and drain too), "
        f"{bg['failed_requests']} failed, "
        f"request p50 {bg['request_ms'].get('p50', float('nan')):.1f} ms / "
        f"p99 {bg['request_ms'].get('p99', float('nan')):.1f} ms"
    )
    lags = [row["lag"] for row in result["timeline"]]
    out.print(
        f"scoring: {result['scoring_batches']['count']:.0f} batches, mean "
        f"{result['scoring_batches']['mean_s'] * 1000:.0f} ms; lag max {max(lags, default=0):,} "
        f"events, at the end {lags[-1] if lags else 0:,}"
    )
    cpu = result["cpu_cores_measured"]
    out.print(
        "CPU cores (measured phase): "
        + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items() if v is not None)
    )
    p99 = result["latency_s"]["from_202"].get("p99")
    if p99 is not None:
        verdict = "meets" if p99 <= TARGET_P99_S else "misses"
        out.print(f"[bold]p99 {p99:.3f} s {verdict} the target p99 <= {TARGET_P99_S:g} s[/]")
    for w in result["warnings"]:
        out.print(f"[yellow]warning: {w}[/]")


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [
        r for r in result["per_trigger"] if r["phase"] == "measured" and "latency_from_202_s" in r
    ]
    lat = sorted(r["latency_from_202_s"] for r in rows)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), dpi=100)
    if lat:
        left.plot(lat, [(i + 1) / len(lat) for i in range(len(lat))], color="#4c72b0")
        stats = result["latency_s"]["from_202"]
        for q, style in (("p50", ":"), ("p95", "--"), ("p99", "-.")):
            left.axvline(stats[q], color="#555555", linestyle=style, linewidth=1)
            left.annotate(
                f"{q} {stats[q]:.3f} s",
                (stats[q], 0.02 if q != "p95" else 0.12),
                xytext=(3, 0),
                textcoords="offset points",
                fontsize=8,
            )
    left.axvline(TARGET_P99_S, color="#c44e52", linewidth=1)
    left.annotate(
        "target p99",
        (TARGET_P99_S, 0.5),
        xytext=(3, 0),
        textcoords="offset points",
        fontsize=8,
        color="#c44e52",
    )
    parts = result["latency_s"]
    split = [
        ("202 → alert on Kafka", parts.get("published_by_scoring_after_202", {})),
        ("Kafka → stored", parts.get("published_to_stored", {})),
        ("stored → Slack", parts.get("stored_to_slack", {})),
    ]
    if all(p.get("n") for _, p in split):
        left.text(
            0.02,
            0.97,
            "stage medians:\n" + "\n".join(f"{name} {p['p50']:.3f} s" for name, p in split),
            transform=left.transAxes,
            ha="left",
            va="top",
            fontsize=8,
            color="#555555",
        )
    left.set_xlabel("latency, trigger answered 202 → Slack stand-in received (s)")
    left.set_ylabel("share of alerts")
    left.set_ylim(0, 1.02)
    left.set_xlim(left=0)
    left.grid(alpha=0.3)
    left.set_title(f"CDF, {len(lat)} alerts")

    right.scatter(
        [r["sent"] for r in rows],
        [r["latency_from_202_s"] for r in rows],
        s=8,
        color="#4c72b0",
        label="alert latency (s)",
    )
    right.axhline(TARGET_P99_S, color="#c44e52", linewidth=1)
    right.set_xlabel("time since the first trigger (s)")
    right.set_ylabel("latency (s)")
    right.set_ylim(bottom=0)
    right.grid(alpha=0.3)
    twin = right.twinx()
    tl = result["timeline"]
    rate = [
        (b["t"], (b["accepted"] - a["accepted"]) / max(1e-3, b["t"] - a["t"]))
        for a, b in itertools.pairwise(tl)
    ]
    if rate:
        twin.plot(
            [t for t, _ in rate],
            [v for _, v in rate],
            color="#8c8c8c",
            linewidth=0.8,
            label="events/s accepted",
        )
        twin.plot(
            [row["t"] for row in tl],
            [row["lag"] for row in tl],
            color="#dd8452",
            linewidth=0.8,
            label="scoring lag (events)",
        )
    twin.set_ylabel("events/s accepted; scoring lag (events)", color="#555555")
    twin.set_ylim(bottom=0)
    handles = right.get_legend_handles_labels()
    twin_handles = twin.get_legend_handles_labels()
    right.legend(
        handles[0] + twin_handles[0], handles[1] + twin_handles[1], fontsize=8, loc="upper left"
    )
    right.set_title("latency over time, with the background load")
    cfg = result["config"]
    fig.suptitle(
        f"healthwatch alert latency, grouping off, slack_min_interval_s="
        f"{cfg['slack_min_interval_s']:g} ({cfg['slack_mode']}); background "
        f"{result['background']['events_per_s']:,.0f} events/s over "
        f"{cfg['background_accounts']} accounts; {result['date'][:10]}, "
        f"{result['machine']['nproc']} CPUs, commit {str(result['git']['commit'])[:7]}",
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def parse_args(argv: Sequence[str]) -> Options:
    parser = argparse.ArgumentParser(
        description="End-to-end alert latency, HTTP ingest to a Slack stand-in, under load."
    )
    parser.add_argument("--rate", type=float, default=1000, help="background events/s")
    parser.add_argument("--batch", type=int, default=100, help="background events per request")
    parser.add_argument("--concurrency", type=int, default=8, help="background requests in flight")
    parser.add_argument("--background-accounts", type=int, default=100)
    parser.add_argument("--users", type=int, default=10, help="users per background account")
    parser.add_argument("--duration", type=float, default=120, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=10, help="warm-up seconds (triggers too)")
    parser.add_argument("--trigger-interval", type=float, default=0.3, help="seconds")
    parser.add_argument(
        "--slack-min-interval",
        type=float,
        default=0.0,
        help="HEALTHWATCH_SLACK_MIN_INTERVAL_S for the alerts service (product default 1.0)",
    )
    parser.add_argument(
        "--slack-mode",
        choices=("webhook", "web-api"),
        default="webhook",
        help="incoming webhook (one destination) or Web API with one owner per trigger",
    )
    parser.add_argument("--scoring-batch-max", type=int, help="settings default if not given")
    parser.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="HEALTHWATCH_NAME=VALUE",
        help="extra setting for the three services (repeatable), e.g. "
        "HEALTHWATCH_DELIVERY_POLL_INTERVAL_S=0.1",
    )
    parser.add_argument("--drain-timeout", type=float, default=60, help="wait for late alerts")
    parser.add_argument("--bootstrap", help="use this Kafka instead of starting one")
    parser.add_argument("--postgres-url", help="postgresql+asyncpg://user@host:port/postgres")
    parser.add_argument("--out", type=Path, default=RESULTS / "alert_latency.json")
    parser.add_argument("--plot", type=Path, default=RESULTS / "alert_latency.png")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, data)")
    a = parser.parse_args(argv)
    service_env = {}
    for item in a.service_env:
        name, eq, value = item.partition("=")
        if not eq or not name.startswith("HEALTHWATCH_"):
            parser.error(f"--service-env {item!r}: expected HEALTHWATCH_NAME=VALUE")
        service_env[name] = value
    if a.rate <= 0 or a.batch < 1 or a.trigger_interval <= 0 or a.duration <= 0:
        parser.error("--rate, --batch, --trigger-interval and --duration must be positive")
    return Options(
        rate=a.rate,
        batch=a.batch,
        concurrency=a.concurrency,
        background_accounts=a.background_accounts,
        users=a.users,
        duration=a.duration,
        warmup=a.warmup,
        trigger_interval=a.trigger_interval,
        slack_min_interval=a.slack_min_interval,
        slack_mode=a.slack_mode,
        scoring_batch_max=a.scoring_batch_max,
        service_env=service_env,
        drain_timeout=a.drain_timeout,
        bootstrap=a.bootstrap,
        postgres_url=a.postgres_url,
        out=a.out,
        plot=a.plot,
        seed=a.seed,
        keep=a.keep,
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_slack_standin"]:
        serve_slack_standin(int(argv[1]), Path(argv[2]), argv[3])
        return 0
    opts = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    started = time.monotonic()
    with (
        scratch_dir("healthwatch-alert-latency-", opts.keep) as workdir,
        contextlib.ExitStack() as stack,
    ):
        services = start_services(opts.bootstrap, opts.postgres_url, workdir, stack)
        results = asyncio.run(run(opts, workdir, services))
    result = report(opts, results, services, [os.path.relpath(__file__), *argv])
    result["wall_seconds_total"] = round(time.monotonic() - started, 1)
    print_table(result)
    save_results(result, opts.out, opts.plot, plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
