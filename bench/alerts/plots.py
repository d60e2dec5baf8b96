"""The alert latency bench's PNG plot."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from lib.results import pyplot, save_figure

from alerts.figures import TARGET_P99_S


def _latency_cdf(left: Any, lat: list[float], result: dict[str, Any]) -> None:
    """Left panel: the CDF of the alert latencies, their quantiles, the target and the
    stage medians."""
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


def _latency_over_time(right: Any, rows: list[dict[str, Any]], result: dict[str, Any]) -> None:
    """Right panel: each alert's latency over time, with the background load and the
    scoring lag."""
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


def plot(result: dict[str, Any], path: Path) -> None:
    plt = pyplot()

    rows = [
        r for r in result["per_trigger"] if r["phase"] == "measured" and "latency_from_202_s" in r
    ]
    lat = sorted(r["latency_from_202_s"] for r in rows)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), dpi=100)
    _latency_cdf(left, lat, result)
    _latency_over_time(right, rows, result)
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
