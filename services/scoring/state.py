"""Applies a batch of new events to the per-account state, inside the caller's transaction.

Everything here is order-independent (sums, sets, maxima and per-field
last-writer-wins by event time), so a replay or a shuffled log gives the same state;
one exception: a usage event counts on a day of its account's zone as the zone is when
the event is applied, so one applied before a change of zone keeps its day (see
``zones.py``).
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import and_, case, or_, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scoring import usage_store
from services.scoring.facts_history import fold_fields, given_facts, record_facts, stamp_of
from services.scoring.usage_store import Usage, month_of
from services.scoring.zones import account_zones
from shared.contracts.events import (
    AccountFacts,
    ContactRole,
    Event,
    NpsResponse,
    PaymentEvent,
    PaymentStatus,
    TicketEvent,
    Touchpoint,
    UsageEvent,
    folded_email,
)
from shared.storage.db import among, insert_ignore, upsert
from shared.storage.tables import account_facts_history, account_health, accounts, tickets

OPEN_STATUSES = ("open", "pending")
# The first key of the PostgreSQL advisory locks taken per ticket id (the second is the
# id's hash): any constant no other lock of this database uses.
TICKET_LOCK_SPACE = 0x7469636B  # "tick"
# Days leave a usage state for the long history a week at a time (the state keeps up to
# six days more than its window): each move rewrites the newest month of the account's
# long history, so a daily move would cost a write per active account every day, and an
# import of a long history one per account and day read.
ARCHIVE_STEP_DAYS = 7
# Days of daily counts kept in all (HEALTHWATCH_HISTORY_DAYS, shared/config.py).
HISTORY_DAYS = 730


# account → its ``account_health`` values that events change (``_load_health``'s columns)
Health = dict[str, dict[str, Any]]


@dataclass
class Applied:
    """What a batch changed: the accounts to rescore and the events that came too late."""

    accounts: set[str] = field(default_factory=set)
    late_events: int = 0


async def apply_events(
    conn: AsyncConnection,
    events: Sequence[Event],
    *,
    window_days: int,
    now: datetime,
    tz: tzinfo = UTC,
    grace_days: int | None = None,
    usage: Usage | None = None,
    history_days: int = HISTORY_DAYS,
    health: Health | None = None,
) -> Applied:
    """Apply ``events`` (already deduplicated, see ``drop_duplicates``). ``usage``: the
    accounts' usage states the caller loaded and will save; without, they are loaded
    and saved here. ``health``: the ``account_health`` values of a caller that applies
    a batch in slices (those of accounts new to it are read into it), written by
    ``write_applied`` once after its last slice; without, they are read and written
    here."""
    applied = Applied(accounts={e.account_id for e in events})
    if not events:
        return applied
    states = await usage_store.complete(conn, {} if usage is None else usage, applied.accounts)
    rows = {} if health is None else health
    if missing := applied.accounts - rows.keys():
        rows.update(await _load_health(conn, missing))
    mine = {account_id: rows[account_id] for account_id in applied.accounts}
    for e in events:
        h = mine[e.account_id]
        h["as_of"] = max(h["as_of"], e.occurred_at) if h["as_of"] else e.occurred_at

    # Facts first: an account's zone (a fact) decides the days its usage counts on.
    await _apply_facts(conn, [e for e in events if isinstance(e, AccountFacts)], now)
    zones = await account_zones(conn, applied.accounts, tz)
    used = [e for e in events if isinstance(e, UsageEvent)]
    grace = late_grace_days(grace_days, window_days)
    applied.late_events = _apply_usage(states, used, mine, grace, zones)
    # A ticket re-filed under another account changes the old account's backlog too.
    applied.accounts |= await _apply_tickets(
        conn, [e for e in events if isinstance(e, TicketEvent)]
    )
    for e in events:
        _apply_relationship(mine[e.account_id], e)
    if health is None:
        await write_applied(
            conn, states, rows, kept=(window_days, history_days), now=now, tz=tz, zones=zones
        )
        if usage is None:
            await usage_store.save(conn, states, now)
    return applied


def late_grace_days(grace_days: int | None, window_days: int) -> int:
    """How many days before its account's newest usage a usage event still counts (the
    late grace, at most the window: an older day is gone from the state)."""
    return min(grace_days or window_days, window_days)


async def write_applied(
    conn: AsyncConnection,
    states: Usage,
    health: Health,
    *,
    kept: tuple[int, int],
    now: datetime,
    tz: tzinfo = UTC,
    zones: Mapping[str, tzinfo] | None = None,
) -> None:
    """Write the ``account_health`` values events changed and move the days that fell
    out of each account's window (``kept``: window and history days) to its long
    history; ``zones``: the accounts' zones, when known."""
    if not health:
        return
    for h in health.values():
        h["updated_at"] = now
    await upsert(
        conn,
        account_health,
        list(health.values()),
        keys=["account_id"],
        update=[column for column in health[next(iter(health))] if column != "account_id"],
    )
    zones = zones if zones is not None else await account_zones(conn, set(health), tz)
    await _prune(conn, states, health, kept, zones, now)


