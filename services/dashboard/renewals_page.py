"""The renewals pages: the renewal pipeline of a quarter with its forecast, retention
over quarters and any period, and the opportunities list (issue 16 point 3).

``/ui/renewals?quarter=2027Q1``, ``/ui/retention?from=&to=&by=tier|csm|cohort`` and
``/ui/opportunities`` read what ``/v1/renewals``, ``/v1/retention`` and
``/v1/opportunities`` answer, through the same functions; the viewer's key decides
what they see, a CSM their own portfolio. A quarter or period the page cannot read
falls back to the default one, saying so (a page never answers an error for a typed
address); its CSV answers 422 instead (a file cannot say so).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, PlainTextResponse
from starlette.responses import Response

from services.alerts.opportunities import opportunities
from services.dashboard import asked_days
from services.dashboard.admin_pages import _store
from services.dashboard.asked_days import AskedDays
from services.dashboard.auth import Viewer, context, viewer
from services.dashboard.charts import (
    COLOURS,
    PERCENT_AXIS,
    Chart,
    _grouped,
    _line,
    _pct,
    _series,
)
from services.dashboard.csv_words import renewal_file, retention_file
from services.dashboard.routes import DOWNLOAD_HEADERS, language, page
from services.scoring.queries import Filters, portfolio_rows
from services.scoring.retention import (
    DEFAULT_CURRENCY,
    FORECASTS,
    GROUPS,
    MAX_PERIOD_DAYS,
    UNKNOWN,
    ForecastRule,
    Quarter,
    quarters_before,
    renewals,
    retention_between,
    retention_by_quarter,
)
from services.scoring.retention.api import (
    RENEWAL_COLUMNS,
    RETENTION_COLUMNS,
    in_currency,
    retention_rows,
)
from shared.alerting.schema import Alerting
from shared.clock import utcnow
from shared.i18n import N_, format_quarter, translate
from shared.web import ClientError, csv_answer

router = APIRouter(prefix="/ui", include_in_schema=False)

# Quarters the picker offers around the current one: the past year (renewals that
# slipped) and the coming year (the handbook starts renewal work 3 months out, RN-01,
# and strategic accounts need more lead time).
PICKER_BEHIND, PICKER_AHEAD = 4, 4
# Quarters the retention charts cover: two years, enough to see a trend and a season
# (from the first with customers, when that is later).
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


# Said above the pipeline of the current quarter, shown for one that could not be read
# (after why: ``Quarter.parse``'s words, e.g. the years it takes; it was shown without a
# word, found from outside).
SHOWING_CURRENT = N_("Showing this quarter.")
# A download answers what was asked or nothing: a file cannot carry a page's notice.
UNASKED_DOWNLOAD = N_("Open the page, pick the period there and download it from its link.")


def _quarter(text: str | None, today: date, lang: str) -> tuple[Quarter, str | None]:
    """The quarter ``text`` names (else the current one) and, if it named none that
    could be read, why (in ``lang``)."""
    try:
        return (Quarter.parse(text) if text else Quarter.of(today)), None
    except ClientError as exc:
        return Quarter.of(today), f"{exc.worded(lang)} {translate(lang, SHOWING_CURRENT)}"


def _refused_download(lang: str, why: str) -> Response:
    """A download whose period the page would have replaced: 422 saying why, not a
    file of other days under a name that looks right (found from outside)."""
    text = f"{why} {translate(lang, UNASKED_DOWNLOAD)}\n"
    return PlainTextResponse(text, status_code=422)


@router.get("/renewals", response_class=HTMLResponse)
async def renewals_view(request: Request) -> Response:
    """The quarter's renewals with their forecast and the totals per class."""
    who, quarter, data, bad = await _renewals(request)
    current = Quarter.of(_today(request))
    picker = [*quarters_before(current, PICKER_BEHIND), current]
    while len(picker) < PICKER_BEHIND + 1 + PICKER_AHEAD:
        picker.append(picker[-1].next())
    values = {
        "data": data,
        "quarter": quarter,
        "picker": [str(q) for q in picker],
        "previous": str(quarter.previous()),
        "next": str(quarter.next()),
        # The API's period is [from, to); people read a quarter to its last day.
        "last_day": (quarter.end - timedelta(days=1)).isoformat(),
        "forecasts": FORECASTS,
        "forecast_labels": FORECAST_LABELS,
        "reason_labels": REASON_LABELS,
        "money": {name: _moneys(data["totals"][name]) for name in FORECASTS},
        "notice": bad,
        "next_renewals": None if data["accounts"] else await _next_renewals(request, who, quarter),
    }
    return page(request, "renewals.html", values, who)


