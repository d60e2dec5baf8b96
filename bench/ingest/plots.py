"""The ingest bench's PNG plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lib.results import pyplot, save_figure


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
