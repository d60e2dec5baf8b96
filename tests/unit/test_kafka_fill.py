"""The Kafka consumer fills a batch under a backlog and returns at once when caught up
(``KafkaConsumer.getmany`` over a stand-in for aiokafka's client: which reads it makes
is the point, not the broker)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka import TopicPartition

import shared.bus.kafka as kafka_module
from shared.bus.kafka import KafkaConsumer

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


async def test_a_backlog_being_read_is_read_to_its_end() -> None:
    """Once a batch fills, the backlog's tail, fewer records than FILL_MIN_BEHIND, joins
    it rather than making a batch of its own (which would rescore its accounts again)."""
    client = _Client([500, 2500, 3000, 300], end=6000)
    records = await _consumer(client).getmany(1.0, 10_000)
    assert [r.offset for r in records] == list(range(6000))
    assert client.calls == [10_000, 9500, 7000]  # the log's end reached: no more reads


async def test_filling_a_backlog_whose_end_keeps_moving_stops_at_the_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Records arriving as fast as they are read keep the log's end ahead: the batch
    ends with the fill budget, not with the log."""
    monkeypatch.setattr(kafka_module, "FILL_BUDGET_S", 0.05)
    client = _Client([300] * 100_000, end=10**9)  # more than can be read in the budget
    records = await _consumer(client).getmany(1.0, 10**8)
    assert 300 < len(records) < 10**8 and len(client.calls) < 100_000
