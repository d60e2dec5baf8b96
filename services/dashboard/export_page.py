"""The data export for a signed-in person (issue 16 point 6): accounts, current scores
and daily history as CSV or Parquet, ``/ui/export/{accounts|scores|history}?format=
csv|parquet&from=&to=``.

The same file as ``GET /v1/export/{kind}`` (``services.scoring.export.download``), with
the session's key instead of an API key in a header, so a dashboard link needs no
Basic-auth prompt; a CSM downloads their own portfolio, a lead or an admin every account.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse

from services.dashboard.auth import context, viewer
from services.dashboard.csv_words import PORTFOLIO_HEADERS, portfolio_file
from services.dashboard.home import PortfolioQuery, portfolio_rows_of
from services.dashboard.routes import DOWNLOAD_HEADERS, language
from services.scoring.export import Ask, Format, Kind, download
from services.scoring.queries import Day
from shared.clock import utcnow
from shared.web import csv_answer

router = APIRouter(prefix="/ui", include_in_schema=False)


@router.get("/export/{kind}")
async def export_view(
    request: Request,
    kind: Kind,
    format: Format = "csv",
    start: Annotated[Day | None, Query(alias="from")] = None,
    end: Annotated[Day | None, Query(alias="to")] = None,
) -> StreamingResponse:
    """The viewer's accounts, scores or history (``from``..``to``, default the last 90
    days) as a file, streamed."""
    who = await viewer(request)
    ctx = context(request)
    ask = Ask(kind, who.key.portfolio_of, start, end)
    answer = download(ctx.engine, ask, format, ctx.settings.zone, bom=True)  # a spreadsheet's
    answer.headers.update(DOWNLOAD_HEADERS)
    return answer


@router.get("/portfolio.csv")
async def portfolio_csv(request: Request) -> Response:
    """The portfolio page's list as a file: every account its search and filters select
    (not only the page shown), in its order, in the viewer's language. The data export
    above holds every account: a lead's QBR list of red strategic accounts had to be
    filtered again by hand, former customers included (found from outside)."""
    who = await viewer(request)
    ctx = context(request)
    today = utcnow().astimezone(ctx.settings.zone).date()
    query = PortfolioQuery.parse(request.query_params, who.key.portfolio_of is None)
    async with ctx.engine.connect() as conn:
        rows = await portfolio_rows_of(
            conn, who, query, today, ctx.settings.currency, ctx.settings.zone
        )
    header, worded = portfolio_file(rows, language(request))
    answer = csv_answer(list(PORTFOLIO_HEADERS), worded, f"accounts-{today}", header)
    answer.headers.update(DOWNLOAD_HEADERS)
    return answer
