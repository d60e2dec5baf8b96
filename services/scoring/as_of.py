"""Reads as of a past day: the facts and the tickets as they were then, the score
recorded then, and how far back the daily counts still reach.

An account's usage state holds the days of its window (``HEALTHWATCH_WINDOW_DAYS``);
the days before it are in its long history (``usage_archive``) for
``HEALTHWATCH_HISTORY_DAYS`` in all, read here only for a day whose windows reach
before the state's days. Measures as of a day older than that cannot be computed: such
a read answers 422 ``as_of_beyond_retention`` rather than zeros. Facts come from
``account_facts_history`` and tickets from their stored opening and closing times,
both kept whole; the score history (``health_daily``) is kept whole too.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import date, datetime, timedelta, tzinfo
from types import SimpleNamespace
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scoring import usage_store
from services.scoring.facts_history import end_of, facts_as_of
from services.scoring.measures import (
    HIGH_PRIORITIES,
    Measures,
    _commercial,
    load_measures,
)
from services.scoring.relationship_as_of import relationship_fields_as_of
from services.scoring.state import OPEN_STATUSES, window_start
from services.scoring.usage import UNKNOWN, AccountUsage, decode
from services.scoring.usage_measures import NAME_WINDOW_DAYS
from services.scoring.zones import zone_of
from shared.auth import ApiKey
from shared.i18n import Phrase
from shared.storage.db import among
from shared.storage.tables import account_health, account_usage, accounts, health_daily, tickets
from shared.web import ClientError

# An as-of day is answered when its longest window the metrics show (active users
# over 30 days; the per-name counts over 28) lies within the kept days: a window
# reaching before them would count days already deleted as days without use.
FULL_WINDOW_DAYS = 30


async def oldest_as_of(
    conn: AsyncConnection, account_id: str, kept: tuple[int, int], zone: tzinfo
) -> date | None:
    """The oldest day whose measures the kept daily counts cover (``kept``: the window's
    and the history's days), None before the account's first event: the long history
    is kept from the first day of the month ``history_days`` before the newest event
    (whole months leave it), and from what the state knows it kept. A state written
    before the long history that has not dropped days since is known whole over its
    window only."""
    row = (
        await conn.execute(
            select(account_health.c.as_of, accounts.c.facts, account_usage.c.state)
            .select_from(
                account_health.outerjoin(
                    accounts, accounts.c.account_id == account_health.c.account_id
                ).outerjoin(
                    account_usage, account_usage.c.account_id == account_health.c.account_id
                )
            )
            .where(account_health.c.account_id == account_id)
        )
    ).first()
    if row is None:
        return None
    window_days, history_days = kept
    account_zone = zone_of(row.facts, zone)
    kept_from = window_start(row.as_of, history_days, account_zone).replace(day=1)
    whole_from = decode(row.state).whole_from if row.state else 0
    if whole_from == UNKNOWN:
        kept_from = window_start(row.as_of, window_days, account_zone)
    elif whole_from:
        kept_from = max(kept_from, date.fromordinal(whole_from))
    return kept_from + timedelta(days=FULL_WINDOW_DAYS - 1)


# The zone furthest ahead of UTC (Line Islands, UTC+14): a day that has not begun there
# has begun nowhere, so a read across accounts of several zones refuses only such a day.
AHEAD_OF_UTC = timedelta(hours=14)


def check_not_future(day: date, today: date, where: str, name: str = "as_of") -> None:
    """422 ``as_of_in_future`` for a day (parameter ``name``) after ``today`` (today
    ``where``): its measures and scores would read the days to come as days without use."""
    if day <= today:
        return
    raise ClientError(
        422,
        "as_of_in_future",
        "{name} {day} is after today ({today} {where}): give today or an earlier day, or leave "
        "{name} out.",
        values={
            "name": name,
            "day": day.isoformat(),
            "today": today.isoformat(),
            "where": Phrase(where),
        },
        extra={"today": today.isoformat()},
    )


def check_retention(account_id: str, day: date, oldest: date | None, history_days: int) -> None:
    """422 when ``day`` lies before what the kept daily counts can answer."""
    if oldest is None or day >= oldest:
        return
    raise ClientError(
        422,
        "as_of_beyond_retention",
        "Daily counts of {account_id!r} are kept for {history_days} days before its newest event, "
        "so measures are answered as of {oldest} or later. To keep more, raise "
        "HEALTHWATCH_HISTORY_DAYS (it applies to the days still kept); the score history "
        "(/health/history, /health?as_of=) reaches further back.",
        values={
            "account_id": account_id,
            "history_days": history_days,
            "oldest": oldest.isoformat(),
        },
        extra={"oldest_as_of": oldest.isoformat(), "retention_days": history_days},
    )


async def with_history(
    conn: AsyncConnection, states: Mapping[str, AccountUsage], day: date
) -> dict[str, AccountUsage]:
    """``states``, each with the days of its long history that measures as of ``day``
    read (its 90 days) counted in, where they reach before the state's own days."""
    first = day - timedelta(days=NAME_WINDOW_DAYS - 1)
    older = [a for a, state in states.items() if state.kept_from > first.toordinal()]
    months = await usage_store.load_history(conn, older, first, day) if older else {}
    return {
        account_id: (
            state.with_history(months[account_id], first, day) if account_id in months else state
        )
        for account_id, state in states.items()
    }


async def measures_as_of(
    conn: AsyncConnection,
    ids: set[str],
    day: date,
    zone: tzinfo,
    usage: Mapping[str, AccountUsage] | None = None,
) -> list[Measures]:
    """The measures as of ``day`` with the facts (seats, tier, contract, lifecycle,
    allowances) in force and the tickets open at the end of that day in each account's
    zone; without facts by then, those measures are unknown (None). ``usage``: usage
    states already loaded."""
    states = await usage_store.complete(conn, dict(usage or {}), ids)
    measures = await load_measures(
        conn, ids, day, zone, usage=await with_history(conn, states, day)
    )
    ends = {m.account_id: end_of(day, m.tz) for m in measures}
    facts = await _facts_at(conn, ends)
    support = await tickets_as_of(conn, ends)
    relationship = await relationship_fields_as_of(conn, measures, ends, states)
    return [
        replace(
            m,
            **_fields_then(
                m,
                ends[m.account_id],
                relationship[m.account_id],
                facts.get(m.account_id, {}),
                support.get(m.account_id, {}),
            ),
        )
        for m in measures
    ]


def _fields_then(
    m: Measures,
    end: datetime,
    relationship: dict[str, Any],
    facts: dict[str, Any],
    support: dict[str, Any],
) -> dict[str, Any]:
    """Every field of ``m`` read as of ``end``, in one dict: the relationship values,
    the commercial part from the ``facts`` fields in force then (with the relationship's
    failed payment), the tickets' ``support`` measures and the replies and solutions
    known by then. One ``replace`` then builds each account's measures once more, not
    once per part (an import replaces them for every account on each of its days)."""
    return (
        relationship
        | _commercial_then(facts, relationship["last_payment_failed_at"])
        | support
        | _known_by(m, end)
        # The moment the measures are as of: the newest event known by the day's end
        # (an import scores a day after reading events of the days after it).
        | {"as_of_time": min(m.as_of_time, end)}
    )


def _known_by(m: Measures, end: datetime) -> dict[str, Any]:
    """The replies and solutions of recent tickets as they stood at ``end``."""
    return {
        "ticket_replies": [
            (created, replied if replied is not None and replied <= end else None)
            for created, replied in m.ticket_replies
            if created <= end
        ],
        "tickets_solved": [solved for solved in m.tickets_solved if solved <= end],
    }


async def _facts_at(
    conn: AsyncConnection, ends: Mapping[str, datetime]
) -> dict[str, dict[str, Any]]:
    """account → the facts fields in force at ``ends[account]`` (one read per moment:
    accounts of one zone share it)."""
    by_end: dict[datetime, list[str]] = defaultdict(list)
    for account_id, end in ends.items():
        by_end[end].append(account_id)
    facts: dict[str, dict[str, Any]] = {}
    for end, group in by_end.items():
        facts |= await facts_as_of(conn, end, group)
    return facts


def _commercial_then(fields: dict[str, Any], payment_failed_at: datetime | None) -> dict[str, Any]:
    """Measures' commercial part from the facts fields in force then, with the last
    failed payment as of then (``payment_failed_at``)."""
    stored = SimpleNamespace(
        seats_purchased=fields.get("seats_purchased"),
        tier=fields.get("tier"),
        facts={"fields": fields},
        last_payment_failed_at=payment_failed_at,
    )
    return dict(_commercial(stored))  # type: ignore[arg-type]  # read by attribute only


def open_at(ticket: Any, end: datetime) -> bool:
    """Open at ``end``: created by then and not yet solved. A ticket closed without a
    solved time closed at its last update (the newest event about it). One open again
    after it was solved (open, with a solved time before its last update) is open from
    that update on: read as closed from its solving, it counted on no past day while
    today's backlog held it (found from outside)."""
    if ticket.created_at > end:
        return False
    closed = ticket.solved_at
    if ticket.status in OPEN_STATUSES and closed is not None and closed <= ticket.occurred_at:
        return bool(end < closed or end >= ticket.occurred_at)
    if closed is None and ticket.status not in OPEN_STATUSES:
        closed = ticket.occurred_at
    return closed is None or closed > end


async def tickets_as_of(
    conn: AsyncConnection, ends: Mapping[str, datetime]
) -> dict[str, dict[str, Any]]:
    """account → the ticket measures at ``ends[account]``: the backlog open then (how
    many, how many urgent, the oldest), the newest ticket by then, and the replies and
    solutions known by then."""
    rows = defaultdict(list)
    if ends:
        for t in await conn.execute(
            select(tickets).where(
                among(conn, tickets.c.account_id, ends), tickets.c.created_at <= max(ends.values())
            )
        ):
            if t.created_at <= ends[t.account_id]:
                rows[t.account_id].append(t)
    out: dict[str, dict[str, Any]] = {}
    for account_id, end in ends.items():
        known = rows.get(account_id, [])
        backlog = [t for t in known if open_at(t, end)]
        requests = [t.created_at for t in backlog if t.type == "feature_request"]
        out[account_id] = {
            "open_tickets": len(backlog),
            "open_high_priority_tickets": sum(t.priority in HIGH_PRIORITIES for t in backlog),
            "oldest_open_ticket_at": min((t.created_at for t in backlog), default=None),
            "oldest_open_request_at": min(requests, default=None),
            "last_ticket_at": max((t.created_at for t in known), default=None),
        }
    return out


async def scores_as_of(
    conn: AsyncConnection, day: date, ids: Iterable[str] | None = None
) -> dict[str, Any]:
    """account → its score history row in force on ``day`` (the newest on or before it:
    a day's row is written only when the score or its inputs changed)."""
    h = health_daily.c
    newest = select(h.account_id, func.max(h.day).label("day")).where(h.day <= day)
    if ids is not None:
        newest = newest.where(among(conn, h.account_id, ids))
    latest = newest.group_by(h.account_id).subquery()
    rows = await conn.execute(
        select(health_daily).join(
            latest, and_(latest.c.account_id == h.account_id, latest.c.day == h.day)
        )
    )
    return {row.account_id: row for row in rows}


async def portfolio_health_as_of(
    conn: AsyncConnection, key: ApiKey, day: date, zone: tzinfo
) -> list[dict[str, Any]]:
    """Every account ``key`` may see (a CSM: the accounts it owns now) with a score by
    ``day``: that score, and the facts and open tickets as they were at the end of the
    day in the account's zone; ordered by account id."""
    scores = await scores_as_of(conn, day)
    now = {
        row.account_id: row
        for row in await conn.execute(
            select(accounts.c.account_id, accounts.c.owner_email, accounts.c.facts).where(
                among(conn, accounts.c.account_id, scores)
            )
        )
    }
    visible = sorted(
        account_id
        for account_id in scores
        if key.portfolio_of is None
        or (account_id in now and now[account_id].owner_email == key.portfolio_of)
    )
    ends = {
        account_id: end_of(day, zone_of(now[account_id].facts if account_id in now else None, zone))
        for account_id in visible
    }
    facts = await _facts_at(conn, ends)
    support = await tickets_as_of(conn, ends)
    return [
        _health_row(scores[a], facts.get(a, {}), support[a]["open_tickets"], day) for a in visible
    ]


# The columns of a portfolio's health as of a day (JSON keys and CSV header alike).
HEALTH_AS_OF_COLUMNS = (
    "account_id",
    "name",
    "tier",
    "owner_email",
    "lifecycle_stage",
    "seats_purchased",
    "contract_end",
    "as_of",
    "scored_on",
    "score",
    "band",
    "danger_level",
    "open_tickets",
)


def _health_row(score: Any, fields: dict[str, Any], open_tickets: int, day: date) -> dict[str, Any]:
    danger = (score.explanation or {}).get("danger") or {}
    return {
        "account_id": score.account_id,
        "name": fields.get("name"),
        "tier": fields.get("tier"),
        "owner_email": (fields.get("owner") or {}).get("email"),
        "lifecycle_stage": fields.get("lifecycle_stage"),
        "seats_purchased": fields.get("seats_purchased"),
        "contract_end": fields.get("contract_end"),
        "as_of": day.isoformat(),
        "scored_on": score.day.isoformat(),
        "score": score.score,
        "band": score.band,
        "danger_level": danger.get("level"),
        "open_tickets": open_tickets,
    }
