"""The embedded bus: durable append, offsets from the database, pruning what was read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.bus.base import BusUnavailable, OffsetLoader, OutMessage, TopicPartition
from shared.bus.embedded import EmbeddedBus, prune_consumed
from shared.bus.offsets import next_offsets, save_offsets
from shared.config import Settings
from shared.storage.db import create_engine, migrate
from shared.storage.tables import bus_log
from tests.support.migrations import upgrade_to


def _loader(stored: Mapping[TopicPartition, int]) -> OffsetLoader:
    """The consumer's offset loader over ``stored`` (as the database would hold them)."""

    async def load(partitions: Sequence[TopicPartition]) -> Mapping[TopicPartition, int]:
        return {tp: stored[tp] for tp in partitions if tp in stored}

    return load


async def test_consumer_resumes_from_stored_offsets_and_pruning_keeps_unread(
    embedded_settings: Settings,
) -> None:
    engine = create_engine(embedded_settings.database_url)
    await migrate(engine)
    bus = EmbeddedBus(engine)
    await bus.send_many([OutMessage("a", b"k", f"v{i}".encode()) for i in range(5)])
    await bus.send_many([OutMessage("b", None, b"other")])
    stored: dict[TopicPartition, int] = {}
    load = _loader(stored)

    consumer = bus.consumer(["a"], load)
    await consumer.start()
    assert await consumer.lag() == {("a", 0): 5}
    first = await consumer.getmany(0.1, 3)
    assert [r.value for r in first] == [b"v0", b"v1", b"v2"]
    # Lag counts what is not applied yet: read is not applied until its offsets are stored.
    assert await consumer.lag() == {("a", 0): 5}
    async with engine.begin() as conn:
        await save_offsets(conn, "g", next_offsets(first))
    stored.update(next_offsets(first))
    assert await consumer.lag() == {("a", 0): 2}
    # A restart (or a failed batch) reads again from the stored offsets.
    await consumer.rewind()
    assert [r.value for r in await consumer.getmany(0.1, 10)] == [b"v3", b"v4"]

    assert await prune_consumed(engine, {"a": "g"}) == 3
    async with engine.connect() as conn:
        left = (await conn.execute(select(func.count()).select_from(bus_log))).scalar_one()
    assert left == 3  # v3, v4 unread by g, and topic b (no reader) kept
    await engine.dispose()


async def test_offsets_go_on_after_the_prune_empties_the_log(
    embedded_settings: Settings,
) -> None:
    """Once the prune had deleted every row read, SQLite numbered new rows from 1 again,
    below the stored offset: accepted, never read, then pruned (lost)."""
    engine = create_engine(embedded_settings.database_url)
    await migrate(engine)
    bus = EmbeddedBus(engine)
    stored: dict[TopicPartition, int] = {}
    load = _loader(stored)

    await bus.send_many([OutMessage("a", None, f"v{i}".encode()) for i in range(3)])
    consumer = bus.consumer(["a"], load)
    await consumer.start()
    read = await consumer.getmany(0.1, 10)
    async with engine.begin() as conn:
        await save_offsets(conn, "g", next_offsets(read))
    stored.update(next_offsets(read))
    assert await prune_consumed(engine, {"a": "g"}) == 3  # the log is empty now
    await bus.send_many([OutMessage("a", None, b"after")])
    restarted = bus.consumer(["a"], load)
    await restarted.start()
    assert [r.value for r in await restarted.getmany(0.1, 10)] == [b"after"]
    assert await prune_consumed(engine, {"a": "g"}) == 0
    await engine.dispose()


async def _upgraded_from_0016(
    settings: Settings, values: list[bytes], next_offset: int
) -> AsyncEngine:
    """A database at 0016 whose topic ``a`` holds ``values`` at offsets 1, 2, … and whose
    group ``g`` stored ``next_offset``, as a reset left it; then migrated to the newest."""
    engine = create_engine(settings.database_url)
    async with engine.begin() as conn:
        await conn.run_sync(upgrade_to("0016"))
        for offset, value in enumerate(values, start=1):
            await conn.execute(
                text(
                    'INSERT INTO bus_log ("offset", topic, key, value, headers, created_at) '
                    "VALUES (:offset, 'a', NULL, :value, '{}', '2026-12-06 10:00:00.000000')"
                ),
                {"offset": offset, "value": value},
            )
        await save_offsets(conn, "g", {("a", 0): next_offset})
    await migrate(engine)
    return engine


async def test_the_upgrade_renumbers_rows_a_reset_put_below_the_stored_offsets(
    embedded_settings: Settings,
) -> None:
    """An install the reset hit: its unread rows are read after the upgrade (0017)."""
    engine = await _upgraded_from_0016(embedded_settings, [b"lost1", b"lost2"], 501)
    bus = EmbeddedBus(engine)
    await bus.send_many([OutMessage("a", None, b"new")])
    consumer = bus.consumer(["a"], _loader({("a", 0): 501}))
    await consumer.start()
    read = await consumer.getmany(0.1, 10)
    assert [r.value for r in read] == [b"lost1", b"lost2", b"new"]
    assert [r.offset for r in read] == [501, 502, 503]
    await engine.dispose()


async def test_the_upgrade_of_an_emptied_log_numbers_above_the_stored_offsets(
    embedded_settings: Settings,
) -> None:
    engine = await _upgraded_from_0016(embedded_settings, [], 77)
    await EmbeddedBus(engine).send_many([OutMessage("a", None, b"x")])
    async with engine.connect() as conn:
        assert (await conn.execute(select(bus_log.c.offset))).scalars().all() == [77]
    await engine.dispose()


async def test_a_write_the_database_cannot_take_in_time_fails_as_a_broker_without_ack(
    embedded_settings: Settings,
) -> None:
    """While a scoring batch holds SQLite's write lock, ingest's write gives up after
    the produce timeout (a 503 the client retries), not SQLite's 30 s busy timeout."""
    engine = create_engine(embedded_settings.database_url)
    await migrate(engine)
    bus = EmbeddedBus(engine, write_timeout_s=0.2)
    async with engine.connect() as holder:
        # The writer a scoring batch would be: a write, not yet committed.
        await EmbeddedBus(engine).send_many([OutMessage("b", None, b"held")], holder)
        with pytest.raises(BusUnavailable, match=r"busy for over 0\.2 s"):
            await bus.send_many([OutMessage("a", None, b"v")])
        await holder.rollback()
    await bus.send_many([OutMessage("a", None, b"v")])  # the lock gone: written
    await engine.dispose()
