"""One report as the bytes to hand out: HTML, or a PDF of it. The API, the dashboard's
print route and the command line all go through here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, tzinfo

from sqlalchemy.ext.asyncio import AsyncConnection

from services.reports.data import Kind, build_report
from services.reports.fmt import Fmt
from services.reports.pdf import render_pdf_async
from services.reports.render import render_html


@dataclass(frozen=True)
class Ask:
    """Which report, in which language and form: ``pdf_href`` is the HTML's link to
    its own PDF (none in a file or a PDF)."""

    account_id: str
    kind: Kind
    end: date
    fmt: Fmt
    # The account's zone (its own, else the service's: ``account_zone``), whose days
    # the report counts and dates its tickets in.
    zone: tzinfo
    pdf: bool = False
    pdf_href: str | None = None


async def document(conn: AsyncConnection, ask: Ask) -> bytes:
    """The report's HTML (UTF-8) or its PDF; UnknownAccount when nothing is stored for
    the account, PdfUnavailable without the renderer."""
    report = await build_report(conn, ask.account_id, ask.kind, ask.end, ask.zone)
    if ask.pdf:
        return await render_pdf_async(render_html(report, ask.fmt))
    return render_html(report, ask.fmt, pdf_href=ask.pdf_href).encode()
