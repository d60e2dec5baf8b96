"""Opportunities: the open alerts of the expansion rules (the alerting file's
``expansion`` family: seats nearly all in use, a quota nearly used up, fast-growing
users or seats, a tier review; EX-02, EW-03, EW-07), each with what a CSM needs to
open the conversation: the account's ARR, seats used and purchased, owner and the
alert's age. ``GET /v1/opportunities`` and the dashboard's list read them here.

Like every alert list, a CSM key sees the alerts of the accounts its CSM owns now. An
account whose health is red now is left out: it is no sales conversation while it is
failing (a "review its tier" on a red account was listed as an opportunity, found from
outside); its alert stays on the alert lists, and it comes back here if it recovers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.alerts.api import Context
from services.alerts.queries import total_of, visible_alerts
from shared.alerting.schema import Alerting
from shared.auth import ApiKey
from shared.contracts.alerts import OPEN_ALERT_STATUSES
from shared.storage.tables import account_health, accounts, alerts
from shared.web import ReadKey

# The alerting file's family of upsell signals (shared/alerting/default_alerting.toml).
EXPANSION = "expansion"

router = APIRouter(prefix="/v1", tags=["alerts"])


def expansion_rules(alerting: Alerting) -> list[str]:
    """The ids of the rules alerting in the expansion family (a family's alert is
    stored under the rule of its worst symptom, always one of these)."""
    return [rule.id for rule in alerting.rules if rule.group == EXPANSION]


async def opportunities(
    conn: AsyncConnection,
    key: ApiKey,
    alerting: Alerting,
    now: datetime,
    limit: int | None = None,
    offset: int = 0,
) -> tuple[int, list[dict[str, Any]]]:
    """How many open expansion alerts ``key`` sees, and a page of them, oldest first
    (the longest-waiting conversation leads)."""
    a, f, h = alerts.c, accounts.c, account_health.c
    q = visible_alerts(
        select(
            a.alert_id,
            a.account_id,
            a.rule,
            a.severity,
            a.status,
            a.title,
            a.fired_at,
            f.name,
            f.tier,
            f.owner_email,
            f.seats_purchased,
            f.facts,
            h.active_users_7d,
            h.inputs,
        )
        .select_from(
            alerts.outerjoin(accounts, f.account_id == a.account_id).outerjoin(
                account_health, h.account_id == a.account_id
            )
        )
        .where(
            a.rule.in_(expansion_rules(alerting)),
            a.status.in_(OPEN_ALERT_STATUSES),
            or_(h.band.is_(None), h.band != "red"),
        )
        .order_by(a.fired_at, a.alert_id),
        key,
    )
    total = await total_of(conn, q)
    rows = await conn.execute(q.limit(limit).offset(offset))
    return total, [_row(r, now) for r in rows]


def _row(r: Any, now: datetime) -> dict[str, Any]:
    fields = (r.facts or {}).get("fields", {})
    seats = r.seats_purchased
    activation = (r.inputs or {}).get("activation_rate")
    return {
        "alert_id": r.alert_id,
        "account_id": r.account_id,
        "name": r.name,
        "tier": r.tier,
        "owner_email": r.owner_email,
        "rule": r.rule,
        "severity": r.severity,
        "status": r.status,
        "title": r.title,
        "fired_at": r.fired_at.isoformat(),
        "age_days": max(0, (now - r.fired_at).days),
        "arr": _arr(fields),
        # The ARR's currency (None: the service's); totals never add two currencies.
        "currency": fields.get("currency"),
        "seats_purchased": seats,
        # Seats used: the users ever active (activation_rate × seats, as scored).
        "seats_used": round(activation * seats) if seats and activation is not None else None,
        "active_users_7d": r.active_users_7d,
    }


def _arr(fields: dict[str, Any]) -> float | None:
    if fields.get("arr") is not None:
        return float(fields["arr"])
    return float(fields["mrr"]) * 12 if fields.get("mrr") is not None else None


class Opportunities(BaseModel):
    total: int = Field(description="Open expansion alerts visible (before limit/offset)")
    opportunities: list[dict[str, Any]] = Field(
        description="Per alert, oldest first: the account, rule, title, fired_at and "
        "age_days, ARR and currency, seats_used and seats_purchased, owner_email"
    )


@router.get("/opportunities", response_model=Opportunities)
async def list_opportunities(
    ctx: Context,
    key: ReadKey,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> dict[str, Any]:
    """Upsell signals: the open alerts of the alerting file's expansion rules, with the
    account's ARR, seats used and purchased, owner and the alert's age in days."""
    async with ctx.engine.connect() as conn:
        alerting, _ = await ctx.alerting.current(conn)
        total, rows = await opportunities(conn, key, alerting, ctx.clock(), limit, offset)
    return {"total": total, "opportunities": rows}
