"""Portfolio read API: accounts with filters and risk × value sorting, account detail,
an account's timeline, and aggregates over any filter (the lead's view).

CSM keys see their own portfolio only: the filters are applied on top of that.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scoring.api import (
    Context,
    Day,
    ReadKey,
    day_range,
    visible_account,
)
from shared.auth import ApiKey
from shared.contracts.alerts import OPEN_ALERT_STATUSES
from shared.storage.tables import (
    account_health,
    accounts,
    activity_daily,
    alerts,
    band_changes,
    health_daily,
    processed_events,
    tickets,
)

router = APIRouter(prefix="/v1", tags=["portfolio"])

# A timeline without a range covers this many days back from today.
DEFAULT_TIMELINE_DAYS = 30
# "Stably active" in the lead's view: at least half of the seats active over 7 days.
STABLE_ACTIVE_SHARE = 0.5


@dataclass(frozen=True)
class Filters:
    band: str | None = None
    danger_level: str | None = None
    tier: str | None = None
    csm: str | None = None
    lifecycle_stage: str | None = None
    renewal_within_days: int | None = None


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


def _arr(fields: dict[str, Any]) -> float | None:
    if fields.get("arr") is not None:
        return float(fields["arr"])
    return float(fields["mrr"]) * 12 if fields.get("mrr") is not None else None


async def portfolio_rows(
    conn: AsyncConnection, key: ApiKey, f: Filters, today: date
) -> list[dict[str, Any]]:
    h = account_health
    q = select(
        h.c.account_id,
        h.c.score,
        h.c.band,
        h.c.danger_level,
        h.c.as_of,
        h.c.active_users_7d,
        h.c.open_tickets,
        accounts.c.name,
        accounts.c.tier,
        accounts.c.owner_email,
        accounts.c.seats_purchased,
        accounts.c.facts,
    ).select_from(h.outerjoin(accounts, accounts.c.account_id == h.c.account_id))
    if key.portfolio_of is not None:
        q = q.where(accounts.c.owner_email == key.portfolio_of)
    if f.band:
        q = q.where(h.c.band == f.band)
    if f.danger_level:
        q = q.where(h.c.danger_level == f.danger_level)
    if f.tier:
        q = q.where(accounts.c.tier == f.tier)
    if f.csm:
        q = q.where(accounts.c.owner_email == f.csm)
    out = []
    for r in await conn.execute(q):
        fields = (r.facts or {}).get("fields", {})
        stage = fields.get("lifecycle_stage")
        end = date.fromisoformat(fields["contract_end"]) if fields.get("contract_end") else None
        to_renewal = (end - today).days if end else None
        if f.lifecycle_stage and stage != f.lifecycle_stage:
            continue
        if f.renewal_within_days is not None and (
            to_renewal is None or not 0 <= to_renewal <= f.renewal_within_days
        ):
            continue
        arr = _arr(fields)
        risk = (100 - r.score) if r.score is not None else None
        out.append(
            {
                "account_id": r.account_id,
                "name": r.name,
                "tier": r.tier,
                "owner_email": r.owner_email,
                "lifecycle_stage": stage,
                "score": r.score,
                "band": r.band,
                "danger_level": r.danger_level,
                "as_of": r.as_of.isoformat(),
                "seats_purchased": r.seats_purchased,
                "active_users_7d": r.active_users_7d,
                "open_tickets": r.open_tickets,
                "arr": arr,
                "contract_end": end.isoformat() if end else None,
                "days_to_renewal": to_renewal,
                # Risk (100 − score) times value (ARR): where attention pays most.
                "risk_value": round(risk * arr, 2) if risk is not None and arr else None,
            }
        )
    return out


SORTS = {
    "risk_value": (lambda a: a["risk_value"] if a["risk_value"] is not None else -1.0, True),
    "score": (lambda a: a["score"] if a["score"] is not None else 101, False),
    "renewal": (lambda a: a["days_to_renewal"] if a["days_to_renewal"] is not None else 1e9, False),
    "name": (lambda a: (a["name"] or a["account_id"]).lower(), False),
}


@router.get("/accounts")
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
        rows = await portfolio_rows(conn, key, f, date.today())
    by, reverse = SORTS[sort]
    rows.sort(key=by, reverse=reverse)
    return {"total": len(rows), "accounts": rows[offset : offset + limit]}


@router.get("/aggregates")
async def aggregates(ctx: Context, key: ReadKey, f: FilterArgs) -> dict[str, Any]:
    """Totals over the filtered accounts: bands, danger levels, ARR at risk, active
    users and the share of stably active accounts (the handbook's view for the boss)."""
    async with ctx.engine.connect() as conn:
        rows = await portfolio_rows(conn, key, f, date.today())
        ids = [r["account_id"] for r in rows]
        open_alerts = await conn.execute(
            select(alerts.c.rule, func.count())
            .where(alerts.c.account_id.in_(ids), alerts.c.status.in_(OPEN_ALERT_STATUSES))
            .group_by(alerts.c.rule)
        )
        by_rule = {rule: n for rule, n in open_alerts}
    bands: dict[str, int] = {}
    danger: dict[str, int] = {}
    for r in rows:
        bands[r["band"] or "unscored"] = bands.get(r["band"] or "unscored", 0) + 1
        level = r["danger_level"] or "none"
        danger[level] = danger.get(level, 0) + 1
    stable = sum(
        1
        for r in rows
        if r["seats_purchased"]
        and r["active_users_7d"] / r["seats_purchased"] >= STABLE_ACTIVE_SHARE
    )
    return {
        "accounts": len(rows),
        "by_band": bands,
        "by_danger_level": danger,
        "arr_total": round(sum(r["arr"] or 0 for r in rows), 2),
        "arr_at_risk": round(sum(r["arr"] or 0 for r in rows if r["band"] == "red"), 2),
        "active_users_7d": sum(r["active_users_7d"] or 0 for r in rows),
        "stably_active_share": round(stable / len(rows), 4) if rows else None,
        "churned": sum(1 for r in rows if r["lifecycle_stage"] == "churned"),
        "open_alerts_by_rule": by_rule,
    }


@router.get("/accounts/{account_id}")
async def account_detail(account_id: str, ctx: Context, key: ReadKey) -> dict[str, Any]:
    """The account's facts, its current health and its open alerts."""
    async with ctx.engine.connect() as conn:
        facts = await visible_account(conn, account_id, key)
        h = (
            await conn.execute(
                select(account_health).where(account_health.c.account_id == account_id)
            )
        ).first()
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


@router.get("/accounts/{account_id}/timeline")
async def account_timeline(
    account_id: str,
    ctx: Context,
    key: ReadKey,
    from_: Annotated[Day | None, Query(alias="from")] = None,
    to: Day | None = None,
) -> dict[str, Any]:
    """Day by day: usage (events, duration), tickets opened and solved, touchpoints,
    the day's score, band changes and alerts."""
    start, to = day_range(from_, to or date.today(), DEFAULT_TIMELINE_DAYS)
    days: dict[str, dict[str, Any]] = {}

    def day(d: date) -> dict[str, Any]:
        return days.setdefault(d.isoformat(), {"day": d.isoformat()})

    async with ctx.engine.connect() as conn:
        await visible_account(conn, account_id, key)
        usage = await conn.execute(
            select(
                activity_daily.c.day, activity_daily.c.events, activity_daily.c.duration_s
            ).where(
                activity_daily.c.account_id == account_id,
                activity_daily.c.day.between(start, to),
            )
        )
        for on, events, seconds in usage:
            day(on).update(events=events, usage_minutes=round(seconds / 60, 1))
        scores = await conn.execute(
            select(health_daily.c.day, health_daily.c.score, health_daily.c.band).where(
                health_daily.c.account_id == account_id, health_daily.c.day.between(start, to)
            )
        )
        for on, score, band in scores:
            day(on).update(score=score, band=band)
        for t in await conn.execute(select(tickets).where(tickets.c.account_id == account_id)):
            if start <= t.created_at.date() <= to:
                day(t.created_at.date()).setdefault("tickets_opened", []).append(t.ticket_id)
            if t.solved_at and start <= t.solved_at.date() <= to:
                day(t.solved_at.date()).setdefault("tickets_solved", []).append(t.ticket_id)
        touch = await conn.execute(
            select(processed_events.c.occurred_at).where(
                processed_events.c.account_id == account_id,
                processed_events.c.kind == "touchpoint",
            )
        )
        for (at,) in touch:
            if start <= at.date() <= to:
                entry = day(at.date())
                entry["touchpoints"] = entry.get("touchpoints", 0) + 1
        changes = await conn.execute(
            select(band_changes).where(band_changes.c.account_id == account_id)
        )
        for c in changes:
            if start <= c.changed_at.date() <= to:
                day(c.changed_at.date()).setdefault("band_changes", []).append(
                    {"from": c.from_band, "to": c.to_band, "score": c.score}
                )
        fired = await conn.execute(
            select(
                alerts.c.alert_id,
                alerts.c.rule,
                alerts.c.severity,
                alerts.c.status,
                alerts.c.fired_at,
            ).where(alerts.c.account_id == account_id)
        )
        for a in fired:
            if start <= a.fired_at.date() <= to:
                day(a.fired_at.date()).setdefault("alerts", []).append(
                    {
                        "alert_id": a.alert_id,
                        "rule": a.rule,
                        "severity": a.severity,
                        "status": a.status,
                    }
                )
    return {
        "account_id": account_id,
        "from": start.isoformat(),
        "to": to.isoformat(),
        "days": [days[k] for k in sorted(days)],
    }
