"""Scoring's transactional outbox on real Kafka and PostgreSQL: a crash between the
commit and the publish loses no alert and publishes none twice."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from sqlalchemy import func, select

from services.runtime import scoring_producer
from services.scoring.processor import ScoringProcessor
from shared.bus.base import OutMessage, Record, message_rows
from shared.bus.factory import ALERTS_TOPIC, create_bus
from shared.bus.outbox import MessageOutbox
from shared.config import Settings
from shared.contracts.alerts import AlertEvent, Severity
from shared.contracts.wire import decode_alert, encode_event
from shared.storage.db import create_engine, migrate
from shared.storage.tables import bus_outbox
from tests.support.factories import EngineFactory, ProcessorFactory
from tests.support.harness import running, wait_for

pytestmark = pytest.mark.integration


class Killed(Exception):
    """The process dying right after the commit, before it relays."""


async def test_a_crash_between_commit_and_publish_publishes_the_alert_once(
    kafka_settings: Settings, engine_factory: EngineFactory, processor_factory: ProcessorFactory
) -> None:
    engine = await engine_factory(kafka_settings.database_url)
    bus = create_bus(kafka_settings, engine)
    await bus.producer.start()
    try:
        outbox = MessageOutbox(engine, bus.producer)

        class DiesAfterCommit(ScoringProcessor):
            async def relay(self) -> None:
                raise Killed

        processor = processor_factory(
            engine, producer=outbox, settings=kafka_settings, kind=DiesAfterCommit
        )
        payment = {
            "kind": "payment",
            "event_id": f"pay-{uuid.uuid4().hex[:6]}",
            "account_id": "acme",
            "occurred_at": datetime.now(UTC).isoformat(),
            "status": "failed",
        }
        record = Record(kafka_settings.topic("payment"), 0, 0, b"acme", orjson.dumps(payment))
        with pytest.raises(Killed):
            await processor.handle([record])
        # Committed: the state, the offsets and the alert, which waits in the outbox.
        async with engine.connect() as conn:
            waiting = (await conn.execute(select(func.count()).select_from(bus_outbox))).scalar()
        assert waiting == 1
        assert await _alert_ids(kafka_settings, expect=0) == []

        # The restarted process's relay publishes it; a second relay has nothing left.
        restarted = MessageOutbox(engine, bus.producer)
        assert await restarted.relay() == 1
        assert await restarted.relay() == 0
        # Replaying the same record (its offset was committed) changes nothing either.
        await processor_factory(engine, producer=restarted, settings=kafka_settings).handle(
            [record]
        )
        assert await restarted.relay() == 0
        assert await _alert_ids(kafka_settings, expect=1) == ["acme:payment_failed:1"]
    finally:
        await bus.producer.stop()


async def _alert_ids(settings: Settings, *, expect: int) -> list[str]:
    """The alert ids on the alerts topic, read until ``expect`` arrived and a second
    more (a copy published twice would show)."""
    consumer = AIOKafkaConsumer(
        settings.topic(ALERTS_TOPIC),
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=f"reader-{uuid.uuid4().hex[:6]}",
    )
    await consumer.start()
    ids: list[str] = []
    try:

        async def enough() -> bool:
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                ids.extend(decode_alert(m.value).alert_id for m in messages)
            return len(ids) >= expect

        await wait_for(enough, timeout=30, what=f"{expect} alerts")
        for messages in (await consumer.getmany(timeout_ms=1000)).values():
            ids.extend(decode_alert(m.value).alert_id for m in messages)
    finally:
        await consumer.stop()
    return ids


async def test_the_scoring_service_relays_what_a_crash_left(kafka_settings: Settings) -> None:
    """The service publishes through the outbox, and relays at start what a crash
    between commit and publish left there (the outbox was built and tested, but the
    service published straight to Kafka inside its transaction, found from outside)."""
    engine = create_engine(kafka_settings.database_url)
    await migrate(engine)
    left = OutMessage(
        kafka_settings.topic(ALERTS_TOPIC), b"acme", _alert_value("acme:left_behind:1")
    )
    async with engine.begin() as conn:
        await conn.execute(bus_outbox.insert(), message_rows([left], datetime.now(UTC)))
    await engine.dispose()
    async with running(kafka_settings, ingest=False, alerts=False) as hw:
        assert isinstance(scoring_producer(hw.rt), MessageOutbox)

        async def relayed() -> bool:
            async with hw.rt.engine.connect() as conn:
                count = select(func.count()).select_from(bus_outbox)
                return (await conn.execute(count)).scalar() == 0

        await wait_for(relayed, timeout=30, what="the outbox relayed at start")
    assert "acme:left_behind:1" in await _alert_ids(kafka_settings, expect=1)


def _alert_value(alert_id: str) -> bytes:
    alert = AlertEvent(
        alert_id=alert_id,
        revision=0,
        account_id="acme",
        rule="left_behind",
        severity=Severity.warning,
        status="firing",
        title="acme: left behind",
        summary="",
        fired_at=datetime.now(UTC),
    )
    return encode_event(alert)
