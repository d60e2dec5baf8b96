"""What services need from a message bus: durable produce, and consume with offsets
that the consumer stores itself (in the database, beside the state they produced)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncConnection


class BusUnavailable(Exception):
    """The bus did not acknowledge in time: nothing may be reported as stored."""


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


TopicPartition = tuple[str, int]
# Given the partitions just assigned, return the next offset to read for each one
# known (from the database); partitions left out start from the earliest record.
OffsetLoader = Callable[[Sequence[TopicPartition]], Awaitable[Mapping[TopicPartition, int]]]


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
        (after a failed transaction, so its records are read again)."""

    async def lag(self) -> dict[tuple[str, int], int]:
        """Records not yet read, per assigned (topic, partition)."""


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
