"""The embedded bus: an append-only table in the application database.

Producing commits a row (fsynced by SQLite's synchronous=FULL) before it returns, so
an event acknowledged in embedded mode survives kill -9. Each topic has one
partition; the offset is the row id. Consumers keep their offsets in the database
like Kafka consumers do, so the scoring and alerts code is the same in both modes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.bus.base import BusUnavailable, OffsetLoader, OutMessage, Record, message_rows
from shared.clock import pause, utcnow
from shared.storage.db import SQLITE_BUSY_TIMEOUT_MS
from shared.storage.tables import bus_log, consumer_offsets

PARTITION = 0


class EmbeddedBus:
    """Producer side, plus a wake-up signal for consumers in the same process."""

    def __init__(self, engine: AsyncEngine, *, write_timeout_s: float | None = None):
        self.engine = engine
        # A write waits for SQLite's one writer (a scoring batch) up to this long, then
        # fails as a broker that did not ack would (ingest answers 503, the client
        # retries: event ids make that safe), rather than up to the 30 s busy timeout.
        self._write_timeout_s = write_timeout_s
        self._writer = (  # the same engine and pool, its transactions' busy timeout shorter
            engine
            if write_timeout_s is None
            else engine.execution_options(**{SQLITE_BUSY_TIMEOUT_MS: int(write_timeout_s * 1000)})
        )
        self._wakeups: set[asyncio.Event] = set()

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send_many(
        self, messages: Sequence[OutMessage], conn: AsyncConnection | None = None
    ) -> None:
        if not messages:
            return
        rows = message_rows(messages, utcnow())
        if conn is not None:
            # Part of the caller's transaction (SQLite allows one writer at a time).
            await conn.execute(bus_log.insert(), rows)
        else:
            try:
                async with self._writer.begin() as own:
                    await own.execute(bus_log.insert(), rows)
            except OperationalError as exc:
                waited = f"{self._write_timeout_s} s" if self._write_timeout_s else "long"
                raise BusUnavailable(
                    f"embedded bus write failed: {exc.orig} (the database is busy for "
                    f"over {waited}, or unwritable)"
                ) from exc
        for wakeup in self._wakeups:
            wakeup.set()

    def consumer(self, topics: Sequence[str], load_offsets: OffsetLoader) -> EmbeddedConsumer:
        return EmbeddedConsumer(self, topics, load_offsets)


class EmbeddedConsumer:
    def __init__(self, bus: EmbeddedBus, topics: Sequence[str], load_offsets: OffsetLoader):
        self._bus = bus
        self._topics = list(topics)
        self._load_offsets = load_offsets
        self._next: dict[str, int] = {}
        self._loaded = False  # whether _next holds the stored offsets
        self._appended = asyncio.Event()
        self.generation = 0  # one consumer per topic: never reassigned
        self.handling = asyncio.Lock()

    async def start(self) -> None:
        self._bus._wakeups.add(self._appended)
        await self.rewind()

    async def stop(self) -> None:
        self._bus._wakeups.discard(self._appended)

    async def rewind(self) -> None:
        self._loaded = False  # if loading fails, getmany loads them first
        stored = await self._load_offsets([(t, PARTITION) for t in self._topics])
        self._next = {t: stored.get((t, PARTITION), 0) for t in self._topics}
        self._loaded = True

    async def lag(self) -> dict[tuple[str, int], int]:
        # Offsets are row ids shared by all topics: count the rows, not the id gap.
        stored = await self._load_offsets([(t, PARTITION) for t in self._topics])
        out = {}
        async with self._bus.engine.connect() as conn:
            for t in self._topics:
                q = select(func.count()).where(
                    bus_log.c.topic == t, bus_log.c.offset >= stored.get((t, PARTITION), 0)
                )
                out[(t, PARTITION)] = int((await conn.execute(q)).scalar_one())
        return out

    async def committed(self, offsets: Mapping[tuple[str, int], int]) -> None:
        pass  # the offsets in the database are the only ones

    async def getmany(self, timeout_s: float, max_records: int) -> list[Record]:
        if not self._loaded:
            await self.rewind()
        records = await self._read(max_records)
        if not records:
            # Woken by a producer in this process; the timeout catches other processes.
            await pause(self._appended, timeout_s)
            self._appended.clear()
            records = await self._read(max_records)
        return records

    async def _read(self, max_records: int) -> list[Record]:
        records: list[Record] = []
        async with self._bus.engine.connect() as conn:
            for topic in self._topics:
                rows = await conn.execute(
                    select(
                        bus_log.c.offset,
                        bus_log.c.key,
                        bus_log.c.value,
                        bus_log.c.headers,
                        bus_log.c.created_at,
                    )
                    .where(bus_log.c.topic == topic, bus_log.c.offset >= self._next[topic])
                    .order_by(bus_log.c.offset)
                    .limit(max_records - len(records))
                )
                for row in rows:
                    records.append(
                        Record(
                            topic,
                            PARTITION,
                            row.offset,
                            row.key,
                            row.value,
                            row.headers,
                            row.created_at.timestamp(),
                        )
                    )
                    self._next[topic] = row.offset + 1
                if len(records) >= max_records:
                    break
        return records


async def prune_consumed(engine: AsyncEngine, readers: Mapping[str, str]) -> int:
    """Delete records every reader has consumed; ``readers`` maps topic → consumer group.
    Topics with no reader (the dead-letter topic) are kept for inspection."""
    deleted = 0
    async with engine.begin() as conn:
        for topic, group in readers.items():
            next_offset = (
                await conn.execute(
                    select(consumer_offsets.c.next_offset).where(
                        consumer_offsets.c.group_id == group,
                        consumer_offsets.c.topic == topic,
                        consumer_offsets.c.partition == PARTITION,
                    )
                )
            ).scalar()
            if next_offset:
                result = await conn.execute(
                    delete(bus_log).where(bus_log.c.topic == topic, bus_log.c.offset < next_offset)
                )
                deleted += result.rowcount
    return deleted
