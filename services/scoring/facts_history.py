"""Account facts as they were at any moment: one merged snapshot per fact event time.

``accounts.facts`` holds the facts in force now. ``account_facts_history`` keeps, for
every moment a fact event of the account occurred at, the facts in force from then
on: the fold of every fact event with ``occurred_at`` at or before it, each field
keeping the value of its newest event (ties broken by event id), as ``state.py`` merges
the current facts. A snapshot stores the fields and, per field, the stamp
``[occurred_at, event_id]`` of the event that set it, so a fact that arrives late (out
of event-time order) is folded into its own moment's snapshot and into every later one
for the fields no newer event set; folding an event again changes nothing (a replay).

As-of reads (``facts_as_of``) take the newest snapshot at or before the moment.
"""

from __future__ import annotations

import bisect
import copy
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.contracts.events import AccountFacts
from shared.storage.db import among, upsert
from shared.storage.tables import account_facts_history

# The fields of a fact event that are facts (the rest identifies the event, or says
# which facts it clears).
FACT_FIELDS = tuple(
    name
    for name in AccountFacts.model_fields
    if name
    not in {
        "schema_version",
        "event_id",
        "account_id",
        "occurred_at",
        "received_at",
        "kind",
        "cleared",
    }
)

# A snapshot: {"fields": name → value, "stamps": name → [occurred_at ISO, event_id]}.
Snapshot = dict[str, Any]


def stamp_of(event: AccountFacts) -> list[str]:
    """The order facts merge in: event time, then event id (so ties merge the same way
    on every replay). The time in UTC: stamps compare as text, and a time written with
    another offset (10:00+08:00) would sort after a later one in UTC (05:00+00:00)."""
    return [event.occurred_at.astimezone(UTC).isoformat(), event.event_id]


def given_facts(event: AccountFacts) -> dict[str, Any]:
    """The fields ``event`` gives, JSON-ready: its values, and None for those it clears
    (fields left out, None, are not facts)."""
    given = {
        name: value
        for name, value in event.model_dump(mode="json", include=set(FACT_FIELDS)).items()
        if value is not None
    }
    return {**given, **dict.fromkeys(event.cleared)}


def fold_fields(facts: Snapshot, event: AccountFacts) -> bool:
    """Set in ``facts`` each field ``event`` gives whose stamp is not older than the one
    stored; whether anything changed."""
    return _fold(facts, given_facts(event), stamp_of(event))[0]


def _fold(facts: Snapshot, given: dict[str, Any], stamp: list[str]) -> tuple[bool, dict[str, Any]]:
    """Fold the fields ``given`` with ``stamp`` into ``facts``: whether anything changed,
    and the fields it took (those ``facts`` holds no newer value of)."""
    stamps, fields = facts["stamps"], facts["fields"]
    taken = {name: v for name, v in given.items() if name not in stamps or stamps[name] <= stamp}
    changed = False
    for name, value in taken.items():
        if stamps.get(name) != stamp or fields.get(name) != value:
            changed = True
        fields[name] = value
        stamps[name] = stamp
    return changed, taken


async def record_facts(conn: AsyncConnection, events: Sequence[AccountFacts]) -> None:
    """Fold ``events`` into the history: a snapshot at each event's moment (starting
    from the snapshot before it) and into the later snapshots of its account."""
    if not events:
        return
    snapshots = await _load_from(conn, {e.account_id for e in events}, min(_at(e) for e in events))
    moments = {account_id: sorted(history) for account_id, history in snapshots.items()}
    changed: set[tuple[str, datetime]] = set()
    for event in events:
        history = snapshots[event.account_id]
        order = moments.setdefault(event.account_id, [])
        at = _at(event)
        place = bisect.bisect_left(order, at)
        if place == len(order) or order[place] != at:
            history[at] = (
                copy.deepcopy(history[order[place - 1]]) if place else {"fields": {}, "stamps": {}}
            )
            order.insert(place, at)
            changed.add((event.account_id, at))
        given, stamp = given_facts(event), stamp_of(event)
        for moment in order[place:]:
            # A field stops at the first snapshot holding a newer value of it: a field's
            # stamp never goes down from one snapshot to the next, so no later one takes
            # it either (events arriving newest first cost each one snapshot, not all).
            folded, given = _fold(history[moment], given, stamp)
            if folded:
                changed.add((event.account_id, moment))
            if not given:
                break
    await upsert(
        conn,
        account_facts_history,
        [
            {"account_id": account_id, "occurred_at": at, "facts": snapshots[account_id][at]}
            for account_id, at in sorted(changed)
        ],
        keys=["account_id", "occurred_at"],
        update=["facts"],
    )


def _at(event: AccountFacts) -> datetime:
    return event.occurred_at.astimezone(UTC)


async def _load_from(
    conn: AsyncConnection, ids: set[str], since: datetime
) -> dict[str, dict[datetime, Snapshot]]:
    """Each account's snapshots from the newest one at or before ``since`` on: all a
    batch whose events are not older than ``since`` can start from or change."""
    h = account_facts_history.c
    start = (
        select(h.account_id, func.max(h.occurred_at).label("at"))
        .where(among(conn, h.account_id, ids), h.occurred_at <= since)
        .group_by(h.account_id)
        .subquery()
    )
    rows = await conn.execute(
        select(h.account_id, h.occurred_at, h.facts)
        .select_from(account_facts_history.outerjoin(start, start.c.account_id == h.account_id))
        .where(among(conn, h.account_id, ids), h.occurred_at >= func.coalesce(start.c.at, since))
    )
    out: dict[str, dict[datetime, Snapshot]] = defaultdict(dict)
    for row in rows:
        out[row.account_id][row.occurred_at.astimezone(UTC)] = row.facts
    return out


def end_of(day: date, zone: tzinfo = UTC) -> datetime:
    """The last moment of ``day`` in ``zone``: a day's as-of read counts its every fact."""
    return datetime.combine(day + timedelta(days=1), time(), zone) - timedelta(microseconds=1)


async def facts_as_of(
    conn: AsyncConnection, at: datetime | date, account_ids: Iterable[str] | None = None
) -> dict[str, dict[str, Any]]:
    """account id → the facts fields in force at ``at`` (a date: at its end, UTC), for
    ``account_ids`` (default: every account). An account none of whose facts had
    occurred by then is left out: nothing was known of it."""
    moment = at if isinstance(at, datetime) else end_of(at)
    h = account_facts_history.c
    newest = select(h.account_id, func.max(h.occurred_at).label("at")).where(
        h.occurred_at <= moment
    )
    if account_ids is not None:
        newest = newest.where(among(conn, h.account_id, account_ids))
    latest = newest.group_by(h.account_id).subquery()
    rows = await conn.execute(
        select(h.account_id, h.facts).join(
            latest, and_(latest.c.account_id == h.account_id, latest.c.at == h.occurred_at)
        )
    )
    return {row.account_id: dict(row.facts["fields"]) for row in rows}
