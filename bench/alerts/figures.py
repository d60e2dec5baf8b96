"""The alert latency bench's figures from what it measured: the timeline, each trigger's stage
times and the latency summary.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lib.measure import percentile

from alerts.options import Options
from alerts.probes import Meter
from alerts.workload import Load, Trigger

TARGET_P99_S = 1.0  # the target, grouping off


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
