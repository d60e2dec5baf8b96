"""The lead's view (the handbook's "boss view"): trends over a chosen time range,
today's totals and a breakdown per CSM.

A CSM key gets the same page over their own portfolio only.

How each figure is derived from what the service stores:

- **customers**: accounts seen so far on each day, from ``account_health.first_seen_at``
  (the first event of any kind), counted cumulatively, minus the accounts churned by
  that day: a churned account is counted as churned, not as a customer.
- **active users**: distinct users active per day summed over accounts, from
  ``activity_daily.active_users`` (kept for the activity window, 90 days by default).
- **stably active share**: the handbook's "stably active customer" has at least half of
  its seats active over 7 days. The daily health snapshot stores that ratio as the model
  input ``active_user_share_7d``; an account has a snapshot only on days it was scored,
  so each account's latest value on or before a day stands for that day (carried
  forward), and the share is over accounts with a known value. Accounts without seats
  purchased have no ratio and are left out.
- **churned share**: accounts whose CRM facts say ``lifecycle_stage = "churned"``,
  dated by when the CRM set that field (the facts' per-field stamp), over the accounts
  seen by that day. Facts keep no older stages, so an account that churned and came
  back is counted as it stands now.
- **today's totals and the per-CSM breakdown**: the portfolio rows of the read API
  (``portfolio_rows``); ARR, ARR at risk, bands and active users over the customers
  (churned accounts apart), open alerts by the account's current CSM.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.alerts.queries import visible_alerts, waiting
from services.dashboard import asked_days
from services.dashboard.asked_days import AskedDays
from services.dashboard.auth import Viewer
from services.dashboard.home import arr_totals, portfolio
from services.scoring.queries import STABLE_ACTIVE_SHARE, portfolio_totals
from shared.contracts.alerts import OPEN_ALERT_STATUSES
from shared.i18n import N_
from shared.storage.db import among
from shared.storage.tables import (
    account_health,
    accounts,
    activity_daily,
    alerts,
    health_daily,
)
from shared.web import whole_number

# The ranges offered as buttons, in days; any other comes as from/to.
RANGES = (7, 30, 90, 365)
DEFAULT_DAYS = 90
MAX_DAYS = 366
BANDS = ("red", "yellow", "green")
CHURNED = "churned"


NO_PRESET = N_(
    "“{asked}” is none of the ranges offered: showing the last {n} days (or give a “from”)."
)


@dataclass(frozen=True)
class TimeRange:
    """The days the trends cover, ``start`` to ``end`` inclusive."""

    start: date
    end: date
    preset: int | None  # one of RANGES, else None (a from/to range)
    # What from/to asked, and why other days are shown if they are.
    asked: AskedDays = field(default=AskedDays(), compare=False)

    @property
    def days(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range((self.end - self.start).days + 1)]

    @classmethod
    def parse(cls, params: Mapping[str, str], today: date) -> TimeRange:
        """``days`` (one of RANGES) or ``from``/``to`` (ISO days, at most MAX_DAYS
        apart, none after today: ``asked_days.read``); anything else gives the default
        range."""
        asked = asked_days.read(params, today, most_days=MAX_DAYS)
        if asked.span is not None:
            return cls(*asked.span, None, asked)
        chosen = whole_number(params.get("days", ""), 4)
        n = chosen if chosen in RANGES else DEFAULT_DAYS
        if params.get("days") and chosen not in RANGES and asked.note is None:
            # "days=5" showed 90 days without a word (found from outside).
            values: dict[str, int | str | date] = {"asked": params["days"][:20], "n": n}
            asked = AskedDays(note=NO_PRESET, values=values)
        return cls(today - timedelta(days=n - 1), today, n, asked)


def _day(moment: Any, zone: tzinfo) -> date | None:
    if isinstance(moment, datetime):
        return moment.astimezone(zone).date()
    return moment if isinstance(moment, date) else None


async def lead(
    conn: AsyncConnection,
    who: Viewer,
    span: TimeRange,
    today: date,
    zone: tzinfo,
    now: datetime,
) -> dict[str, Any]:
    rows = await portfolio(conn, who, today)
    ids = {r["account_id"] for r in rows} if who.key.portfolio_of is not None else None
    days = span.days
    churn_days = await _churn_days(conn, who, {r["account_id"] for r in rows}, zone)
    first_seen = await _first_seen(conn, ids, zone)
    seen = counted_by_day(first_seen.values(), days)
    # An account churns no earlier than it was first seen (a CRM stamp may be older).
    churned = counted_by_day((max(on, first_seen.get(a, on)) for a, on in churn_days.items()), days)
    # Before the first account was seen there is nothing to count: no value (a gap in
    # the chart), not 0 customers, which reads as a portfolio that churned away.
    customers = [n - gone if n else None for n, gone in zip(seen, churned, strict=True)]
    live = [r for r in rows if r["lifecycle_stage"] != CHURNED]
    totals = portfolio_totals(live)
    bands = totals["by_band"]
    open_by_account = await open_alerts_by_account(conn, who, ids)
    waiting_by_account = await alerts_waiting(conn, who, ids, now)
    trends: dict[str, list[Any]] = {
        "customers": customers,
        "active_users": [
            users if n else None
            for users, n in zip(await _active_users(conn, ids, days), seen, strict=True)
        ],
        "stable_share": await _stable_share(conn, ids, days),
        "churned_share": [
            round(min(1.0, gone / n), 4) if n else None
            for gone, n in zip(churned, seen, strict=True)
        ],
    }
    # Days before the first customer was seen are left out (but a week is always shown):
    # before it, only accounts that churned are known (the demo's former customers, an
    # import of lost accounts first), and the chart read 0 customers and 100% churned.
    first = min(next((i for i, n in enumerate(customers) if n), len(days)), max(0, len(days) - 7))
    return {
        "range": span,
        "ranges": RANGES,
        "days": [d.isoformat() for d in days[first:]],
        **{name: series[first:] for name, series in trends.items()},
        "bands": {b: bands.get(b, 0) for b in (*BANDS, "unscored") if bands.get(b) or b in BANDS},
        **{k: totals[k] for k in ("accounts", "arr_total", "arr_at_risk", "active_users_7d")},
        "money": arr_totals(totals),
        "stable_share_now": totals["stably_active_share"],
        "churned_now": len(rows) - len(live),
        "churned_in_range": sum(1 for c in churn_days.values() if span.start <= c <= span.end),
        "alerts_by_rule": await alerts_by_rule(conn, who, ids),
        "alerts_fired": await alerts_fired(conn, who, ids, span, zone),
        "per_csm": per_csm(rows, open_by_account, churn_days, span, waiting_by_account),
        "open_alerts": sum(open_by_account.values()),
    }


def per_csm(
    rows: list[dict[str, Any]],
    open_by_account: Mapping[str, int],
    churn_days: Mapping[str, date],
    span: TimeRange,
    waiting: Mapping[str, Waiting] | None = None,
) -> list[dict[str, Any]]:
    """One line per owner CSM (accounts without one together, last): customers, ARR,
    bands, open alerts, the alerts waiting for them (how many, since when: who is behind,
    not only who is loaded) and ARR at risk over the customers; churned accounts (all,
    and within the range) apart. Most ARR at risk first."""
    waiting = waiting or {}
    by_owner: dict[str | None, list[dict[str, Any]]] = {}
    for r in rows:
        by_owner.setdefault(r["owner_email"], []).append(r)
    out = []
    for owner, mine in by_owner.items():
        live = [r for r in mine if r["lifecycle_stage"] != CHURNED]
        totals = portfolio_totals(live)
        gone = [r["account_id"] for r in mine if r["lifecycle_stage"] == CHURNED]
        out.append(
            {
                "csm": owner,
                "customers": len(live),
                "arr": totals["arr_total"],
                "arr_at_risk": totals["arr_at_risk"],
                "money": arr_totals(totals),
                "bands": {b: totals["by_band"].get(b, 0) for b in BANDS},
                "open_alerts": sum(open_by_account.get(r["account_id"], 0) for r in mine),
                **_waiting_of(waiting.get(r["account_id"]) for r in mine),
                "churned": len(gone),
                "churned_in_range": sum(
                    1 for a in gone if a in churn_days and span.start <= churn_days[a] <= span.end
                ),
            }
        )
    out.sort(key=lambda c: (c["csm"] is None, -c["arr_at_risk"], -c["arr"], c["csm"] or ""))
    return out


async def _first_seen(conn: AsyncConnection, ids: set[str] | None, zone: tzinfo) -> dict[str, date]:
    """The day each account was first seen (its first event of any kind)."""
    h = account_health.c
    q = select(h.account_id, h.first_seen_at, h.as_of)
    if ids is not None:
        q = q.where(among(conn, h.account_id, ids))
    rows = await conn.execute(q)
    return {a: d for a, first, as_of in rows if (d := _day(first or as_of, zone)) is not None}


def counted_by_day(starts: Iterable[date], days: list[date]) -> list[int]:
    """For each of ``days``, how many of ``starts`` fall on or before it."""
    ordered = sorted(starts)
    return [bisect_right(ordered, day) for day in days]


async def _active_users(conn: AsyncConnection, ids: set[str] | None, days: list[date]) -> list[int]:
    """Users active per day, summed over the accounts (a user belongs to one account)."""
    t = activity_daily
    q = select(t.c.day, func.sum(t.c.active_users)).where(t.c.day >= days[0]).group_by(t.c.day)
    if ids is not None:
        q = q.where(among(conn, t.c.account_id, ids))
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
        q = q.where(among(conn, health_daily.c.account_id, ids))
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


async def _churn_days(
    conn: AsyncConnection, who: Viewer, visible: set[str], zone: tzinfo
) -> dict[str, date]:
    """The churned accounts among ``visible`` and the day each churned: the CRM's stamp
    on the field, else ``date.min`` (churned before any day shown, in no range)."""
    q = select(accounts.c.account_id, accounts.c.facts)
    if who.key.portfolio_of is not None:
        q = q.where(accounts.c.owner_email == who.key.portfolio_of)
    out = {}
    for account_id, facts in await conn.execute(q):
        fields = (facts or {}).get("fields", {})
        if account_id not in visible or fields.get("lifecycle_stage") != CHURNED:
            continue
        stamp = (facts.get("stamps") or {}).get("lifecycle_stage") or [None]
        try:
            on = _day(datetime.fromisoformat(stamp[0]), zone) if stamp[0] else None
        except (TypeError, ValueError):
            on = None
        out[account_id] = on or date.min
    return out


async def _open_alert_counts(
    conn: AsyncConnection, who: Viewer, ids: set[str] | None, by: Any
) -> dict[str, int]:
    """Open alerts the viewer may see, counted per value of the column ``by``."""
    q = select(by, func.count()).where(alerts.c.status.in_(OPEN_ALERT_STATUSES))
    if ids is not None:
        q = q.where(among(conn, alerts.c.account_id, ids))
    q = visible_alerts(q, who.key).group_by(by)
    return {value: int(n) for value, n in await conn.execute(q)}


@dataclass(frozen=True)
class Waiting:
    """An account's alerts to do: how many, and when the oldest fired."""

    count: int
    oldest: datetime