async def _next_renewals(request: Request, who: Viewer, after: Quarter) -> dict[str, Any] | None:
    """For a quarter in which no contract of the viewer's ends: the next quarter in which
    some do, and how many. On December 7 the page opened on its quarter and said only
    "No contract ends in this quarter", with a renewal 56 days away (found from outside)."""
    today = _today(request)
    async with context(request).engine.connect() as conn:
        rows = await portfolio_rows(conn, who.key, Filters(), today)
    ends = [
        date.fromisoformat(r["contract_end"])
        for r in rows
        if r["contract_end"] and r["lifecycle_stage"] != "churned"
    ]
    later = [end for end in ends if end >= after.end]
    if not later:
        return None
    quarter = Quarter.of(min(later))
    count = sum(1 for end in later if quarter.start <= end < quarter.end)
    return {"quarter": str(quarter), "count": count}


@router.get("/renewals.csv")
async def renewals_csv(request: Request) -> Response:
    """The quarter's renewals as ``GET /v1/renewals?format=csv`` answers them, for the
    viewer's portfolio (the pipeline page's "CSV" link)."""
    _, quarter, data, bad = await _renewals(request)
    if bad is not None:
        return _refused_download(language(request), bad)
    # The rows as the API's, with the service's currency where they name none.
    accounts = in_currency(data["accounts"], context(request).settings.currency)
    header, rows = renewal_file(
        RENEWAL_COLUMNS, accounts, language(request), FORECAST_LABELS, REASON_LABELS
    )
    answer = csv_answer(RENEWAL_COLUMNS, rows, f"renewals-{quarter}", header)
    answer.headers.update(DOWNLOAD_HEADERS)
    return answer


async def _renewals(request: Request) -> tuple[Viewer, Quarter, dict[str, Any], str | None]:
    """The viewer, the asked quarter (``quarter``, else the current one), its renewals
    in the viewer's portfolio, and why another than the asked one is shown, if it is
    (in the viewer's language)."""
    who = await viewer(request)
    today = _today(request)
    quarter, why = _quarter(request.query_params.get("quarter"), today, language(request))
    rule = ForecastRule.of(context(request).settings)
    async with context(request).engine.connect() as conn:
        data = await renewals(conn, who.key, quarter, today, rule)
    return who, quarter, data, why


def _moneys(sums: Mapping[str, Any]) -> dict[str | None, float]:
    """Per-currency amounts for the ``moneys`` filter (None: the service's currency)."""
    return _per_currency(sums["arr_by_currency"])


def _per_currency(amounts: Mapping[str, Any]) -> dict[str | None, Any]:
    """Keyed for the ``moneys`` filter: None for the service's currency."""
    return {None if c == DEFAULT_CURRENCY else c: v for c, v in amounts.items()}


def _period(params: Mapping[str, str], today: date) -> tuple[date, date, AskedDays]:
    """``from``/``to`` (``asked_days.read``: [from, to), at most ten years, a reversed
    pair turned round); else the last four whole quarters (a year of renewals, so each
    account's yearly contract is in it once). With what the page says if it shows other
    days than those asked."""
    asked = asked_days.read(
        params,
        today,
        most_days=MAX_PERIOD_DAYS,
        until_today=False,
        half_open=True,
        latest=Quarter.of(today).end,
    )
    if asked.span is None:
        current = Quarter.of(today)
        return quarters_before(current, 4)[0].start, current.start, asked
    return *asked.span, asked


@router.get("/retention", response_class=HTMLResponse)
async def retention_view(request: Request) -> Response:
    """GRR, NRR and logo retention per quarter (charts) and, for a period, the
    breakdown by tier, CSM or cohort."""
    who = await viewer(request)
    ctx = context(request)
    today = _today(request)
    start, end, asked = _period(request.query_params, today)
    by = _by(request.query_params)
    quarters = quarters_before(Quarter.of(today), CHART_QUARTERS)
    lang = language(request)
    async with ctx.engine.connect() as conn:
        period = await retention_between(conn, who.key, start, end, by, ctx.settings.zone)
        series = _since_first_customer(
            await retention_by_quarter(conn, who.key, quarters, ctx.settings.zone)
        )
    values = {
        "period": period,
        "rows": [_shown("all", period), *(_shown(g[by], g) for g in period["groups"])],
        "start": start,
        "end": end,
        "by": by,
        "groups": GROUP_LABELS,
        "quarters": [_shown(q["quarter"], q) for q in series],
        "charts": {
            **retention_charts(series, lang, ctx.settings.currency),
            **breakdown_charts(period["groups"], by, lang, ctx.settings.currency),
        },
        "chart_currency": _chart_currency(period["groups"]),
        "notice": asked.said(lang, ctx.settings.zone),
    }
    return page(request, "retention.html", values, who)


