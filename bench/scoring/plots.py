"""The scoring bench's PNG plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lib.results import pyplot, save_figure


def _throughput_bars(left: Any, result: dict[str, Any]) -> None:
    """Left panel: events/s of the bare consumer, scoring per batch size and the import."""
    from matplotlib.ticker import StrMethodFormatter

    labels, values, colors = [], [], []
    for data in result["scoring"].values():
        b = data["scoring_batch_max"]
        labels += [f"bare\nconsumer\n({b})", f"scoring\nbatch {b}"]
        values += [data["bare"]["events_per_s"] or 0, data["scoring"]["events_per_s"] or 0]
        colors += ["#8c8c8c", "#4c72b0"]
    for name, label in (("postgresql", "import\nPostgreSQL"), ("sqlite", "import\nSQLite")):
        if name in result["import"]:
            labels.append(label)
            values.append(result["import"][name]["events_per_s"] or 0)
            colors.append("#55a868")
    bars = left.bar(range(len(values)), values, color=colors)
    left.set_xticks(range(len(values)), labels, fontsize=7)
    left.set_yscale("log")
    left.set_ylim(min(v for v in values if v > 0) / 3, max(values) * 4)
    left.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    for bar, value in zip(bars, values, strict=True):
        left.annotate(
            f"{value:,.0f}",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=7,
            xytext=(0, 2),
            textcoords="offset points",
        )
    ratios = ", ".join(
        f"{d['scoring_batch_max']}: {d['ratio']:.3f}"
        for d in result["scoring"].values()
        if d["ratio"] is not None
    )
    left.axhline(200_000, color="#55a868", linestyle="--", linewidth=0.8)
    left.annotate(
        "import target 200k/s",
        (len(values) - 0.5, 200_000),
        ha="right",
        va="bottom",
        fontsize=7,
        color="#55a868",
    )
    left.set_ylim(top=max(max(values), 200_000) * 4)
    left.set_title(f"events/s (log scale); scoring/bare {ratios}", fontsize=9)
    left.grid(axis="y", alpha=0.3)
    left.set_axisbelow(True)


def _state_bars(right: Any, result: dict[str, Any]) -> None:
    """Right panel: the hot usage value per account (median; the p90 as a tick) against
    the 2 KB target."""
    names, median, p90 = [], [], []
    for key, s in result["state"].items():
        spread = s["hot_state"].get("bytes") or {}
        how = key.replace("kafka_", "Kafka ") if key.startswith("kafka_") else "import"
        names.append(f"{s['accounts']:,}\n{how}")
        median.append(spread.get("median") or 0)
        p90.append(spread.get("p90") or 0)
    xs = range(len(names))
    right.bar(xs, median, color="#4c72b0", label="median")
    right.scatter(xs, p90, color="#dd8452", marker="_", s=200, label="p90")
    right.axhline(2048, color="#55a868", linestyle="--", linewidth=0.8, label="target 2 KB")
    right.set_xticks(xs, names, fontsize=7)
    right.set_ylabel("bytes per account", fontsize=8)
    right.set_title("hot state: account_usage value per account", fontsize=9)
    right.set_ylim(0, max([*p90, 2048]) * 1.3)
    right.legend(fontsize=7, loc="upper center", ncol=3)
    right.grid(axis="y", alpha=0.3)
    right.set_axisbelow(True)


def plot(result: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(8, 4.5), dpi=100, gridspec_kw={"width_ratios": [3, 2]}
    )
    _throughput_bars(left, result)
    _state_bars(right, result)
    m = result["machine"]
    pg = str(m.get("postgresql") or "?").split()[0]
    fig.suptitle(
        f"healthwatch scoring: {result['workload']['records_total']:,} records, "
        f"{result['workload']['accounts']:,} accounts; {m['nproc']} CPUs, Kafka {m['kafka']}, "
        f"PostgreSQL {pg}, {result['date'][:10]}",
        fontsize=9,
    )
    save_figure(fig, path)
