"""What a customer report says, read from the rolling state: the handbook's monthly
usage report, the enterprise tier's usage report every two months (CAD-09, RP-05) and
the strategic tier's quarterly business review (CAD-05, RP-04).

Every figure is for the period and, where it makes sense, beside the average of the
account's tier over the same period ("position against the average", RP-04). The
customer reads the comparison as "comparable customers": the tier is our label.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any, Literal

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scoring.queries import (
    MODULE_KEY,
    OPEN_TICKET_STATUSES,
    AccountUsage,
    DayUse,
    account_health_row,
    cause_code,
    end_of,
    facts_as_of,
    open_at,
    scores_as_of,
    usage_states,
    zone_of,
)
from shared.storage.db import among
from shared.storage.tables import accounts, activity_daily, health_daily, tickets

Kind = Literal["usage", "bimonthly", "qbr"]
KINDS: tuple[Kind, ...] = ("usage", "bimonthly", "qbr")
# Days each kind covers, ending on the report day: a month, two months (CAD-09), a
# quarter (CAD-05). Activity older than the 90-day window is gone, so a QBR is 90 days.
PERIOD_DAYS: dict[str, int] = {"usage": 30, "bimonthly": 61, "qbr": 90}


class UnknownAccount(LookupError):
    """No facts and no activity stored for the account id: a typo, or another database."""


@dataclass
class Figures:
    """One account's (or a tier's average) figures over the period."""

    active_users: float = 0.0  # distinct users active in the period
    activated: float = 0.0  # users ever active, as of the period's end
    seats: float | None = None
    events: float = 0.0
    active_days: float = 0.0
    usage_hours: float = 0.0
    modules_used: float = 0.0


@dataclass(frozen=True)
class ModuleUse:
    name: str
    uses: int
    days: int  # days of the period it was used on


@dataclass
class Report:
    kind: Kind
    account_id: str
    name: str
    tier: str | None
    start: date
    end: date
    figures: Figures
    tier_average: Figures | None
    tier_accounts: int
    modules: list[ModuleUse]  # most used first
    weekly_active_users: list[tuple[date, int]]
    scores: list[tuple[date, int | None, str]]  # day, score, band
    tickets: list[dict[str, Any]]  # opened in the period or open now, newest first
    tickets_opened: int
    tickets_solved: int
    # The CRM's fields (plan, arr, contract_end, lifecycle_stage, …), as stored.
    facts: dict[str, Any] = field(default_factory=dict)
    # The score in force on the report's last day: score, band, the model's inputs and
    # the danger causes' codes.
    current: dict[str, Any] = field(default_factory=dict)

    @property
    def open_tickets(self) -> list[dict[str, Any]]:
        return [t for t in self.tickets if t["open"]]


async def build_report(
    conn: AsyncConnection, account_id: str, kind: Kind, end: date, default_zone: tzinfo = UTC
) -> Report:
    """The report's figures; UnknownAccount when nothing is stored for ``account_id``.
    Its days are the account's zone's, else ``default_zone``'s (the service's,
    HEALTHWATCH_TIMEZONE): in UTC, a Shanghai morning's ticket was dated the day before."""
    start = end - timedelta(days=PERIOD_DAYS[kind] - 1)
    facts = (
        await conn.execute(select(accounts).where(accounts.c.account_id == account_id))
    ).first()
    health = await account_health_row(conn, account_id)
    if facts is None and health is None:
        raise UnknownAccount(account_id)
    zone = zone_of(facts.facts if facts is not None else None, default_zone)
    # Every account's facts in force at the end of the report's last day (in the
    # account's zone): its seats, tier and contract then, and its tier's peers then.
    everyone = await facts_as_of(conn, end_of(end, zone))
    then = everyone.get(account_id)
    if then is not None:
        fields, tier = then, then.get("tier")
    else:  # the stored row, for an account whose facts history holds nothing by then
        fields = (facts.facts or {}).get("fields", {}) if facts is not None else {}
        tier = facts.tier if facts is not None else None
    # Customers then: a churned account's zeros pulled the comparison down (found from
    # outside), as the portfolio's totals count customers only.
    peers = sorted(
        {account_id}
        | {
            a
            for a, f in everyone.items()
            if tier is not None and f.get("tier") == tier and f.get("lifecycle_stage") != "churned"
        }
    )
    # The usage states of the account and its peers, with the days of the long history
    # the period needs (a past period's days may have left the window), read once.
    states = await usage_states(conn, peers, as_of=end)
    seats = {a: f.get("seats_purchased") for a, f in everyone.items()}
    if then is None and facts is not None:
        seats[account_id] = facts.seats_purchased
    by_account = await _figures(conn, peers, states, start, end, seats)
    mine = by_account[account_id]
    others = list(by_account.values()) if tier is not None else []
    opened, solved, listed = await _tickets(conn, account_id, start, end, zone)
    score = (await scores_as_of(conn, end, [account_id])).get(account_id)
    return Report(
        kind=kind,
        account_id=account_id,
        name=fields.get("name") or (facts.name if facts is not None else None) or account_id,
        tier=tier,
        start=start,
        end=end,
        figures=mine,
        tier_average=_average(others) if tier is not None and others else None,
        tier_accounts=len(others),
        modules=_modules(states[account_id], start, end),
        weekly_active_users=_weekly_users(states[account_id], start, end),
        scores=await _scores(conn, account_id, start, end),
        tickets=listed,
        tickets_opened=opened,
        tickets_solved=solved,
        facts=dict(fields),
        current=_score_then(score),
    )


