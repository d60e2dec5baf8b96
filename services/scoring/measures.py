"""Reading an account's measures back from the rolling state, as of its newest event."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import case, distinct, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scoring.state import OPEN_STATUSES
from shared.storage.tables import (
    account_health,
    account_users,
    accounts,
    activity_daily,
    activity_daily_names,
    activity_daily_users,
    tickets,
)

HIGH_PRIORITIES = ("high", "urgent")


@dataclass(frozen=True)
class Measures:
    account_id: str
    as_of: date
    as_of_time: datetime
    first_seen: date | None
    active_users_7d: int
    active_users_30d: int
    active_days_7d: int
    events_7d: int
    open_tickets: int
    seats_purchased: int | None
    active_users_today: int = 0
    users_ever_active: int = 0
    usage_minutes_7d: float = 0.0
    last_seen_at: datetime | None = None
    last_touchpoint_at: datetime | None = None
    nps_latest: int | None = None
    nps_previous: int | None = None
    last_decision_maker_contact_at: datetime | None = None
    last_payment_failed_at: datetime | None = None
    tier: str | None = None
    lifecycle_stage: str | None = None
    contract_start: date | None = None
    contract_end: date | None = None
    go_live: date | None = None
    open_high_priority_tickets: int = 0
    oldest_open_ticket_at: datetime | None = None
    last_ticket_at: datetime | None = None
    oldest_open_request_at: datetime | None = None
    decision_maker_changed_at: datetime | None = None
    champion_changed_at: datetime | None = None
    icp_fit: bool | None = None
    # (dimension, name) → (count over 7 days, count over 28 days); dimensions: event,
    # module, platform.
    names: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    # (created, first reply) of tickets created in the last 28 days, for SLA checks.
    ticket_replies: list[tuple[datetime, datetime | None]] = field(default_factory=list)
    # When tickets were solved, for those solved in the last 28 days or so.
    tickets_solved: list[datetime] = field(default_factory=list)
    # Contracted allowances over 28 days: (dimension, name, limit), from the CRM.
    usage_quotas: tuple[tuple[str, str, int], ...] = ()
    # The zone whose calendar days the measures count in.
    tz: tzinfo = UTC

    def day_of(self, moment: datetime) -> date:
        return moment.astimezone(self.tz).date()

    def used_28d(self, dimension: str) -> dict[str, int]:
        return {n: c28 for (d, n), (_, c28) in self.names.items() if d == dimension and c28}

    def quota_use(self) -> tuple[str, float] | None:
        """The most used allowance, as ("platform api", share of its limit used over the
        last 28 days), or None without any."""
        shares = [
            (f"{d} {n}", self.names.get((d, n), (0, 0))[1] / limit)
            for d, n, limit in self.usage_quotas
        ]
        return max(shares, key=lambda s: s[1]) if shares else None


async def load_measures(
    conn: AsyncConnection, ids: set[str], as_of: date | None = None, tz: tzinfo = UTC
) -> list[Measures]:
    """The measures the health model reads, as of each account's newest event (or as of
    ``as_of``, within the kept window; open tickets are always the current ones)."""
    if not ids:
        return []
    rows = await conn.execute(
        select(
            account_health.c.account_id,
            account_health.c.as_of,
            account_health.c.first_seen_at,
            account_health.c.last_seen_at,
            account_health.c.last_touchpoint_at,
            account_health.c.nps_latest,
            account_health.c.nps_previous,
            account_health.c.last_decision_maker_contact_at,
            account_health.c.last_payment_failed_at,
            accounts.c.seats_purchased,
            accounts.c.tier,
            accounts.c.facts,
        )
        .select_from(
            account_health.outerjoin(accounts, accounts.c.account_id == account_health.c.account_id)
        )
        .where(account_health.c.account_id.in_(ids))
    )
    base = {r.account_id: r for r in rows}
    by_day: dict[date, list[str]] = defaultdict(list)
    for r in base.values():
        by_day[as_of or r.as_of.astimezone(tz).date()].append(r.account_id)
    users: dict[str, tuple[int, int, int]] = {}
    ever: dict[str, int] = {}
    minutes: dict[str, float] = {}
    events: dict[str, tuple[int, int]] = {}
    names: dict[str, dict[tuple[str, str], tuple[int, int]]] = defaultdict(dict)
    for day, group in by_day.items():
        d7 = day - timedelta(days=6)
        d28 = day - timedelta(days=27)
        d30 = day - timedelta(days=29)
        n = activity_daily_names
        for row in await conn.execute(
            select(
                n.c.account_id,
                n.c.dimension,
                n.c.name,
                func.sum(_when(n.c.day >= d7, n.c.count)),
                func.sum(n.c.count),
            )
            .where(n.c.account_id.in_(group), n.c.day >= d28, n.c.day <= day)
            .group_by(n.c.account_id, n.c.dimension, n.c.name)
        ):
            names[row[0]][(row[1], row[2])] = (int(row[3] or 0), int(row[4] or 0))
        u = activity_daily_users
        for row in await conn.execute(
            select(
                u.c.account_id,
                func.count(distinct(_when(u.c.day >= d7, u.c.user_id))),
                func.count(distinct(u.c.user_id)),
                func.count(distinct(_when(u.c.day == day, u.c.user_id))),
            )
            .where(u.c.account_id.in_(group), u.c.day >= d30, u.c.day <= day)
            .group_by(u.c.account_id)
        ):
            users[row[0]] = (row[1], row[2], row[3])
        au = account_users
        for row in await conn.execute(
            select(au.c.account_id, func.count())
            .where(au.c.account_id.in_(group), au.c.first_active_on <= day)
            .group_by(au.c.account_id)
        ):
            ever[row[0]] = int(row[1])
        d = activity_daily
        for total in await conn.execute(
            select(d.c.account_id, func.sum(d.c.events), func.count(), func.sum(d.c.duration_s))
            .where(d.c.account_id.in_(group), d.c.day >= d7, d.c.day <= day)
            .group_by(d.c.account_id)
        ):
            events[total[0]] = (int(total[1] or 0), int(total[2]))
            minutes[total[0]] = float(total[3] or 0) / 60
    replies: dict[str, list[tuple[datetime, datetime | None]]] = defaultdict(list)
    solved: dict[str, list[datetime]] = defaultdict(list)
    oldest_day = min(by_day) - timedelta(days=27) if by_day else None
    if oldest_day is not None:
        since = datetime.combine(oldest_day, datetime.min.time(), tz)
        for t in await conn.execute(
            select(
                tickets.c.account_id,
                tickets.c.created_at,
                tickets.c.first_reply_at,
                tickets.c.solved_at,
            ).where(
                tickets.c.account_id.in_(ids),
                (tickets.c.created_at >= since) | (tickets.c.solved_at >= since),
            )
        ):
            if t.created_at >= since:
                replies[t.account_id].append((t.created_at, t.first_reply_at))
            if t.solved_at is not None and t.solved_at >= since:
                solved[t.account_id].append(t.solved_at)
    is_open = tickets.c.status.in_(OPEN_STATUSES)
    support = {
        r.account_id: r
        for r in await conn.execute(
            select(
                tickets.c.account_id,
                func.count(_when(is_open, 1)).label("open"),
                func.count(_when(is_open & tickets.c.priority.in_(HIGH_PRIORITIES), 1)).label(
                    "open_high"
                ),
                func.min(_when(is_open, tickets.c.created_at)).label("oldest_open"),
                func.min(
                    _when(is_open & (tickets.c.type == "feature_request"), tickets.c.created_at)
                ).label("oldest_open_request"),
                func.max(tickets.c.created_at).label("last_created"),
            )
            .where(tickets.c.account_id.in_(ids))
            .group_by(tickets.c.account_id)
        )
    }
    return [
        Measures(
            account_id=a,
            as_of=as_of or r.as_of.astimezone(tz).date(),
            as_of_time=r.as_of,
            first_seen=r.first_seen_at.astimezone(tz).date() if r.first_seen_at else None,
            last_seen_at=r.last_seen_at,
            active_users_7d=users.get(a, (0, 0, 0))[0],
            active_users_30d=users.get(a, (0, 0, 0))[1],
            active_users_today=users.get(a, (0, 0, 0))[2],
            users_ever_active=ever.get(a, 0),
            usage_minutes_7d=round(minutes.get(a, 0.0), 2),
            active_days_7d=events.get(a, (0, 0))[1],
            events_7d=events.get(a, (0, 0))[0],
            open_tickets=int(support[a].open) if a in support else 0,
            open_high_priority_tickets=int(support[a].open_high) if a in support else 0,
            oldest_open_ticket_at=_aware(support[a].oldest_open) if a in support else None,
            last_ticket_at=_aware(support[a].last_created) if a in support else None,
            oldest_open_request_at=(
                _aware(support[a].oldest_open_request) if a in support else None
            ),
            decision_maker_changed_at=_people_change(r.facts, "decision_maker"),
            champion_changed_at=_people_change(r.facts, "champion"),
            icp_fit=_fact(r.facts, "icp_fit"),
            seats_purchased=r.seats_purchased,
            last_touchpoint_at=r.last_touchpoint_at,
            nps_latest=r.nps_latest,
            nps_previous=r.nps_previous,
            last_decision_maker_contact_at=r.last_decision_maker_contact_at,
            last_payment_failed_at=r.last_payment_failed_at,
            tier=r.tier,
            lifecycle_stage=_fact(r.facts, "lifecycle_stage"),
            contract_start=_date_fact(r.facts, "contract_start"),
            contract_end=_date_fact(r.facts, "contract_end"),
            go_live=_date_fact(r.facts, "go_live"),
            names=names.get(a, {}),
            ticket_replies=replies.get(a, []),
            tickets_solved=solved.get(a, []),
            usage_quotas=tuple(
                (q["dimension"], q["name"], int(q["limit"]))
                for q in _fact(r.facts, "usage_quotas") or ()
            ),
            tz=tz,
        )
        for a, r in sorted(base.items())
    ]


def _when(condition: Any, value: Any) -> Any:
    return case((condition, value), else_=None)


def _aware(value: Any) -> datetime | None:
    """Aggregates bypass the column type on SQLite: normalise to aware UTC."""
    if value is None:
        return None
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    assert isinstance(moment, datetime)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _people_change(facts: dict[str, Any] | None, role: str) -> datetime | None:
    when = (facts or {}).get("people_changes", {}).get(role)
    return datetime.fromisoformat(when) if when else None


def _fact(facts: dict[str, Any] | None, name: str) -> Any:
    return (facts or {}).get("fields", {}).get(name)


def _date_fact(facts: dict[str, Any] | None, name: str) -> date | None:
    value = _fact(facts, name)
    return date.fromisoformat(value) if value else None
