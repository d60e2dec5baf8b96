"""The relationship measures as they were at the end of a past day: the last touchpoint
and decision-maker contact, the two newest NPS answers, the last failed payment, the
last use and the last change of decision maker and champion known by then
(``as_of.measures_as_of``).

``account_health`` keeps only the newest of each (today's); the logs written beside it
in the scoring batch's transaction (``workload/records.py``: ``touchpoint_log``,
``nps_responses``, ``payment_failures``) keep every one. The rule: today's stored value
at or before the end IS the value then (nothing newer was applied); a value after the
end gives way to the log's newest at or before the end, or None when the log holds
none. The logs start later than the state: touchpoints written before migration 0011
carry no contact role and failed payments were not logged before it, so a past day
whose value was overtaken since reads None there. Only accounts with a stored value
after the end read a log (one query per table for all of them), so an import scoring
its days in time order reads almost none.

People changes (EW-12) are derived from the contact lists seen (``state.py``:
``_observe_people``; ``accounts.facts`` keeps where the holders changed, the first and
last list of each run of the same holders, however many lists a CRM sends): as of a
day, from those kept by its end, with the same helpers (``kept_people``,
``people_changes``). Where the kept ones were cut short (``people_cut``: past
``PEOPLE_OBSERVATIONS``, or written before as the newest 50 lists as they came), the
older lists come from the facts history (``facts_history.py``), whose snapshots keep
every contact list with its stamp: the fold of the lists by the end, exactly, but for
two lists stamped at the same moment (the history keeps one per moment). The last use,
unused over the 90 days counted, is the newest day with use before them: in the usage
state or its long history; before the long history, "at least" 90 days as before.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scoring import usage_store
from services.scoring.measures import Measures
from services.scoring.state import contact_lists, kept_people, people_changes, people_cut
from services.scoring.usage import AccountUsage
from services.scoring.usage_measures import NAME_WINDOW_DAYS
from shared.contracts.events import ContactRole
from shared.storage.db import among
from shared.storage.tables import (
    account_health,
    accounts,
    nps_responses,
    payment_failures,
    touchpoint_log,
)

Answer = tuple[datetime, int]  # an NPS answer: (when, score)


@dataclass(frozen=True)
class Logged:
    """What an account's logs hold at or before its end (only the logs it needed)."""

    touchpoint_at: datetime | None = None
    decision_maker_at: datetime | None = None
    answers: tuple[Answer, ...] = ()
    payment_failed_at: datetime | None = None
    used_before: date | None = None  # the newest day with use before the 90 days counted


async def relationship_fields_as_of(
    conn: AsyncConnection,
    measures: Sequence[Measures],
    ends: Mapping[str, datetime],
    usage: Mapping[str, AccountUsage] | None = None,
) -> dict[str, dict[str, Any]]:
    """account → its relationship fields as they were at ``ends[account]`` (the end of a
    past day in the account's zone), to replace in ``measures`` (as of that day, with
    today's relationship values): the caller replaces them with its other fields of the
    day, building each account's measures once. ``usage``: usage states already loaded."""
    stored = await _stored_answers(
        conn, [m.account_id for m in measures if m.nps_latest is not None]
    )
    logged = await _read_logs(conn, measures, stored, ends)
    used = await _used_before(conn, measures, ends, usage or {})
    people = await _people_then(conn, ends)
    return {
        m.account_id: relationship_then(
            m,
            ends[m.account_id],
            stored.get(m.account_id, ()),
            replace(logged[m.account_id], used_before=used.get(m.account_id)),
        )
        | people.get(m.account_id, {})
        for m in measures
    }


def relationship_then(
    m: Measures,
    end: datetime,
    stored_answers: Sequence[Answer],
    logged: Logged,
) -> dict[str, Any]:
    """The relationship fields of ``m`` as they were at ``end``, from today's values,
    today's two answers with their times (``stored_answers``), the logs at or before
    ``end`` and the usage counts as of the day (``m.name_use``). Pure."""
    answers = two_newest([a for a in stored_answers if a[0] <= end] + list(logged.answers))
    return {
        "last_touchpoint_at": _then(m.last_touchpoint_at, end, logged.touchpoint_at),
        "last_decision_maker_contact_at": _then(
            m.last_decision_maker_contact_at, end, logged.decision_maker_at
        ),
        "nps_latest": answers[0][1] if answers else None,
        "nps_previous": answers[1][1] if len(answers) > 1 else None,
        "last_payment_failed_at": _then(m.last_payment_failed_at, end, logged.payment_failed_at),
        "last_seen_at": _then(m.last_seen_at, end, _last_use(m, logged.used_before)),
    }


