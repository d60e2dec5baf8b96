"""The Kafka consumer fills a batch under a backlog and returns at once when caught up
(``KafkaConsumer.getmany`` over a stand-in for aiokafka's client: which reads it makes
is the point, not the broker)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition

from shared.bus.kafka import TURN_MAX_WAIT_S, KafkaConsumer

TP = TopicPartition("hw.usage", 0)


@dataclass
class _Message:
    topic: str
    partition: int
    offset: int
    key: bytes = b"acme"
    value: bytes = b"{}"
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp: int | None = 1_700_000_000_000


class _Client:
    """What the fetcher has buffered, one ``getmany`` answer at a time, and the log's
    end as the last fetch response told it."""

    def __init__(self, answers: list[int], end: int) -> None:
        self.answers = deque(answers)  # records each getmany returns, in order
        self.end = end
        self.next = 0
        self.calls: list[int] = []  # the max_records asked for

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, Any]:
        self.calls.append(max_records)
        if not self.answers:
            return {}
        count = min(self.answers.popleft(), max_records)
        messages = [_Message(TP.topic, TP.partition, self.next + i) for i in range(count)]
        self.next += count
        return {TP: messages} if messages else {}

    def highwater(self, tp: TopicPartition) -> int:
        return self.end

    def assignment(self) -> set[TopicPartition]:
        return {TP}


def _consumer(client: _Client) -> KafkaConsumer:
    consumer = KafkaConsumer("unused:9092", [TP.topic], group_id="g", load_offsets=_none)
    consumer._client = client  # type: ignore[assignment]
    return consumer


async def _none(_: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
    return {}


async def test_a_backlog_fills_the_batch_from_several_fetches() -> None:
    client = _Client([300, 300, 300, 300], end=10_000)
    records = await _consumer(client).getmany(1.0, 1000)
    assert [r.offset for r in records] == list(range(1000))
    assert client.calls == [1000, 700, 400, 100]  # never more than the batch may hold


async def test_a_caught_up_consumer_returns_what_it_read_at_once() -> None:
    client = _Client([40, 300], end=40)  # the 40 records reach the log's end
    records = await _consumer(client).getmany(1.0, 1000)
    assert len(records) == 40
    assert client.calls == [1000]


async def test_filling_stops_when_the_fetcher_has_nothing_more() -> None:
    client = _Client([300, 0, 300], end=10_000)
    records = await _consumer(client).getmany(1.0, 1000)
    assert len(records) == 300
    assert client.calls == [1000, 700]


async def test_a_light_load_a_few_hundred_records_behind_is_not_filled() -> None:
    """Records arriving while a batch is handled keep the log's end a little ahead under
    a steady light load: that is no backlog, and waiting to fill would add latency."""
    client = _Client([40, 300], end=400)
    records = await _consumer(client).getmany(1.0, 1000)
    assert len(records) == 40
    assert client.calls == [1000]


class _Partitions:
    """A fetcher with records of several partitions buffered: each getmany answer maps
    (topic, partition) to how many further records it returns."""

    def __init__(self, answers: list[dict[tuple[str, int], int]], assigned: set[TopicPartition]):
        self.answers = deque(answers)
        self.assigned = assigned
        self.next: dict[TopicPartition, int] = {}
        self.calls: list[tuple[int, int]] = []  # (timeout_ms, max_records) asked for

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, Any]:
        self.calls.append((timeout_ms, max_records))
        out: dict[TopicPartition, Any] = {}
        for (topic, partition), count in (self.answers.popleft() if self.answers else {}).items():
            tp = TopicPartition(topic, partition)
            start = self.next.get(tp, 0)
            out[tp] = [_Message(topic, partition, start + i) for i in range(count)]
            self.next[tp] = start + count
        return out

    def highwater(self, tp: TopicPartition) -> int:
        return self.next.get(tp, 0)  # caught up: the log ends where the reads did

    def assignment(self) -> set[TopicPartition]:
        return self.assigned


def _read(records: list[Any]) -> list[tuple[str, int, int]]:
    return [(r.topic, r.partition, r.offset) for r in records]


async def test_caught_up_batches_take_one_partition_number_at_a_time_in_turn() -> None:
    """Each batch is one partition number of every topic (an account's events of every
    kind share it), then the next, wrapping round; what arrives meanwhile joins its
    partition's turn, and a read while records wait does not wait for more."""
    usage0, usage1, usage2 = (TopicPartition("hw.usage", n) for n in range(3))
    tickets1 = TopicPartition("hw.tickets", 1)
    client = _Partitions(
        [
            {("hw.usage", 0): 2, ("hw.usage", 1): 1, ("hw.tickets", 1): 1, ("hw.usage", 2): 1},
            {("hw.usage", 2): 1, ("hw.usage", 0): 1},
            {},
            {},
        ],
        {usage0, usage1, usage2, tickets1},
    )
    consumer = _consumer(client)  # type: ignore[arg-type]
    first = await consumer.getmany(1.0, 1000)
    assert _read(first) == [("hw.usage", 0, 0), ("hw.usage", 0, 1)]
    second = await consumer.getmany(1.0, 1000)
    assert _read(second) == [("hw.usage", 1, 0), ("hw.tickets", 1, 0)]
    third = await consumer.getmany(1.0, 1000)  # the record that arrived joined its turn
    assert _read(third) == [("hw.usage", 2, 0), ("hw.usage", 2, 1)]
    fourth = await consumer.getmany(1.0, 1000)  # round again: partition 0's newer record
    assert _read(fourth) == [("hw.usage", 0, 2)]
    assert await consumer.getmany(1.0, 1000) == []
    # Only the first read and the one with nothing waiting may wait for the fetcher.
    assert [timeout for timeout, _ in client.calls] == [1000, 0, 0, 0, 1000]
    assert client.calls[1][1] == 1000 - 3  # what waits counts against the batch's size


