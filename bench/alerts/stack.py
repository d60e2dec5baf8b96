"""The services under test: their settings and alerting rules, the Slack stand-in and the three
services in their own processes, and the clients that talk to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shlex
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from lib.console import err
from lib.processes import service_command, service_env, spawn, stop_process, tail
from lib.services import Services, create_database

import devservices
from alerts.options import Options
from alerts.probes import post_json, wait_scored
from alerts.slack import read_slack_log
from alerts.workload import TRIGGER_SEATS, Trigger, background_body, facts_body
from shared.auth import Scope, create_key
from shared.config import Settings
from shared.storage.db import create_engine

# The bench script, run again in its own process as the Slack stand-in.
SCRIPT = Path(__file__).resolve().parents[1] / "alert_latency_bench.py"


SERVICES = ("ingest", "scoring", "alerts")


def service_names(scoring_processes: int) -> tuple[str, ...]:
    """The run's service processes: ``scoring``, then ``scoring-2``… for more than one
    scoring process (one consumer group: they share the partitions)."""
    extra = tuple(f"scoring-{n}" for n in range(2, scoring_processes + 1))
    return ("ingest", "scoring", *extra, "alerts")


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
    services: tuple[str, ...] = SERVICES  # the service processes (``service_names``)
    scoring_ports: list[int] = field(default_factory=list)  # each scoring process's
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
    processes = service_names(opts.scoring_processes)
    logs = {name: workdir / f"{name}.log" for name in (*processes, "slack")}
    ports = [settings.scoring_port] + [free_port() for _ in range(opts.scoring_processes - 1)]
    return Stack(
        run_id,
        settings,
        url,
        key,
        metrics_key,
        extra,
        logs,
        slack_log,
        slack_port,
        processes,
        ports,
    )


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
    commands = {name: service_command(name.partition("-")[0]) for name in stack.services}
    err.print(f"[bold]starting[/] {', '.join(shlex.join(c) for c in commands.values())}")
    env = service_env(stack.settings, stack.extra)
    ports = iter(stack.scoring_ports[1:])
    for name, command in commands.items():
        own = {"HEALTHWATCH_SCORING_PORT": str(next(ports))} if name.startswith("scoring-") else {}
        stack.procs[name] = spawn(command, env | own, workdir, stack.logs[name])


async def stop(stack: Stack) -> None:
    for name in (*stack.services, "slack"):
        if name in stack.procs:
            await asyncio.to_thread(stop_process, stack.procs[name])


def logged_errors(stack: Stack) -> dict[str, list[str]]:
    """The ERROR lines and tracebacks each stopped service logged (and its exit code, if
    it did not stop cleanly)."""
    for name in stack.services:
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
        for name in stack.services
    }


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
    scoring_ops: list[httpx.AsyncClient]  # /metrics of each scoring process (metrics key)
    alerts_ops: httpx.AsyncClient  # /metrics of alerts, with the metrics key


@contextlib.asynccontextmanager
async def clients_of(stack: Stack) -> AsyncIterator[Clients]:
    s = stack.settings
    auth = {"Authorization": f"Bearer {stack.key}", "Content-Type": "application/json"}
    ops_auth = {"Authorization": f"Bearer {stack.metrics_key}"}
    async with contextlib.AsyncExitStack() as scoring:
        scoring_ops = [
            await scoring.enter_async_context(
                httpx.AsyncClient(base_url=stack.base(port), headers=ops_auth, timeout=10)
            )
            for port in stack.scoring_ports
        ]
        async with (
            httpx.AsyncClient(
                base_url=stack.base(s.ingest_port), headers=auth, timeout=30
            ) as ingest,
            httpx.AsyncClient(
                base_url=stack.base(s.alerts_port), headers=ops_auth, timeout=10
            ) as alerts_ops,
        ):
            yield Clients(ingest, scoring_ops, alerts_ops)
