"""The ingest bench's results: the JSON report, its warnings and the printed table."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from lib.console import out
from lib.measure import BUSY_OTHER_CORES, git_state, machine_info, percentile
from rich.table import Table

from ingest.meter import Phase, median
from ingest.options import Options
from ingest.phases import Outcome
from ingest.sides import SIDES

DATABASE_NOTE = (
    "SQLite file in the temp dir: it only serves API-key lookups, "
    "which KeyStore caches in-process (no database round trip per request)"
)


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