def drop_duplicates(
    states: Usage, events: Sequence[Event], receipts_from: datetime | None = None
) -> list[Event]:
    """The events whose id was not received within ``usage.DEDUP_HOURS`` before (each id
    once within the batch too); remembers their ids. An event without a receipt time
    (an import) counts its event time as received. Ids are an account's own and its
    kind's (``dedup_id``), in a batch as across batches: two accounts' events of one id
    both count, however batched, and so do a usage event and a ticket of one id.
    The window forgets what was received DEDUP_HOURS before the newest receipt, or
    before ``receipts_from`` when earlier: the earliest receipt still to come."""
    unique: dict[tuple[str, str], Event] = {}
    for event in events:
        unique.setdefault((event.account_id, dedup_id(event)), event)
    fresh: list[Event] = []
    newest: dict[str, datetime] = {}
    for (account_id, event_id), event in unique.items():
        received = event.received_at or event.occurred_at
        if states[account_id].first_sight(event_id, received):
            fresh.append(event)
        latest = newest.get(event.account_id)
        newest[event.account_id] = received if latest is None else max(latest, received)
    for account_id, received in newest.items():
        if receipts_from is not None:
            received = min(received, receipts_from)
        states[account_id].forget_before(received)
    return fresh


def dedup_id(event: Event) -> str:
    """The id ``event`` is deduplicated by: its own within its kind. The product, the
    helpdesk, the CRM and the survey tool each number their events, often from 1: a
    ticket, a touchpoint and an NPS answer sharing a usage event's id "1001" were dropped
    after a 202 (found from outside). Usage keeps the bare id, as stored before."""
    return dedup_key(event.kind, event.event_id)


def dedup_key(kind: str, event_id: str) -> str:
    """``dedup_id`` of an event of ``kind`` and ``event_id``."""
    return event_id if kind == "usage" else f"{kind}\x1f{event_id}"


def _apply_relationship(h: dict[str, Any], e: Event) -> None:
    """Touchpoints, NPS answers and failed payments move the account's own state row."""
    if isinstance(e, Touchpoint):
        h["last_touchpoint_at"] = _latest(h["last_touchpoint_at"], e.occurred_at)
        if e.contact_role is ContactRole.decision_maker:
            h["last_decision_maker_contact_at"] = _latest(
                h["last_decision_maker_contact_at"], e.occurred_at
            )
    elif isinstance(e, NpsResponse):
        _keep_two_newest_nps(h, e)
    elif isinstance(e, PaymentEvent) and e.status is PaymentStatus.failed:
        h["last_payment_failed_at"] = _latest(h["last_payment_failed_at"], e.occurred_at)


async def _load_health(conn: AsyncConnection, ids: set[str]) -> Health:
    rows = await conn.execute(
        select(
            account_health.c.account_id,
            account_health.c.as_of,
            account_health.c.first_seen_at,
            account_health.c.last_seen_at,
            account_health.c.last_touchpoint_at,
            account_health.c.nps_latest,
            account_health.c.nps_at,
            account_health.c.nps_previous,
            account_health.c.nps_previous_at,
            account_health.c.last_decision_maker_contact_at,
            account_health.c.last_payment_failed_at,
        ).where(among(conn, account_health.c.account_id, ids))
    )
    health = {row.account_id: dict(row._mapping) for row in rows}
    for account_id in ids:
        health.setdefault(
            account_id,
            {
                "account_id": account_id,
                "as_of": None,
                "first_seen_at": None,
                "last_seen_at": None,
                "last_touchpoint_at": None,
                "nps_latest": None,
                "nps_at": None,
                "nps_previous": None,
                "nps_previous_at": None,
                "last_decision_maker_contact_at": None,
                "last_payment_failed_at": None,
            },
        )
    return health


