"""The dedup window (the event ids an account received in the last 48 hours) is stored
apart from the usage state, a row per account and hour: a save writes the hours that
gained ids and deletes those that left, and a state read back dedups as before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import msgspec
import numpy as np
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.scoring import usage, usage_store
from services.scoring.state import drop_duplicates
from services.scoring.usage import DEDUP_HOURS, AccountUsage, decode
from shared.contracts.events import EVENT_ADAPTER, Event
from shared.storage.tables import account_usage, usage_seen
from tests.support.factories import EngineFactory

NOW = datetime(2026, 11, 20, 10, 30, tzinfo=UTC)
HOUR = timedelta(hours=1)


def sent(event_id: str, received: datetime) -> Event:
    return EVENT_ADAPTER.validate_python(
        {
            "kind": "usage",
            "event_id": event_id,
            "account_id": "acme",
            "user_id": "u",
            "event": "x",
            "occurred_at": NOW.isoformat(),
            "received_at": received.isoformat(),
        }
    )


async def batch(engine: AsyncEngine, *events: Event) -> list[str]:
    """One batch through a state read from the database (no cache); the ids counted."""
    async with engine.begin() as conn:
        states = await usage_store.load(conn, {"acme"}, for_update=True)
        fresh = drop_duplicates(states, list(events))
        await usage_store.save(conn, states, NOW)
    return [event.event_id for event in fresh]


async def stored(engine: AsyncEngine) -> tuple[dict[int, set[int]], bytes]:
    """The window's rows (hour → ids) and the state's value."""
    async with engine.connect() as conn:
        rows = await conn.execute(select(usage_seen.c.hour, usage_seen.c.ids))
        hours = {row.hour: set(np.frombuffer(row.ids, dtype="<u8").tolist()) for row in rows}
        value = await conn.scalar(select(account_usage.c.state))
    return hours, value


def hour_of(moment: datetime) -> int:
    return int(moment.timestamp()) // 3600


async def test_the_window_is_stored_by_the_hour_and_read_back(
    engine_factory: EngineFactory, database_either: str | None
) -> None:
    engine = await engine_factory(database_either)
    assert await batch(engine, sent("a", NOW), sent("b", NOW + HOUR)) == ["a", "b"]
    hours, value = await stored(engine)
    ids = {hour_of(NOW): {usage.id_hash("a")}, hour_of(NOW + HOUR): {usage.id_hash("b")}}
    assert hours == ids
    assert len(decode(value).seen) == 0  # not in the state's value

    # Read back: a resend within the window counts once, a new id in the same hour
    # rewrites that hour's row only.
    assert await batch(engine, sent("a", NOW + 2 * HOUR), sent("c", NOW + HOUR)) == ["c"]
    hours, _ = await stored(engine)
    assert hours == {**ids, hour_of(NOW + HOUR): {usage.id_hash("b"), usage.id_hash("c")}}

    # Past the window the hours that left it are deleted; their ids count again.
    later = NOW + (DEDUP_HOURS + 1) * HOUR + HOUR
    assert await batch(engine, sent("d", later)) == ["d"]
    hours, _ = await stored(engine)
    assert hours == {hour_of(later): {usage.id_hash("d")}}
    assert await batch(engine, sent("a", later)) == ["a"]


async def test_a_busy_window_does_not_grow_the_state(
    engine_factory: EngineFactory, database_either: str | None
) -> None:
    """20,000 ids (8 bytes each) leave the state's value as small as one id does."""
    engine = await engine_factory(database_either)
    await batch(engine, sent("first", NOW))
    _, small = await stored(engine)
    await batch(engine, *(sent(f"e{n}", NOW + (n % 40) * HOUR / 40) for n in range(20_000)))
    hours, busy = await stored(engine)
    assert sum(len(ids) for ids in hours.values()) == 20_001
    assert len(busy) < len(small) + 64


class _OldStored(msgspec.Struct, array_like=True, omit_defaults=True):
    """A usage state as written before the window moved out (the same format, 2, with
    the window inside)."""

    users: list[str] = msgspec.field(default_factory=list)
    first_active: list[int] = msgspec.field(default_factory=list)
    days: dict[int, Any] = msgspec.field(default_factory=dict)
    seen: dict[int, set[int]] = msgspec.field(default_factory=dict)
    events_seen: int = 0


async def test_a_state_written_before_moves_its_window_out_at_its_next_save(
    engine_factory: EngineFactory, database_either: str | None
) -> None:
    engine = await engine_factory(database_either)
    old = _OldStored(seen={hour_of(NOW): {usage.id_hash("a")}}, events_seen=1)
    value = bytes([2]) + usage._COMPRESSOR.compress(msgspec.msgpack.encode(old))
    async with engine.begin() as conn:
        await conn.execute(
            account_usage.insert().values(account_id="acme", state=value, version=1, updated_at=NOW)
        )
    assert await batch(engine, sent("a", NOW + HOUR), sent("b", NOW + HOUR)) == ["b"]
    hours, value = await stored(engine)
    assert hours == {hour_of(NOW): {usage.id_hash("a")}, hour_of(NOW + HOUR): {usage.id_hash("b")}}
    assert len(decode(value).seen) == 0 and decode(value).events_seen == 2
    assert await batch(engine, sent("a", NOW + 2 * HOUR)) == []


async def test_a_state_held_in_memory_forgets_what_it_would_write() -> None:
    """The backtest's states are never written: their bookkeeping of what to write
    must not grow with the history (an hour a day for every account otherwise)."""
    state = AccountUsage()
    for hour in range(200):
        drop_duplicates({"acme": state}, [sent(f"e{hour}", NOW + hour * HOUR)])
    assert len(state.seen_dropped) == 200 - (DEDUP_HOURS + 1)
    await usage_store.HeldStates().save(cast(AsyncConnection, None), {"acme": state}, NOW)
    assert not state.seen_grown and not state.seen_dropped and not state.changed
    assert len(state.seen.hours()) == DEDUP_HOURS + 1


async def test_an_hour_back_in_the_window_before_a_save_is_kept(
    engine_factory: EngineFactory, database_either: str | None
) -> None:
    """Dropped, then received into again before the save (an import's receipts in any
    order): its row is written, not deleted."""
    engine = await engine_factory(database_either)
    await batch(engine, sent("a", NOW))
    later = NOW + (DEDUP_HOURS + 2) * HOUR
    async with engine.begin() as conn:
        states = await usage_store.load(conn, {"acme"}, for_update=True)
        assert [e.event_id for e in drop_duplicates(states, [sent("b", later)])] == ["b"]
        assert [e.event_id for e in drop_duplicates(states, [sent("c", NOW)])] == ["c"]
        await usage_store.save(conn, states, NOW)
    hours, _ = await stored(engine)
    assert hours == {hour_of(NOW): {usage.id_hash("c")}, hour_of(later): {usage.id_hash("b")}}
