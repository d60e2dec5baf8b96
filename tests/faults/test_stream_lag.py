"""Lag is what is not applied yet, and Kafka's own tools see it (issue 11, item 18).

The lag gauge counts from the offsets committed with the state, not from how far the
consumer has read; after the database commits, the offsets are also committed to the
Kafka group, so ``kafka-consumer-groups.sh --describe`` and lag exporters work.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.bus.base import Record
from shared.bus.kafka import KafkaConsumer, ensure_topics
from shared.bus.offsets import next_offsets, offset_loader, save_offsets
from shared.config import Settings
from shared.storage.db import create_engine, migrate
from shared.storage.tables import consumer_offsets
from tests.support.harness import running, usage, wait_for

pytestmark = pytest.mark.integration


async def group_offsets(settings: Settings, group: str) -> dict[tuple[str, int], int]:
    """The offsets the Kafka group holds (what standard lag tools read)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()}


async def test_lag_counts_from_the_stored_offsets(kafka_settings: Settings) -> None:
    s = kafka_settings
    topic = s.topic("usage")
    await ensure_topics(s.kafka_bootstrap, [topic], partitions=1, replication=1)
    producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap)
    await producer.start()
    try:
        for i in range(10):
            await producer.send_and_wait(topic, f"v{i}".encode(), partition=0)
    finally:
        await producer.stop()
    engine = create_engine(s.database_url)
    await migrate(engine)
    group = s.consumer_group_scoring
    consumer = KafkaConsumer(
        s.kafka_bootstrap, [topic], group_id=group, load_offsets=offset_loader(engine, group)
    )
    await consumer.start()
    read: list[Record] = []
    try:

        async def all_read() -> bool:
            read.extend(await consumer.getmany(0.5, 100))
            return len(read) == 10

        await wait_for(all_read, timeout=60, what="ten records read")
        # Read is not applied: all ten still count.
        assert await consumer.lag() == {(topic, 0): 10}
        await store(engine, group, read[:4])
        await consumer.committed(next_offsets(read[:4]))
        assert await consumer.lag() == {(topic, 0): 6}
        assert await group_offsets(s, group) == {(topic, 0): 4}
    finally:
        await consumer.stop()
        await engine.dispose()


async def store(engine: AsyncEngine, group: str, records: Sequence[Record]) -> None:
    async with engine.begin() as conn:
        await save_offsets(conn, group, next_offsets(records))


async def test_kafka_group_holds_the_offsets_committed_with_the_state(
    kafka_settings: Settings,
) -> None:
    s = kafka_settings
    async with running(s, alerts=False) as hw, hw.client() as client:
        events = [usage(f"acct{i % 5}", f"u{i}") for i in range(40)]
        assert (await client.post("/v1/events", json={"events": events})).status_code == 202
        stored: dict[tuple[str, int], int] = {}

        async def all_applied() -> bool:
            async with hw.rt.engine.connect() as conn:
                q = select(consumer_offsets).where(
                    consumer_offsets.c.group_id == s.consumer_group_scoring
                )
                stored.update(
                    {(r.topic, r.partition): r.next_offset for r in await conn.execute(q)}
                )
            return sum(stored.values()) == len(events)

        await wait_for(all_applied, timeout=60, what="every event applied")

        async def kafka_agrees() -> bool:
            return await group_offsets(s, s.consumer_group_scoring) == stored

        await wait_for(kafka_agrees, timeout=30, what="the Kafka group to hold the offsets")