async def alerts_waiting(
    conn: AsyncConnection, who: Viewer, ids: set[str] | None, now: datetime
) -> dict[str, Waiting]:
    """Per account, its alerts waiting for someone (``services.alerts.queries.waiting``),
    and since when the oldest has: since it was stored (when people were told), not
    since its rule began to fire in event time (an imported history's alerts read as
    waiting for months)."""
    q = select(alerts.c.account_id, func.count(), func.min(alerts.c.stored_at))
    q = q.where(waiting(now))
    if ids is not None:
        q = q.where(among(conn, alerts.c.account_id, ids))
    q = visible_alerts(q, who.key).group_by(alerts.c.account_id)
    return {account: Waiting(int(n), oldest) for account, n, oldest in await conn.execute(q)}


def _waiting_of(found: Iterable[Waiting | None]) -> dict[str, Any]:
    mine = [w for w in found if w is not None]
    return {
        "to_do": sum(w.count for w in mine),
        "oldest_to_do": min((w.oldest for w in mine), default=None),
    }


async def alerts_by_rule(
    conn: AsyncConnection, who: Viewer, ids: set[str] | None
) -> dict[str, int]:
    """Open alerts per rule, most frequent first."""
    counts = await _open_alert_counts(conn, who, ids, alerts.c.rule)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


async def open_alerts_by_account(
    conn: AsyncConnection, who: Viewer, ids: set[str] | None
) -> dict[str, int]:
    """Open alerts per account."""
    return await _open_alert_counts(conn, who, ids, alerts.c.account_id)


async def alerts_fired(
    conn: AsyncConnection, who: Viewer, ids: set[str] | None, span: TimeRange, zone: tzinfo
) -> int:
    """Alerts that fired within the range (whatever became of them)."""
    q = select(alerts.c.fired_at).where(
        alerts.c.fired_at
        >= datetime.combine(span.start, datetime.min.time(), zone) - timedelta(days=1)
    )
    if ids is not None:
        q = q.where(among(conn, alerts.c.account_id, ids))
    fired = [_day(at, zone) for (at,) in await conn.execute(visible_alerts(q, who.key))]
    return sum(1 for d in fired if d is not None and span.start <= d <= span.end)