def relationship_measures(m: Measures) -> dict[str, Any]:
    """The relationship measures as the metrics API answers them (times as ISO 8601)."""
    return {
        "last_seen_at": _iso(m.last_seen_at),
        "last_touchpoint_at": _iso(m.last_touchpoint_at),
        "last_decision_maker_contact_at": _iso(m.last_decision_maker_contact_at),
        "nps_latest": m.nps_latest,
        "nps_previous": m.nps_previous,
        "last_payment_failed_at": _iso(m.last_payment_failed_at),
        "decision_maker_changed_at": _iso(m.decision_maker_changed_at),
        "champion_changed_at": _iso(m.champion_changed_at),
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def two_newest(answers: Sequence[Answer]) -> list[Answer]:
    """The two newest distinct answers, ordered by (time, score) as ``state.py``'s
    ``_keep_two_newest_nps`` keeps them."""
    return sorted(set(answers), reverse=True)[:2]


def _then(today: datetime | None, end: datetime, logged: datetime | None) -> datetime | None:
    return today if today is None or today <= end else logged


def _after(moment: datetime | None, end: datetime) -> bool:
    return moment is not None and moment > end


def _last_use(m: Measures, used_before: date | None) -> datetime | None:
    """The last use by the as-of day, from its usage counts: every use counts under its
    event name, so the newest ``last_day`` of the event names is the newest day with use
    in the 90 days to the as-of day (the usage state's days, or its long history for an
    older day: whatever the measures were counted from). Unused over those 90 days though
    used before: ``used_before``, the newest day with use before them; without one (the
    use lies before the long history) that day 90 days back, "at least that long", as
    ``inputs._silence`` reads a name unused over the window. None: no use by then.

    As its start: the inputs read ``last_seen_at`` by its day only (``days_since``: whole
    days in the account's zone), so any moment of that day gives the same inputs, and the
    start is never after the real last use, nor after the as-of day's end."""
    newest = _counted_use(m)
    if newest is None and _used_by(m):
        newest = used_before or m.as_of - timedelta(days=NAME_WINDOW_DAYS)
    return None if newest is None else datetime.combine(newest, time(), m.tz)


def _counted_use(m: Measures) -> date | None:
    """The newest day with use in the 90 days the measures counted."""
    days = [use.last_day for (dimension, _), use in m.name_use.items() if dimension == "event"]
    return max((day for day in days if day is not None), default=None)


def _used_by(m: Measures) -> bool:
    return m.first_seen is not None and m.first_seen <= m.as_of


async def _used_before(
    conn: AsyncConnection,
    measures: Sequence[Measures],
    ends: Mapping[str, datetime],
    usage: Mapping[str, AccountUsage],
) -> dict[str, date]:
    """account → the newest day with use before the 90 days its measures counted, for
    the accounts that need it: used since the end (today's last use is after it), used
    by then, and not over the 90 days. Their usage state's older days first, then its
    long history (one query for all): rare, and only those accounts read."""
    last = {
        m.account_id: (m.as_of - timedelta(days=NAME_WINDOW_DAYS)).toordinal()
        for m in measures
        if _after(m.last_seen_at, ends[m.account_id]) and _counted_use(m) is None and _used_by(m)
    }
    if not last:
        return {}
    states = await usage_store.complete(conn, dict(usage), last)
    found = {a: _newest_day(states[a], newest) for a, newest in last.items()}
    rest = [a for a, day in found.items() if day is None]
    if rest:
        newest = date.fromordinal(max(last[a] for a in rest))
        months = await usage_store.load_history(conn, rest, date.min, newest)
        for a in rest:
            found[a] = max(
                (d for month in months.get(a, ()) if (d := _newest_day(month, last[a]))),
                default=None,
            )
    return {a: day for a, day in found.items() if day is not None}


def _newest_day(state: AccountUsage, last: int) -> date | None:
    """The newest day of ``state`` with use on or before the day ordinal ``last``."""
    return max((date.fromordinal(o) for o in state.ordinals() if o <= last), default=None)


async def _people_then(
    conn: AsyncConnection, ends: Mapping[str, datetime]
) -> dict[str, dict[str, Any]]:
    """account → its last decision-maker and champion change as of its end, for the
    accounts that saw a contact list after it (the others' values stand as they are)."""
    seen = await _seen_after(conn, ends)
    cut = {a: ends[a] for a, (_, was_cut) in seen.items() if was_cut}
    older = await contact_lists(conn, cut, until=max(cut.values())) if cut else {}
    out: dict[str, dict[str, Any]] = {}
    for account, (kept, _) in seen.items():
        then = [o for o in kept + older.get(account, []) if _moment(o) <= ends[account]]
        changes = people_changes(kept_people(then)[0])
        out[account] = {
            "decision_maker_changed_at": _parsed(changes.get("decision_maker")),
            "champion_changed_at": _parsed(changes.get("champion")),
        }
    return out


async def _seen_after(
    conn: AsyncConnection, ends: Mapping[str, datetime]
) -> dict[str, tuple[list[Any], bool]]:
    """account → the contact lists its facts keep and whether older ones were cut, for
    the accounts one of whose lists is stamped after its end."""
    if not ends:
        return {}
    a = accounts.c
    # facts_occurred_at is the newest stamp as text: with offsets of under a day each,
    # the newest moment lies less than two days after it.
    rows = await conn.execute(
        select(a.account_id, a.facts).where(
            among(conn, a.account_id, list(ends)),
            a.facts_occurred_at > min(ends.values()) - timedelta(days=2),
        )
    )
    seen: dict[str, tuple[list[Any], bool]] = {}
    for row in rows:
        kept = row.facts.get("people_seen", [])
        if any(_moment(o) > ends[row.account_id] for o in kept):
            seen[row.account_id] = (kept, people_cut(row.facts))
    return seen


def _moment(observation: list[Any]) -> datetime:
    return datetime.fromisoformat(observation[0][0])


def _parsed(when: str | None) -> datetime | None:
    return datetime.fromisoformat(when) if when else None


async def _stored_answers(conn: AsyncConnection, ids: list[str]) -> dict[str, tuple[Answer, ...]]:
    """account → today's two answers with their times (Measures has the scores only)."""
    if not ids:
        return {}
    h = account_health.c
    rows = await conn.execute(
        select(h.account_id, h.nps_at, h.nps_latest, h.nps_previous_at, h.nps_previous).where(
            among(conn, h.account_id, ids)
        )
    )
    return {
        row.account_id: tuple(
            (at, score)
            for at, score in ((row.nps_at, row.nps_latest), (row.nps_previous_at, row.nps_previous))
            if at is not None and score is not None
        )
        for row in rows
    }


async def _read_logs(
    conn: AsyncConnection,
    measures: Sequence[Measures],
    stored: Mapping[str, Sequence[Answer]],
    ends: Mapping[str, datetime],
) -> dict[str, Logged]:
    """account → its logs at or before its end, read for the accounts whose today's value
    lies after it."""
    touches = await _rows(
        conn,
        touchpoint_log,
        _late(
            ends,
            {
                m.account_id: (m.last_touchpoint_at, m.last_decision_maker_contact_at)
                for m in measures
            },
        ),
    )
    answers = await _rows(
        conn, nps_responses, _late(ends, {a: [at for at, _ in s] for a, s in stored.items()})
    )
    failures = await _rows(
        conn,
        payment_failures,
        _late(ends, {m.account_id: [m.last_payment_failed_at] for m in measures}),
    )
    decision_maker = ContactRole.decision_maker.value
    return {
        m.account_id: Logged(
            touchpoint_at=_newest(touches[m.account_id]),
            decision_maker_at=_newest(
                t for t in touches[m.account_id] if t.contact_role == decision_maker
            ),
            answers=tuple(two_newest([(a.occurred_at, a.score) for a in answers[m.account_id]])),
            payment_failed_at=_newest(failures[m.account_id]),
        )
        for m in measures
    }


def _late(
    ends: Mapping[str, datetime], moments: Mapping[str, Iterable[datetime | None]]
) -> dict[str, datetime]:
    """The accounts (with their ends) one of whose today's ``moments`` lies after the end."""
    return {a: ends[a] for a, stamps in moments.items() if any(_after(t, ends[a]) for t in stamps)}


async def _rows(
    conn: AsyncConnection, table: Table, ends: Mapping[str, datetime]
) -> defaultdict[str, list[Any]]:
    """account → ``table``'s rows at or before ``ends[account]``: one query for all."""
    rows: defaultdict[str, list[Any]] = defaultdict(list)
    if not ends:
        return rows
    c = table.c
    for row in await conn.execute(
        select(table).where(among(conn, c.account_id, ends), c.occurred_at <= max(ends.values()))
    ):
        if row.occurred_at <= ends[row.account_id]:
            rows[row.account_id].append(row)
    return rows


def _newest(rows: Any) -> datetime | None:
    return max((row.occurred_at for row in rows), default=None)
