"""The report's HTML as a PDF, through WeasyPrint.

WeasyPrint lays out CSS Paged Media in-process (A4 pages, page numbers in the margin,
``break-after: avoid`` on headings), with no browser to install and run beside the
service; it needs Pango (Debian: ``libpango-1.0-0 libpangoft2-1.0-0``) and, for Chinese,
a CJK font (``fonts-noto-cjk``). It is imported on first use, so the services start
without it and only a PDF request needs it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

INSTALL = "pip install weasyprint; apt-get install libpango-1.0-0 libpangoft2-1.0-0 fonts-noto-cjk"


class _SvgStyleNoise(logging.Filter):
    """WeasyPrint's CSS check logs each ``fill:``/``stroke:`` of the charts' SVG style
    attributes as an unknown property (its SVG renderer reads them itself): 203 lines
    of the log for one PDF. Every other warning (a font missing) still shows."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("Ignored `") and "unknown property" in message)


logging.getLogger("weasyprint").addFilter(_SvgStyleNoise())


class PdfUnavailable(RuntimeError):
    """WeasyPrint or the system libraries it loads are missing."""


def _no_fetch(url: str, *args: Any, **kwargs: Any) -> Any:
    """The report is self-contained (inline SVG and styles): nothing is fetched, so a
    value in it can never make the server request a URL."""
    raise ValueError(f"reports fetch no resources ({url[:60]})")


def render_pdf(html: str) -> bytes:
    """The PDF of a report's HTML; PdfUnavailable when the renderer cannot load."""
    try:
        from weasyprint import HTML
    except (ImportError, OSError) as exc:  # OSError: Pango's shared library not found
        raise PdfUnavailable(f"PDF rendering is not installed ({exc}): {INSTALL}") from exc
    pdf: bytes = HTML(string=html, url_fetcher=_no_fetch).write_pdf()
    return pdf


async def render_pdf_async(html: str) -> bytes:
    """``render_pdf`` in a worker thread: a report takes about a second of CPU."""
    return await asyncio.to_thread(render_pdf, html)
