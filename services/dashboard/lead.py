"""The lead's view (the handbook's "boss view"): 90-day trends and today's totals.

A CSM key gets the same page over their own portfolio only.

How each trend is derived from what the service stores:

- **customers**: accounts seen so far on each day, from ``account_health.first_seen_at``
  (the first event of any kind), counted cumulatively.
- **active users**: distinct users active per day summed over accounts, from
  ``activity_daily_users`` (kept for the activity window, 90 days by default).
- **stably active share**: the handbook's "stably active customer" has at least half of
  its seats active over 7 days. The daily health snapshot stores that ratio as the model
  input ``active_user_share_7d``; an account has a snapshot only on days it was scored,
  so each account's latest value on or before a day stands for that day (carried
  forward), and the share is over accounts with a known value. Accounts without seats
  purchased have no ratio and are left out.
- **churned share**: accounts whose CRM facts say ``lifecycle_stage = "churned"``,
  dated by when the CRM set that field (the facts' per-field stamp), over the customers
  of that day. Facts keep no older stages, so an account that churned and came back is
  counted as it stands now.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.alerts.queries import visible_alerts
from services.dashboard.auth import Viewer
from services.dashboard.home import portfolio
from services.scoring.queries import STABLE_ACTIVE_SHARE, portfolio_totals
from shared.contracts.alerts import OPEN_ALERT_STATUSES
from shared.storage.tables import (
    account_health,
    accounts,
    activity_daily_users,
    alerts,
    health_daily,
)

TREND_DAYS = 90
BANDS = ("red", "yellow", "green")


def _day(moment: Any, zone: tzinfo) -> date | None:
    if isinstance(moment, datetime):
        return moment.astimezone(zone).date()
    return moment if isinstance(moment, date) else None


async def lead(conn: AsyncConnection, who: Viewer, today: date, zone: tzinfo) -> dict[str, Any]:
    rows = await portfolio(conn, who, today)
    ids = {r["account_id"] for r in rows} if who.key.portfolio_of is not None else None
    days = [today - timedelta(days=TREND_DAYS - 1 - i) for i in range(TREND_DAYS)]
    customers = await _customers(conn, ids, days, zone)
    churned = await _churned(conn, who, {r["account_id"] for r in rows}, days, customers, zone)
    totals = portfolio_totals(rows)
    bands = totals["by_band"]
    trends: dict[str, list[Any]] = {
        "customers": customers,
        "active_users": await _active_users(conn, ids, days),
        "stable_share": await _stable_share(conn, ids, days),
        "churned_share": churned,
    }
    # Days before the first customer was seen are left out (but a week is always shown).
    first = min(next((i for i, n in enumerate(customers) if n), len(days)), len(days) - 7)
    return {
        "days": [d.isoformat() for d in days[first:]],
        **{name: series[first:] for name, series in trends.items()},
        "bands": {b: bands.get(b, 0) for b in (*BANDS, "unscored") if bands.get(b) or b in BANDS},
        **{k: totals[k] for k in ("accounts", "arr_total", "arr_at_risk", "active_users_7d")},
        "stable_share_now": totals["stably_active_share"],
        "churned_now": totals["churned"],
        "alerts_by_rule": await alerts_by_rule(conn, who, ids),
    }


async def _customers(
    conn: AsyncConnection, ids: set[str] | None, days: list[date], zone: tzinfo
) -> list[int]:
    q = select(account_health.c.first_seen_at, account_health.c.as_of)
    if ids is not None:
        q = q.where(account_health.c.account_id.in_(ids))
    firsts = sorted(
        d for first, as_of in await conn.execute(q) if (d := _day(first or as_of, zone))
    )
    out, i = [], 0
    for day in days:
        while i < len(firsts) and firsts[i] <= day:
            i += 1
        out.append(i)
    return out


async def _active_users(conn: AsyncConnection, ids: set[str] | None, days: list[date]) -> list[int]:
    t = activity_daily_users
    q = select(t.c.day, func.count()).where(t.c.day >= days[0]).group_by(t.c.day)
    if ids is not None:
        q = q.where(t.c.account_id.in_(ids))
    per_day = {day: n for day, n in await conn.execute(q)}
    return [int(per_day.get(d, 0)) for d in days]


async def _stable_share(
    conn: AsyncConnection, ids: set[str] | None, days: list[date]
) -> list[float | None]:
    share = health_daily.c.inputs["active_user_share_7d"].as_float()
    q = (
        select(health_daily.c.account_id, health_daily.c.day, share)
        .where(health_daily.c.day >= days[0])
        .order_by(health_daily.c.day)
    )
    if ids is not None:
        q = q.where(health_daily.c.account_id.in_(ids))
    by_day: dict[date, list[tuple[str, float | None]]] = {}
    for account_id, day, value in await conn.execute(q):
        by_day.setdefault(day, []).append((account_id, value))
    latest: dict[str, float] = {}
    out: list[float | None] = []
    for day in days:
        for account_id, value in by_day.get(day, []):
            if value is not None:
                latest[account_id] = float(value)
        known = list(latest.values())
        stable = sum(1 for v in known if v >= STABLE_ACTIVE_SHARE)
        out.append(round(stable / len(known), 4) if known else None)
    return out


async def _churned(
    conn: AsyncConnection,
    who: Viewer,
    visible: set[str],
    days: list[date],
    customers: list[int],
    zone: tzinfo,
) -> list[float | None]:
    q = select(accounts.c.account_id, accounts.c.facts)
    if who.key.portfolio_of is not None:
        q = q.where(accounts.c.owner_email == who.key.portfolio_of)
    churn_days = []
    for account_id, facts in await conn.execute(q):
        fields = (facts or {}).get("fields", {})
        if account_id not in visible or fields.get("lifecycle_stage") != "churned":
            continue
        stamp = (facts.get("stamps") or {}).get("lifecycle_stage") or [None]
        try:
            on = _day(datetime.fromisoformat(stamp[0]), zone) if stamp[0] else days[0]
        except (TypeError, ValueError):
            on = days[0]
        churn_days.append(on or days[0])
    return [
        round(min(1.0, sum(1 for c in churn_days if c <= day) / n), 4) if n else None
        for day, n in zip(days, customers, strict=True)
    ]


async def alerts_by_rule(
    conn: AsyncConnection, who: Viewer, ids: set[str] | None
) -> dict[str, int]:
    """Open alerts per rule, most frequent first."""
    q = select(alerts.c.rule, func.count()).where(alerts.c.status.in_(OPEN_ALERT_STATUSES))
    if ids is not None:
        q = q.where(alerts.c.account_id.in_(ids))
    q = visible_alerts(q, who.key).group_by(alerts.c.rule)
    counts = {rule: int(n) for rule, n in await conn.execute(q)}
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
