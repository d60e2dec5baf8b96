"""The relationship measures as of a past day: the touchpoints, NPS answers, failed
payments and use known by the end of that day, whatever order the events arrived in;
the rule for the days before the logs (SQLite)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scoring.as_of import measures_as_of
from services.scoring.facts_history import end_of, given_facts, stamp_of
from services.scoring.measures import load_measures
from services.scoring.relationship_as_of import (
    Logged,
    relationship_fields_as_of,
    relationship_then,
    two_newest,
)
from services.scoring.state import (
    PEOPLE_OBSERVATIONS,
    _apply_relationship,
    _observe_people,
    apply_events,
    holders,
    people_changes,
)
from services.scoring.usage_measures import NameUse
from services.scoring.workload.records import record_relationship
from shared.contracts.events import EVENT_ADAPTER, AccountFacts, Event
from shared.storage.tables import accounts, payment_failures, touchpoint_log
from tests.support.factories import EngineFactory
from tests.support.measures import measures

T0 = datetime(2026, 6, 1, 10, tzinfo=UTC)
DAY = timedelta(days=1)
FIELDS = (
    "last_touchpoint_at",
    "last_decision_maker_contact_at",
    "nps_latest",
    "nps_previous",
    "last_payment_failed_at",
)


def event(kind: str, n: int, days: float, **fields: Any) -> Event:
    raw = {"kind": kind, "event_id": f"{kind}-{n}", "account_id": "acme"}
    return EVENT_ADAPTER.validate_python(raw | {"occurred_at": T0 + days * DAY} | fields)


def touch(n: int, days: float, role: str | None = None) -> Event:
    return event("touchpoint", n, days, touchpoint_kind="call", contact_role=role)


# Use on days 0-3 and 8; contacts on days 1 (a user), 2 and 6 (the decision maker) and
# 9 (no role); answers on days 1, 4 (two at one moment: ordered by score) and 7; failed
# payments on days 2 and 7, a successful one on day 5.
EVENTS = [
    *(event("usage", n, n, user_id="u1", event="login") for n in (0, 1, 2, 3, 8)),
    touch(1, 1, "user"),
    touch(2, 2, "decision_maker"),
    touch(6, 6, "decision_maker"),
    touch(9, 9),
    event("nps", 1, 1, score=3),
    event("nps", 4, 4, score=9),
    event("nps", 5, 4, score=7),
    event("nps", 7, 7, score=10),
    event("payment", 2, 2, status="failed"),
    event("payment", 5, 5, status="succeeded"),
    event("payment", 7, 7, status="failed"),
]


def folded(events: list[Event], end: datetime) -> dict[str, Any]:
    """What scoring's state held after only the events up to ``end``: the truth."""
    h: dict[str, Any] = dict.fromkeys(["nps_at", "nps_previous_at", "last_seen_at", *FIELDS], None)
    for e in events:
        if e.occurred_at <= end:
            _apply_relationship(h, e)
            if e.kind == "usage":
                h["last_seen_at"] = max(h["last_seen_at"] or e.occurred_at, e.occurred_at)
    return h


async def scored(engine: AsyncEngine, batches: list[list[Event]]) -> None:
    """Apply and log the batches as the scoring batch does (processor.handle)."""
    for batch in batches:
        async with engine.begin() as conn:
            await apply_events(conn, batch, window_days=90, now=T0 + 20 * DAY)
            await record_relationship(conn, batch)


async def as_of(engine: AsyncEngine, day: date) -> dict[str, Any]:
    async with engine.connect() as conn:
        [m] = await load_measures(conn, {"acme"}, day, UTC)
        fields = await relationship_fields_as_of(conn, [m], {"acme": end_of(day)})
        then = replace(m, **fields["acme"])
    return {name: getattr(then, name) for name in (*FIELDS, "last_seen_at")}


async def test_as_of_each_day_is_the_state_of_the_events_by_then(
    engine_factory: EngineFactory,
) -> None:
    engine = await engine_factory()
    # Newest first, in two batches, and one batch again (a replay adds no row).
    await scored(engine, [EVENTS[::-2], EVENTS[-2::-2], EVENTS[::-2]])
    for n in range(-1, 11):
        day = (T0 + n * DAY).date()
        got, truth = await as_of(engine, day), folded(EVENTS, end_of(day))
        assert {f: got[f] for f in FIELDS} == {f: truth[f] for f in FIELDS}, day
        # The last use: its day (a moment of it), which is all the inputs read.
        seen = got["last_seen_at"]
        assert (seen and seen.date()) == (truth["last_seen_at"] and truth["last_seen_at"].date())


