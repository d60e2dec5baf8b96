"""The CSM's home page: my portfolio by risk × value, my open alerts, renewals coming up.

The portfolio rows are the read API's (``services.scoring.queries``), so the page
and ``GET /v1/accounts`` always agree on scores, ARR and the order.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.alerts.queries import visible_alerts
from services.dashboard.auth import Viewer
from services.scoring.queries import SORTS, Filters, portfolio_rows
from shared.contracts.alerts import OPEN_ALERT_STATUSES
from shared.storage.tables import accounts, alerts

# Renewals within this many days are "coming up" (the handbook's longest notice).
RENEWAL_HORIZON_DAYS = 90
# The most open alerts one page lists (a lead sees every CSM's).
MAX_ALERTS = 200
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


async def portfolio(conn: AsyncConnection, who: Viewer, today: date) -> list[dict[str, Any]]:
    """The accounts the viewer may see, riskiest and most valuable first."""
    rows = await portfolio_rows(conn, who.key, Filters(), today)
    by, reverse = SORTS["risk_value"]
    rows.sort(key=by, reverse=reverse)
    return rows


def renewals(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Accounts whose contract ends within the horizon, soonest first."""
    due = [
        r
        for r in rows
        if r["days_to_renewal"] is not None and 0 <= r["days_to_renewal"] <= RENEWAL_HORIZON_DAYS
    ]
    return sorted(due, key=lambda r: (r["days_to_renewal"], -(r["arr"] or 0)))


async def open_alerts(
    conn: AsyncConnection, who: Viewer, now: datetime, account_id: str | None = None
) -> list[dict[str, Any]]:
    """Open (firing or acknowledged) alerts, most severe and newest first."""
    q = (
        select(
            alerts.c.alert_id,
            alerts.c.account_id,
            alerts.c.rule,
            alerts.c.severity,
            alerts.c.status,
            alerts.c.title,
            alerts.c.fired_at,
            alerts.c.acknowledged_by,
            alerts.c.snoozed_until,
            alerts.c.muted,
            accounts.c.name,
        )
        .select_from(alerts.outerjoin(accounts, accounts.c.account_id == alerts.c.account_id))
        .where(alerts.c.status.in_(OPEN_ALERT_STATUSES))
        .order_by(alerts.c.fired_at.desc())
        .limit(MAX_ALERTS)
    )
    if account_id is not None:
        q = q.where(alerts.c.account_id == account_id)
    out = []
    for r in await conn.execute(visible_alerts(q, who.key)):
        snoozed = r.snoozed_until is not None and r.snoozed_until > now
        out.append(
            {
                "alert_id": r.alert_id,
                "account_id": r.account_id,
                "account_name": r.name or r.account_id,
                "rule": r.rule,
                "severity": r.severity,
                "status": r.status,
                "title": r.title,
                "fired_at": r.fired_at,
                "acknowledged_by": r.acknowledged_by,
                "snoozed_until": r.snoozed_until if snoozed else None,
                "muted": r.muted,
                "can_acknowledge": who.can_respond and r.status == "firing",
                "can_snooze": who.can_respond and not snoozed,
            }
        )
    out.sort(key=lambda a: SEVERITY_ORDER.get(a["severity"], 9))
    return out


async def home(conn: AsyncConnection, who: Viewer, today: date, now: datetime) -> dict[str, Any]:
    rows = await portfolio(conn, who, today)
    return {
        "accounts": rows,
        "alerts": await open_alerts(conn, who, now),
        "renewals": renewals(rows),
        "horizon": RENEWAL_HORIZON_DAYS,
    }
