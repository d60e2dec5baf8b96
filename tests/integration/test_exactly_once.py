"""Duplicates count once; bad records go to the dead-letter topic; Segment calls score."""

from __future__ import annotations

import base64
import gzip
import uuid
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import select

from shared.bus.factory import DEADLETTER_TOPIC, event_topics
from shared.config import Settings
from shared.storage.tables import accounts
from tests.support.harness import Harness, caught_up, running, usage, wait_for
from tests.support.usage import count_processed, usage_states

pytestmark = pytest.mark.integration


async def _processed(hw: Harness) -> int:
    return await count_processed(hw.rt.engine)


async def test_same_events_sent_twice_count_once(kafka_settings: Settings) -> None:
    events = [usage("dup", f"u{i % 3}", days_ago=i % 2) for i in range(10)]
    async with running(kafka_settings, alerts=False) as hw, hw.client() as client:
        for _ in range(2):
            assert (await client.post("/v1/events", json={"events": events})).status_code == 202
        # Also a duplicate inside one batch.
        assert (
            await client.post("/v1/events", json={"events": [events[0], events[0]]})
        ).status_code == 202
        marker = usage("dup", "u9")
        assert (await client.post("/v1/events", json={"events": [marker]})).status_code == 202
        await wait_for(lambda: _processed_is(hw, 11), timeout=60, what="11 distinct events")
        assert await hw.usage_events("dup") == 11
        [state] = (await usage_states(hw.rt.engine)).values()
        users = sum(len(use.users) for _, use in state.day_items())
        # u0..u2 on both days (i % 3 and i % 2 cover all six pairs), u9 today.
        assert users == 7


async def _processed_is(hw: Harness, n: int) -> bool:
    return await _processed(hw) == n


async def test_bad_records_are_dead_lettered_and_the_stream_goes_on(
    kafka_settings: Settings,
) -> None:
    s = kafka_settings
    async with running(s, alerts=False) as hw:
        producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap)
        await producer.start()
        try:
            good_before = orjson.dumps(usage("dlq", "u1"))
            await producer.send_and_wait(s.topic("usage"), good_before, key=b"dlq")
            await producer.send_and_wait(s.topic("usage"), b"\x00\xff garbage \xfe", key=b"dlq")
            await producer.send_and_wait(
                s.topic("usage"), orjson.dumps({"kind": "usage", "event_id": "x"}), key=b"dlq"
            )
            await producer.send_and_wait(
                s.topic("ticket"), orjson.dumps(usage("dlq", "u2")), key=b"dlq"
            )
            await producer.send_and_wait(
                s.topic("usage"), orjson.dumps(usage("dlq", "u3")), key=b"dlq"
            )
        finally:
            await producer.stop()
        await wait_for(lambda: _processed_is(hw, 2), timeout=60, what="the two valid events")
        assert await hw.usage_events("dlq") == 2
        # The record on the ticket topic is on a topic of its own: it may be read after
        # the valid ones. Dead letters go out in the transaction of the batch that read
        # them, so once scoring has consumed every topic, all of them are out.
        await caught_up(hw, s.consumer_group_scoring, event_topics(s))

    consumer = AIOKafkaConsumer(
        s.topic(DEADLETTER_TOPIC),
        bootstrap_servers=s.kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=f"check-{uuid.uuid4().hex[:6]}",
    )
    await consumer.start()
    records: list[Any] = []

    async def all_read() -> bool:
        # Partitions may arrive in separate fetches: read until all three are in.
        batches = await consumer.getmany(timeout_ms=1000)
        records.extend(m for msgs in batches.values() for m in msgs)
        return len(records) >= 3

    try:
        await wait_for(all_read, timeout=60, what="three dead letters", interval=0)
    finally:
        await consumer.stop()
    reasons = sorted(dict(m.headers)["reason"].decode() for m in records)
    assert len(records) == 3
    assert any(r.startswith("not UTF-8 text") for r in reasons)
    assert any("occurred_at" in r for r in reasons)
    assert any("kind 'usage' on the topic for 'ticket'" in r for r in reasons)
    assert {dict(m.headers)["source_topic"].decode() for m in records} == {
        s.topic("usage"),
        s.topic("ticket"),
    }
    assert any(m.value == b"\x00\xff garbage \xfe" for m in records)


async def test_segment_tracking_api_scores_the_right_account(kafka_settings: Settings) -> None:
    async with running(kafka_settings, alerts=False) as hw:
        basic = base64.b64encode(f"{hw.key}:".encode()).decode()
        import httpx

        async with httpx.AsyncClient(
            base_url=hw.url, headers={"Authorization": f"Basic {basic}"}
        ) as client:
            ts = "2026-11-20T10:00:00.000Z"
            batch = {
                "batch": [
                    {
                        "type": "identify",
                        "messageId": "m1",
                        "userId": "ann",
                        "traits": {"email": "ann@x.io"},
                        "timestamp": ts,
                    },
                    {
                        "type": "group",
                        "messageId": "m2",
                        "userId": "ann",
                        "groupId": "globex",
                        "traits": {"name": "Globex", "seats": 12},
                        "timestamp": ts,
                    },
                    {
                        "type": "track",
                        "messageId": "m3",
                        "userId": "ann",
                        "event": "Report Run",
                        "properties": {"module": "reports"},
                        "timestamp": ts,
                    },
                    {
                        "type": "track",
                        "messageId": "m4",
                        "userId": "bob",
                        "event": "Login",
                        "context": {"groupId": "initech"},
                        "originalTimestamp": ts,
                    },
                    {
                        "type": "track",
                        "messageId": "m5",
                        "userId": "stranger",
                        "event": "Login",
                        "timestamp": ts,
                    },
                ],
                "sentAt": ts,
            }
            r = await client.post(
                "/v1/batch",
                content=gzip.compress(orjson.dumps(batch)),
                headers={"Content-Encoding": "gzip"},
            )
            assert r.status_code == 400  # the stranger has no account
            body = r.json()
            assert body["accepted"] == 4
            assert [rej["index"] for rej in body["rejected"]] == [4]
            assert body["rejected"][0]["errors"][0]["field"] == "context.groupId"

            # A later single track call resolves ann's account from the stored group call.
            r = await client.post(
                "/v1/track",
                json={"messageId": "m6", "userId": "ann", "event": "Login", "timestamp": ts},
            )
            assert r.status_code == 200 and r.json()["success"] is True
            # A retried message is counted once.
            r = await client.post(
                "/v1/track",
                json={"messageId": "m6", "userId": "ann", "event": "Login", "timestamp": ts},
            )
            assert r.status_code == 200
        await wait_for(
            lambda: hw.has_usage_events("globex", 2), timeout=60, what="globex's two tracks"
        )
        await wait_for(
            lambda: hw.has_usage_events("initech", 1), timeout=60, what="initech's track"
        )
        health = await hw.health("globex")
        assert health.active_users_7d == 1

        async def globex_facts() -> Any:
            # The group call's facts travel on their own topic: no order with the tracks.
            async with hw.rt.engine.connect() as conn:
                q = select(accounts).where(accounts.c.account_id == "globex")
                return (await conn.execute(q)).first()

        row = await wait_for(globex_facts, timeout=60, what="globex's facts")
        # A group call sets descriptive traits only (the write key ships in browsers).
        assert row.name == "Globex" and row.seats_purchased is None
