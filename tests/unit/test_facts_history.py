"""Account facts history: the snapshot at t is the fold of every fact event up to t,
whatever order the events arrive in, and a replay changes nothing (SQLite and
PostgreSQL)."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from sqlalchemy import insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scoring.facts_history import facts_as_of
from services.scoring.state import apply_events
from shared.contracts.events import EVENT_ADAPTER, Event
from shared.storage.db import alembic_config
from shared.storage.tables import account_facts_history, accounts
from tests.support.factories import EngineFactory

T0 = datetime(2026, 6, 1, 9, tzinfo=UTC)
DAY = timedelta(days=1)


def fact(event_id: str, days: int, **fields: Any) -> Event:
    raw = {"kind": "account", "account_id": "acme", "event_id": event_id}
    raw["occurred_at"] = (T0 + days * DAY).isoformat()
    return EVENT_ADAPTER.validate_python(raw | fields)


# Day 0: 10 seats, non-focus, owned by ann. Day 5: 20 seats. Day 10: owner bob.
# Day 3 (the late one): tier enterprise and 15 seats; day 5's seats stay newer.
EVENTS = [
    fact("f0", 0, name="Acme", seats_purchased=10, tier="non-focus", owner={"email": "ann@x.io"}),
    fact("f5", 5, seats_purchased=20),
    fact("f10", 10, owner={"email": "bob@x.io"}),
    fact("f3", 3, tier="enterprise", seats_purchased=15),
]
EXPECTED = {
    -1: None,
    0: (10, "non-focus", "ann@x.io"),
    3: (15, "enterprise", "ann@x.io"),
    4: (15, "enterprise", "ann@x.io"),
    5: (20, "enterprise", "ann@x.io"),
    12: (20, "enterprise", "bob@x.io"),
}


@pytest.fixture
def engine(engine_either: AsyncEngine) -> AsyncEngine:
    return engine_either


async def apply(engine: AsyncEngine, events: list[Event]) -> None:
    async with engine.begin() as conn:
        await apply_events(conn, events, window_days=30, now=T0 + 20 * DAY)


async def seen(engine: AsyncEngine) -> dict[int, Any]:
    out: dict[int, Any] = {}
    async with engine.connect() as conn:
        for days in EXPECTED:
            facts = (await facts_as_of(conn, (T0 + days * DAY).date())).get("acme")
            out[days] = facts and (
                facts["seats_purchased"],
                facts["tier"],
                facts["owner"]["email"],
            )
    return out


async def history(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(account_facts_history).order_by("occurred_at"))
        return [tuple(row) for row in rows]


async def test_out_of_order_facts_fold_into_every_later_snapshot(engine: AsyncEngine) -> None:
    for event in EVENTS:  # one batch each, the day-3 fact last (late)
        await apply(engine, [event])
    assert await seen(engine) == EXPECTED
    stored = await history(engine)
    assert [row[1].date() for row in stored] == [(T0 + d * DAY).date() for d in (0, 3, 5, 10)]
    # A replay (the same events again, in another order and batching) changes nothing.
    await apply(engine, list(reversed(EVENTS)))
    assert await history(engine) == stored


@pytest.mark.parametrize("order", list(itertools.permutations(range(4)))[::5])
async def test_any_arrival_order_gives_the_same_history(
    order: tuple[int, ...], engine_factory: EngineFactory
) -> None:
    engine = await engine_factory()
    await apply(engine, [EVENTS[i] for i in order[:2]])
    await apply(engine, [EVENTS[i] for i in order[2:]])
    assert await seen(engine) == EXPECTED


async def test_same_moment_ties_break_by_event_id(engine_factory: EngineFactory) -> None:
    engine = await engine_factory()
    await apply(engine, [fact("b", 0, seats_purchased=2), fact("a", 0, seats_purchased=1)])
    async with engine.connect() as conn:
        assert (await facts_as_of(conn, T0))["acme"]["seats_purchased"] == 2
        assert await facts_as_of(conn, T0 - DAY) == {}
        assert await facts_as_of(conn, T0, ["other"]) == {}


async def test_migration_keeps_current_facts_as_the_first_snapshot(
    engine_factory: EngineFactory,
) -> None:
    engine = await engine_factory(migrated=False)
    stamped = {
        "fields": {"seats_purchased": 7},
        "stamps": {"seats_purchased": [T0.isoformat(), "e"]},
    }

    def upgrade(to: str) -> Any:
        def run(sync_conn: Connection) -> None:
            cfg = alembic_config()
            cfg.attributes["connection"] = sync_conn
            command.upgrade(cfg, to)

        return run

    async with engine.begin() as conn:
        await conn.run_sync(upgrade("0004"))
        await conn.execute(
            insert(accounts).values(
                account_id="acme", facts=stamped, facts_occurred_at=T0, updated_at=T0
            )
        )
        await conn.run_sync(upgrade("0008"))
    async with engine.connect() as conn:
        assert await facts_as_of(conn, date(2026, 6, 1)) == {"acme": {"seats_purchased": 7}}


@pytest.mark.parametrize("seed", range(4))
async def test_any_order_and_batching_of_many_facts_gives_the_history_of_time_order(
    seed: int, engine_factory: EngineFactory
) -> None:
    """Forty facts on twelve days, fields set at random (ties of moment included), in a
    random order and batching: the stored history is the one time order gives, row for
    row (a field's fold stops at the first snapshot holding a newer value of it)."""
    rng = random.Random(seed)
    events = [
        fact(
            f"e{n}",
            rng.randrange(12),
            **{
                name: value
                for name, value in (
                    ("seats_purchased", rng.randrange(1, 90)),
                    ("tier", rng.choice(["strategic", "non-focus", "enterprise"])),
                    ("name", f"Acme {n}"),
                )
                if rng.random() < 0.5
            },
        )
        for n in range(40)
    ]
    in_time_order = await engine_factory()
    await apply(in_time_order, sorted(events, key=lambda e: (e.occurred_at, e.event_id)))
    shuffled = await engine_factory()
    rng.shuffle(events)
    while events:
        cut = rng.randint(1, 8)
        await apply(shuffled, events[:cut])
        events = events[cut:]
    assert await history(shuffled) == await history(in_time_order)
