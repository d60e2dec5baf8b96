"""Reading an account's measures back from the rolling state, as of its newest event."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import cached_property
from types import MappingProxyType
from typing import Any, TypedDict

from sqlalchemy import Result, Row, case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scoring import usage_store
from services.scoring.state import OPEN_STATUSES
from services.scoring.usage import AccountUsage
from services.scoring.usage_measures import NameUse, measure_usage
from services.scoring.zones import zone_of
from shared.storage.db import among
from shared.storage.tables import account_health, accounts, tickets

HIGH_PRIORITIES = ("high", "urgent")

_NONE_USED: Mapping[str, int] = MappingProxyType({})


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
    # (dimension, name) → its counts over 7, 28 and 90 days, by week, last day (NameUse).
    name_use: dict[tuple[str, str], NameUse] = field(default_factory=dict)
    active_days_28d: int = 0
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

    def used_28d(self, dimension: str) -> Mapping[str, int]:
        """Name → its uses over the last 28 days, for the names of ``dimension`` used
        then (read-only: shared between calls)."""
        return self._used_28d.get(dimension, _NONE_USED)

    @cached_property
    def _used_28d(self) -> dict[str, dict[str, int]]:
        """``used_28d`` of every dimension, in one pass over the names: the model's
        inputs ask for it five times a score. Shared as a ``Mapping``, which the typed
        callers cannot change (mypy --strict); a read-only view at run time cost 1-2 µs
        a score (bench/step_bench.py's capture, three rounds). (A cached_property on a
        frozen dataclass: it writes the instance's ``__dict__``, not through
        ``__setattr__``.)"""
        by_dimension: dict[str, dict[str, int]] = {}
        for (dimension, name), (_, uses_28d) in self.names.items():
            if uses_28d:
                by_dimension.setdefault(dimension, {})[name] = uses_28d
        return by_dimension

    def quota_use(self) -> tuple[str, float] | None:
        """The most used allowance, as ("platform api", share of its limit used over the
        last 28 days), or None without any."""
        shares = [
            (f"{dimension} {name}", self.names.get((dimension, name), (0, 0))[1] / limit)
            for dimension, name, limit in self.usage_quotas
        ]
        return max(shares, key=lambda share: share[1]) if shares else None


async def load_measures(
    conn: AsyncConnection,
    ids: set[str],
    as_of: date | None = None,
    tz: tzinfo = UTC,
    *,
    usage: Mapping[str, AccountUsage] | None = None,
) -> list[Measures]:
    """The measures the health model reads, as of each account's newest event (or as of
    ``as_of``, within the kept window; open tickets are always the current ones).
    ``usage``: usage states already loaded (the others are read here)."""
    stored = await _load_accounts(conn, ids) if ids else {}
    if not stored:
        return []
    states = await usage_store.complete(conn, dict(usage or {}), stored)
    # Each account counts in its own zone (services/scoring/zones.py).
    zones = {account_id: zone_of(row.facts, tz) for account_id, row in stored.items()}
    day_of = {
        account_id: as_of or row.as_of.astimezone(zones[account_id]).date()
        for account_id, row in stored.items()
    }
    order = sorted(stored)
    usage_of = dict(
        zip(
            order,
            measure_usage([states[a] for a in order], [day_of[a] for a in order]),
            strict=True,
        )
    )
    # Tickets created or solved since the earliest 28-day window of the batch.
    since = min(
        datetime.combine(day_of[account_id] - timedelta(days=27), time(), zones[account_id])
        for account_id in stored
    )
    support = await _load_support(conn, ids, since)
    return [
        Measures(
            account_id=account_id,
            as_of=day_of[account_id],
            as_of_time=row.as_of,
            first_seen=(
                row.first_seen_at.astimezone(zones[account_id]).date()
                if row.first_seen_at
                else None
            ),
            last_seen_at=row.last_seen_at,
            **usage_of[account_id].activity,
            names=usage_of[account_id].names,
            name_use=usage_of[account_id].name_use,
            **support[account_id],
            **_relationship(row),
            **_commercial(row),
            tz=zones[account_id],
        )
        for account_id, row in sorted(stored.items())
    ]


async def _load_accounts(conn: AsyncConnection, ids: set[str]) -> dict[str, Row[Any]]:
    """Each account's stored health state joined with its CRM facts, by account id."""
    health = account_health.c
    rows: Result[Any] = await conn.execute(
        select(
            health.account_id,
            health.as_of,
            health.first_seen_at,
            health.last_seen_at,
            health.last_touchpoint_at,
            health.nps_latest,
            health.nps_previous,
            health.last_decision_maker_contact_at,
            health.last_payment_failed_at,
            accounts.c.seats_purchased,
            accounts.c.tier,
            accounts.c.facts,
        )
        .select_from(account_health.outerjoin(accounts, accounts.c.account_id == health.account_id))
        .where(among(conn, health.account_id, ids))
    )
    return {row.account_id: row for row in rows}


