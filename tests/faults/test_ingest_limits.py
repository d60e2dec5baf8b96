"""Size limits that agree (issue 11, item 5): a body inside the API's limit is never a
503 "bus unavailable" because Kafka found a message too large. The bus takes more than
ingest's largest event; what can never fit is a 413, never a retry-forever 503."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from devservices import BROKER_MAX_MESSAGE_BYTES, KafkaBroker
from shared.bus.kafka import MAX_MESSAGE_BYTES
from shared.config import Settings
from shared.contracts.events import EVENT_ADAPTER, MAX_EVENT_BYTES
from shared.contracts.wire import encode_event
from tests.support.harness import running, usage, wait_for
from tests.support.usage import seen_ids
from tests.support.workdirs import service_dir

pytestmark = pytest.mark.integration

# Room on a message for its key (an account id, at most 200 characters), the headers a
# dead-letter copy adds and the record batch's framing: far below this.
OVERHEAD = 64 * 1024


def test_the_limits_nest() -> None:
    """body limit <= largest event < producer and topic limit <= broker limit."""
    assert Settings(_env_file=None).max_body_bytes <= MAX_EVENT_BYTES  # type: ignore[call-arg]
    assert MAX_EVENT_BYTES + OVERHEAD <= MAX_MESSAGE_BYTES <= BROKER_MAX_MESSAGE_BYTES


def _one_event_body(target_bytes: int) -> bytes:
    """One event, ``target_bytes`` long as a body; its numbers (sent as 1e5, carried as
    100000.0) make it 5 kB longer on the bus."""
    numbers = b"[" + b",".join([b"1e5"] * 1000) + b"]"
    event = usage("big", "u", properties={"blob": "", "n": "N"})
    size = len(orjson.dumps({"events": [event]}).replace(b'"N"', numbers))
    event["properties"] = {"blob": "x" * (target_bytes - size), "n": "N"}
    return orjson.dumps({"events": [event]}).replace(b'"N"', numbers)


def _encoded_size(body: bytes) -> int:
    event = EVENT_ADAPTER.validate_python(orjson.loads(body)["events"][0])
    return len(encode_event(event.model_copy(update={"received_at": datetime.now(UTC)})))


async def test_a_body_near_the_limit_is_stored_and_scored(kafka_settings: Settings) -> None:
    """A 1 MB event (the shared broker keeps Kafka's 1 MB default: the topics
    healthwatch creates carry their own, larger limit)."""
    limit = kafka_settings.max_body_bytes
    body = _one_event_body(limit - 100)
    assert limit - 200 < len(body) <= limit
    # Over Kafka's default 1 MB (1048588 on the broker, 1048576 in the producer), which
    # made this a 503 before.
    assert _encoded_size(body) > 1_048_588
    event_id = orjson.loads(body)["events"][0]["event_id"]
    async with running(kafka_settings, alerts=False) as hw, hw.client() as client:
        r = await client.post("/v1/events", content=body)
        assert r.status_code == 202, r.text[:300]

        async def scored() -> bool:
            return bool(await seen_ids(hw.rt.engine, [event_id]))

        await wait_for(scored, timeout=60, what="the 1 MB event to be scored")


async def test_an_event_that_encodes_too_large_is_413(kafka_settings: Settings) -> None:
    """1e5 is sent in 3 bytes and carried as 100000.0: a body inside the API's limit
    can grow past what an event may weigh on the bus."""
    numbers = b"[" + b",".join([b"1e5"] * 250_000) + b"]"
    event = usage("big", "u", properties={"n": "N"})
    body = orjson.dumps({"events": [event]}).replace(b'"N"', numbers)
    assert len(body) <= kafka_settings.max_body_bytes
    async with running(kafka_settings, scoring=False, alerts=False) as hw, hw.client() as c:
        r = await c.post("/v1/events", content=body)
        assert r.status_code == 413, r.text[:300]
        assert r.json()["code"] == "event_too_large"
        assert event["event_id"] in r.json()["message"]
        assert (await c.post("/v1/events", json={"events": [usage("a", "u")]})).status_code == 202


async def test_a_topic_with_a_smaller_limit_gives_413_not_503(kafka_settings: Settings) -> None:
    """A topic created elsewhere with Kafka's 1 MB default: the broker refuses the
    message, and the client hears it can never fit (413), not 'retry later' (503)."""
    settings = kafka_settings.model_copy(update={"max_body_bytes": 1_900_000})
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        small = {"max.message.bytes": str(1024 * 1024)}
        await admin.create_topics([NewTopic(settings.topic("usage"), 1, 1, topic_configs=small)])
    finally:
        await admin.close()
    body = _one_event_body(1_500_000)
    async with running(settings, scoring=False, alerts=False) as hw, hw.client() as c:
        r = await c.post("/v1/events", content=body)
        assert r.status_code == 413, r.text[:300]
        assert r.json()["code"] == "event_too_large"
        small_event = usage("a", "u", event_id=uuid.uuid4().hex)
        assert (await c.post("/v1/events", json={"events": [small_event]})).status_code == 202


async def test_the_local_broker_takes_the_largest_message_on_any_topic() -> None:
    """devservices' broker config (as compose's) takes a message of MAX_MESSAGE_BYTES
    minus framing even on a topic auto-created with the broker's defaults."""
    with service_dir("kafka-limits") as workdir:
        broker = KafkaBroker(workdir)
        await asyncio.to_thread(broker.start)
        try:
            producer = AIOKafkaProducer(
                bootstrap_servers=broker.bootstrap, max_request_size=MAX_MESSAGE_BYTES
            )
            await producer.start()
            try:
                value = b"x" * (MAX_MESSAGE_BYTES - OVERHEAD)
                sent = await producer.send_and_wait("auto-created", value, key=b"k")
            finally:
                await producer.stop()
        finally:
            await asyncio.to_thread(broker.stop)
    assert sent.offset == 0
