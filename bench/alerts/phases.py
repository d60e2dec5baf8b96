"""The alert latency bench's run: the stack started, the load driven while sampling the services,
the triggers measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from lib.console import err, make_progress
from lib.measure import percentile
from lib.services import Services

from alerts.figures import (
    background_figures,
    latency_summary,
    mean_of,
    timeline_rows,
    trigger_counts,
    trigger_rows,
)
from alerts.options import Options
from alerts.probes import Meter, published_times, scored_total, scrape, stage_times, wait_ready
from alerts.slack import read_slack_log
from alerts.stack import (
    Clients,
    Stack,
    clients_of,
    logged_errors,
    prepare,
    set_up_accounts,
    start,
    stop,
)
from alerts.workload import (
    TRIGGER_DAYS,
    TRIGGER_USERS,
    Load,
    Trigger,
    background,
    background_accounts,
    make_triggers,
    send_triggers,
    trigger_body,
)
from shared.bus.factory import ALERTS_TOPIC

SAMPLE_S = 1.0  # timeline resolution


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
            [clients.alerts_ops],
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


async def run(opts: Options, workdir: Path, services: Services) -> dict[str, Any]:
    stack = await prepare(opts, workdir, services)
    start(stack, workdir)
    rng = random.Random(opts.seed)
    bg = background_accounts(opts.background_accounts, opts.users, stack.run_id)
    triggers = make_triggers(opts, stack.run_id)
    result: dict[str, Any] = {"run_id": stack.run_id, "settings_env": {**stack.extra}}
    pids: dict[str, int | None] = {
        name: stack.procs[name].pid for name in (*stack.services, "slack")
    }
    meter = Meter({**pids, "broker": services.broker_pid}, services.postgres_pid)
    load = Load()
    s = stack.settings
    try:
        await wait_ready(stack.base(s.ingest_port), "/readyz", stack.procs, stack.logs)
        for port in stack.scoring_ports:
            await wait_ready(stack.base(port), "/healthz", stack.procs, stack.logs)
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
