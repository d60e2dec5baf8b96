"""A report as one print-ready HTML page (A4, charts as inline SVG): open it in a
browser and print to PDF, or mail it as it is."""

from __future__ import annotations

import html
import io
from datetime import date
from typing import Any

from services.reports.data import TITLES, Figures, Report

_ROWS = (
    ("active_users", "Active users in the period", "{:.0f}"),
    ("activated", "Users activated (ever active)", "{:.0f}"),
    ("seats", "Seats purchased", "{:.0f}"),
    ("active_days", "Days with use", "{:.0f}"),
    ("usage_hours", "Online time (hours)", "{:.1f}"),
    ("events", "Actions recorded", "{:.0f}"),
    ("modules_used", "Modules used", "{:.0f}"),
)


def render_html(report: Report) -> str:
    e = html.escape
    title = f"{TITLES[report.kind]}: {report.name}"
    period = f"{report.start.isoformat()} – {report.end.isoformat()}"
    current = report.current
    health = (
        f"{current.get('score')} ({e(str(current.get('band')))}), danger level "
        f"{e(str(current.get('danger_level') or 'none'))}"
        if current
        else "not scored yet"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>
<style>
@page {{ size: A4; margin: 16mm; }}
body {{ font-family: system-ui, sans-serif; color: #222; max-width: 180mm; margin: auto; }}
h1 {{ font-size: 20pt; margin-bottom: 0; }} h2 {{ font-size: 13pt; margin-top: 18pt; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ text-align: left; padding: 3pt 6pt; border-bottom: 1px solid #ddd; }}
td.n {{ text-align: right; font-variant-numeric: tabular-nums; }}
.muted {{ color: #777; }} .up {{ color: #2e7d32; }} .down {{ color: #c62828; }}
figure {{ margin: 8pt 0; page-break-inside: avoid; }} svg {{ max-width: 100%; height: auto; }}
</style></head><body>
<h1>{e(title)}</h1>
<p class="muted">{e(report.account_id)} · tier {e(report.tier or "n/a")} · {period}</p>
<p>Health today: <b>{health}</b>.</p>
<h2>Usage against the average of the {e(report.tier or "")} tier</h2>
{_figures_table(report.figures, report.tier_average, report.tier_accounts)}
<h2>Active users per week</h2>
<figure>{_weekly_svg(report)}</figure>
<h2>Health score</h2>
<figure>{_score_svg(report)}</figure>
<h2>Modules used</h2>
{_modules(report)}
<h2>Issues</h2>
<p>{report.tickets_opened} tickets opened and {report.tickets_solved} solved in the period;
{len(report.open_tickets)} open now.</p>
{_tickets(report)}
<p class="muted">Made by healthwatch from event data; figures count distinct users and
calendar days in the service's time zone.</p>
</body></html>
"""


def _fmt(fmt: str, value: float | None) -> str:
    return "n/a" if value is None else fmt.format(value)


def _figures_table(mine: Figures, average: Figures | None, peers: int) -> str:
    rows = []
    for attr, label, fmt in _ROWS:
        value = getattr(mine, attr)
        avg = getattr(average, attr) if average is not None else None
        position = ""
        if value is not None and avg:
            ratio = value / avg
            cls = "up" if ratio >= 1 else "down"
            position = f'<span class="{cls}">{ratio:.0%} of average</span>'
        rows.append(
            f"<tr><td>{label}</td><td class=n>{_fmt(fmt, value)}</td>"
            f"<td class=n>{_fmt(fmt, avg)}</td><td>{position}</td></tr>"
        )
    head = (
        f"<tr><th></th><th>this account</th><th>tier average ({peers} accounts)</th><th></th></tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>"


def _modules(report: Report) -> str:
    if not report.modules:
        return "<p class=muted>No module use recorded in the period.</p>"
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td class=n>{uses}</td></tr>"
        for name, uses in report.modules
    )
    return f"<table><tr><th>module</th><th>uses</th></tr>{rows}</table>"


def _tickets(report: Report) -> str:
    if not report.open_tickets:
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(str(t['ticket_id']))}</td><td>{html.escape(str(t['priority']))}</td>"
        f"<td>{html.escape(str(t['type']))}</td><td>{t['opened']}</td>"
        f"<td class=n>{t['age_days']}</td></tr>"
        for t in report.open_tickets
    )
    head = "<tr><th>ticket</th><th>priority</th><th>type</th><th>opened</th><th>days open</th></tr>"
    return f"<table>{head}{rows}</table>"


def _svg(fig: object) -> str:
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[arg-type]
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _weekly_svg(report: Report) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 2.4))
    weeks = report.weekly_active_users
    ax.bar([w.isoformat() for w, _ in weeks], [n for _, n in weeks], color="#1565c0")
    if report.figures.seats:
        ax.axhline(report.figures.seats, color="#999", linestyle="--", linewidth=1)
        ax.text(0, report.figures.seats, " seats", va="bottom", color="#777", fontsize=8)
    ax.set_ylabel("users")
    ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    ax.spines[["top", "right"]].set_visible(False)
    return _svg(fig)


def _score_svg(report: Report) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 2.4))
    points: list[tuple[date, int]] = [(d, s) for d, s, _ in report.scores if s is not None]
    ax.axhspan(0, 40, color="#ffebee")
    ax.axhspan(40, 70, color="#fffde7")
    ax.axhspan(70, 100, color="#e8f5e9")
    if points:
        ax.plot([d for d, _ in points], [s for _, s in points], marker="o", color="#222")
    ax.set_ylim(0, 100)
    ax.set_xlim(report.start, report.end)
    ax.set_ylabel("score")
    ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    ax.spines[["top", "right"]].set_visible(False)
    return _svg(fig)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = "none"  # text stays text: smaller, selectable
    return plt
