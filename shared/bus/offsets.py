"""Consumer offsets kept in the database, committed with the state they produced."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.bus.base import OffsetLoader, Record, TopicPartition
from shared.storage.db import upsert
from shared.storage.tables import consumer_offsets


def offset_loader(engine: AsyncEngine, group_id: str) -> OffsetLoader:
    async def load(partitions: Sequence[TopicPartition]) -> Mapping[TopicPartition, int]:
        wanted = set(partitions)
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(
                    consumer_offsets.c.topic,
                    consumer_offsets.c.partition,
                    consumer_offsets.c.next_offset,
                ).where(consumer_offsets.c.group_id == group_id)
            )
            return {
                (r.topic, r.partition): r.next_offset
                for r in rows
                if (r.topic, r.partition) in wanted
            }

    return load


def next_offsets(records: Iterable[Record]) -> dict[TopicPartition, int]:
    """The offset after the last record of each partition."""
    result: dict[TopicPartition, int] = {}
    for r in records:
        tp = (r.topic, r.partition)
        result[tp] = max(result.get(tp, 0), r.offset + 1)
    return result


async def save_offsets(
    conn: AsyncConnection, group_id: str, offsets: Mapping[TopicPartition, int]
) -> None:
    await upsert(
        conn,
        consumer_offsets,
        [
            {"group_id": group_id, "topic": t, "partition": p, "next_offset": o}
            for (t, p), o in offsets.items()
        ],
        keys=["group_id", "topic", "partition"],
        update=["next_offset"],
    )
