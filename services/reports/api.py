"""Reports over HTTP: print-ready HTML for one account."""

from __future__ import annotations

from datetime import date
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from services.reports.data import build_report
from services.reports.render import render_html
from services.scoring.queries import Day, visible_account
from shared.web import EngineDep, ReadKey

router = APIRouter(prefix="/v1", tags=["reports"])


@router.get("/accounts/{account_id}/reports/{kind}", response_class=HTMLResponse)
async def account_report(
    account_id: str,
    kind: Literal["usage", "bimonthly", "qbr"],
    engine: EngineDep,
    key: ReadKey,
    end: Day | None = None,
) -> HTMLResponse:
    """The usage report (30 days), the bi-monthly report (CAD-09) or the quarterly
    business review (CAD-05) ending on ``end`` (default today), as print-ready HTML."""
    async with engine.connect() as conn:
        await visible_account(conn, account_id, key)
        report = await build_report(conn, account_id, kind, end or date.today())
    return HTMLResponse(render_html(report))