def _score_then(row: Any) -> dict[str, Any]:
    """The score in force on the report's last day (its history row): score, band,
    inputs and the danger's causes."""
    if row is None:
        return {}
    danger = (row.explanation or {}).get("danger") or {}
    return {
        "score": row.score,
        "band": row.band,
        "inputs": dict(row.inputs or {}),
        "danger_causes": [cause_code(c) for c in danger.get("causes", [])],
    }


def _modules(state: AccountUsage, start: date, end: date) -> list[ModuleUse]:
    """Modules used in the period with their uses and days of use, most used first."""
    uses: dict[str, int] = defaultdict(int)
    days: dict[str, int] = defaultdict(int)
    for use in _period(state, start, end):
        for index, count in use.names.items():
            key = state.names[index]
            if key.startswith(MODULE_KEY):
                uses[key[len(MODULE_KEY) :]] += count
                days[key[len(MODULE_KEY) :]] += 1
    ranked = sorted(uses, key=lambda name: (-uses[name], name))
    return [ModuleUse(name, uses[name], days[name]) for name in ranked]


def _period(state: AccountUsage, start: date, end: date) -> list[DayUse]:
    """The days with use from ``start`` to ``end``."""
    return state.span(end, (end - start).days + 1)


async def _scores(
    conn: AsyncConnection, account_id: str, start: date, end: date
) -> list[tuple[date, int | None, str]]:
    """(day, score, band) of each day with a stored score in the period."""
    h = health_daily.c
    q = (
        select(h.day, h.score, h.band)
        .where(h.account_id == account_id, h.day.between(start, end))
        .order_by(h.day)
    )
    return [(day, score, band) for day, score, band in await conn.execute(q)]


async def _tickets(
    conn: AsyncConnection, account_id: str, start: date, end: date, zone: tzinfo
) -> tuple[int, int, list[dict[str, Any]]]:
    """Tickets opened and solved in the period, and every ticket opened or solved in it
    or open now, with its status and progress (RP-05: all requests and issues), newest
    first; ``open``: still open at the end of the period. Days in the account's zone."""
    t = tickets.c
    rows = await conn.execute(
        select(tickets).where(
            t.account_id == account_id,
            or_(
                t.status.in_(OPEN_TICKET_STATUSES),
                t.created_at >= _midnight(start, zone),
                t.solved_at >= _midnight(start, zone),
            ),
        )
    )
    opened = solved = 0
    listed = []
    for row in rows:
        created = row.created_at.astimezone(zone).date()
        solved_on = row.solved_at and row.solved_at.astimezone(zone).date()
        if created > end:
            continue
        if solved_on is not None and solved_on > end:
            solved_on = None  # solved after the period: open at its end
        opened += start <= created
        solved += solved_on is not None and start <= solved_on
        still_open = open_at(row, end_of(end, zone))
        listed.append(
            {
                "ticket_id": row.ticket_id,
                "priority": row.priority,
                "type": row.type,
                # Today's status, unless it closed after the period ended.
                "status": row.status
                if not still_open or row.status in OPEN_TICKET_STATUSES
                else "open",
                "open": still_open,
                "opened": created,
                "solved": solved_on,
                "age_days": ((solved_on or end) - created).days,
            }
        )
    listed.sort(key=lambda x: (x["opened"], x["ticket_id"]), reverse=True)
    return opened, solved, listed


def _midnight(day: date, zone: tzinfo) -> datetime:
    return datetime.combine(day, time(), zone)


async def _figures(
    conn: AsyncConnection,
    ids: list[str],
    states: Mapping[str, AccountUsage],
    start: date,
    end: date,
    seats: Mapping[str, Any],
) -> dict[str, Figures]:
    """Each account's figures over the period, with its ``seats`` then."""
    out: dict[str, Figures] = {a: Figures() for a in ids}
    d = activity_daily
    for a, events, days, seconds in await conn.execute(
        select(d.c.account_id, func.sum(d.c.events), func.count(), func.sum(d.c.duration_s))
        .where(among(conn, d.c.account_id, ids), d.c.day.between(start, end))
        .group_by(d.c.account_id)
    ):
        f = out[a]
        f.events, f.active_days, f.usage_hours = float(events), float(days), float(seconds) / 3600
    for a in ids:
        state = states[a]
        if ever := state.users_ever(end):
            out[a].activated = float(ever)
        if used := _period(state, start, end):
            out[a].active_users = float(len(set().union(*(use.users for use in used))))
            modules = {
                i for use in used for i in use.names if state.names[i].startswith(MODULE_KEY)
            }
            out[a].modules_used = float(len(modules))
    for a in ids:
        bought = seats.get(a)
        out[a].seats = float(bought) if bought is not None else None
    return out


def _average(figures: list[Figures]) -> Figures:
    n = len(figures)
    seats = [f.seats for f in figures if f.seats is not None]
    return Figures(
        active_users=sum(f.active_users for f in figures) / n,
        activated=sum(f.activated for f in figures) / n,
        seats=sum(seats) / len(seats) if seats else None,
        events=sum(f.events for f in figures) / n,
        active_days=sum(f.active_days for f in figures) / n,
        usage_hours=sum(f.usage_hours for f in figures) / n,
        modules_used=sum(f.modules_used for f in figures) / n,
    )


def _weekly_users(state: AccountUsage, start: date, end: date) -> list[tuple[date, int]]:
    """Distinct active users per week (weeks end on the report's end day)."""
    weeks: dict[date, set[int]] = defaultdict(set)
    for day, use in state.day_items():
        if start <= day <= end:
            weeks[end - timedelta(days=((end - day).days // 7) * 7)] |= use.users
    first = end
    while first - timedelta(days=7) >= start:
        first -= timedelta(days=7)
    out = []
    week = first
    while week <= end:
        out.append((week, len(weeks.get(week, set()))))
        week += timedelta(days=7)
    return out