async def test_records_waiting_for_their_turn_are_dropped_after_a_seek_or_a_revoke() -> None:
    """A seek (reassignment, rewind) makes waiting records stale: the fetcher reads them
    again from the stored offsets. A revoked partition's belong to its new owner."""
    usage0, usage1, usage2 = (TopicPartition("hw.usage", n) for n in range(3))
    client = _Partitions(
        [{("hw.usage", 0): 1, ("hw.usage", 1): 1, ("hw.usage", 2): 1}, {}, {}],
        {usage0, usage1, usage2},
    )
    consumer = _consumer(client)  # type: ignore[arg-type]
    assert _read(await consumer.getmany(1.0, 1000)) == [("hw.usage", 0, 0)]
    client.assigned = {usage0, usage2}  # partition 1 revoked
    assert _read(await consumer.getmany(1.0, 1000)) == [("hw.usage", 2, 0)]
    client.answers.appendleft({("hw.usage", 0): 1, ("hw.usage", 2): 1})
    assert _read(await consumer.getmany(1.0, 1000)) == [("hw.usage", 0, 1)]
    consumer.generation += 1  # a seek: partition 2's waiting record is stale
    assert await consumer.getmany(1.0, 1000) == []


async def test_records_waiting_past_the_turn_limit_are_served_together() -> None:
    """When records have waited TURN_MAX_WAIT_S for their turn (rounds too long: a load
    near what the consumer takes), everything waiting goes in one batch."""
    usage0, usage1, usage2 = (TopicPartition("hw.usage", n) for n in range(3))
    client = _Partitions(
        [{("hw.usage", 0): 1, ("hw.usage", 1): 1, ("hw.usage", 2): 1}, {("hw.usage", 0): 1}],
        {usage0, usage1, usage2},
    )
    now = [100.0]
    consumer = KafkaConsumer(
        "unused:9092", ["hw.usage"], group_id="g", load_offsets=_none, clock=lambda: now[0]
    )
    consumer._client = client  # type: ignore[assignment]
    assert _read(await consumer.getmany(1.0, 1000)) == [("hw.usage", 0, 0)]
    now[0] += TURN_MAX_WAIT_S  # partitions 1 and 2 have waited the limit
    everything = _read(await consumer.getmany(1.0, 1000))
    assert sorted(everything) == [("hw.usage", 0, 1), ("hw.usage", 1, 0), ("hw.usage", 2, 0)]
    assert await consumer.getmany(1.0, 1000) == []
