"""What services need from a message bus: durable produce, and consume with offsets
that the consumer stores itself (in the database, beside the state they produced)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncConnection


class BusUnavailable(Exception):
    """The bus did not acknowledge in time: nothing may be reported as stored."""


class MessageTooLarge(BusUnavailable):
    """The bus refused a message for its size: nothing was stored, and retrying the
    same message can never succeed (a client's 413, a consumer's dead letter)."""


@dataclass(frozen=True, slots=True)
class OutMessage:
    topic: str
    key: bytes | None
    value: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Mapping[str, str] = field(default_factory=dict)
    # When the bus stored the record (Unix seconds; Kafka's record timestamp), kept with
    # it: a replay sees the same value. None for records that never were on a bus.
    timestamp: float | None = None


TopicPartition = tuple[str, int]
# Given the partitions just assigned, return the next offset to read for each one
# known (from the database); partitions left out start from the earliest record.
OffsetLoader = Callable[[Sequence[TopicPartition]], Awaitable[Mapping[TopicPartition, int]]]


def message_rows(messages: Sequence[OutMessage], now: datetime) -> list[dict[str, object]]:
    """``messages`` as rows of a table holding messages (the embedded bus's log, the
    outbox)."""
    return [
        {
            "topic": m.topic,
            "key": m.key,
            "value": m.value,
            "headers": dict(m.headers),
            "created_at": now,
        }
        for m in messages
    ]


# Set a record aside with the reason it cannot be handled, and store the offset after
# it, atomically: once it returns, the record is in the dead-letter topic and will not
# be read again. Raises (and stores nothing) when the database or the bus is down.
DeadLetter = Callable[[Record, str], Awaitable[None]]


class Producer(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send_many(
        self, messages: Sequence[OutMessage], conn: AsyncConnection | None = None
    ) -> None:
        """Return only once every message is durably stored; else raise BusUnavailable.

        ``conn`` is the caller's open transaction: a bus that lives in the database
        writes through it, so the messages commit with the caller's state."""


class Consumer(Protocol):
    # Bumped whenever positions are reset by a partition (re)assignment; a batch read
    # under an older generation is stale and must not be handled.
    generation: int
    # Held while a batch is handled; a rebalance waits for it before moving partitions.
    handling: asyncio.Lock

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def getmany(self, timeout_s: float, max_records: int) -> list[Record]:
        """The next records after the loaded or last returned offsets."""

    async def rewind(self) -> None:
        """Forget in-memory positions and reload them through the offset loader
        (after a failed transaction, so its records are read again). If the offsets
        cannot be loaded it raises, and the next ``getmany`` loads them first (raising
        until it can): no record is read from a position not loaded."""

    async def lag(self) -> dict[tuple[str, int], int]:
        """Records not yet applied, per assigned (topic, partition): the log's end
        minus the offsets stored with the state."""

    async def committed(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Told after the state and ``offsets`` committed to the database. Kafka
        records them in the group too, for standard lag tools; best effort."""


class DiscardingProducer:
    """A producer whose messages go nowhere: for replays whose alerts must not be sent."""

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send_many(
        self, messages: Sequence[OutMessage], conn: AsyncConnection | None = None
    ) -> None:
        pass