async def test_days_before_the_logs(engine_factory: EngineFactory) -> None:
    """Rows from before migration 0011 carry no contact role and failed payments were not
    logged: a value overtaken since reads None, one still newest by then reads as is."""
    engine = await engine_factory()
    await scored(engine, [EVENTS])
    async with engine.begin() as conn:
        await conn.execute(update(touchpoint_log).values(contact_role=None))
        await conn.execute(delete(payment_failures))
    day3 = await as_of(engine, (T0 + 3 * DAY).date())
    assert day3["last_touchpoint_at"] == T0 + 2 * DAY  # the touchpoint log itself is older
    assert (day3["last_decision_maker_contact_at"], day3["last_payment_failed_at"]) == (None, None)
    day8 = await as_of(engine, (T0 + 8 * DAY).date())
    assert day8["last_decision_maker_contact_at"] == T0 + 6 * DAY
    assert day8["last_payment_failed_at"] == T0 + 7 * DAY


def test_stored_values_and_logs() -> None:
    end = T0 + 3 * DAY
    before, after = T0 + DAY, T0 + 5 * DAY
    m = measures(
        as_of=end.date(),
        last_touchpoint_at=after,
        last_decision_maker_contact_at=before,
        last_payment_failed_at=after,
        last_seen_at=before,
        nps_latest=9,
        nps_previous=4,
    )
    # Today's newer answer is dropped; the older one stands even without a log row.
    then = relationship_then(
        m, end, [(after, 9), (before, 4)], Logged(touchpoint_at=T0, payment_failed_at=None)
    )
    assert then == {
        "last_touchpoint_at": T0,
        "last_decision_maker_contact_at": before,
        "nps_latest": 4,
        "nps_previous": None,
        "last_payment_failed_at": None,
        "last_seen_at": before,
    }
    logged = Logged(answers=((T0, 6), (T0 + DAY / 2, 8)))
    assert relationship_then(m, end, [(after, 9), (before, 4)], logged)["nps_latest"] == 4
    assert relationship_then(m, end, [(after, 9), (before, 4)], logged)["nps_previous"] == 8
    assert two_newest([(T0, 3), (T0, 7), (T0, 7), (before, 1)]) == [(before, 1), (T0, 7)]


def test_last_use_from_the_counts_of_the_day() -> None:
    day = date(2026, 6, 10)
    end = end_of(day)
    use = NameUse(1, 1, 0, 1, (0, 0, 0, 1), date(2026, 6, 7))
    m = measures(as_of=day, first_seen=date(2026, 1, 1), last_seen_at=end + DAY)
    counted = measures(
        as_of=day,
        first_seen=date(2026, 1, 1),
        last_seen_at=end + DAY,
        name_use={("event", "login"): use, ("platform", "pc"): use},
    )
    seen = relationship_then(counted, end, [], Logged())["last_seen_at"]
    assert seen == datetime(2026, 6, 7, tzinfo=UTC)
    # Unused over the 90 days counted: at least that long, as a name unused is read.
    assert relationship_then(m, end, [], Logged())["last_seen_at"] == datetime(
        2026, 3, 12, tzinfo=UTC
    )
    # First used after the day: no use by then.
    later = measures(as_of=day, first_seen=date(2026, 6, 11), last_seen_at=end + DAY)
    assert relationship_then(later, end, [], Logged())["last_seen_at"] is None


def people(n: int, days: float, **holders: str) -> Event:
    """A CRM's contact list: ``decision_maker="Ann"``, ``champion="Cy"``."""
    contacts = [{"name": name, "role": role} for role, name in holders.items()]
    return event("account", n, days, contacts=contacts)


def changes_folded(events: list[Event], end: datetime) -> dict[str, datetime | None]:
    """The people changes scoring's facts held after only the events up to ``end``."""
    facts: dict[str, Any] = {"fields": {}, "stamps": {}}
    for e in events:
        if isinstance(e, AccountFacts) and e.contacts is not None and e.occurred_at <= end:
            _observe_people(facts, given_facts(e)["contacts"], stamp_of(e))
    found = facts.get("people_changes", {})
    return {
        f"{role}_changed_at": datetime.fromisoformat(found[role]) if role in found else None
        for role in ("decision_maker", "champion")
    }


async def changes_as_of(engine: AsyncEngine, day: date) -> dict[str, datetime | None]:
    async with engine.connect() as conn:
        [m] = await measures_as_of(conn, {"acme"}, day, UTC)
    return {name: getattr(m, name) for name in ("decision_maker_changed_at", "champion_changed_at")}


# The decision maker changes on days 2 and 6 and leaves on day 8; the champion changes
# on day 4; day 7's facts give no contacts.
PEOPLE = [
    people(0, 0, decision_maker="Ann", champion="Cy"),
    people(2, 2, decision_maker="Bob", champion="Cy"),
    people(4, 4, decision_maker="Bob", champion="Di"),
    people(6, 6, decision_maker="Eve", champion="Di"),
    event("account", 7, 7, seats_purchased=20),
    people(8, 8, champion="Di"),
]


