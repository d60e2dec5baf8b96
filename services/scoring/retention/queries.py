"""The renewal pipeline and the retention measures read from the database, for the
read API (``api.py``) and the dashboard alike, so both answer the same.

A CSM key sees the accounts its CSM owns now (``ApiKey.portfolio_of``), as everywhere
else; a lead's key sees them all.
"""

from __future__ import annotations

from datetime import date, datetime, time, tzinfo
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scoring.facts_history import facts_as_of
from services.scoring.queries import Filters, portfolio_rows
from services.scoring.retention.metrics import retention
from services.scoring.retention.periods import Quarter
from services.scoring.retention.pipeline import ForecastRule, forecast, forecast_totals
from shared.auth import ApiKey
from shared.contracts.alerts import OPEN_ALERT_STATUSES
from shared.contracts.events import LifecycleStage
from shared.storage.db import among
from shared.storage.tables import account_health, accounts, alerts


async def renewals(
    conn: AsyncConnection, key: ApiKey, quarter: Quarter, today: date, rule: ForecastRule
) -> dict[str, Any]:
    """The accounts ``key`` sees whose contract ends in ``quarter`` (current facts; not
    churned ones), soonest first, each with its ARR, health, danger, open alerts, latest NPS and
    forecast; and the totals per forecast class."""
    rows = [
        r
        for r in await portfolio_rows(conn, key, Filters(), today)
        if r["contract_end"]
        and quarter.start.isoformat() <= r["contract_end"] < str(quarter.end)
        # A churned account has nothing left to renew: it is in the retention's churn.
        and r["lifecycle_stage"] != LifecycleStage.churned
    ]
    ids = [r["account_id"] for r in rows]
    open_alerts = await _open_alerts(conn, ids)
    nps = await _nps(conn, ids)
    out = []
    for r in rows:
        row = {
            **{k: r[k] for k in RENEWAL_FIELDS if k in r},
            "open_alerts": open_alerts.get(r["account_id"], 0),
            "nps_latest": nps.get(r["account_id"]),
        }
        row["forecast"], row["reasons"] = forecast(row, rule)
        out.append(row)
    out.sort(key=lambda r: (r["contract_end"], (r["name"] or r["account_id"]).lower()))
    return {
        "quarter": str(quarter),
        "from": quarter.start.isoformat(),
        "to": quarter.end.isoformat(),
        "totals": forecast_totals(out),
        "accounts": out,
    }


# A renewal row's fields taken from the portfolio row, in the CSV's column order.
RENEWAL_FIELDS = (
    "account_id",
    "name",
    "tier",
    "owner_email",
    "lifecycle_stage",
    "contract_end",
    "days_to_renewal",
    "arr",
    "currency",
    "score",
    "band",
    "danger_level",
)


async def _open_alerts(conn: AsyncConnection, ids: list[str]) -> dict[str, int]:
    q = (
        select(alerts.c.account_id, func.count())
        .where(among(conn, alerts.c.account_id, ids), alerts.c.status.in_(OPEN_ALERT_STATUSES))
        .group_by(alerts.c.account_id)
    )
    return {account_id: n for account_id, n in await conn.execute(q)}


async def _nps(conn: AsyncConnection, ids: list[str]) -> dict[str, int]:
    h = account_health.c
    q = select(h.account_id, h.nps_latest).where(
        among(conn, h.account_id, ids), h.nps_latest.is_not(None)
    )
    return {account_id: nps for account_id, nps in await conn.execute(q)}


async def retention_between(
    conn: AsyncConnection, key: ApiKey, start: date, end: date, by: str | None, zone: tzinfo
) -> dict[str, Any]:
    """The retention over ``[start, end)`` (days in ``zone``) of the accounts ``key``
    sees, overall and per ``by`` (tier, csm or cohort: ``metrics.GROUPS``)."""
    ids = await _visible(conn, key)
    before = await _fields_at(conn, start, ids, zone)
    after = await _fields_at(conn, end, ids, zone)
    return {"from": start.isoformat(), "to": end.isoformat(), **retention(before, after, by)}


async def retention_by_quarter(
    conn: AsyncConnection, key: ApiKey, quarters: list[Quarter], zone: tzinfo
) -> list[dict[str, Any]]:
    """The retention of each quarter, oldest first (each boundary's facts read once)."""
    ids = await _visible(conn, key)
    snapshots: dict[date, dict[str, dict[str, Any]]] = {}
    for day in sorted({q.start for q in quarters} | {q.end for q in quarters}):
        snapshots[day] = await _fields_at(conn, day, ids, zone)
    return [
        {"quarter": str(q), **retention(snapshots[q.start], snapshots[q.end])} for q in quarters
    ]


async def _visible(conn: AsyncConnection, key: ApiKey) -> list[str] | None:
    """The accounts a CSM's key sees (those its CSM owns now); None: every account."""
    if key.portfolio_of is None:
        return None
    q = select(accounts.c.account_id).where(accounts.c.owner_email == key.portfolio_of)
    return [account_id for (account_id,) in await conn.execute(q)]


async def _fields_at(
    conn: AsyncConnection, day: date, ids: list[str] | None, zone: tzinfo
) -> dict[str, dict[str, Any]]:
    """Each account's facts' fields in force at the start of ``day`` in ``zone``."""
    if ids == []:
        return {}
    return await facts_as_of(conn, datetime.combine(day, time(), zone), ids)
