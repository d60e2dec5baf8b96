"""EW-12 people changes from the contact lists a CRM sends: remembered however many
identical lists follow, the kept lists bounded, whatever order the lists arrive in."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scoring.facts_history import given_facts, stamp_of
from services.scoring.measures import load_measures
from services.scoring.state import (
    PEOPLE_OBSERVATIONS,
    _observe_people,
    apply_events,
    people_changes,
)
from shared.contracts.events import EVENT_ADAPTER, AccountFacts
from shared.storage.tables import accounts
from tests.support.factories import EngineFactory

T0 = datetime(2026, 6, 1, 2, tzinfo=UTC)
DAY = timedelta(days=1)
NOW = T0 + 200 * DAY


def people(n: float, **holders: str) -> AccountFacts:
    """The CRM's contact list of night ``n``: ``decision_maker="Ann"``, ``champion="Cy"``."""
    contacts = [{"name": name, "role": role} for role, name in holders.items()]
    raw = {"kind": "account", "event_id": f"f{n}", "account_id": "acme", "contacts": contacts}
    event = EVENT_ADAPTER.validate_python(raw | {"occurred_at": T0 + n * DAY})
    assert isinstance(event, AccountFacts)
    return event


def observed(events: list[AccountFacts], facts: dict[str, Any] | None = None) -> dict[str, Any]:
    """The facts after observing ``events`` in the order given."""
    facts = facts or {"fields": {}, "stamps": {}}
    for e in events:
        _observe_people(facts, given_facts(e)["contacts"], stamp_of(e))
    return facts


def order(event: AccountFacts) -> datetime:
    return event.occurred_at


def changed(facts: dict[str, Any], role: str = "decision_maker") -> datetime | None:
    when = facts.get("people_changes", {}).get(role)
    return datetime.fromisoformat(when) if when else None


# Ann until night 9, Bob from night 10 on, every night to night 80: 70 identical lists
# after the change.
NIGHTLY = [people(n, decision_maker="Ann" if n < 10 else "Bob", champion="Cy") for n in range(81)]


def test_a_change_stays_seen_after_nightly_identical_lists() -> None:
    facts = observed(NIGHTLY)
    assert changed(facts) == T0 + 10 * DAY
    assert changed(facts, "champion") is None
    # A run of identical lists keeps its first and its last: 4 lists, not 81.
    assert [o[0][0] for o in facts["people_seen"]] == [
        (T0 + n * DAY).isoformat() for n in (0, 9, 10, 80)
    ]
    assert "people_cut" not in facts


def test_late_lists_give_the_fold_of_the_lists_in_time_order() -> None:
    """Each late list in turn, against the fold of all lists in time order."""
    late = [
        people(40.5, decision_maker="Bob", champion="Cy"),  # inside the run: nothing new
        people(9.5, decision_maker="Bob", champion="Cy"),  # Bob took over earlier
        people(5.5, decision_maker="Ann", champion="Cy"),  # inside Ann's run
        people(85, decision_maker="Bob", champion="Cy"),  # beyond the newest
    ]
    for extra in late:
        in_order = observed(sorted([*NIGHTLY, extra], key=order))
        assert observed([extra], observed(NIGHTLY)) == in_order, extra.event_id
    assert changed(observed([late[1]], observed(NIGHTLY))) == T0 + 9.5 * DAY


def test_a_late_list_of_other_holders_inside_a_run_needs_the_run_ahead() -> None:
    """Eve's list of night 30.5, late, inside Bob's run: Eve from then, Bob again from
    night 31 (the next list). The kept lists alone know only Bob's last (night 80), so
    ``_observe_people`` says from when on the facts history is to be read."""
    eve = people(30.5, decision_maker="Eve", champion="Cy")
    facts = observed(NIGHTLY)
    assert _observe_people(facts, given_facts(eve)["contacts"], stamp_of(eve)) == T0 + 10 * DAY
    # From the kept lists only: Bob again at his last list kept.
    assert changed(facts) == T0 + 80 * DAY
    # In time order, nothing needs the history.
    assert observed([*NIGHTLY[:31], eve])["people_seen"][-1][0] == stamp_of(eve)


def test_the_kept_lists_are_bounded_and_marked_when_cut() -> None:
    flips = [people(n, decision_maker="Ann" if n % 2 else "Bob") for n in range(60)]
    facts = observed(flips)
    assert len(facts["people_seen"]) == PEOPLE_OBSERVATIONS
    assert facts["people_cut"] is True
    assert changed(facts) == T0 + 59 * DAY
    assert len(json.dumps(facts["people_seen"])) < 5_000