async def test_people_changes_as_of_each_day_are_the_fold_by_then(
    engine_factory: EngineFactory,
) -> None:
    engine = await engine_factory()
    await scored(engine, [PEOPLE[::-2], PEOPLE[-2::-2]])
    for n in range(-1, 10):
        day = (T0 + n * DAY).date()
        assert await changes_as_of(engine, day) == changes_folded(PEOPLE, end_of(day)), day


async def test_people_changes_before_the_contact_lists_kept(
    engine_factory: EngineFactory,
) -> None:
    """Facts written before kept the newest 50 lists as they came (a CRM sending its
    contacts every night: 50 days), so a past day's lists come from the facts history."""
    nightly = [
        people(n, n, decision_maker="Ann" if n < 5 else "Bob", champion="Cy") for n in range(60)
    ]
    engine = await engine_factory()
    await scored(engine, [nightly])
    old = [
        [stamp_of(e), holders(given_facts(e)["contacts"])]
        for e in nightly[-50:]
        if isinstance(e, AccountFacts)
    ]
    async with engine.begin() as conn:
        facts = (await conn.execute(select(accounts.c.facts))).scalar_one()
        changes = people_changes(old)
        await conn.execute(
            update(accounts).values(facts=facts | {"people_seen": old, "people_changes": changes})
        )
    for n in (4, 5, 20, 30, 54, 58):
        day = (T0 + n * DAY).date()
        assert await changes_as_of(engine, day) == changes_folded(nightly, end_of(day)), day
    assert (await changes_as_of(engine, (T0 + 20 * DAY).date()))["decision_maker_changed_at"] == (
        T0 + 5 * DAY
    )
    # From the newest list on, the stored changes read as they are (no migration).
    now = await changes_as_of(engine, (T0 + 59 * DAY).date())
    assert now == {"decision_maker_changed_at": None, "champion_changed_at": None}


async def test_a_change_seen_after_months_of_nightly_lists(engine_factory: EngineFactory) -> None:
    """The same contacts every night after a change on night 10: the change is seen 60 to
    80 days on, live and as of each day, from the facts alone (two lists a run)."""
    nightly = [
        people(n, n, decision_maker="Ann" if n < 10 else "Bob", champion="Cy") for n in range(101)
    ]
    engine = await engine_factory()
    await scored(engine, [nightly[:40], nightly[40:]])
    for n in (9, 10, 70, 80, 90, 100):
        day = (T0 + n * DAY).date()
        assert await changes_as_of(engine, day) == changes_folded(nightly, end_of(day)), day
    assert await changes_as_of(engine, (T0 + 85 * DAY).date()) == {
        "decision_maker_changed_at": T0 + 10 * DAY,
        "champion_changed_at": None,
    }
    async with engine.connect() as conn:
        [m] = await load_measures(conn, {"acme"}, (T0 + 90 * DAY).date(), UTC)
        facts = (await conn.execute(select(accounts.c.facts))).scalar_one()
    assert m.decision_maker_changed_at == T0 + 10 * DAY
    assert len(facts["people_seen"]) == 4
    assert "people_cut" not in facts


async def test_people_changes_as_of_when_the_kept_lists_were_cut(
    engine_factory: EngineFactory,
) -> None:
    """Holders changing every few nights: past the lists kept, the older ones come from
    the facts history, and a day's changes are still those scoring's facts held then."""
    flips = [
        people(n, n, decision_maker="Ann" if n % 3 else "Bob", champion="Cy" if n < 50 else "Di")
        for n in range(70)
    ]
    engine = await engine_factory()
    await scored(engine, [flips[::-1]])
    async with engine.connect() as conn:
        facts = (await conn.execute(select(accounts.c.facts))).scalar_one()
    assert len(facts["people_seen"]) == PEOPLE_OBSERVATIONS
    assert facts["people_cut"] is True
    for n in (1, 3, 20, 49, 50, 60, 69):
        day = (T0 + n * DAY).date()
        assert await changes_as_of(engine, day) == changes_folded(flips, end_of(day)), day


async def test_a_last_use_long_before_the_day(engine_factory: EngineFactory) -> None:
    """Unused over the 90 days counted: the newest day with use before them, from the
    usage state or its long history, not "at least 90 days"."""
    used = [0, 100, 200]
    engine = await engine_factory()
    await scored(engine, [[event("usage", n, n, user_id="u1", event="login")] for n in used])
    for n in (50, 99, 150, 189, 199):
        day = (T0 + n * DAY).date()
        async with engine.connect() as conn:
            [m] = await measures_as_of(conn, {"acme"}, day, UTC)
        newest = max(u for u in used if u <= n)
        assert m.last_seen_at is not None and m.last_seen_at.date() == (T0 + newest * DAY).date()
