"""Renewals and retention API: ``/v1/renewals`` and ``/v1/retention``, as JSON or CSV.

A CSM key sees its own portfolio only (the accounts its CSM owns now); a lead's key
sees every account. Periods are half-open, ``[from, to)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request

from services.scoring.api import Context
from services.scoring.queries import Day
from services.scoring.retention import DEFAULT_CURRENCY
from services.scoring.retention.periods import Quarter, check_period
from services.scoring.retention.pipeline import ForecastRule
from services.scoring.retention.queries import RENEWAL_FIELDS, renewals, retention_between
from services.scoring.retention.schemas import Renewals, RetentionAnswer
from shared.openapi import error_responses
from shared.web import ReadKey, csv_answer

router = APIRouter(prefix="/v1", tags=["renewals and retention"])

# A CSV answer beside the JSON one, in the OpenAPI document.
CSV_TOO: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {}}, "description": "JSON, or CSV with ?format=csv"},
    **error_responses(422),
}
Format = Annotated[
    Literal["json", "csv"] | None,
    Query(description="csv for a spreadsheet (also: Accept: text/csv)"),
]


@dataclass(frozen=True)
class RetentionContext:
    """The renewal forecast's rule, from the settings (``ForecastRule.of``)."""

    rule: ForecastRule


def get_retention(request: Request) -> RetentionContext:
    ctx: RetentionContext = request.app.state.retention
    return ctx


Retention = Annotated[RetentionContext, Depends(get_retention)]


def wants_csv(request: Request, format: str | None) -> bool:
    """CSV asked for by ``?format=csv`` or by an Accept header naming text/csv first."""
    if format is not None:
        return format == "csv"
    return request.headers.get("accept", "").split(",")[0].strip().startswith("text/csv")


RENEWAL_COLUMNS = (*RENEWAL_FIELDS, "open_alerts", "nps_latest", "forecast", "reasons")


@router.get("/renewals", response_model=Renewals, responses=CSV_TOO)
async def renewals_view(
    request: Request,
    ctx: Context,
    retention: Retention,
    key: ReadKey,
    quarter: Annotated[str | None, Query(description="YYYYQn, e.g. 2027Q1 (default: now)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
    format: Format = None,
) -> Any:
    """The accounts whose contract ends in the quarter, soonest first, each with ARR,
    health, danger, open alerts, latest NPS and a forecast (commit, likely, at risk:
    README, "Renewals and retention"), and the totals per forecast class. The CSV holds
    every renewal of the quarter (no paging)."""
    today = datetime.now(ctx.zone).date()  # the service's day, not the host's
    asked = Quarter.parse(quarter) if quarter is not None else Quarter.of(today)
    async with ctx.engine.connect() as conn:
        answer = await renewals(conn, key, asked, today, retention.rule)
    if wants_csv(request, format):
        rows = in_currency(answer["accounts"], ctx.currency)
        return csv_answer(RENEWAL_COLUMNS, rows, f"renewals-{asked}")
    rows = answer["accounts"]
    return {**answer, "total": len(rows), "accounts": rows[offset : offset + limit]}


def in_currency(rows: Iterable[dict[str, Any]], currency: str | None) -> list[dict[str, Any]]:
    """The rows with ``currency`` where their amounts name none (the API's ``default``,
    or nothing beside an amount): a spreadsheet's reader cannot know the service's
    currency (the API's CSV and the dashboard's named it so apart: found from outside).
    A group that also has a row in ``currency`` keeps ``default`` on the other,
    so that no two of its rows read the same; a row without amounts names none."""
    rows = list(rows)
    if currency is None:
        return rows  # no currency set for the service: nothing to name
    named = {(r.get("group"), r.get("currency")) for r in rows}

    def unnamed(r: dict[str, Any]) -> bool:
        if r.get("currency") == DEFAULT_CURRENCY:
            return (r.get("group"), currency) not in named
        return r.get("currency") in (None, "") and r.get("arr") is not None

    return [{**r, "currency": currency} if unnamed(r) else r for r in rows]


RETENTION_COLUMNS = (
    "group",
    "currency",
    "accounts_start",
    "accounts_kept",
    "churned_accounts",
    "logo_retention",
    "start_arr",
    "churned_arr",
    "contraction",
    "expansion",
    "end_arr",
    "grr",
    "nrr",
)


@router.get("/retention", response_model=RetentionAnswer, responses=CSV_TOO)
async def retention_view(
    request: Request,
    ctx: Context,
    key: ReadKey,
    from_: Annotated[Day, Query(alias="from", description="First day of the period")],
    to: Annotated[Day, Query(description="The day after the period: [from, to)")],
    by: Literal["tier", "csm", "cohort"] | None = None,
    format: Format = None,
) -> Any:
    """Gross and net revenue retention, logo retention, churned ARR, contraction and
    expansion over ``[from, to)``, from each account's facts as they were at both ends
    (only accounts that were customers at the start), overall and per tier, CSM (who
    held it at the start) or cohort (the quarter its contract started). Money per
    currency; ``grr``/``nrr`` at the top only when one currency is in play."""
    check_period(from_, to)
    async with ctx.engine.connect() as conn:
        answer = await retention_between(conn, key, from_, to, by, ctx.zone)
    if wants_csv(request, format):
        name = f"retention-{from_}-{to}" + (f"-by-{by}" if by else "")
        rows = in_currency(retention_rows(answer, by), ctx.currency)
        return csv_answer(RETENTION_COLUMNS, rows, name)
    return answer


def retention_rows(answer: dict[str, Any], by: str | None) -> list[dict[str, Any]]:
    """One CSV row per group (``all`` first) and currency."""
    groups = [("all", answer), *((g[by], g) for g in answer.get("groups", []) if by)]
    rows = []
    for name, g in groups:
        counts = {k: g[k] for k in RETENTION_COLUMNS[2:6]}
        for currency, money in g["by_currency"].items() or [(None, {})]:
            rows.append({"group": name, "currency": currency, **counts, **money})
    return rows