def _day(value: Any) -> date | None:
    """MAX(day) bypasses the column type on SQLite."""
    return date.fromisoformat(value) if isinstance(value, str) else value


class _Support(TypedDict):
    open_tickets: int
    open_high_priority_tickets: int
    oldest_open_ticket_at: datetime | None
    last_ticket_at: datetime | None
    oldest_open_request_at: datetime | None
    ticket_replies: list[tuple[datetime, datetime | None]]
    tickets_solved: list[datetime]


async def _load_support(
    conn: AsyncConnection, ids: set[str], since: datetime
) -> dict[str, _Support]:
    """The current backlog, and the replies and solutions of tickets since ``since``."""
    replies: dict[str, list[tuple[datetime, datetime | None]]] = defaultdict(list)
    solved: dict[str, list[datetime]] = defaultdict(list)
    for ticket in await conn.execute(
        select(
            tickets.c.account_id,
            tickets.c.created_at,
            tickets.c.first_reply_at,
            tickets.c.solved_at,
        ).where(
            among(conn, tickets.c.account_id, ids),
            (tickets.c.created_at >= since) | (tickets.c.solved_at >= since),
        )
    ):
        if ticket.created_at >= since:
            replies[ticket.account_id].append((ticket.created_at, ticket.first_reply_at))
        if ticket.solved_at is not None and ticket.solved_at >= since:
            solved[ticket.account_id].append(ticket.solved_at)
    backlog = await _load_backlog(conn, ids)
    out: dict[str, _Support] = {}
    for account_id in ids:
        open_now = backlog.get(account_id)
        out[account_id] = _Support(
            open_tickets=int(open_now.open) if open_now else 0,
            open_high_priority_tickets=int(open_now.open_high) if open_now else 0,
            oldest_open_ticket_at=_aware(open_now.oldest_open) if open_now else None,
            last_ticket_at=_aware(open_now.last_created) if open_now else None,
            oldest_open_request_at=_aware(open_now.oldest_open_request) if open_now else None,
            ticket_replies=replies.get(account_id, []),
            tickets_solved=solved.get(account_id, []),
        )
    return out


async def _load_backlog(conn: AsyncConnection, ids: set[str]) -> dict[str, Row[Any]]:
    """Open tickets per account: how many, how many urgent, the oldest, the newest."""
    is_open = tickets.c.status.in_(OPEN_STATUSES)
    is_open_high = is_open & tickets.c.priority.in_(HIGH_PRIORITIES)
    is_open_request = is_open & (tickets.c.type == "feature_request")
    rows = await conn.execute(
        select(
            tickets.c.account_id,
            func.count(_when(is_open, 1)).label("open"),
            func.count(_when(is_open_high, 1)).label("open_high"),
            func.min(_when(is_open, tickets.c.created_at)).label("oldest_open"),
            func.min(_when(is_open_request, tickets.c.created_at)).label("oldest_open_request"),
            func.max(tickets.c.created_at).label("last_created"),
        )
        .where(among(conn, tickets.c.account_id, ids))
        .group_by(tickets.c.account_id)
    )
    return {row.account_id: row for row in rows}


class _Relationship(TypedDict):
    last_touchpoint_at: datetime | None
    nps_latest: int | None
    nps_previous: int | None
    last_decision_maker_contact_at: datetime | None
    decision_maker_changed_at: datetime | None
    champion_changed_at: datetime | None


def _relationship(stored: Row[Any]) -> _Relationship:
    """Contact, NPS and people changes, from the stored state and CRM facts."""
    return _Relationship(
        last_touchpoint_at=stored.last_touchpoint_at,
        nps_latest=stored.nps_latest,
        nps_previous=stored.nps_previous,
        last_decision_maker_contact_at=stored.last_decision_maker_contact_at,
        decision_maker_changed_at=_people_change(stored.facts, "decision_maker"),
        champion_changed_at=_people_change(stored.facts, "champion"),
    )


class _Commercial(TypedDict):
    seats_purchased: int | None
    tier: str | None
    lifecycle_stage: str | None
    contract_start: date | None
    contract_end: date | None
    go_live: date | None
    icp_fit: bool | None
    usage_quotas: tuple[tuple[str, str, int], ...]
    last_payment_failed_at: datetime | None


def _commercial(stored: Row[Any]) -> _Commercial:
    """Seats, tier, contract dates, allowances and payments, from the CRM facts."""
    return _Commercial(
        seats_purchased=stored.seats_purchased,
        tier=stored.tier,
        lifecycle_stage=_fact(stored.facts, "lifecycle_stage"),
        contract_start=_date_fact(stored.facts, "contract_start"),
        contract_end=_date_fact(stored.facts, "contract_end"),
        go_live=_date_fact(stored.facts, "go_live"),
        icp_fit=_fact(stored.facts, "icp_fit"),
        usage_quotas=tuple(
            (quota["dimension"], quota["name"], int(quota["limit"]))
            for quota in _fact(stored.facts, "usage_quotas") or ()
        ),
        last_payment_failed_at=stored.last_payment_failed_at,
    )


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
