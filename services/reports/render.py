"""A report as one print-ready HTML document (A4, charts as inline SVG), from the
kind's own template under ``templates/``: the monthly usage report, the enterprise
tier's usage report every two months (RP-05) and the quarterly business review (RP-04).

Charts hold numbers and digits only (their captions are HTML, translated), so no font
with Chinese glyphs is needed to draw them.
"""

from __future__ import annotations

import hashlib
import io
import re
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from services.reports import content
from services.reports.data import Figures, Report
from services.reports.fmt import Fmt

TEMPLATES = Path(__file__).resolve().parent / "templates"
TITLES = {
    "usage": "Usage report",
    "bimonthly": "Bi-monthly usage report",
    "qbr": "Quarterly business review",
}
# The usage figures beside the average of comparable customers: label, attribute, digits.
USAGE_ROWS = (
    ("Active users in the period", "active_users", 0),
    ("Users activated so far", "activated", 0),
    ("Days with use", "active_days", 0),
    ("Online time (hours)", "usage_hours", 1),
    ("Actions recorded", "events", 0),
    ("Modules used", "modules_used", 0),
)
STATUS = {"open": "In progress", "pending": "Waiting for your reply", "solved": "Resolved"}
STATUS_DEFAULT = "Closed"
TYPES = {"question": "Question", "bug": "Fault", "feature_request": "Feature request"}
PRIORITIES = {"low": "Low", "normal": "Normal", "high": "High", "urgent": "Urgent"}


@cache
def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(("html",)),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_html(report: Report, fmt: Fmt | None = None, pdf_href: str | None = None) -> str:
    """The report in ``fmt``'s language; ``pdf_href``: a link to its PDF (on screen only)."""
    f = fmt or Fmt()
    template = _environment().get_template(f"{report.kind}.html")
    return template.render(_values(report, f), _=f.t, pdf_href=pdf_href)


def _values(r: Report, f: Fmt) -> dict[str, Any]:
    goals = content.goals(r, f)
    title = f.t(TITLES[r.kind])
    return {
        "r": r,
        "f": f,
        "lang": f.lang,
        "heading": f.t("{title}: {name}", title=title, name=r.name),
        "period": f.t("{start} to {end}", start=f.day(r.start), end=f.day(r.end)),
        "usage_rows": _usage_rows(r.figures, r.tier_average, f),
        "plan_rows": _plan_rows(r, f),
        "modules": _modules(r, f),
        "tickets": [_ticket(t, f) for t in r.tickets],
        "goals": goals,
        "summary": content.summary(r, f, goals),
        "recommendations": content.recommendations(r, f),
        "renewal": content.renewal(r, f),
        "subscription": _subscription(r, f),
        "weekly_chart": Markup(_weekly_svg(r, f)),
        "score_chart": Markup(_score_svg(r, f)),
    }


def _usage_rows(mine: Figures, average: Figures | None, f: Fmt) -> list[dict[str, Any]]:
    """Each figure, the comparable customers' average and the position against it."""
    rows = []
    for label, attr, digits in USAGE_ROWS:
        value = getattr(mine, attr)
        avg = getattr(average, attr) if average is not None else None
        ratio = value / avg if avg else None
        # One more digit for an average that would read as the value though it is not
        # ("8 | 8 | 105% of average").
        shown = digits + 1 if avg and f.num(avg, digits) == f.num(value, digits) else digits
        rows.append(
            {
                "label": f.t(label),
                "value": f.num(value, digits),
                "average": f.num(avg, shown if round(ratio or 1, 2) != 1 else digits),
                "position": f.t("{share} of average", share=f.pct(ratio)) if ratio else "",
                "above": ratio is not None and ratio >= 1,
            }
        )
    return rows


def _plan_rows(r: Report, f: Fmt) -> list[tuple[str, str]]:
    """Seats purchased beside the seats used: facts, no judgement in colour."""
    fig, inputs = r.figures, r.current.get("inputs") or {}
    seats = fig.seats
    weekly = inputs.get("active_user_share_7d")
    return [
        (f.t("Seats purchased"), f.num(seats)),
        (f.t("Users activated so far"), f.num(fig.activated)),
        (f.t("Active users in the period"), f.num(fig.active_users)),
        (f.t("Share of seats activated"), f.pct(fig.activated / seats) if seats else f.num(None)),
        (f.t("Share of seats in use last week"), f.pct(weekly)),
    ]