def window_start(as_of: datetime, window_days: int, tz: tzinfo) -> date:
    return as_of.astimezone(tz).date() - timedelta(days=window_days - 1)


def _apply_usage(
    states: Usage,
    usage: Sequence[UsageEvent],
    health: dict[str, dict[str, Any]],
    grace_days: int,
    zones: Mapping[str, tzinfo],
) -> int:
    """Count the usage events in their accounts' states, and move each account's first
    and last use; return how many came too late (before the first day still open)."""
    late = 0
    # The first day still open to late events, per account (its newest event is known).
    earliest = {
        account_id: window_start(h["as_of"], grace_days, zones[account_id])
        for account_id, h in health.items()
    }
    for event in usage:
        account = health[event.account_id]
        # Calendar days of the account's zone (zoneinfo handles daylight saving).
        day = event.occurred_at.astimezone(zones[event.account_id]).date()
        if day < earliest[event.account_id]:
            late += 1
            continue
        states[event.account_id].add(day, event.user_id, event.duration_s or 0.0, _names(event))
        account["first_seen_at"] = _earliest(account["first_seen_at"], event.occurred_at)
        account["last_seen_at"] = _latest(account["last_seen_at"], event.occurred_at)
    return late


def _names(event: UsageEvent) -> list[tuple[str, str, int]]:
    """(dimension, name, uses) an event counts in: its event name, platform, module, and
    an order's value (a numeric "value" property, in whole units: monetary, RFM)."""
    names = [("event", event.event, 1), ("platform", event.platform.value, 1)]
    if event.module:
        names.append(("module", event.module, 1))
    given = event.properties.get("value")  # most events carry none: no call for them
    if given is not None and (value := _amount(given)) is not None and abs(value) < 1e9:
        names.append(("value", event.event, round(value)))
    return names