@router.get("/retention.csv")
async def retention_csv(request: Request) -> Response:
    """The period's breakdown as ``GET /v1/retention?format=csv`` answers it, for the
    viewer's portfolio (the retention page's "CSV" link)."""
    who = await viewer(request)
    ctx = context(request)
    start, end, asked = _period(request.query_params, _today(request))
    if asked.note is not None:
        return _refused_download(
            language(request), asked.said(language(request), ctx.settings.zone) or ""
        )
    by = _by(request.query_params)
    async with ctx.engine.connect() as conn:
        answer = await retention_between(conn, who.key, start, end, by, ctx.settings.zone)
    name = f"retention-{start}-{end}-by-{by}"
    lang = language(request)
    header, rows = retention_file(
        RETENTION_COLUMNS,
        in_currency(retention_rows(answer, by), ctx.settings.currency),
        lang,
        translate(lang, GROUP_LABELS[by]),
    )
    download = csv_answer(RETENTION_COLUMNS, rows, name, header)
    download.headers.update(DOWNLOAD_HEADERS)
    return download


def _by(params: Mapping[str, str]) -> str:
    """The breakdown's grouping: ``by`` when it names one, else by tier."""
    by = params.get("by")
    return by if by in GROUPS else "tier"


def _since_first_customer(series: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The quarters from the first with customers at its start (the last one, if none
    has): a young installation's or portfolio's earlier quarters hold no rate to draw."""
    first = next((i for i, q in enumerate(series) if q["accounts_start"]), len(series) - 1)
    return series[max(first, 0) :]


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
    labels = [format_quarter(lang, q["quarter"]) for q in series]
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


# The breakdown's bars: what was lost and what was won per group, in one currency.
FLOW_BARS = (
    ("churned_arr", N_("Churned ARR"), COLOURS["red"]),
    ("contraction", N_("Contraction"), COLOURS["yellow"]),
    ("expansion", N_("Expansion"), COLOURS["green"]),
)
RATE_BARS = (
    ("grr", N_("GRR"), COLOURS["blue"]),
    ("nrr", N_("NRR"), COLOURS["purple"]),
)


def _chart_currency(groups: list[dict[str, Any]]) -> str | None:
    """The one currency the breakdown's charts draw (amounts never add across
    currencies): the only one in play, else the service's (the table lists the rest);
    None when no group had ARR. ``DEFAULT_CURRENCY`` stands for the service's."""
    held = {c for g in groups for c in g["by_currency"]}
    if len(held) == 1 or DEFAULT_CURRENCY not in held:
        return min(held, default=None)
    return DEFAULT_CURRENCY


def breakdown_charts(
    groups: list[dict[str, Any]], by: str, lang: str, currency: str
) -> dict[str, Chart]:
    """Per group of the breakdown (tier, CSM or cohort): churned ARR, contraction and
    expansion as bars, and GRR and NRR in percent, all in ``_chart_currency``'s
    currency, named in the labels (``currency`` is the service's)."""
    chosen = _chart_currency(groups)
    code = currency if chosen in (None, DEFAULT_CURRENCY) else chosen
    flows = [g["by_currency"].get(chosen, {}) for g in groups]

    def name(g: dict[str, Any]) -> str:
        label: str = g[by]
        if by == "tier" or label == UNKNOWN:
            return translate(lang, label)
        return format_quarter(lang, label) if by == "cohort" else label

    def bars(fields: tuple[tuple[str, str, str], ...], percent: bool) -> list[dict[str, Any]]:
        def values(field: str) -> list[float | None]:
            found = [f.get(field) for f in flows]
            return _pct(found) if percent else found

        return [
            {
                "label": f"{translate(lang, text)} ({code})",
                "data": values(field),
                "backgroundColor": colour,
                "maxBarThickness": 28,
            }
            for field, text, colour in fields
        ]

    labels = [name(g) for g in groups]
    money_axis = {"beginAtZero": True, "title": {"display": True, "text": code}}
    rate_axis = {"suggestedMin": 50, "suggestedMax": 110, "title": PERCENT_AXIS["title"]}
    return {
        "breakdown_flows": _grouped(labels, bars(FLOW_BARS, percent=False), money_axis),
        "breakdown_rates": _grouped(labels, bars(RATE_BARS, percent=True), rate_axis),
    }


@router.get("/opportunities", response_class=HTMLResponse)
async def opportunities_view(request: Request) -> Response:
    """Upsell signals: the open alerts of the expansion rules, oldest first."""
    who = await viewer(request)
    now: datetime = utcnow()
    async with context(request).engine.connect() as conn:
        alerting: Alerting = (await _store(request, "rules").current(conn))[0]
        total, rows = await opportunities(conn, who.key, alerting, now, OPPORTUNITIES_SHOWN)
    return page(request, "opportunities.html", {"rows": rows, "total": total}, who)
