"""Portfolio read API: accounts with filters and risk × value sorting, account detail,
an account's timeline, and aggregates over any filter (the lead's view).

CSM keys see their own portfolio only: the filters are applied on top of that.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from sqlalchemy import func, select

from services.scoring.api import NOT_FOUND, Context
from services.scoring.queries import (
    MONEY_SORTS,
    SORTS,
    Day,
    Filters,
    account_health_row,
    day_range,
    money_group,
    portfolio_rows,
    portfolio_totals,
    timeline,
    visible_account,
)
from services.scoring.schemas import AccountDetail, Aggregates, Portfolio, Timeline
from shared.contracts.alerts import OPEN_ALERT_STATUSES
from shared.storage.db import among
from shared.storage.tables import alerts
from shared.web import ReadKey

router = APIRouter(prefix="/v1", tags=["portfolio"])

# A timeline without a range covers this many days back from today.
DEFAULT_TIMELINE_DAYS = 30


def _filters(
    band: Literal["red", "yellow", "green"] | None = None,
    danger_level: Literal["high", "normal", "mild", "none"] | None = None,
    tier: str | None = None,
    csm: Annotated[str | None, Query(description="Owner CSM's email")] = None,
    lifecycle_stage: str | None = None,
    renewal_within_days: Annotated[int | None, Query(ge=0, le=3650)] = None,
) -> Filters:
    return Filters(band, danger_level, tier, csm, lifecycle_stage, renewal_within_days)


FilterArgs = Annotated[Filters, Depends(_filters)]


@router.get("/accounts", response_model=Portfolio)
async def portfolio(
    ctx: Context,
    key: ReadKey,
    f: FilterArgs,
    sort: Literal["risk_value", "score", "renewal", "name"] = "risk_value",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """Accounts matching the filters, riskiest and most valuable first by default."""
    async with ctx.engine.connect() as conn:
        rows = await portfolio_rows(conn, key, f, datetime.now(ctx.zone).date())
    by, reverse = SORTS[sort]
    rows.sort(key=by, reverse=reverse)
    if sort in MONEY_SORTS:  # stable: each currency by its amounts, the unknown last
        rows.sort(key=lambda a: (a[sort] is None, money_group(a["currency"], ctx.currency)))
    return {"total": len(rows), "accounts": rows[offset : offset + limit]}


@router.get("/aggregates", response_model=Aggregates)
async def aggregates(ctx: Context, key: ReadKey, f: FilterArgs) -> dict[str, Any]:
    """Totals over the filtered accounts: bands, danger levels, ARR at risk, active
    users and the share of stably active accounts (the handbook's view for the boss)."""
    async with ctx.engine.connect() as conn:
        rows = await portfolio_rows(conn, key, f, datetime.now(ctx.zone).date())
        ids = [r["account_id"] for r in rows]
        open_alerts = await conn.execute(
            select(alerts.c.rule, func.count())
            .where(among(conn, alerts.c.account_id, ids), alerts.c.status.in_(OPEN_ALERT_STATUSES))
            .group_by(alerts.c.rule)
        )
        by_rule = {rule: n for rule, n in open_alerts}
    return {
        **portfolio_totals(rows),
        "open_alerts_by_rule": by_rule,
    }


@router.get("/accounts/{account_id}", response_model=AccountDetail, responses=NOT_FOUND)
async def account_detail(account_id: str, ctx: Context, key: ReadKey) -> dict[str, Any]:
    """The account's facts, its current health and its open alerts."""
    async with ctx.engine.connect() as conn:
        facts = await visible_account(conn, account_id, key)
        h = await account_health_row(conn, account_id)
        open_alerts = await conn.execute(
            select(
                alerts.c.alert_id, alerts.c.rule, alerts.c.severity, alerts.c.status, alerts.c.title
            )
            .where(alerts.c.account_id == account_id, alerts.c.status.in_(OPEN_ALERT_STATUSES))
            .order_by(alerts.c.stored_at.desc())
        )
        return {
            "account_id": account_id,
            "facts": (facts.facts or {}).get("fields", {}) if facts is not None else {},
            "health": None
            if h is None
            else {
                "score": h.score,
                "band": h.band,
                "danger_level": h.danger_level,
                "as_of": h.as_of.isoformat(),
                "active_users_7d": h.active_users_7d,
                "active_users_30d": h.active_users_30d,
                "open_tickets": h.open_tickets,
                "depth_level": (h.inputs or {}).get("depth_level"),
            },
            "open_alerts": [dict(r._mapping) for r in open_alerts],
        }


@router.get("/accounts/{account_id}/timeline", response_model=Timeline, responses=NOT_FOUND)
async def account_timeline(
    account_id: str,
    ctx: Context,
    key: ReadKey,
    from_: Annotated[Day | None, Query(alias="from")] = None,
    to: Day | None = None,
) -> dict[str, Any]:
    """Day by day: usage (events, duration), tickets opened and solved, touchpoints,
    the day's score, band changes and alerts."""
    start, to = day_range(from_, to or datetime.now(ctx.zone).date(), DEFAULT_TIMELINE_DAYS)
    async with ctx.engine.connect() as conn:
        await visible_account(conn, account_id, key)
        days = await timeline(conn, account_id, start, to, ctx.zone)
    return {"account_id": account_id, "from": start.isoformat(), "to": to.isoformat(), "days": days}