def _amount(value: object) -> float | None:
    """A "value" property as a number: a number, or text that reads as one ("50.00", as
    a CSV export writes amounts: ignored, it left half a shop's orders out of its
    monetary value, found from outside)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


async def _apply_tickets(conn: AsyncConnection, events: Sequence[TicketEvent]) -> set[str]:
    """Upsert the newest state of each ticket, with the earliest first reply any of its
    updates gave (as ``_upsert_tickets`` keeps it across batches: an answer followed by
    the customer's reply in one batch lost it); return the accounts tickets belonged to."""
    latest: dict[str, TicketEvent] = {}
    replied: dict[str, datetime] = {}
    for e in events:
        if _newer(e, latest.get(e.ticket_id)):
            latest[e.ticket_id] = e
        if (at := e.first_reply_at) is not None:
            replied[e.ticket_id] = min(replied.get(e.ticket_id, at), at)
    if not latest:
        return set()
    for ticket_id, first in replied.items():
        if latest[ticket_id].first_reply_at != first:
            latest[ticket_id] = latest[ticket_id].model_copy(update={"first_reply_at": first})
    await _lock_tickets(conn, sorted(latest))
    previous = set(
        (
            await conn.execute(
                select(tickets.c.account_id)
                .where(among(conn, tickets.c.ticket_id, latest))
                .distinct()
            )
        ).scalars()
    )
    await _upsert_tickets(conn, sorted(latest.values(), key=lambda e: e.ticket_id))
    return previous


async def _lock_tickets(conn: AsyncConnection, ticket_ids: list[str]) -> None:
    """Another consumer may be moving one of these tickets right now (its old and new
    accounts sit in different partitions). Its uncommitted move is invisible to the owner
    read that follows, and our upsert would then overwrite it after its commit without
    rescoring the account it left: wait for it first. A lock per ticket id, in one order
    everywhere, held to commit; a new ticket has no row to lock, hence an advisory lock
    rather than SELECT … FOR UPDATE. (SQLite transactions are serialized already.)"""
    if conn.dialect.name != "postgresql":
        return
    await conn.execute(
        text(
            "SELECT pg_advisory_xact_lock(:space, hashtext(t))"
            " FROM (SELECT t FROM unnest(CAST(:ids AS text[])) AS t ORDER BY t) AS ids"
        ),
        {"space": TICKET_LOCK_SPACE, "ids": ticket_ids},
    )


# What a ticket event sets on the ticket's row (besides its id).
TICKET_COLUMNS = (
    "account_id",
    "status",
    "priority",
    "type",
    "created_at",
    "first_reply_at",
    "solved_at",
    "occurred_at",
    "event_id",
)


async def _upsert_tickets(conn: AsyncConnection, events: list[TicketEvent]) -> None:
    """Each ticket as its newest update says, except its first reply: the earliest any
    update gave. A helpdesk's webhook carries no reply time (the connectors read one
    from a reply's status: ``connectors/common.py``), so an update without one, or a
    later reply's, must not undo it; in either arrival order."""
    stmt = insert_ignore(conn, tickets)
    new = stmt.excluded
    old = tickets.c
    # A late, older update of the same ticket must not overwrite a newer one.
    newer = or_(
        old.occurred_at < new.occurred_at,
        and_(old.occurred_at == new.occurred_at, old.event_id <= new.event_id),
    )
    columns = [column for column in TICKET_COLUMNS if column != "first_reply_at"]
    stmt = stmt.on_conflict_do_update(
        index_elements=["ticket_id"],
        set_={
            **{column: case((newer, new[column]), else_=old[column]) for column in columns},
            "first_reply_at": case(
                (old.first_reply_at.is_(None), new.first_reply_at),
                (new.first_reply_at < old.first_reply_at, new.first_reply_at),
                else_=old.first_reply_at,
            ),
        },
    )
    await conn.execute(
        stmt,
        [
            {
                "ticket_id": e.ticket_id,
                "account_id": e.account_id,
                "status": e.status.value,
                "priority": e.priority.value,
                "type": e.type.value,
                "created_at": e.created_at,
                "first_reply_at": e.first_reply_at,
                "solved_at": e.solved_at,
                "occurred_at": e.occurred_at,
                "event_id": e.event_id,
            }
            for e in events
        ],
    )


async def _apply_facts(
    conn: AsyncConnection, events: Sequence[AccountFacts], now: datetime
) -> None:
    """Merge facts field by field; each field keeps the value with the newest event time
    (ties broken by event id), whatever order the events arrive in."""
    if not events:
        return
    ids = {e.account_id for e in events}
    rows = await conn.execute(
        select(accounts.c.account_id, accounts.c.facts).where(
            among(conn, accounts.c.account_id, ids)
        )
    )
    stored = {row.account_id: row.facts for row in rows}
    merged: dict[str, dict[str, Any]] = {
        account_id: stored.get(account_id) or {"fields": {}, "stamps": {}} for account_id in ids
    }
    late: dict[str, datetime] = {}  # account → from when on its lists are to be read
    for e in events:
        facts = merged[e.account_id]
        stamp = stamp_of(e)
        given = given_facts(e)
        if "contacts" in given and (since := _observe_people(facts, given["contacts"], stamp)):
            late[e.account_id] = min(late.get(e.account_id, since), since)
        fold_fields(facts, e)
        if given.get("lifecycle_stage") == "churned":
            # When it churned: the earliest such fact (a CRM re-sending the same
            # stage every night moves the field's stamp, not this).
            first = facts.get("churned_at")
            facts["churned_at"] = min(first, stamp[0]) if first else stamp[0]
    await record_facts(conn, events)
    await _end_runs(conn, merged, late)
    await upsert(
        conn,
        accounts,
        [_account_row(account_id, facts, now) for account_id, facts in sorted(merged.items())],
        keys=["account_id"],
        update=[
            "name",
            "seats_purchased",
            "tier",
            "owner_email",
            "owner_slack_id",
            "facts",
            "facts_occurred_at",
            "updated_at",
        ],
    )


PEOPLE_ROLES = ("decision_maker", "champion")

# The contact lists kept per account (``facts["people_seen"]``, hot state): where the
# holders change. Of each run of lists naming the same holders the first (when they took
# over: the change) and the last (still held then), so a CRM sending the same contacts
# every night, or every hour, keeps two lists and its last change however many follow:
# EW-12 counts a change for ``people_change_days`` (90 by default, up to ten years), so
# keeping lists by time would grow with the CRM's rhythm (90 a quarter nightly, 2,000
# hourly) and still fall short of a long setting; by changes the facts grow only when
# people change. The bound: 32 lists (at least 15 changes of holders back, about 4 KB);
# past it the oldest go and ``people_cut`` tells the as-of reads to read the facts
# history (``relationship_as_of.py``). A list arriving late inside a run of other holders
# needs the run's lists after it (the holders came back at the next one): they come from
# the facts history (``_end_runs``), so the kept lists are the same in any order (below
# the bound; past it the oldest kept may depend on the order the lists came in).
PEOPLE_OBSERVATIONS = 32
# Written before (main at 9c5cf31): every list as it came, the newest 50, so 50 of
# them may have been cut short; read as they are, kept as above from the next list on.
OLD_PEOPLE_OBSERVATIONS = 50


def _observe_people(
    facts: dict[str, Any], contacts: list[dict[str, Any]], stamp: list[str]
) -> datetime | None:
    """EW-12: note who holds each role as of ``stamp``; a change is a stamp whose holders
    differ from the observation before it (the first ever is not a change). Derived from
    the observations in time order, so arrival order does not matter. When the list
    landed inside a run of other holders: the time of the run's kept list before it, from
    which on the run's lists are to be read from the facts history (``_end_runs``)."""
    seen = facts.setdefault("people_seen", [])
    entry = [stamp, holders(contacts)]
    before = _run_before(sorted([*seen, entry], key=observation_key), entry)
    _keep_people(facts, [*seen, entry])
    return before


def _keep_people(facts: dict[str, Any], observations: list[list[Any]]) -> None:
    """Keep ``observations`` (with those already kept) in ``facts`` and the changes."""
    kept, cut = kept_people(observations)
    if cut or people_cut(facts):
        facts["people_cut"] = True
    facts["people_seen"] = kept
    facts["people_changes"] = people_changes(kept)


def kept_people(observations: list[list[Any]]) -> tuple[list[list[Any]], bool]:
    """``observations`` ([stamp, holders], any order, repeats too) as kept: in time order,
    of each run naming the same holders its first and last, the newest
    ``PEOPLE_OBSERVATIONS``; whether older ones were cut. Uncut, ``people_changes`` of
    them is that of all ``observations``; cut, a role whose holders last changed before
    the oldest kept list reads as unchanged (at least 15 changes of holders later)."""
    ordered = sorted({observation_key(o): o for o in observations}.values(), key=observation_key)
    runs = [
        o
        for i, o in enumerate(ordered)
        if not 0 < i < len(ordered) - 1 or not ordered[i - 1][1] == o[1] == ordered[i + 1][1]
    ]
    return runs[-PEOPLE_OBSERVATIONS:], len(runs) > PEOPLE_OBSERVATIONS


def people_cut(facts: dict[str, Any]) -> bool:
    """Whether ``facts`` may have lost older contact lists (the as-of reads then read
    the facts history)."""
    kept = facts.get("people_seen", [])
    return bool(facts.get("people_cut")) or len(kept) >= OLD_PEOPLE_OBSERVATIONS


def observation_key(observation: list[Any]) -> tuple[Any, ...]:
    """Time order (the stamp), then the holders: the same order in any arrival order."""
    stamp, held = observation
    return (*stamp, *((role, *who) for role, who in sorted(held.items())))


def _run_before(ordered: list[list[Any]], entry: list[Any]) -> datetime | None:
    """The time of the list before ``entry`` in ``ordered`` if ``entry`` lies inside a
    run of other holders (whose lists between were perhaps not kept)."""
    i = ordered.index(entry)
    if 0 < i < len(ordered) - 1 and ordered[i - 1][1] == ordered[i + 1][1] != entry[1]:
        return datetime.fromisoformat(ordered[i - 1][0][0])
    return None


async def _end_runs(
    conn: AsyncConnection, facts: Mapping[str, dict[str, Any]], since: Mapping[str, datetime]
) -> None:
    """Fold into each account's kept lists those of its facts history from
    ``since[account]`` on (a list landed inside a run of other holders: the run resumed
    at the next list after it, which the kept lists dropped), so the kept lists are those
    of the lists in time order. Rare: only for a late list, one query for the batch's
    accounts that need it; any list more is folded as it would have been anyway."""
    if not since:
        return
    lists = await contact_lists(conn, since, min(since.values()))
    for account_id in since:
        _keep_people(facts[account_id], [*facts[account_id]["people_seen"], *lists[account_id]])


async def contact_lists(
    conn: AsyncConnection,
    account_ids: Iterable[str],
    since: datetime | None = None,
    until: datetime | None = None,
) -> defaultdict[str, list[Any]]:
    """account → the contact lists ([stamp, holders]) of its facts history's snapshots
    in [``since``, ``until``]: every snapshot holds the list in force then with its
    stamp, so every list but one of two stamped at the same moment; repeats too."""
    seen: defaultdict[str, list[Any]] = defaultdict(list)
    h = account_facts_history.c
    query = select(h.account_id, h.facts).where(among(conn, h.account_id, list(account_ids)))
    if since is not None:
        query = query.where(h.occurred_at >= since)
    if until is not None:
        query = query.where(h.occurred_at <= until)
    for row in await conn.execute(query):
        stamp = row.facts["stamps"].get("contacts")
        if stamp is not None:
            seen[row.account_id].append([stamp, holders(row.facts["fields"]["contacts"])])
    return seen


def holders(contacts: list[dict[str, Any]]) -> dict[str, list[str]]:
    """role → who holds it among ``contacts`` (a facts event's contact list)."""
    return {
        role: sorted(_who(contact) for contact in contacts if contact.get("role") == role)
        for role in PEOPLE_ROLES
    }


def people_changes(seen: list[list[Any]]) -> dict[str, str]:
    """role → when (ISO) its holders last changed, from observations [stamp, holders] in
    time order: a stamp whose holders differ from the observation before it."""
    changes: dict[str, str] = {}
    for (_, before), (at, after) in itertools.pairwise(seen):
        for role in PEOPLE_ROLES:
            if before[role] and after[role] != before[role]:
                changes[role] = at[0]
    return changes


def _who(contact: dict[str, Any]) -> str:
    return str(contact.get("email") or contact.get("name") or "").lower()


def _account_row(account_id: str, facts: dict[str, Any], now: datetime) -> dict[str, Any]:
    fields = facts["fields"]
    owner = fields.get("owner") or {}
    stamps = facts["stamps"]
    newest = max(stamp[0] for stamp in stamps.values()) if stamps else now.isoformat()
    return {
        "account_id": account_id,
        "name": fields.get("name"),
        "seats_purchased": fields.get("seats_purchased"),
        "tier": fields.get("tier"),
        # Folded here too: facts stored before emails were folded stay in the merged
        # fields until the CRM sends the owner again.
        "owner_email": folded_email(owner.get("email")),
        "owner_slack_id": owner.get("slack_id"),
        "facts": facts,
        "facts_occurred_at": datetime.fromisoformat(newest),
        "updated_at": now,
    }


async def _prune(
    conn: AsyncConnection,
    states: Usage,
    health: dict[str, dict[str, Any]],
    kept: tuple[int, int],
    zones: Mapping[str, tzinfo],
    now: datetime,
) -> None:
    """Move the days that fell out of each account's window (``kept``: window and
    history days) from its usage state to its long history, a week at a time: state
    grows with active days and names, not with events; the long history keeps
    ``history_days``. Only an account whose state dropped days costs statements: most
    batches none."""
    window_days, history_days = kept
    parts: Usage = {}
    keep_from: dict[str, date] = {}
    for account_id, h in health.items():
        cutoff = window_start(h["as_of"], window_days, zones[account_id]).toordinal()
        part = states[account_id].prune_before(
            date.fromordinal(cutoff - cutoff % ARCHIVE_STEP_DAYS)
        )
        if part is not None:
            parts[account_id] = part
            oldest = window_start(h["as_of"], history_days, zones[account_id])
            keep_from[account_id] = month_of(oldest.toordinal())
            states[account_id].keep_whole_from(keep_from[account_id])
    await usage_store.archive(conn, parts, keep_from, now)


def _newer(event: TicketEvent, other: TicketEvent | None) -> bool:
    if other is None:
        return True
    return (event.occurred_at, event.event_id) >= (other.occurred_at, other.event_id)


def _keep_two_newest_nps(h: dict[str, Any], e: NpsResponse) -> None:
    """The two newest answers, ordered by (time, score): the same on every replay."""
    answers = [(e.occurred_at, e.score)]
    for at, score in ((h["nps_at"], h["nps_latest"]), (h["nps_previous_at"], h["nps_previous"])):
        if at is not None and (at, score) not in answers:
            answers.append((at, score))
    answers.sort(reverse=True)
    (h["nps_at"], h["nps_latest"]), previous = answers[0], answers[1:2]
    h["nps_previous_at"], h["nps_previous"] = previous[0] if previous else (None, None)


def _latest(current: datetime | None, moment: datetime) -> datetime:
    return moment if current is None or moment > current else current


def _earliest(current: datetime | None, moment: datetime) -> datetime:
    return moment if current is None or moment < current else current
