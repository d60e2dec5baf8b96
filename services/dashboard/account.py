"""One account's page: score trend, components and what changed, depth and danger,
seat activation, active-user share, top modules, open tickets, touchpoints, alerts."""

from __future__ import annotations

from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.alerts.queries import visible_alerts
from services.dashboard.auth import NotFound, Viewer
from services.dashboard.home import open_alerts
from services.scoring.queries import (
    OPEN_TICKET_STATUSES,
    account_health_row,
    account_measures,
    visible_account,
)
from shared.storage.tables import (
    alerts,
    health_daily,
    processed_events,
    tickets,
)
from shared.web import ClientError

HISTORY_DAYS = 90
TOP_MODULES = 8
RECENT = 20
# The handbook's four depth levels (HL-03): number and name.
DEPTH_LEVELS = {
    1: "record-keeping 记录型",
    2: "workflow 流程型",
    3: "integrated 整合型",
    4: "customised 定制型",
}
CHANGE_PERIODS = (
    ("since_previous", "Since the previous score"),
    ("since_7d", "Over 7 days"),
    ("since_30d", "Over 30 days"),
)


async def account_page(
    conn: AsyncConnection, who: Viewer, account_id: str, now: datetime, zone: tzinfo
) -> dict[str, Any]:
    """Everything the page shows; NotFound when the account is not the viewer's."""
    try:
        facts_row = await visible_account(conn, account_id, who.key)
    except ClientError as exc:
        raise NotFound(account_id) from exc
    facts = (facts_row.facts or {}).get("fields", {}) if facts_row is not None else {}
    h = await account_health_row(conn, account_id)
    explanation = (h.components if h is not None else None) or {}
    inputs = (h.inputs if h is not None else None) or {}
    m = await account_measures(conn, account_id, None, zone)
    seats = facts.get("seats_purchased") or (m.seats_purchased if m else None)
    ever = m.users_ever_active if m else 0
    level = inputs.get("depth_level")
    return {
        "account_id": account_id,
        "name": facts.get("name") or account_id,
        "facts": facts,
        "owner": (facts.get("owner") or {}).get("email"),
        "health": h,
        "depth_level": (level, DEPTH_LEVELS.get(level, "")) if level is not None else None,
        "danger": explanation.get("danger") or {"level": None, "causes": []},
        "components": _components(explanation),
        "groups": explanation.get("groups") or {},
        "capped_by": explanation.get("capped_by"),
        "missing": explanation.get("missing") or [],
        "changes": [
            (title, [c.get("text", "") for c in (explanation.get("changes") or {}).get(k, [])])
            for k, title in CHANGE_PERIODS
        ],
        "seats": seats,
        "users_ever_active": ever,
        "activation": round(ever / seats, 4) if seats else None,
        "active_users_7d": h.active_users_7d if h is not None else None,
        "active_share_7d": inputs.get("active_user_share_7d"),
        "history": await _history(conn, account_id, h.as_of.astimezone(zone).date() if h else None),
        "modules": _modules(m.names if m else {}),
        "tickets": await _open_tickets(conn, account_id),
        "touchpoints": await _touchpoints(conn, account_id),
        "last_touchpoint_at": h.last_touchpoint_at if h is not None else None,
        "open_alerts": await open_alerts(conn, who, now, account_id),
        "past_alerts": await _past_alerts(conn, who, account_id),
    }


def _components(explanation: dict[str, Any]) -> list[dict[str, Any]]:
    """Components, biggest contribution first, with their share of the score."""
    comps = [dict(c) for c in explanation.get("components") or []]
    for c in comps:
        c["label"] = c.get("label") or c.get("name") or c.get("measure") or "?"
    return sorted(comps, key=lambda c: -(c.get("contribution") or 0))


async def _history(
    conn: AsyncConnection, account_id: str, newest: date | None
) -> dict[str, list[Any]]:
    """Daily score and 7-day active-user share (as %) up to the newest score, one entry
    per calendar day (None on days without a snapshot, so gaps show to scale)."""
    end = newest or date.today()
    share = health_daily.c.inputs["active_user_share_7d"].as_float()
    rows = await conn.execute(
        select(health_daily.c.day, health_daily.c.score, health_daily.c.band, share)
        .where(
            health_daily.c.account_id == account_id,
            health_daily.c.day >= end - timedelta(days=HISTORY_DAYS - 1),
            health_daily.c.day <= end,
        )
        .order_by(health_daily.c.day)
    )
    by_day = {day: (score, band, value) for day, score, band, value in rows}
    out: dict[str, list[Any]] = {"days": [], "scores": [], "bands": [], "active_share": []}
    if not by_day:
        return out
    first = min(by_day)
    for i in range((end - first).days + 1):
        day = first + timedelta(days=i)
        score, band, value = by_day.get(day, (None, None, None))
        out["days"].append(day.isoformat())
        out["scores"].append(score)
        out["bands"].append(band)
        out["active_share"].append(round(float(value) * 100, 1) if value is not None else None)
    return out


def _modules(names: dict[tuple[str, str], tuple[int, int]]) -> list[dict[str, Any]]:
    used: list[dict[str, Any]] = [
        {"module": name, "count_7d": c7, "count_28d": c28}
        for (dimension, name), (c7, c28) in names.items()
        if dimension == "module" and c28
    ]
    used.sort(key=lambda u: (-u["count_28d"], u["module"]))
    return used[:TOP_MODULES]


async def _open_tickets(conn: AsyncConnection, account_id: str) -> list[Any]:
    q = (
        select(tickets)
        .where(tickets.c.account_id == account_id, tickets.c.status.in_(OPEN_TICKET_STATUSES))
        .order_by(tickets.c.created_at)
        .limit(RECENT * 5)
    )
    return list(await conn.execute(q))


async def _touchpoints(conn: AsyncConnection, account_id: str) -> list[datetime]:
    q = (
        select(processed_events.c.occurred_at)
        .where(
            processed_events.c.account_id == account_id,
            processed_events.c.kind == "touchpoint",
        )
        .order_by(processed_events.c.occurred_at.desc())
        .limit(RECENT)
    )
    return [at for (at,) in await conn.execute(q)]


async def _past_alerts(conn: AsyncConnection, who: Viewer, account_id: str) -> list[Any]:
    q = (
        select(
            alerts.c.alert_id,
            alerts.c.rule,
            alerts.c.severity,
            alerts.c.title,
            alerts.c.fired_at,
            alerts.c.resolved_at,
        )
        .where(alerts.c.account_id == account_id, alerts.c.status == "resolved")
        .order_by(alerts.c.fired_at.desc())
        .limit(RECENT)
    )
    return list(await conn.execute(visible_alerts(q, who.key)))
