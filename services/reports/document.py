"""One report as the bytes to hand out: HTML, or a PDF of it. The API, the dashboard's
print route and the command line all go through here."""

from __future__ import annotations

from datetime import date

from sqlalchemy.ext.asyncio import AsyncConnection

from services.reports.data import Kind, build_report
from services.reports.fmt import Fmt
from services.reports.pdf import render_pdf_async
from services.reports.render import render_html


async def document(
    conn: AsyncConnection,
    account_id: str,
    kind: Kind,
    end: date,
    fmt: Fmt,
    *,
    pdf: bool,
    pdf_href: str | None = None,
) -> bytes:
    """The report's HTML (UTF-8, with a link to ``pdf_href``) or its PDF; UnknownAccount
    when nothing is stored for ``account_id``, PdfUnavailable without the renderer."""
    report = await build_report(conn, account_id, kind, end)
    if pdf:
        return await render_pdf_async(render_html(report, fmt))
    return render_html(report, fmt, pdf_href=pdf_href).encode()