def test_facts_written_before_keep_reading() -> None:
    """Written before: the newest 50 lists as they came (perhaps cut short). Read as
    they are; the next list keeps them compactly, marked as perhaps cut."""
    old = [[stamp_of(e), {"decision_maker": ["bob"], "champion": []}] for e in NIGHTLY[-50:]]
    facts: dict[str, Any] = {"fields": {}, "stamps": {}, "people_seen": old}
    facts["people_changes"] = people_changes(old)
    assert changed(facts) is None
    observed([people(81, decision_maker="Dan")], facts)
    assert changed(facts) == T0 + 81 * DAY
    assert facts["people_cut"] is True
    assert len(facts["people_seen"]) == 3


async def apply(engine: AsyncEngine, events: list[AccountFacts]) -> None:
    async with engine.begin() as conn:
        await apply_events(conn, list(events), window_days=90, now=NOW)


async def changes_now(engine: AsyncEngine) -> tuple[datetime | None, datetime | None]:
    async with engine.connect() as conn:
        [m] = await load_measures(conn, {"acme"}, (T0 + 90 * DAY).date(), UTC)
    return m.decision_maker_changed_at, m.champion_changed_at


async def test_nightly_lists_through_the_state(engine_factory: EngineFactory) -> None:
    """70 nightly lists after the change, in nightly batches: still the change, and the
    stored facts stay small; a late list of other holders inside the run is folded as
    in time order (the lists between from the facts history)."""
    engine = await engine_factory()
    for night in NIGHTLY:
        await apply(engine, [night])
    assert await changes_now(engine) == (T0 + 10 * DAY, None)
    eve = people(30.5, decision_maker="Eve", champion="Cy")
    await apply(engine, [eve])
    assert await changes_now(engine) == (T0 + 31 * DAY, None)
    async with engine.connect() as conn:
        facts = (await conn.execute(select(accounts.c.facts))).scalar_one()
    # Ann 0, 9; Bob 10, 30; Eve 30.5; Bob 31, 80: as if the lists had come in time order.
    assert facts["people_seen"] == observed(sorted([*NIGHTLY, eve], key=order))["people_seen"]
    # A champion leaving on a late list between Ann's last and Bob's first.
    await apply(engine, [people(9.5, decision_maker="Ann")])
    assert await changes_now(engine) == (T0 + 31 * DAY, T0 + 9.5 * DAY)


async def test_stored_facts_written_before_read_as_they_are(
    engine_factory: EngineFactory,
) -> None:
    """Every list as it came (the rule before): read as it is, kept compactly from the
    next list on."""
    engine = await engine_factory()
    await apply(engine, NIGHTLY[:5])
    old = [[stamp_of(e), {"decision_maker": ["ann"], "champion": ["cy"]}] for e in NIGHTLY[:5]]
    async with engine.begin() as conn:
        facts = (await conn.execute(select(accounts.c.facts))).scalar_one()
        assert facts["people_seen"] != old
        await conn.execute(update(accounts).values(facts=facts | {"people_seen": old}))
    assert await changes_now(engine) == (None, None)
    await apply(engine, [NIGHTLY[10]])
    assert await changes_now(engine) == (T0 + 10 * DAY, None)
    async with engine.connect() as conn:
        facts = (await conn.execute(select(accounts.c.facts))).scalar_one()
    assert [o[0] for o in facts["people_seen"]] == [stamp_of(NIGHTLY[n]) for n in (0, 4, 10)]


async def test_a_fact_sent_as_null_is_cleared_unless_a_newer_one_set_it(
    engine_factory: EngineFactory,
) -> None:
    """A null was taken with 202 and ignored: a wrong go-live or ARR could not be removed
    (found from outside). A null clears the fact, by the same newest-wins rule; an older
    null clears nothing a newer event set; the lists are cleared by []."""
    engine = await engine_factory()

    def facts(n: float, **values: Any) -> AccountFacts:
        raw = {"kind": "account", "event_id": f"c{n}", "account_id": "acme",
               "occurred_at": (T0 + n * DAY).isoformat(), **values}  # fmt: skip
        event = EVENT_ADAPTER.validate_python(raw)
        assert isinstance(event, AccountFacts)
        return event

    await apply(engine, [facts(1, go_live="2026-05-01", arr=5000, tier="strategic",
                               owner={"email": "e@x.com"}, plan="pro")])  # fmt: skip
    cleared = facts(2, go_live=None, arr=None, owner=None, plan="basic")
    assert cleared.cleared == ["arr", "owner", "go_live"] and cleared.plan == "basic"
    await apply(engine, [cleared, facts(0.5, tier=None)])  # the tier's null is older
    async with engine.connect() as conn:
        row = (await conn.execute(select(accounts))).one()
    fields = row.facts["fields"]
    assert (fields["go_live"], fields["arr"], fields["owner"]) == (None, None, None)
    assert (fields["tier"], fields["plan"], row.tier, row.owner_email) == (
        "strategic", "basic", "strategic", None,
    )  # fmt: skip
    async with engine.connect() as conn:
        [m] = await load_measures(conn, {"acme"}, (T0 + 3 * DAY).date(), UTC)
    assert m.go_live is None