async def test_a_batch_that_hangs_shows_its_lag_and_no_progress(kafka_settings: Settings) -> None:
    """A scoring batch held up (a table locked for minutes) left the lag gauge at 0: it
    was read between batches, from the fetcher's high-water mark, which only moves while
    the loop fetches. The shipped stall and lag alerts could not fire (found from
    outside). The lag is read beside the loop, and the progress time stands still."""
    import asyncio
    import time

    from prometheus_client import CollectorRegistry

    from shared.worker import LAG_INTERVAL_S, ConsumerMetrics, consume

    s = kafka_settings
    topic = s.topic("usage") + "-hang"
    await ensure_topics(s.kafka_bootstrap, [topic], partitions=1, replication=1)
    engine = create_engine(s.database_url)
    await migrate(engine)
    group = "hanging-group"
    consumer = KafkaConsumer(
        s.kafka_bootstrap, [topic], group_id=group, load_offsets=offset_loader(engine, group)
    )
    registry = CollectorRegistry()
    metrics = ConsumerMetrics(registry)
    release, stop, holding = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def handle(records: Sequence[Record]) -> None:
        holding.set()
        await release.wait()  # a lock that is not let go
        async with engine.begin() as conn:
            await save_offsets(conn, group, next_offsets(records))

    def sample(name: str) -> float | None:
        return registry.get_sample_value(name, {"group": group, "topic": topic, "partition": "0"})

    loop = asyncio.create_task(
        consume(consumer, handle, stop, name="hang", max_records=5, metrics=metrics, group=group)
    )
    producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"first", partition=0)
        await asyncio.wait_for(holding.wait(), 60)
        for i in range(10):
            await producer.send_and_wait(topic, f"v{i}".encode(), partition=0)
        held_since = time.time()

        async def lag_shown() -> bool:
            return sample("healthwatch_consumer_lag_records") == 11

        await wait_for(lag_shown, timeout=LAG_INTERVAL_S * 4, what="the lag of a hung batch")
        progress = registry.get_sample_value(
            "healthwatch_consumer_last_progress_timestamp_seconds", {"group": group}
        )
        assert progress is not None and progress <= held_since
        release.set()

        async def caught_up() -> bool:
            return sample("healthwatch_consumer_lag_records") == 0

        await wait_for(caught_up, timeout=LAG_INTERVAL_S * 6, what="the lag back to 0")
    finally:
        release.set()
        stop.set()
        await loop
        await producer.stop()
        await engine.dispose()


async def test_a_partition_whose_stored_offset_was_never_read_has_no_lag_yet() -> None:
    """A process started while the database was down counted the lag from 0: the whole
    log, a made-up backlog for the lag alert (found in review). Unknown until read; the
    offsets last read stand in during a later outage."""
    from aiokafka import TopicPartition

    tp = TopicPartition("hw.usage", 0)
    down = [True]

    async def load(keys: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        if down[0]:
            raise ConnectionRefusedError("the database is down")
        return {("hw.usage", 0): 900}

    consumer = KafkaConsumer("unused:9092", ["hw.usage"], group_id="g", load_offsets=load)
    consumer._client = _Assigned(tp, 1000)  # type: ignore[assignment]
    assert await consumer.lag() == {}
    down[0] = False
    assert await consumer.lag() == {("hw.usage", 0): 100}
    down[0] = True
    assert await consumer.lag() == {("hw.usage", 0): 100}


async def test_a_stored_offset_past_the_logs_end_is_said_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A cluster replaced under the same database: the consumer read the new topics
    from their start, rightly, but without a word and with a lag of 0 (found from
    outside). It says so once per partition and offset."""
    from aiokafka import TopicPartition

    tp = TopicPartition("hw.usage", 0)

    async def load(keys: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        return {("hw.usage", 0): 5000}

    consumer = KafkaConsumer("unused:9092", ["hw.usage"], group_id="g", load_offsets=load)
    consumer._client = _Assigned(tp, 40)  # type: ignore[assignment]
    with caplog.at_level(logging.WARNING, logger="shared.bus.kafka"):
        assert await consumer.lag() == {("hw.usage", 0): 0}
        await consumer.lag()
    told = [r.getMessage() for r in caplog.records if "past the end of the log" in r.getMessage()]
    assert told == [
        "hw.usage[0]: the offset stored with the state (5000) is past the end of the log "
        "(40): the topic was made again or the cluster replaced; reading it from its start"
    ]


class _Assigned:
    """Stands in for aiokafka's consumer as ``lag`` uses it: one partition assigned,
    its log ending at ``end``."""

    def __init__(self, tp: Any, end: int):
        self._tp, self._end = tp, end

    def assignment(self) -> set[Any]:
        return {self._tp}

    async def end_offsets(self, partitions: Sequence[Any]) -> dict[Any, int]:
        return {self._tp: self._end}
