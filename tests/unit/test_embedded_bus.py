"""The embedded bus: durable append, offsets from the database, pruning what was read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import func, select

from shared.bus.base import OutMessage, TopicPartition
from shared.bus.embedded import EmbeddedBus, prune_consumed
from shared.bus.offsets import next_offsets, save_offsets
from shared.config import Settings
from shared.storage.db import create_engine, migrate
from shared.storage.tables import bus_log


async def test_consumer_resumes_from_stored_offsets_and_pruning_keeps_unread(
    embedded_settings: Settings,
) -> None:
    engine = create_engine(embedded_settings.database_url)
    await migrate(engine)
    bus = EmbeddedBus(engine)
    await bus.send_many([OutMessage("a", b"k", f"v{i}".encode()) for i in range(5)])
    await bus.send_many([OutMessage("b", None, b"other")])
    stored: dict[TopicPartition, int] = {}

    async def load(partitions: Sequence[TopicPartition]) -> Mapping[TopicPartition, int]:
        return {tp: stored[tp] for tp in partitions if tp in stored}

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