def _subscription(r: Report, f: Fmt) -> list[tuple[str, str]]:
    facts, out = r.facts, []
    if facts.get("plan"):
        out.append((f.t("Plan"), str(facts["plan"])))
    arr = facts.get("arr") or (facts["mrr"] * 12 if facts.get("mrr") is not None else None)
    if arr is not None:
        out.append((f.t("Annual subscription"), f.money(float(arr), facts.get("currency"))))
    if facts.get("contract_start"):
        out.append((f.t("Contract start"), f.day(content.parse_day(facts["contract_start"]))))
    return out


def _modules(r: Report, f: Fmt) -> list[dict[str, str]]:
    """The modules used, most used first, with their share of all actions and of days."""
    total = sum(m.uses for m in r.modules) or 1
    days = (r.end - r.start).days + 1
    return [
        {
            "name": readable(m.name),
            "uses": f.num(m.uses),
            "share": f.pct(m.uses / total),
            "days": f.t("{n} of {days}", n=f.num(m.days), days=f.num(days)),
        }
        for m in r.modules
    ]


def readable(name: str) -> str:
    """A module's id in words ("custom_objects" → "custom objects"); its case is the
    product's own ("CRM", "crm")."""
    return " ".join(name.replace("_", " ").replace("-", " ").split()) or name


def _ticket(t: dict[str, Any], f: Fmt) -> dict[str, Any]:
    return {
        "id": str(t["ticket_id"]),
        "open": t["open"],
        "type": f.t(TYPES.get(t["type"], "Other")),
        "priority": f.t(PRIORITIES.get(t["priority"], "Normal")),
        "status": f.t(STATUS.get(t["status"], STATUS_DEFAULT)),
        "opened": f.day(t["opened"]),
        "solved": f.day(t["solved"]) if t["solved"] else "",
        "days": f.num(t["age_days"]),
    }


def _svg(fig: object) -> str:
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[arg-type]
    text = buffer.getvalue()
    svg = text[text.index("<svg") :]
    # Each chart's ids its own: matplotlib numbers them per figure ("axes_1", its glyphs
    # by font), so a report's charts repeated them in one document, and WeasyPrint
    # logged "Anchor defined twice" 82 times for one PDF (found from outside).
    prefix = "c" + hashlib.blake2s(svg.encode(), digest_size=4).hexdigest() + "-"
    return _SVG_REF.sub(lambda m: m.group(1) + prefix, svg)


# Where an SVG names its ids: defines one, refers to one by url() or by href.
_SVG_REF = re.compile(r'(\bid="|url\(#|href="#)')


def _weekly_svg(r: Report, f: Fmt) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 2.2))
    weeks = r.weekly_active_users
    ax.bar([f.tick(w) for w, _ in weeks], [n for _, n in weeks], color="#1565c0")
    if r.figures.seats:
        ax.axhline(r.figures.seats, color="#777", linestyle="--", linewidth=1)
    ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    ax.spines[["top", "right"]].set_visible(False)
    return _svg(fig)


def _score_svg(r: Report, f: Fmt) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 2.2))
    points = [(d, s) for d, s, _ in r.scores if s is not None]
    ax.axhspan(0, 40, color="#fdecea")
    ax.axhspan(40, 70, color="#fff8e1")
    ax.axhspan(70, 100, color="#edf7ee")
    if points:
        ax.plot([d for d, _ in points], [s for _, s in points], marker="o", color="#222")
    ax.set_ylim(0, 100)
    ax.set_xlim(r.start, r.end)
    ticks = [r.start + (r.end - r.start) * k / 6 for k in range(7)]
    ax.set_xticks(ticks, [f.tick(d) for d in ticks])
    ax.tick_params(axis="x", labelsize=7)
    ax.spines[["top", "right"]].set_visible(False)
    return _svg(fig)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = "none"  # text stays text: smaller, selectable
    plt.rcParams["svg.hashsalt"] = "healthwatch"  # the same ids on every run
    return plt
