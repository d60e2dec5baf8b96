"""The renewals pages: the renewal pipeline of a quarter with its forecast, retention
over quarters and any period, and the opportunities list (issue 16 point 3).

``/ui/renewals?quarter=2027Q1``, ``/ui/retention?from=&to=&by=tier|csm|cohort`` and
``/ui/opportunities`` read what ``/v1/renewals``, ``/v1/retention`` and
``/v1/opportunities`` answer, through the same functions; the viewer's key decides
what they see, a CSM their own portfolio. A quarter or period the page cannot read
falls back to the default one (a page never answers an error for a typed address).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.responses import Response

from services.alerts.opportunities import opportunities
from services.dashboard.admin_pages import _store
from services.dashboard.auth import context, viewer
from services.dashboard.charts import COLOURS, PERCENT_AXIS, Chart, _line, _pct, _series
from services.dashboard.routes import language, page
from services.scoring.retention import (
    DEFAULT_CURRENCY,
    FORECASTS,
    GROUPS,
    ForecastRule,
    Quarter,
    check_period,
    quarters_before,
    renewals,
    retention_between,
    retention_by_quarter,
)
from shared.alerting.schema import Alerting
from shared.clock import utcnow
from shared.i18n import N_, translate
from shared.web import ClientError

router = APIRouter(prefix="/ui", include_in_schema=False)

# Quarters the picker offers around the current one: the past year (renewals that
# slipped) and the coming year (the handbook starts renewal work 3 months out, RN-01,
# and strategic accounts need more lead time).
PICKER_BEHIND, PICKER_AHEAD = 4, 4
# Quarters the retention charts cover: two years, enough to see a trend and a season.
CHART_QUARTERS = 8
# Opportunities shown on one page: all of a portfolio's, usually (a handful per CSM).
OPPORTUNITIES_SHOWN = 200
FORECAST_LABELS = {
    "commit": N_("Commit"),
    "likely": N_("Likely"),
    "at_risk": N_("At risk"),
}
REASON_LABELS = {
    "red": N_("red health"),
    "danger_high": N_("high danger"),
    "danger_normal": N_("normal danger"),
    "danger_mild": N_("mild danger"),
    "detractor": N_("NPS detractor"),
    "green": N_("green health"),
    "yellow": N_("yellow health"),
    "unscored": N_("not scored yet"),
}
GROUP_LABELS = {"tier": N_("Tier"), "csm": N_("CSM"), "cohort": N_("Cohort")}


def _today(request: Request) -> date:
    return utcnow().astimezone(context(request).settings.zone).date()


def _quarter(text: str | None, today: date) -> Quarter:
    try:
        return Quarter.parse(text) if text else Quarter.of(today)
    except ClientError:
        return Quarter.of(today)


@router.get("/renewals", response_class=HTMLResponse)
async def renewals_view(request: Request) -> Response:
    """The quarter's renewals with their forecast and the totals per class."""
    who = await viewer(request)
    today = _today(request)
    quarter = _quarter(request.query_params.get("quarter"), today)
    rule = ForecastRule.of(context(request).settings)
    async with context(request).engine.connect() as conn:
        data = await renewals(conn, who.key, quarter, today, rule)
    current = Quarter.of(today)
    picker = [*quarters_before(current, PICKER_BEHIND), current]
    while len(picker) < PICKER_BEHIND + 1 + PICKER_AHEAD:
        picker.append(picker[-1].next())
    values = {
        "data": data,
        "quarter": quarter,
        "picker": [str(q) for q in picker],
        "previous": str(quarter.previous()),
        "next": str(quarter.next()),
        "forecasts": FORECASTS,
        "forecast_labels": FORECAST_LABELS,
        "reason_labels": REASON_LABELS,
        "money": {name: _moneys(data["totals"][name]) for name in FORECASTS},
    }
    return page(request, "renewals.html", values, who)


def _moneys(sums: Mapping[str, Any]) -> dict[str | None, float]:
    """Per-currency amounts for the ``moneys`` filter (None: the service's currency)."""
    return _per_currency(sums["arr_by_currency"])


def _per_currency(amounts: Mapping[str, Any]) -> dict[str | None, Any]:
    """Keyed for the ``moneys`` filter: None for the service's currency."""
    return {None if c == DEFAULT_CURRENCY else c: v for c, v in amounts.items()}


