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
import functools
import http.server
import itertools
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
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from lib.console import err, make_progress, out
from lib.measure import (
    cores_between,
    cpu_seconds,
    git_state,
    machine_info,
    percentile,
    system_busy_seconds,
    tree_cpu_seconds,
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
from rich.progress import (
    Progress,
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

    cores = staticmethod(cores_between)


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


@dataclass
class Stack:
    """The processes of one run and how to reach them."""

    run_id: str
    settings: Settings
    url: str  # the run's database (SQLAlchemy URL)
    key: str  # ingest + CRM key for the load and the triggers
    metrics_key: str  # for the services' /metrics
    extra: dict[str, str]  # HEALTHWATCH_* the services get beyond the settings
    logs: dict[str, Path]  # per process (the services and the Slack stand-in)
    slack_log: Path  # one JSON line per request the Slack stand-in received
    slack_port: int
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def base(self, port: int) -> str:
        return f"http://{self.settings.host}:{port}"

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {proc.returncode}:\n{tail(self.logs[name])}"
                )


async def prepare(opts: Options, workdir: Path, services: Services) -> Stack:
    """A fresh database with two keys, the settings of the services and their extra
    environment (alerting file, Slack stand-in); nothing started yet."""
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
    extra = {
        "HEALTHWATCH_ALERTING_FILE": str(alerting),
        "HEALTHWATCH_SLACK_MIN_INTERVAL_S": str(opts.slack_min_interval),
        "HEALTHWATCH_PUBLIC_URL": "http://127.0.0.1:8000",
        **opts.service_env,
    }
    slack_port = free_port()
    slack = f"http://127.0.0.1:{slack_port}"
    if opts.slack_mode == "webhook":
        extra["HEALTHWATCH_SLACK_WEBHOOK_URL"] = f"{slack}/services/T000/B000/XXXX"
    else:
        extra["HEALTHWATCH_SLACK_BOT_TOKEN"] = "xoxb-bench"
        extra["HEALTHWATCH_SLACK_API_URL"] = f"{slack}/api/"
    slack_log = workdir / "slack.jsonl"
    slack_log.touch()
    logs = {name: workdir / f"{name}.log" for name in (*SERVICES, "slack")}
    return Stack(run_id, settings, url, key, metrics_key, extra, logs, slack_log, slack_port)


def start(stack: Stack, workdir: Path) -> None:
    """The Slack stand-in (this script, in its own process) and the three services."""
    trigger_pattern = rf"trig-{stack.run_id}-\d{{5}}"
    stack.procs["slack"] = spawn(
        [
            sys.executable,
            str(SCRIPT),
            "_slack_standin",
            str(stack.slack_port),
            str(stack.slack_log),
            trigger_pattern,
        ],
        dict(os.environ),
        workdir,
        stack.logs["slack"],
    )
    err.print(f"[bold]starting[/] {', '.join(shlex.join(service_command(s)) for s in SERVICES)}")
    env = service_env(stack.settings, stack.extra)
    for name in SERVICES:
        stack.procs[name] = spawn(service_command(name), env, workdir, stack.logs[name])


async def stop(stack: Stack) -> None:
    for name in (*SERVICES, "slack"):
        if name in stack.procs:
            await asyncio.to_thread(stop_process, stack.procs[name])


def logged_errors(stack: Stack) -> dict[str, list[str]]:
    """The ERROR lines and tracebacks each stopped service logged (and its exit code, if
    it did not stop cleanly)."""
    for name in SERVICES:
        if stack.procs[name].returncode not in (0, -signal.SIGTERM):
            code = stack.procs[name].returncode
            err.print(f"[yellow]{name} exit code {code}[/]:\n{tail(stack.logs[name])}")
    return {
        name: [
            line
            for line in stack.logs[name].read_text(errors="replace").splitlines()
            if ("ERROR" in line or "Traceback" in line)
            # A fresh broker elects the group coordinator a moment after the services start.
            and "GroupCoordinatorNotAvailableError" not in line
        ][:20]
        for name in SERVICES
    }


def make_triggers(opts: Options, run_id: str) -> list[Trigger]:
    n_measured = max(1, int(opts.duration / opts.trigger_interval))
    n_warm = max(1, int(opts.warmup / opts.trigger_interval)) if opts.warmup > 0 else 0
    return [
        Trigger(f"trig-{run_id}-{i:05d}", "warmup" if i < n_warm else "measured", b"")
        for i in range(n_warm + n_measured)
    ]


async def set_up_accounts(
    stack: Stack,
    clients: Clients,
    bg: Sequence[tuple[str, list[str]]],
    triggers: Sequence[Trigger],
    opts: Options,
    rng: random.Random,
) -> dict[str, Any]:
    """Facts of every account and one day of background activity, scored before the
    load starts; what was sent and how long scoring took."""
    err.print(
        f"[bold]setup[/]: facts of {len(bg)} background and {len(triggers)} trigger "
        "accounts, one day of background activity; waiting until scored"
    )
    facts = [facts_body(a, len(users), i) for i, (a, users) in enumerate(bg)]
    facts += [facts_body(t.account_id, TRIGGER_SEATS, len(bg) + i) for i, t in enumerate(triggers)]
    sent = 0
    for i in range(0, len(facts), 500):
        sent += await post_json(clients.ingest, "/v1/accounts", {"accounts": facts[i : i + 500]})
    # Every background user active once, so the accounts start out healthy.
    first = orjson.loads(background_body(bg, len(bg) * opts.users, 0, rng))["events"]
    for i in range(0, len(first), 500):
        sent += await post_json(clients.ingest, "/v1/events", {"events": first[i : i + 500]})
    setup_s = await wait_scored(clients.scoring_ops, sent, 300, "setup")
    early = read_slack_log(stack.slack_log)
    if early:
        err.print(f"[yellow]{len(early)} Slack messages during setup (none expected)[/]")
    return {"records": sent, "scored_in_s": round(setup_s, 2), "slack_messages": len(early)}


@dataclass
class Clients:
    ingest: httpx.AsyncClient  # with the ingest key
    scoring_ops: httpx.AsyncClient  # /metrics of scoring, with the metrics key
    alerts_ops: httpx.AsyncClient  # /metrics of alerts, with the metrics key


@contextlib.asynccontextmanager
async def clients_of(stack: Stack) -> AsyncIterator[Clients]:
    s = stack.settings
    auth = {"Authorization": f"Bearer {stack.key}", "Content-Type": "application/json"}
    ops_auth = {"Authorization": f"Bearer {stack.metrics_key}"}
    async with (
        httpx.AsyncClient(base_url=stack.base(s.ingest_port), headers=auth, timeout=30) as ingest,
        httpx.AsyncClient(
            base_url=stack.base(s.scoring_port), headers=ops_auth, timeout=10
        ) as scoring_ops,
        httpx.AsyncClient(
            base_url=stack.base(s.alerts_port), headers=ops_auth, timeout=10
        ) as alerts_ops,
    ):
        yield Clients(ingest, scoring_ops, alerts_ops)


@dataclass
class Watch:
    """What the load phase observed, sample by sample (every ``SAMPLE_S``)."""

    wall0: float  # time.time() when the triggers started
    cpu0: dict[str, float | None]
    timeline: list[dict[str, Any]] = field(default_factory=list)
    scored: float = 0.0
    measured_start: float = 0.0
    cpu_m0: dict[str, float | None] | None = None  # CPU at the first measured trigger
    measured_window: tuple[float, float] | None = None  # first measured trigger → last sent
    measured_cpu: dict[str, float | None] = field(default_factory=dict)
    drain_deadline: float | None = None

    def measured_phase(self, triggers: Sequence[Trigger], meter: Meter, sending: bool) -> None:
        """Note when the measured triggers started and, once all are sent, their CPU."""
        if self.cpu_m0 is None and any(t.phase == "measured" and t.sent for t in triggers):
            self.cpu_m0 = meter.now()
            self.measured_start = time.time()
        if not sending and self.measured_window is None and self.cpu_m0 is not None:
            self.measured_window = (self.measured_start, time.time())
            self.measured_cpu = Meter.cores(
                self.cpu_m0, meter.now(), self.measured_window[1] - self.measured_window[0]
            )

    def drained(self, triggers: Sequence[Trigger], got: set[str], drain_timeout: float) -> bool:
        """Every accepted trigger's alert arrived, or the drain timed out."""
        if self.drain_deadline is None:
            self.drain_deadline = time.monotonic() + drain_timeout
        if {t.account_id for t in triggers if t.status == 202} <= got:
            return True
        if time.monotonic() > self.drain_deadline:
            err.print("[yellow]drain timeout: some alerts did not arrive[/]")
            return True
        return False


async def take_sample(
    stack: Stack,
    clients: Clients,
    watch: Watch,
    meter: Meter,
    load: Load,
    triggers: Sequence[Trigger],
    setup_records: int,
) -> tuple[set[str], int, list[float]]:
    """One timeline sample; the trigger accounts alerted so far, the scoring lag and the
    latest measured latencies (for the progress bars)."""
    now = time.time()
    received = read_slack_log(stack.slack_log)
    got = {a for r in received for a in r["accounts"]}
    with contextlib.suppress(httpx.HTTPError):
        watch.scored = await scored_total(clients.scoring_ops)
    accepted = load.accepted + sum(
        TRIGGER_USERS * TRIGGER_DAYS for t in triggers if t.status == 202
    )
    watch.timeline.append(
        {
            "t": round(now - watch.wall0, 2),
            "accepted": accepted,
            "scored": watch.scored,
            "slack": len(received),
            "cpu": meter.now(),
        }
    )
    lat = sorted(
        r["t"] - t.answered
        for t in triggers
        if t.answered and t.phase == "measured"
        for r in received[-200:]
        if t.account_id in r["accounts"]
    )
    return got, int(accepted + setup_records - watch.scored), lat


async def drive_load(
    stack: Stack,
    clients: Clients,
    opts: Options,
    bg: Sequence[tuple[str, list[str]]],
    triggers: list[Trigger],
    offsets: Sequence[float],
    meter: Meter,
    load: Load,
    setup_records: int,
) -> Watch:
    """Background load plus the triggers (sent from a thread at their offsets) until
    every accepted trigger's alert reached Slack or the drain timed out."""
    ingest_url = stack.base(stack.settings.ingest_port)
    stop_bg = asyncio.Event()
    abort = threading.Event()
    total_time = 2.0 + offsets[-1]
    with make_progress(rate=False, info=True) as progress:
        bg_task = progress.add_task(
            "background events", total=int(opts.rate * (total_time + 5)), info=""
        )
        sent_task = progress.add_task("triggers sent", total=len(triggers), info="")
        got_task = progress.add_task("alerts on Slack", total=len(triggers), info="")
        loop = asyncio.get_running_loop()
        load_job = asyncio.create_task(
            background(ingest_url, stack.key, bg, opts, stop_bg, load, progress, bg_task)
        )
        await asyncio.sleep(2.0)  # the load settles before the first trigger
        watch = Watch(wall0=time.time(), cpu0=meter.now())
        thread = threading.Thread(
            target=send_triggers,
            args=(
                ingest_url,
                stack.key,
                triggers,
                offsets,
                abort,
                lambda: loop.call_soon_threadsafe(progress.advance, sent_task, 1),
            ),
            daemon=True,
        )
        thread.start()
        while True:
            await asyncio.sleep(SAMPLE_S)
            got, lag, lat = await take_sample(
                stack, clients, watch, meter, load, triggers, setup_records
            )
            progress.update(got_task, completed=len(got))
            progress.update(bg_task, info=f"scoring lag {max(0, lag):,.0f} events")
            if lat:
                progress.update(got_task, info=f"p50 {percentile(lat, 50):.3f} s (last 200)")
            sending = thread.is_alive()
            watch.measured_phase(triggers, meter, sending)
            if not sending and watch.drained(triggers, got, opts.drain_timeout):
                break
            try:
                stack.check_alive()
            except RuntimeError:
                abort.set()
                raise
        # A little longer: a doubled message would arrive late.
        await asyncio.sleep(2.0)
        stop_bg.set()
        await load_job
        thread.join(5)
    return watch


async def service_figures(
    stack: Stack, clients: Clients, services: Services, triggers: Sequence[Trigger]
) -> dict[str, Any]:
    """What the services say after the load: their latency and batch metrics, the
    stored_at of each alert, and when scoring published each trigger's alert."""
    figures: dict[str, Any] = {
        "delivery": await scrape(
            clients.alerts_ops,
            [
                "healthwatch_alert_delivery_latency_seconds_sum",
                "healthwatch_alert_delivery_latency_seconds_count",
            ],
        ),
        "batches": await scrape(
            clients.scoring_ops,
            ["healthwatch_scoring_batch_seconds_sum", "healthwatch_scoring_batch_seconds_count"],
        ),
        "stages": {},
        "published": {},
    }
    accounts = [t.account_id for t in triggers]
    try:
        figures["stages"] = await stage_times(stack.url, accounts)
    except Exception as exc:  # the schema may have moved on: the split is optional
        err.print(f"[yellow]no stored_at split: {exc!r}[/]")
    try:
        figures["published"] = await published_times(
            services.bootstrap,
            stack.settings.topic(ALERTS_TOPIC),
            stack.settings.kafka_partitions,
            set(accounts),
        )
    except Exception as exc:
        err.print(f"[yellow]no publish-time split: {exc!r}[/]")
    return figures


def trigger_rows(
    triggers: Sequence[Trigger],
    received: Sequence[dict[str, Any]],
    figures: dict[str, Any],
    wall0: float,
) -> list[dict[str, Any]]:
    """One row per trigger: when it was sent and answered, and how long after its 202
    its alert was published, stored and on Slack."""
    by_account: dict[str, list[float]] = {}
    for r in received:
        for a in r["accounts"]:
            by_account.setdefault(a, []).append(r["t"])
    stages, published = figures["stages"], figures["published"]
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
    return rows


def latency_summary(measured: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Latency from the trigger's 202 to Slack, and per stage in between."""

    def of(key: str) -> list[float]:
        return [r[key] for r in measured if key in r]

    def between(first: str, then: str) -> list[float]:
        return [r[then] - r[first] for r in measured if first in r and then in r]

    return {
        "from_202": summarize(of("latency_from_202_s")),
        "from_request_start": summarize(of("latency_from_send_s")),
        "published_by_scoring_after_202": summarize(of("published_after_202_s")),
        "published_to_stored": summarize(between("published_after_202_s", "stored_after_202_s")),
        "stored_by_alerts_service_after_202": summarize(of("stored_after_202_s")),
        "stored_to_slack": summarize(between("stored_after_202_s", "latency_from_202_s")),
    }


def trigger_counts(
    triggers: Sequence[Trigger], rows: Sequence[dict[str, Any]], measured: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "sent_measured": sum(1 for t in triggers if t.phase == "measured" and t.sent),
        "accepted_measured": len(measured),
        "alerts_received_measured": sum(1 for r in measured if r["slack_messages"]),
        "lost": sum(1 for r in measured if not r["slack_messages"]),
        "doubled": sum(1 for r in rows if r["slack_messages"] > 1),
        "warmup_sent": sum(1 for t in triggers if t.phase == "warmup" and t.sent),
        "warmup_received": sum(1 for r in rows if r["phase"] == "warmup" and r["slack_messages"]),
        "trigger_request_ms": summarize(
            [r["request_s"] * 1000 for r in measured if r["request_s"] is not None]
        ),
    }


def background_figures(opts: Options, load: Load, window: tuple[float, float]) -> dict[str, Any]:
    in_window = sum(n for at, n in load.accepted_at if window[0] <= at <= window[1])
    return {
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
    }


def mean_of(metrics: dict[str, float], name: str) -> dict[str, float]:
    """Count and mean of a Prometheus summary or histogram ``name`` (``_sum``/``_count``)."""
    count = metrics[f"{name}_count"]
    return {"count": count, "mean_s": round(metrics[f"{name}_sum"] / max(1.0, count), 4)}


async def run(opts: Options, workdir: Path, services: Services) -> dict[str, Any]:
    stack = await prepare(opts, workdir, services)
    start(stack, workdir)
    rng = random.Random(opts.seed)
    bg = background_accounts(opts.background_accounts, opts.users, stack.run_id)
    triggers = make_triggers(opts, stack.run_id)
    result: dict[str, Any] = {"run_id": stack.run_id, "settings_env": {**stack.extra}}
    pids: dict[str, int | None] = {name: stack.procs[name].pid for name in (*SERVICES, "slack")}
    meter = Meter({**pids, "broker": services.broker_pid}, services.postgres_pid)
    load = Load()
    s = stack.settings
    try:
        await wait_ready(stack.base(s.ingest_port), "/readyz", stack.procs, stack.logs)
        await wait_ready(stack.base(s.scoring_port), "/healthz", stack.procs, stack.logs)
        await wait_ready(stack.base(s.alerts_port), "/healthz", stack.procs, stack.logs)
        async with clients_of(stack) as clients:
            result["setup"] = await set_up_accounts(stack, clients, bg, triggers, opts, rng)
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
            watch = await drive_load(
                stack, clients, opts, bg, triggers, offsets, meter, load, result["setup"]["records"]
            )
            cpu_total = Meter.cores(watch.cpu0, meter.now(), time.time() - watch.wall0)
            figures = await service_figures(stack, clients, services, triggers)
    finally:
        await stop(stack)
    errors = logged_errors(stack)

    received = read_slack_log(stack.slack_log)
    rows = trigger_rows(triggers, received, figures, watch.wall0)
    measured = [r for r in rows if r["phase"] == "measured" and r["status"] == 202]
    trigger_ids = {t.account_id for t in triggers}
    result.update(
        {
            "latency_s": latency_summary(measured),
            "triggers": trigger_counts(triggers, rows, measured),
            "slack": {
                "requests": len(received),
                "unexpected": sum(1 for r in received if not set(r["accounts"]) & trigger_ids),
                "multi_account_messages": sum(1 for r in received if len(r["accounts"]) > 1),
            },
            "background": background_figures(
                opts, load, watch.measured_window or (watch.wall0, time.time())
            ),
            "cpu_cores_measured": watch.measured_cpu,
            "cpu_cores_whole_load": cpu_total,
            "scoring_batches": mean_of(figures["batches"], "healthwatch_scoring_batch_seconds"),
            "alerts_delivery_latency_metric": mean_of(
                figures["delivery"], "healthwatch_alert_delivery_latency_seconds"
            ),
            "timeline": timeline_rows(watch.timeline, result["setup"]["records"]),
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
    plt = pyplot()

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
    save_figure(fig, path)


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
    add_service_options(parser)
    add_output_options(parser, "alert_latency")
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
    quiet_logging()
    started = time.monotonic()
    services, results = run_with_services(
        opts.bootstrap,
        opts.postgres_url,
        prefix="healthwatch-alert-latency-",
        keep=opts.keep,
        body=functools.partial(run, opts),
    )
    result = report(opts, results, services, [os.path.relpath(__file__), *argv])
    result["wall_seconds_total"] = round(time.monotonic() - started, 1)
    print_table(result)
    save_results(result, opts.out, opts.plot, plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
