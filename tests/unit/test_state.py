"""Applying events to state: order-independent, bounded by the window, exact."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scoring import usage_store
from services.scoring.inputs import model_inputs
from services.scoring.measures import load_measures
from services.scoring.state import apply_events, drop_duplicates
from services.scoring.usage import (
    DEDUP_HOURS,
    MAX_NAMES,
    OTHER_NAME,
    AccountUsage,
    decode,
    encode,
)
from services.scoring.usage_measures import name_use_of
from services.scoring.usage_store import UsageCache
from shared.config import Settings
from shared.contracts.events import EVENT_ADAPTER, Event
from shared.storage.db import create_engine, migrate
from shared.storage.tables import account_health, accounts, activity_daily, tickets

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)


def ev(**raw: Any) -> Event:
    raw.setdefault("account_id", "acme")
    raw["occurred_at"] = raw["occurred_at"].isoformat()
    return EVENT_ADAPTER.validate_python(raw)


@pytest.fixture
async def engine(embedded_settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(embedded_settings.database_url)
    await migrate(engine)
    yield engine
    await engine.dispose()


async def apply(engine: AsyncEngine, events: list[Event], window_days: int = 30) -> int:
    async with engine.begin() as conn:
        applied = await apply_events(conn, events, window_days=window_days, now=NOW)
    return applied.late_events


async def test_window_counts_and_late_events(engine: AsyncEngine) -> None:
    day = timedelta(days=1)
    events = [
        ev(
            kind="usage", event_id="a", user_id="u1", event="login", occurred_at=NOW, duration_s=600
        ),
        ev(kind="usage", event_id="b", user_id="u1", event="login", occurred_at=NOW - 2 * day),
        ev(kind="usage", event_id="c", user_id="u2", event="login", occurred_at=NOW - 6 * day),
        ev(
            kind="usage", event_id="d", user_id="u3", event="login", occurred_at=NOW - 7 * day
        ),  # outside 7d
        ev(
            kind="usage", event_id="e", user_id="u4", event="login", occurred_at=NOW - 9 * day
        ),  # outside window
    ]
    assert await apply(engine, events, window_days=8) == 1
    async with engine.connect() as conn:
        [m] = await load_measures(conn, {"acme"})
        days = (
            (await conn.execute(select(activity_daily.c.day).order_by(activity_daily.c.day)))
            .scalars()
            .all()
        )
    assert (m.active_users_7d, m.active_users_30d, m.events_7d, m.active_days_7d) == (2, 3, 3, 3)
    assert m.names[("event", "login")] == (3, 4)
    # u1 today; u1..u3 ever active (u4's only event came too late to count at all).
    assert (m.active_users_today, m.users_ever_active, m.usage_minutes_7d) == (1, 3, 10.0)
    assert m.names[("platform", "pc")] == (3, 4)
    assert len(days) == 4
    # A later event moves the window: the days before it leave the state (a week at a
    # time) for the long history; the daily history keeps them.
    await apply(
        engine,
        [ev(kind="usage", event_id="f", user_id="u1", event="x", occurred_at=NOW + 8 * day)],
        window_days=8,
    )
    async with engine.connect() as conn:
        oldest = (
            (await conn.execute(select(activity_daily.c.day).order_by(activity_daily.c.day)))
            .scalars()
            .first()
        )
        state = (await usage_store.load(conn, ["acme"]))["acme"]
        months = await usage_store.load_history(conn, ["acme"], (NOW - 9 * day).date(), NOW.date())
    assert oldest == (NOW - 7 * day).date()
    assert (NOW - 6 * day).date().toordinal() < state.kept_from <= (NOW + day).date().toordinal()
    assert min(state.days) >= state.kept_from
    archived = {o for month in months["acme"] for o in month.days}
    assert {(NOW - 7 * day).date().toordinal(), (NOW - 6 * day).date().toordinal()} <= archived
    assert archived | set(state.days) == {
        (NOW - back * day).date().toordinal() for back in (7, 6, 2, 0, -8)
    }


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
async def test_facts_tickets_and_nps_do_not_depend_on_arrival_order(
    engine: AsyncEngine, order: tuple[int, ...]
) -> None:
    t0 = NOW - timedelta(days=3)
    created = t0.isoformat()
    batches = [
        [
            ev(
                kind="account", event_id="f1", seats_purchased=10, tier="enterprise", occurred_at=t0
            ),
            ev(
                kind="ticket",
                event_id="t1",
                ticket_id="T",
                status="open",
                created_at=created,
                occurred_at=t0,
            ),
            ev(kind="nps", event_id="n1", score=9, occurred_at=t0),
        ],
        [
            ev(
                kind="account",
                event_id="f2",
                seats_purchased=50,
                occurred_at=t0 + timedelta(days=1),
            ),
            ev(
                kind="ticket",
                event_id="t2",
                ticket_id="T",
                status="solved",
                created_at=created,
                first_reply_at=(t0 + timedelta(hours=5)).isoformat(),
                occurred_at=t0 + timedelta(days=1),
            ),
            ev(kind="nps", event_id="n2", score=3, occurred_at=t0 + timedelta(days=1)),
        ],
        [
            ev(kind="account", event_id="f3", name="Acme", occurred_at=t0 - timedelta(days=1)),
            ev(
                kind="ticket",
                event_id="t3",
                ticket_id="T",
                status="pending",
                created_at=(t0 - timedelta(days=2)).isoformat(),
                first_reply_at=(t0 - timedelta(days=1)).isoformat(),
                occurred_at=t0 - timedelta(days=1),
            ),
            ev(kind="payment", event_id="p1", status="failed", occurred_at=t0),
        ],
    ]
    for i in order:
        await apply(engine, batches[i])
    async with engine.connect() as conn:
        acct = (await conn.execute(select(accounts))).one()
        ticket = (await conn.execute(select(tickets))).one()
        health = (await conn.execute(select(account_health))).one()
    assert (acct.seats_purchased, acct.tier, acct.name) == (50, "enterprise", "Acme")
    assert ticket.status == "solved"
    # The earliest first reply any update gave, whichever came last (an update without
    # one, or a later one's, undid it).
    assert ticket.first_reply_at == t0 - timedelta(days=1)
    assert health.nps_latest == 3
    assert health.last_payment_failed_at == t0


@pytest.mark.parametrize("together", [True, False])
async def test_a_tickets_first_reply_survives_a_later_update_in_the_same_batch(
    engine: AsyncEngine, together: bool
) -> None:
    """Answered, then the customer wrote back (open, no reply time): sent in one batch
    the answer was dropped with the older update, in two it was kept (found in review)."""
    t0 = NOW - timedelta(days=2)
    answered = ev(kind="ticket", event_id="a", ticket_id="T", status="pending",
                  created_at=t0.isoformat(), first_reply_at=(t0 + timedelta(minutes=10)).isoformat(),
                  occurred_at=t0 + timedelta(minutes=10))  # fmt: skip
    reopened = ev(kind="ticket", event_id="b", ticket_id="T", status="open",
                  created_at=t0.isoformat(), occurred_at=t0 + timedelta(hours=5))  # fmt: skip
    for batch in [[answered, reopened]] if together else [[answered], [reopened]]:
        await apply(engine, batch)
    async with engine.connect() as conn:
        ticket = (await conn.execute(select(tickets))).one()
    assert (ticket.status, ticket.first_reply_at) == ("open", t0 + timedelta(minutes=10))


async def test_support_measures(engine: AsyncEngine) -> None:
    def ticket(tid: str, status: str, priority: str, days_ago: int) -> Event:
        created = NOW - timedelta(days=days_ago)
        return ev(
            kind="ticket",
            event_id=f"{tid}-{status}",
            ticket_id=tid,
            status=status,
            priority=priority,
            created_at=created.isoformat(),
            occurred_at=created,
        )

    await apply(
        engine,
        [
            ticket("A", "open", "high", 10),
            ticket("B", "pending", "normal", 3),
            ticket("C", "solved", "urgent", 1),
        ],
    )
    async with engine.connect() as conn:
        [m] = await load_measures(conn, {"acme"})
    assert (m.open_tickets, m.open_high_priority_tickets) == (2, 1)
    assert m.oldest_open_ticket_at == NOW - timedelta(days=10)
    assert m.last_ticket_at == NOW - timedelta(days=1)
    raw = model_inputs(m)
    assert (raw["tickets_opened_28d"], raw["tickets_solved_28d"]) == (3, 0)  # C has no solved_at


async def test_activity_ratios_platform_shares_and_first_value_by_hand(
    engine: AsyncEngine,
) -> None:
    day = timedelta(days=1)

    def use(eid: str, user: str, ago: timedelta, platform: str, seconds: float = 0) -> Event:
        return ev(
            kind="usage",
            event_id=eid,
            user_id=user,
            event="open",
            platform=platform,
            occurred_at=NOW - ago,
            duration_s=seconds,
        )

    def solved(tid: str, ago: timedelta) -> Event:
        at = NOW - ago
        return ev(
            kind="ticket",
            event_id=f"{tid}-solved",
            ticket_id=tid,
            status="solved",
            created_at=(at - day).isoformat(),
            solved_at=at.isoformat(),
            occurred_at=at,
        )

    start = (NOW - 40 * day).date()
    await apply(
        engine,
        [
            ev(
                kind="account",
                event_id="f",
                occurred_at=NOW - 41 * day,
                seats_purchased=10,
                contract_start=start.isoformat(),
            ),
            use("a", "u1", timedelta(0), "pc", 1200),
            use("b", "u1", 3 * day, "app"),
            use("c", "u2", timedelta(0), "app", 600),
            use("d", "u3", 20 * day, "api"),  # the first use of all
            use("e", "u4", 10 * day, "api"),
            solved("T1", 2 * day),
            solved("T2", 29 * day),  # outside the 28 days
        ],
    )
    async with engine.connect() as conn:
        [m] = await load_measures(conn, {"acme"})
    raw = model_inputs(m)
    assert raw["activation_rate"] == 4 / 10  # u1..u4 ever active of 10 seats
    assert raw["daily_login_ratio"] == 2 / 4  # u1, u2 today of the 4 ever active
    assert raw["dau"] == 2
    # (1,200 s + 600 s) / 60 over the 2 users active in 7 days.
    assert raw["usage_minutes_per_active_user_7d"] == 15.0
    assert (raw["pc_share_28d"], raw["app_share_28d"], raw["api_share_28d"]) == (0.2, 0.4, 0.4)
    assert raw["api_calls_28d"] == 2
    assert raw["time_to_first_value_days"] == 20  # first use 20 days after the purchase
    assert raw["days_since_purchase"] == 40
    assert raw["tickets_solved_28d"] == 1


async def test_decision_maker_change_is_noted_but_first_contacts_are_not(
    engine: AsyncEngine,
) -> None:
    def facts(eid: str, days_ago: int, dm: str) -> Event:
        return ev(
            kind="account",
            event_id=eid,
            occurred_at=NOW - timedelta(days=days_ago),
            contacts=[{"name": dm, "role": "decision_maker"}, {"name": "Chen", "role": "champion"}],
        )

    await apply(engine, [facts("a", 20, "Wang")])
    async with engine.connect() as conn:
        [first] = await load_measures(conn, {"acme"})
    assert first.decision_maker_changed_at is None
    await apply(engine, [facts("b", 5, "Li")])
    async with engine.connect() as conn:
        [after] = await load_measures(conn, {"acme"})
    assert after.decision_maker_changed_at == NOW - timedelta(days=5)
    assert after.champion_changed_at is None


async def test_usage_quotas_are_measured_over_28_days(engine: AsyncEngine) -> None:
    day = timedelta(days=1)
    quotas = [
        {"dimension": "platform", "name": "api", "limit": 10},
        {"dimension": "event", "name": "sms_sent", "limit": 4},
    ]
    calls = [
        ev(
            kind="usage",
            event_id=f"c{i}",
            user_id="u",
            event="sync",
            platform="api",
            occurred_at=NOW - i * 3 * day,
        )
        for i in range(12)  # days 0, 3, …, 33 ago: 10 of them within 28 days
    ]
    sms = [ev(kind="usage", event_id="s1", user_id="u", event="sms_sent", occurred_at=NOW)]
    facts = ev(kind="account", event_id="f", occurred_at=NOW - 40 * day, usage_quotas=quotas)
    await apply(engine, [facts, *calls, *sms], window_days=90)
    async with engine.connect() as conn:
        [m] = await load_measures(conn, {"acme"})
    assert m.usage_quotas == (("platform", "api", 10), ("event", "sms_sent", 4))
    # 10 API calls of 10 allowed beat 1 SMS of 4: the most used allowance is named.
    assert m.quota_use() == ("platform api", 1.0)


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 1, 0), (1, 2, 0)])
async def test_people_changes_do_not_depend_on_arrival_order(
    engine: AsyncEngine, order: tuple[int, ...]
) -> None:
    holders = ["Wang", "Wang", "Li"]  # 20, 10 and 5 days ago: the change is 5 days ago
    events = [
        ev(
            kind="account",
            event_id=f"f{i}",
            occurred_at=NOW - timedelta(days=d),
            contacts=[{"name": holders[i], "role": "decision_maker"}],
        )
        for i, d in enumerate((20, 10, 5))
    ]
    for i in order:
        await apply(engine, [events[i]])
    async with engine.connect() as conn:
        [m] = await load_measures(conn, {"acme"})
    assert m.decision_maker_changed_at == NOW - timedelta(days=5)


async def _days_of(engine: AsyncEngine, instants: list[str], zone: str) -> list[Any]:
    from zoneinfo import ZoneInfo

    events = [
        ev(
            kind="usage",
            event_id=f"z{i}",
            user_id="u",
            event="x",
            occurred_at=datetime.fromisoformat(t),
        )
        for i, t in enumerate(instants)
    ]
    async with engine.begin() as conn:
        await apply_events(conn, events, window_days=400, now=NOW, tz=ZoneInfo(zone))
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(activity_daily.c.day, activity_daily.c.events).order_by(activity_daily.c.day)
        )
        return [(r.day.isoformat(), r.events) for r in rows]


async def test_days_are_calendar_days_of_the_configured_zone(engine: AsyncEngine) -> None:
    # 17:30 UTC is already the next day in Shanghai (UTC+8), whatever offset the client sent.
    days = await _days_of(
        engine,
        ["2026-11-22T17:30:00+00:00", "2026-11-22T15:00:00+00:00", "2026-11-23T01:30:00+09:00"],
        "Asia/Shanghai",
    )
    assert days == [("2026-11-22", 1), ("2026-11-23", 1 + 1)]


async def test_daylight_saving_days_have_their_real_length(engine: AsyncEngine) -> None:
    # New York springs forward on 2026-03-08 (a 23-hour day) and falls back on 2026-11-01
    # (a 25-hour day): events at the first and last local hour stay on their own day.
    days = await _days_of(
        engine,
        [
            "2026-03-08T00:30:00-05:00",  # EST, just after midnight
            "2026-03-08T23:30:00-04:00",  # EDT, just before midnight
            "2026-03-09T04:30:00+00:00",  # 00:30 EDT on the 9th
            "2026-11-01T00:30:00-04:00",  # EDT
            "2026-11-01T23:30:00-05:00",  # EST, 25 hours after midnight
            "2026-11-02T04:30:00+00:00",  # 23:30 EST on the 1st
        ],
        "America/New_York",
    )
    assert days == [("2026-03-08", 2), ("2026-03-09", 1), ("2026-11-01", 3)]


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 0, 1), (1, 2, 0)])
async def test_nps_trend_and_decision_maker_contact(
    engine: AsyncEngine, order: tuple[int, ...]
) -> None:
    answers = [
        ev(kind="nps", event_id=f"n{i}", score=score, occurred_at=NOW - timedelta(days=d))
        for i, (score, d) in enumerate(((9, 60), (7, 30), (4, 2)))
    ]
    for i in order:
        await apply(engine, [answers[i]])
    await apply(
        engine,
        [
            ev(
                kind="touchpoint",
                event_id="t1",
                touchpoint_kind="visit",
                contact_role="decision_maker",
                occurred_at=NOW - timedelta(days=40),
            ),
            ev(
                kind="touchpoint",
                event_id="t2",
                touchpoint_kind="call",
                contact_role="champion",
                occurred_at=NOW - timedelta(days=3),
            ),
        ],
    )
    async with engine.connect() as conn:
        [m] = await load_measures(conn, {"acme"})
    raw = model_inputs(m)
    assert (m.nps_latest, m.nps_previous, raw["nps_trend"]) == (4, 7, -3)
    # As of the newest event (the NPS answer 2 days ago).
    assert raw["days_since_touchpoint"] == 1
    assert raw["days_since_decision_maker_contact"] == 38


async def test_grace_period_and_users_who_stop(engine: AsyncEngine) -> None:
    day = timedelta(days=1)
    first = [
        ev(kind="usage", event_id=f"s{u}", user_id=f"u{u}", event="x", occurred_at=NOW - 10 * day)
        for u in range(5)
    ] + [ev(kind="usage", event_id="now", user_id="u0", event="x", occurred_at=NOW)]
    async with engine.begin() as conn:
        applied = await apply_events(conn, first, window_days=90, grace_days=5, now=NOW)
    # Arriving together with a newer event, the 10-day-old ones are past the 5-day grace.
    assert applied.late_events == 5
    await apply(
        engine,
        [
            ev(
                kind="usage",
                event_id=f"w{u}",
                user_id=f"u{u}",
                event="x",
                occurred_at=NOW - 3 * day,
            )
            for u in range(5)
        ],
    )
    async with engine.connect() as conn:
        [m] = await load_measures(conn, {"acme"})
    # Five users 3 days ago, only u0 since: all five in 7 days, one today.
    assert (m.active_users_7d, m.active_users_today) == (5, 1)
    async with engine.connect() as conn:
        [later] = await load_measures(conn, {"acme"}, as_of=(NOW + 5 * day).date())
    # Five days on, the four who stopped have left the 7-day window.
    assert later.active_users_7d == 1


def test_a_resent_event_counts_once_within_the_dedup_window() -> None:
    """An id is remembered for DEDUP_HOURS after it was received: a resend within them
    is dropped, one after them counts (the documented limit), and the ids received
    before the window are forgotten, so the state does not grow with events."""
    states = {"acme": AccountUsage()}
    hour = timedelta(hours=1)

    def sent(event_id: str, received: datetime) -> Event:
        e = ev(kind="usage", event_id=event_id, user_id="u", event="x", occurred_at=NOW)
        return e.model_copy(update={"received_at": received})

    assert len(drop_duplicates(states, [sent("a", NOW), sent("a", NOW)])) == 1
    assert drop_duplicates(states, [sent("a", NOW + (DEDUP_HOURS - 1) * hour)]) == []
    later = NOW + (DEDUP_HOURS + 2) * hour
    assert len(drop_duplicates(states, [sent("b", later)])) == 1
    assert len(drop_duplicates(states, [sent("a", later)])) == 1  # forgotten: counts again
    assert len(states["acme"].seen) == 2  # b and the new a
    # Stored apart, by the hour (test_dedup_window.py), not in the state's value.
    assert len(decode(encode(states["acme"])).seen) == 0

    # After a quiet spell a resend counts again at once, though the account still held
    # the id (its window moves with its next batch).
    quiet = NOW + 5 * DEDUP_HOURS * hour
    assert len(drop_duplicates(states, [sent("b", quiet)])) == 1
    assert drop_duplicates(states, [sent("b", quiet - 3 * hour)]) == []
    # An import's receipts are its event times, in any order: 48 hours either way.
    assert len(drop_duplicates(states, [sent("c", later)])) == 1
    assert drop_duplicates(states, [sent("c", later - (DEDUP_HOURS - 1) * hour)]) == []
    assert len(drop_duplicates(states, [sent("c", later - (DEDUP_HOURS + 2) * hour)])) == 1


def test_an_id_is_its_kinds_own() -> None:
    """The product, the helpdesk, the CRM and the survey tool each number their events:
    a ticket, a touchpoint and an NPS answer sharing a usage event's id were dropped
    after a 202 (found from outside). Within a kind, an id still counts once."""
    states = {"acme": AccountUsage()}
    at = NOW.isoformat()
    usage = ev(kind="usage", event_id="1001", user_id="u", event="x", occurred_at=NOW)
    ticket = ev(kind="ticket", event_id="1001", ticket_id="T", status="open", occurred_at=NOW,
                created_at=at)  # fmt: skip
    touch = ev(kind="touchpoint", event_id="1001", touchpoint_kind="call", occurred_at=NOW)
    answer = ev(kind="nps", event_id="1001", user_id="u", score=9, occurred_at=NOW)
    assert drop_duplicates(states, [usage, ticket, touch, answer]) == [usage, ticket, touch, answer]
    assert drop_duplicates(states, [ticket, answer]) == []


def test_names_no_kept_day_counts_are_forgotten() -> None:
    """An account's names do not only grow: a name whose days left the window leaves
    the state, and the names left keep their counts."""
    state = AccountUsage()
    first = NOW.date()
    state.add(first, "u", 0.0, [("event", "once", 1), ("event", "daily", 1)])
    state.add(first + timedelta(days=1), "u", 0.0, [("event", "daily", 2), ("value", "daily", 9)])
    assert state.prune_before(first + timedelta(days=1))
    assert state.names == ["e:daily", "v:daily"]
    after = name_use_of(decode(encode(state)), first + timedelta(days=1))
    assert {name: use.days_7 for name, use in after.items()} == {
        ("event", "daily"): 2,
        ("value", "daily"): 9,
    }
    state.add(first + timedelta(days=1), "u", 0.0, [("event", "new", 1)])
    assert state.names == ["e:daily", "v:daily", "e:new"]


def test_names_beyond_the_cap_are_counted_together() -> None:
    """A sender inventing names cannot grow an account's state without bound: past
    MAX_NAMES, new names count together per dimension; known names count as before."""
    state = AccountUsage()
    day = NOW.date()
    for n in range(MAX_NAMES):
        state.add(day, "u", 0.0, [("event", f"name-{n}", 1)])
    state.add(day, "u", 0.0, [("event", "new-1", 1), ("module", "new-2", 1)])
    state.add(day, "u", 0.0, [("event", "new-3", 2), ("event", "name-0", 1)])
    uses = {name: use.days_7 for name, use in name_use_of(state, day).items()}
    assert len(state.names) == MAX_NAMES + 2
    assert uses[("event", OTHER_NAME)] == 3 and uses[("module", OTHER_NAME)] == 1
    assert uses[("event", "name-0")] == 2 and ("event", "new-3") not in uses


async def test_usage_state_survives_encoding(engine: AsyncEngine) -> None:
    """What is stored decodes to the same measures (the codec is the state)."""
    events = [usage_at(NOW - timedelta(days=d), f"u{d % 3}", f"e{d % 4}") for d in range(40)]
    async with engine.begin() as conn:
        await apply_events(conn, events, window_days=90, now=NOW)
    async with engine.connect() as conn:
        [state] = (await usage_store.load(conn, {"acme"})).values()
        [m] = await load_measures(conn, {"acme"})
    again = decode(encode(state))
    assert again.days == state.days and again.users == state.users
    assert again.index == state.index
    assert m.users_ever_active == 3 and m.active_days_28d == 28
    assert len(encode(state)) < 1000


def usage_at(at: datetime, user: str, name: str) -> Event:
    return ev(
        kind="usage", event_id=f"{user}-{name}-{at}", user_id=user, event=name, occurred_at=at
    )


async def test_the_state_cache_reads_anew_what_another_process_wrote(engine: AsyncEngine) -> None:
    cache = UsageCache(10)
    day = NOW.date()
    async with engine.begin() as conn:
        mine = await usage_store.load(conn, {"acme"}, cache=cache)
        mine["acme"].add(day, "u1", 0.0, [])
        await usage_store.save(conn, mine, NOW)
    cache.keep(mine)
    async with engine.begin() as conn:
        held = await usage_store.load(conn, {"acme"}, cache=cache)
    assert held["acme"] is mine["acme"]  # current: not decoded again
    cache.keep(held)
    async with engine.begin() as conn:  # another process writes the account
        other = await usage_store.load(conn, {"acme"})
        other["acme"].add(day, "u2", 0.0, [])
        await usage_store.save(conn, other, NOW)
    async with engine.begin() as conn:
        fresh = await usage_store.load(conn, {"acme"}, cache=cache)
    assert fresh["acme"] is not mine["acme"] and fresh["acme"].users == ["u1", "u2"]
    # Taken by a batch that then failed (never kept): the next batch reads it anew.
    async with engine.begin() as conn:
        failed = await usage_store.load(conn, {"acme"}, cache=cache)
        failed["acme"].add(day, "u3", 0.0, [])
    async with engine.begin() as conn:
        after = await usage_store.load(conn, {"acme"}, cache=cache)
    assert after["acme"].users == ["u1", "u2"]


async def test_reading_states_to_score_leaves_the_cache_as_it_was(engine: AsyncEngine) -> None:
    """A sweep reads every account: the cached states are used and stay cached, the
    others are read without their dedup windows and not kept (a sweep of every account
    would push the consumer's accounts out of the cache)."""
    cache = UsageCache(1)
    async with engine.begin() as conn:
        states = await usage_store.load(conn, {"acme", "beta"}, cache=cache)
        for state in states.values():
            state.add(NOW.date(), "u1", 0.0, [])
            assert state.first_sight("e1", NOW)
        await usage_store.save(conn, states, NOW)
    cache.keep({"acme": states["acme"]})
    async with engine.connect() as conn:
        read = await cache.read(conn, {"acme", "beta"})
    assert read["acme"] is states["acme"]
    assert read["beta"].users == ["u1"] and len(read["beta"].seen) == 0
    cache.give_back({"acme", "beta"})  # scored: as ScoringProcessor.rescore does
    async with engine.begin() as conn:
        again = await usage_store.load(conn, {"acme", "beta"}, cache=cache)
    assert again["acme"] is states["acme"]  # still cached
    assert again["beta"] is not read["beta"]  # read, not kept
    assert not again["beta"].first_sight("e1", NOW)  # its window, read to change it


async def test_a_batch_never_changes_a_state_the_sweep_is_scoring(engine: AsyncEngine) -> None:
    """The sweep scores from cached states in place and awaits the database meanwhile;
    a batch of the same account in the same process then gets its own copy from the
    database, so its events, uncommitted (or half-applied by a record that fails), never
    reach the sweep's score. Once every reader gave the states back, batches take them
    from the cache again."""
    cache = UsageCache(10)
    async with engine.begin() as conn:
        states = await usage_store.load(conn, {"acme"}, cache=cache)
        states["acme"].add(NOW.date(), "u1", 0.0, [])
        await usage_store.save(conn, states, NOW)
    cache.keep(states)
    async with engine.connect() as conn:
        swept = await cache.read(conn, {"acme"})
        also = await cache.read(conn, {"acme"})  # a second reader (an import's day)
    assert swept["acme"] is also["acme"] is states["acme"]
    async with engine.begin() as conn:
        batch = await usage_store.load(conn, {"acme"}, for_update=True, cache=cache)
    assert batch["acme"] is not swept["acme"] and batch["acme"].users == ["u1"]
    batch["acme"].add(NOW.date(), "u2", 0.0, [])
    assert swept["acme"].users == ["u1"]  # what the sweep scores did not move
    cache.give_back({"acme"})
    async with engine.begin() as conn:  # one reader left: still lent
        assert (await usage_store.load(conn, {"acme"}, cache=cache))["acme"] is not states["acme"]
    cache.give_back({"acme"})
    async with engine.begin() as conn:
        assert (await usage_store.load(conn, {"acme"}, cache=cache))["acme"] is states["acme"]


def test_two_accounts_events_of_one_id_both_count_however_batched() -> None:
    """Ids are each account's own (README): in one batch as across two, an id two
    accounts' senders both use counts once for each (a batch dropped the second)."""

    def sent(account_id: str) -> Event:
        e = ev(kind="usage", event_id="1", user_id="u", event="x", occurred_at=NOW)
        return e.model_copy(update={"account_id": account_id, "received_at": NOW})

    together = {"acme": AccountUsage(), "beta": AccountUsage()}
    assert len(drop_duplicates(together, [sent("acme"), sent("beta"), sent("acme")])) == 2
    apart = {"acme": AccountUsage(), "beta": AccountUsage()}
    assert len(drop_duplicates(apart, [sent("acme")]) + drop_duplicates(apart, [sent("beta")])) == 2