def _period(params: Mapping[str, str], today: date) -> tuple[date, date]:
    """``from``/``to`` when both read as a valid period; else the last four whole
    quarters (a year of renewals, so each account's yearly contract is in it once)."""
    try:
        start, end = date.fromisoformat(params["from"]), date.fromisoformat(params["to"])
        check_period(start, end)
    except (KeyError, ValueError, ClientError):
        current = Quarter.of(today)
        return quarters_before(current, 4)[0].start, current.start
    return start, end


@router.get("/retention", response_class=HTMLResponse)
async def retention_view(request: Request) -> Response:
    """GRR, NRR and logo retention per quarter (charts) and, for a period, the
    breakdown by tier, CSM or cohort."""
    who = await viewer(request)
    ctx = context(request)
    today = _today(request)
    start, end = _period(request.query_params, today)
    by = request.query_params.get("by")
    by = by if by in GROUPS else "tier"
    quarters = quarters_before(Quarter.of(today), CHART_QUARTERS)
    async with ctx.engine.connect() as conn:
        period = await retention_between(conn, who.key, start, end, by, ctx.settings.zone)
        series = await retention_by_quarter(conn, who.key, quarters, ctx.settings.zone)
    values = {
        "period": period,
        "rows": [_shown("all", period), *(_shown(g[by], g) for g in period["groups"])],
        "start": start,
        "end": end,
        "by": by,
        "groups": GROUP_LABELS,
        "quarters": [_shown(q["quarter"], q) for q in series],
        "charts": retention_charts(series, language(request), ctx.settings.currency),
    }
    return page(request, "retention.html", values, who)


# A retention's money fields, shown per currency.
MONEY_FIELDS = ("start_arr", "churned_arr", "contraction", "expansion")


def _shown(label: str, g: dict[str, Any]) -> dict[str, Any]:
    """A retention as a table row: its counts, each money field per currency (for the
    ``moneys`` filter) and each rate per currency (one currency: just the rate)."""
    by_currency = _per_currency(g["by_currency"])
    return {
        **g,
        "label": label,
        "money": {f: {c: v[f] for c, v in by_currency.items()} for f in MONEY_FIELDS},
        "rates": {f: {c: v[f] for c, v in by_currency.items()} for f in ("grr", "nrr")},
    }


def retention_charts(series: list[dict[str, Any]], lang: str, currency: str) -> dict[str, Chart]:
    """GRR, NRR and logo retention per quarter, in percent (NRR may pass 100). Revenue
    rates never mix currencies: with several in play, the lines are the service's
    currency's (``currency``), and their labels say so."""
    labels = [q["quarter"] for q in series]
    mixed = any(len(q["by_currency"]) > 1 for q in series)

    def rate(q: dict[str, Any], name: str) -> float | None:
        value: float | None = (q["by_currency"].get(DEFAULT_CURRENCY, {}) if mixed else q).get(name)
        return value

    def label(text: str) -> str:
        shown = translate(lang, text)
        return f"{shown} ({currency})" if mixed else shown

    lines = [
        _series(
            label("Gross revenue retention"),
            _pct([rate(q, "grr") for q in series]),
            COLOURS["blue"],
        ),
        _series(
            label("Net revenue retention"), _pct([rate(q, "nrr") for q in series]), COLOURS["green"]
        ),
        _series(
            translate(lang, "Logo retention"),
            _pct([q["logo_retention"] for q in series]),
            COLOURS["purple"],
        ),
    ]
    # Not PERCENT_AXIS's 0–100: NRR passes 100% when expansion outweighs the losses.
    axis = {"suggestedMin": 50, "suggestedMax": 110, "title": PERCENT_AXIS["title"]}
    return {"retention": _line(labels, lines, axis)}


@router.get("/opportunities", response_class=HTMLResponse)
async def opportunities_view(request: Request) -> Response:
    """Upsell signals: the open alerts of the expansion rules, oldest first."""
    who = await viewer(request)
    now: datetime = utcnow()
    async with context(request).engine.connect() as conn:
        alerting: Alerting = (await _store(request, "rules").current(conn))[0]
        total, rows = await opportunities(conn, who.key, alerting, now, OPPORTUNITIES_SHOWN)
    return page(request, "opportunities.html", {"rows": rows, "total": total}, who)
