"""The Kafka consumer of the bus on a real broker: where it starts without stored offsets."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from aiokafka.errors import OutOfOrderSequenceNumber

from shared.bus.base import BusUnavailable, OutMessage, Record
from shared.bus.kafka import KafkaConsumer, KafkaProducer, ensure_topics

pytestmark = pytest.mark.integration


async def _no_offsets(_: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
    return {}


async def test_without_stored_offsets_it_reads_from_the_logs_start_even_after_deletion(
    kafka_bootstrap: str,
) -> None:
    topic = f"start-{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka_bootstrap, [topic], partitions=1, replication=1)
    producer = KafkaProducer(kafka_bootstrap, ack_timeout_s=30)
    await producer.start()
    try:
        await producer.send_many([OutMessage(topic, b"k", str(i).encode()) for i in range(10)])
    finally:
        await producer.stop()
    # Retention, or an operator, removed the first 4 records: the log starts at 4.
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_records({TopicPartition(topic, 0): RecordsToDelete(before_offset=4)})
    finally:
        await admin.close()

    consumer = KafkaConsumer(
        kafka_bootstrap, [topic], group_id=f"g-{uuid.uuid4().hex[:8]}", load_offsets=_no_offsets
    )
    await consumer.start()
    got: list[Record] = []
    try:
        async with asyncio.timeout(60):
            while len(got) < 6:
                got += await consumer.getmany(1.0, 100)
    finally:
        await consumer.stop()
    assert [r.offset for r in got] == list(range(4, 10))
    assert [r.value for r in got] == [str(i).encode() for i in range(4, 10)]


async def test_a_producer_whose_sender_stopped_for_good_is_replaced(kafka_bootstrap: str) -> None:
    """aiokafka ends an idempotent producer's sender on a fatal error (here, as after a
    broker restart under load, OutOfOrderSequenceNumber) and fails every later send
    with it: ingest answered 503 until restarted by hand. The fault is put in as
    aiokafka's own sender puts it (its task ends with the error, the accumulator fails)."""
    async with _producer_that_sent(kafka_bootstrap, "fatal") as (producer, topic):
        inner = producer._producer
        assert inner is not None
        sender = inner._sender
        sender.sender_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender.sender_task

        async def fatal() -> None:
            raise OutOfOrderSequenceNumber()

        ended = asyncio.create_task(fatal())
        with contextlib.suppress(OutOfOrderSequenceNumber):
            await ended
        sender._sender_task = ended
        inner._message_accumulator.fail_all(OutOfOrderSequenceNumber())
        assert await producer.reachable()
        await producer.send_many([OutMessage(topic, b"k", b"after")])
        assert producer._producer is not inner


async def test_a_producer_whose_sends_fail_for_a_lost_sequence_is_replaced(
    kafka_bootstrap: str,
) -> None:
    """aiokafka 0.14 fails a batch with OutOfOrderSequenceNumber and goes on with the same
    producer id and sequence: every later send failed alike, and ingest answered 503 to
    everything after a broker restart until restarted by hand, its sender still running
    (found from outside). The fault is put in where aiokafka puts it: the send's future."""
    async with _producer_that_sent(kafka_bootstrap, "lost") as (producer, topic):
        inner = producer._producer
        assert inner is not None

        async def lost(*args: Any, **kwargs: Any) -> asyncio.Future[Any]:
            failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            failed.set_exception(OutOfOrderSequenceNumber())
            return failed

        inner.send = lost  # type: ignore[method-assign]
        with pytest.raises(BusUnavailable, match="OutOfOrderSequenceNumber"):
            await producer.send_many([OutMessage(topic, b"k", b"lost")])
        assert not inner._sender.sender_task.done()  # running: the old test's sign missed it
        await producer.send_many([OutMessage(topic, b"k", b"after")])
        assert producer._producer is not inner


@contextlib.asynccontextmanager
async def _producer_that_sent(
    bootstrap: str, prefix: str
) -> AsyncIterator[tuple[KafkaProducer, str]]:
    """A started producer that has sent one message to a topic of its own."""
    topic = f"{prefix}-{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, [topic], partitions=1, replication=1)
    producer = KafkaProducer(bootstrap, ack_timeout_s=30)
    await producer.start()
    try:
        await producer.send_many([OutMessage(topic, b"k", b"before")])
        yield producer, topic
    finally:
        await producer.stop()
