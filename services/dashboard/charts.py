"""Chart.js configurations (type, data, options) built from page data.

The page embeds them as JSON; ``static/dashboard.js`` hands each to Chart.js for the
canvas naming it (``<canvas data-chart="score">``).
"""

from __future__ import annotations

from datetime import UTC, date
from typing import Any

from shared.i18n import DEFAULT_LANGUAGE, format_when, translate
from shared.i18n.alert_text import rule_name

COLOURS = {
    "red": "#d64545",
    "yellow": "#d9a21b",
    "green": "#3c9d5d",
    "unscored": "#9aa3ad",
    "blue": "#3b6fd4",
    "purple": "#8a55c9",
    "grey": "#6b7480",
}
# Bands: red < 40 ≤ yellow < 70 ≤ green (the default model's thresholds).
BAND_LINES = ((40, "red | yellow (40)", COLOURS["red"]), (70, "yellow | green (70)", "#2e7d4a"))

Chart = dict[str, Any]
X_TICKS = {"maxTicksLimit": 8, "maxRotation": 0, "autoSkipPadding": 16}


def day_labels(days: list[str], lang: str) -> list[str]:
    """A chart's ISO days as its readers write them ("Dec 3, 2026", "2026年12月3日"):
    an axis of "2026-12-03" read as code to a Chinese lead."""
    return [format_when(lang, date.fromisoformat(day), UTC) for day in days]


def _line(labels: list[str], series: list[dict[str, Any]], y: dict[str, Any]) -> Chart:
    return {
        "type": "line",
        "data": {"labels": labels, "datasets": series},
        "options": {
            "scales": {"y": y, "x": {"ticks": X_TICKS}},
            "plugins": {"legend": {"display": len(series) > 1}},
            "spanGaps": True,
        },
    }


def _grouped(labels: list[str], datasets: list[dict[str, Any]], y: dict[str, Any]) -> Chart:
    """Vertical bars, one dataset per measure side by side within each group."""
    return {
        "type": "bar",
        "data": {"labels": labels, "datasets": datasets},
        "options": {"scales": {"y": y, "x": {"ticks": X_TICKS}}},
    }


def _series(label: str, values: list[Any], colour: str, **extra: Any) -> dict[str, Any]:
    return {
        "label": label,
        "data": values,
        "borderColor": colour,
        "backgroundColor": colour,
        "pointRadius": 2,
        "borderWidth": 2,
        "tension": 0.2,
        **extra,
    }


def _pct(values: list[float | None]) -> list[float | None]:
    return [round(v * 100, 1) if v is not None else None for v in values]


def _bars(labels: list[str], values: list[Any], colours: list[str] | str, label: str) -> Chart:
    return {
        "type": "bar",
        "data": {
            "labels": labels,
            "datasets": [
                {"label": label, "data": values, "backgroundColor": colours, "maxBarThickness": 28}
            ],
        },
        "options": {
            "indexAxis": "y",
            "plugins": {"legend": {"display": False}},
            "scales": {"x": {"beginAtZero": True, "ticks": {"precision": 0}}},
        },
    }


COUNT_AXIS = {"beginAtZero": True, "ticks": {"precision": 0}}
PERCENT_AXIS = {"min": 0, "max": 100, "title": {"display": True, "text": "%"}}


def lead_charts(d: dict[str, Any], lang: str = DEFAULT_LANGUAGE) -> dict[str, Chart]:
    days = day_labels(d["days"], lang)
    bands = list(d["bands"])
    rules = list(d["alerts_by_rule"])
    return {
        "customers": _line(
            days,
            [_series(translate(lang, "Customers"), d["customers"], COLOURS["blue"])],
            COUNT_AXIS,
        ),
        "active_users": _line(
            days,
            [_series(translate(lang, "Active users"), d["active_users"], COLOURS["purple"])],
            COUNT_AXIS,
        ),
        "shares": _line(
            days,
            [
                _series(
                    translate(lang, "Stably active (≥50% of seats)"),
                    _pct(d["stable_share"]),
                    "#2e7d4a",
                ),
                _series(translate(lang, "Churned share"), _pct(d["churned_share"]), COLOURS["red"]),
            ],
            PERCENT_AXIS,
        ),
        "bands": {
            "type": "doughnut",
            "data": {
                "labels": [translate(lang, b) for b in bands],
                "datasets": [
                    {
                        "label": translate(lang, "Accounts in the band"),
                        "data": [d["bands"][b] for b in bands],
                        "backgroundColor": [COLOURS.get(b, COLOURS["grey"]) for b in bands],
                    }
                ],
            },
            "options": {"plugins": {"legend": {"position": "right"}}},
        },
        "alerts_by_rule": _bars(
            [rule_name(lang, rule) for rule in rules],
            [d["alerts_by_rule"][r] for r in rules],
            COLOURS["red"],
            translate(lang, "Open alerts"),
        ),
    }


def account_charts(a: dict[str, Any], lang: str = DEFAULT_LANGUAGE) -> dict[str, Chart]:
    """The account page's charts. Days scored on their own show a point; days carrying
    the latest earlier score (as the history API answers them) are drawn without one;
    today, still under way, is labelled as partial with a hollow point, so a half-day's
    use does not read as a drop."""
    h = a["history"]
    days = day_labels(h["days"], lang)
    if h["partial"] and days:
        days[-1] = translate(lang, "{day} (today, so far)", day=days[-1])
    lines = [
        _series(
            translate(lang, label),
            [value] * len(days),
            colour,
            borderDash=[6, 4],
            pointRadius=0,
            borderWidth=1,
        )
        for value, label, colour in BAND_LINES
    ]
    colours = [COLOURS.get(b, COLOURS["grey"]) for b in h["bands"]]
    fills = list(colours)
    if h["partial"] and fills:
        fills[-1] = "#ffffff"
    score = _series(
        translate(lang, "Health score"),
        h["scores"],
        COLOURS["blue"],
        pointBackgroundColor=fills,
        pointBorderColor=colours,
        pointRadius=[3 if recorded else 0 for recorded in h["recorded"]],
    )
    modules = a["modules"]
    return {
        "score": _line(days, [score, *lines], {"min": 0, "max": 100}),
        "active_share": _line(
            days,
            [
                _series(
                    translate(lang, "Active users over 7 days ÷ seats"),
                    h["active_share"],
                    COLOURS["purple"],
                )
            ],
            PERCENT_AXIS,
        ),
        "modules": _bars(
            [m["module"] for m in modules],
            [m["count_28d"] for m in modules],
            COLOURS["blue"],
            translate(lang, "Uses over 28 days"),
        ),
    }
