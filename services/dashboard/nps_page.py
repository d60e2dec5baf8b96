"""The NPS page: NPS per segment (tier, industry or CSM) over a period with its monthly
trend, one account's answers and trend (``?account=``), and the advocacy list (promoters
of the last six months, SV-05). The same reads as ``GET /v1/nps``, ``/v1/advocates`` and
``/v1/accounts/{id}/nps``; a CSM sees their own portfolio only.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from services.dashboard import asked_days
from services.dashboard.asked_days import AskedDays
from services.dashboard.auth import NotFound, context, viewer
from services.dashboard.charts import COLOURS, Chart, _line, _series
from services.dashboard.home import text_param
from services.dashboard.routes import language, page
from services.scoring.queries import visible_account
from services.scoring.workload import reads
from shared.clock import utcnow
from shared.i18n import translate
from shared.web import ClientError

router = APIRouter(prefix="/ui", include_in_schema=False)

# The page's default period: a year, two survey rounds (SV-05).
DEFAULT_DAYS = 365
# At most this long a period (the chart's months stay readable).
MAX_DAYS = 5 * 366
SHOWN_ADVOCATES = 100
# Segment lines on the chart, in turn.
PALETTE = ("blue", "purple", "green", "yellow", "red", "grey")
NPS_AXIS = {"min": -100, "max": 100, "title": {"display": True, "text": "NPS"}}


def period(params: Any, today: date) -> tuple[date, date, AskedDays]:
    """``from``/``to`` (ISO days, ``asked_days.read``; default: the last year), and
    what the page says if it shows other days than those asked."""
    asked = asked_days.read(params, today, most_days=MAX_DAYS)
    if asked.span is None:
        return today - timedelta(days=DEFAULT_DAYS - 1), today, asked
    return *asked.span, asked


@router.get("/nps")
async def nps_view(request: Request) -> Response:
    who = await viewer(request)
    ctx = context(request)
    now = utcnow()
    today = now.astimezone(ctx.settings.zone).date()
    by = request.query_params.get("by", "tier")
    by = by if by in reads.SEGMENTS else "tier"
    start, end, asked = period(request.query_params, today)
    account_id = text_param(request.query_params.get("account"), 200)
    async with ctx.engine.connect() as conn:
        found = await reads.nps_by_segment(conn, who.key, by, start, end, ctx.settings.zone)
        advocates = await reads.advocates(conn, who.key, now)
        account = None
        if account_id:
            try:
                await visible_account(conn, account_id, who.key)
            except ClientError as exc:
                raise NotFound(account_id) from exc
            account = await reads.account_nps(conn, account_id, ctx.settings.zone)
    lang = language(request)
    values = {
        "n": {
            **found,
            "by": by,
            "segments_offered": reads.SEGMENTS,
            "start": start.isoformat(),
            "end": end.isoformat(),
            "advocates": advocates[:SHOWN_ADVOCATES],
            "advocates_total": len(advocates),
            "account": account,
        },
        "charts": _charts(found, account, lang),
        "notice": asked.said(lang, ctx.settings.zone),
    }
    return page(request, "nps.html", values, who)


def _charts(found: dict[str, Any], account: dict[str, Any] | None, lang: str) -> dict[str, Chart]:
    """The monthly NPS of each segment (and of every answer), and the account's."""
    segments = found["segments"]
    months = sorted({m["month"] for s in segments for m in s["trend"]})
    series = [
        _series(
            translate(lang, s["segment"]),
            _by_month(s["trend"], months),
            COLOURS[PALETTE[i % len(PALETTE)]],
        )
        for i, s in enumerate(segments)
    ]
    overall = _series(
        translate(lang, "All answers"),
        _by_month(found["overall"]["trend"], months),
        "#1d2733",
        borderDash=[6, 4],
    )
    charts = {"trend": _line(months, [overall, *series], NPS_AXIS)}
    if account is not None:
        mine = [m["month"] for m in account["trend"]]
        line = _series(translate(lang, "NPS"), [m["nps"] for m in account["trend"]], "#3b6fd4")
        charts["account"] = _line(mine, [line], NPS_AXIS)
    return charts


def _by_month(trend: list[dict[str, Any]], months: list[str]) -> list[float | None]:
    values = {m["month"]: m["nps"] for m in trend}
    return [values.get(m) for m in months]
