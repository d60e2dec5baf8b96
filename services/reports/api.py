"""Reports over HTTP: one account's report as print-ready HTML or as a PDF."""

from __future__ import annotations

from datetime import UTC, date, tzinfo
from typing import Any, Literal

from fastapi import APIRouter, Header, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from services.reports.data import Kind
from services.reports.document import Ask, document
from services.reports.fmt import Fmt
from services.reports.pdf import PdfUnavailable
from services.scoring.queries import Day, account_zone, check_not_future, visible_account
from shared.auth import ApiKey
from shared.clock import utcnow
from shared.i18n import N_
from shared.openapi import error_responses
from shared.web import ClientError, EngineDep, ReadKey, answer_language

router = APIRouter(prefix="/v1", tags=["reports"])

# shared.i18n.LANGUAGES, spelled out for the OpenAPI.
Language = Literal["en", "zh-CN"]
Format = Literal["html", "pdf"]
PDF = "application/pdf"
# Both answers in the OpenAPI: the HTML (response_class) and the PDF.
ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The report: print-ready HTML, or a PDF with format=pdf or "
        "Accept: application/pdf",
        "content": {PDF: {"schema": {"type": "string", "format": "binary"}}},
    },
    **error_responses(404, 503),
}


def defaults(request: Request) -> Fmt:
    """The service's report language and currency (``state.report_fmt``, set by the
    composition root from the settings), English and CNY where it set none."""
    fmt = getattr(request.app.state, "report_fmt", None)
    return fmt if isinstance(fmt, Fmt) else Fmt()


def today_in(zone: tzinfo) -> date:
    """A report's default last day: today in ``zone`` (the service's), not the server's
    calendar (a Shanghai team's Dec 2 starts while a UTC server is on Dec 1)."""
    return utcnow().astimezone(zone).date()


def service_zone(request: Request) -> tzinfo:
    """The service's zone (the health API's, set from the settings), UTC without one."""
    zone = getattr(getattr(request.app.state, "health_api", None), "zone", UTC)
    return zone if isinstance(zone, tzinfo) else UTC


def wants_pdf(format: str | None, accept: str | None) -> bool:
    """``format`` decides; without it, an Accept header naming the PDF before HTML."""
    if format is not None:
        return format == "pdf"
    accept = accept or ""
    return PDF in accept and (
        "text/html" not in accept or accept.index(PDF) < accept.index("text/html")
    )


# The report is a standalone document with inline styles and no script at all: nothing
# else loads, nothing frames it, no cache keeps it (the dashboard's print route and the
# API's alike: the API's answered without them, found from outside).
REPORT_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


async def report_document(conn: AsyncConnection, key: ApiKey, ask: Ask) -> Response:
    """The answer for one report (404 when the key may not see the account), shared by
    the API and the dashboard's print route."""
    await visible_account(conn, ask.account_id, key)
    try:
        body = await document(conn, ask)
    except PdfUnavailable as exc:
        raise ClientError(503, "pdf_unavailable", str(exc)) from exc
    if not ask.pdf:
        return HTMLResponse(body, headers=REPORT_HEADERS)
    name = f"{file_part(ask.account_id)}-{ask.kind}-{ask.end.isoformat()}.pdf"
    headers = {**REPORT_HEADERS, "Content-Disposition": f'inline; filename="{name}"'}
    return Response(body, media_type=PDF, headers=headers)


def pdf_link(request: Request) -> str:
    """The page's own address asking for the PDF (relative: the same host and path)."""
    return "?" + request.url.include_query_params(format="pdf").query


def file_part(text: str) -> str:
    """A file name part from an account id: letters, digits, - and _ only."""
    return "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "_" for c in text)[:80]


@router.get("/accounts/{account_id}/reports/{kind}", response_class=HTMLResponse, responses=ANSWERS)
async def account_report(
    account_id: str,
    kind: Kind,
    request: Request,
    engine: EngineDep,
    key: ReadKey,
    end: Day | None = None,
    lang: Language | None = None,
    format: Format | None = None,
    accept: str | None = Header(None, include_in_schema=False),
) -> Response:
    """The monthly usage report (30 days), the enterprise tier's usage report every two
    months (CAD-09) or the quarterly business review (CAD-05) ending on ``end`` (default
    today in the account's zone), in ``lang`` (default: the request's Accept-Language,
    else the service's language), as HTML or PDF."""
    base = defaults(request)
    pdf = wants_pdf(format, accept)
    async with engine.connect() as conn:
        # The account's zone counts its days: "today" on the service's clock (UTC) left
        # a Shanghai account's morning out of its report until 08:00. A period ending in
        # days to come would report them as days without use.
        zone = await account_zone(conn, account_id, service_zone(request))
        today = today_in(zone)
        if end is not None:
            check_not_future(end, today, N_("in the account's zone"), "end")
        ask = Ask(
            account_id,
            kind,
            end or today,
            Fmt(lang or answer_language(request, base.lang), base.currency),
            zone,
            pdf=pdf,
            pdf_href=None if pdf else pdf_link(request),
        )
        answer = await report_document(conn, key, ask)
    # Its language may come from Accept-Language: a shared cache must keep them apart.
    answer.headers["Content-Language"] = ask.fmt.lang
    answer.headers["Vary"] = "Accept-Language"
    return answer
