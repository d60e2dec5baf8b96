"""The alert latency bench's JSON report and printed table."""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lib.console import out
from lib.measure import BUSY_OTHER_CORES, changed_files, git_state, machine_info
from lib.services import Services
from rich.table import Table

import shared.config as config_module
from alerts.figures import TARGET_P99_S
from alerts.options import Options
from alerts.stack import ALERTING_TOML
from alerts.workload import TRIGGER_DAYS, TRIGGER_USERS
from shared.config import Settings


def warnings_for(opts: Options, results: dict[str, Any]) -> list[str]:
    """What makes this run's figures doubtful: a busy machine, a load short of its
    rate, lost or doubled triggers, stray Slack messages, scoring falling behind."""
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
    return warnings


def report(
    opts: Options, results: dict[str, Any], services: Services, argv: Sequence[str]
) -> dict[str, Any]:
    machine = machine_info(services.kafka_version)
    for lib in ("asyncpg", "sqlalchemy", "slack_sdk", "aiohttp"):
        with contextlib.suppress(Exception):
            import importlib.metadata

            machine["libraries"][lib] = importlib.metadata.version(lib)
    warnings = warnings_for(opts, results)
    return {
        "benchmark": "alert latency: HTTP ingest to Slack stand-in, under background load",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": shlex.join(["python", *argv]),
        "git": {**git_state(), "changed_files": changed_files()},
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
            "scoring_processes": opts.scoring_processes,
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
