"""Every service rides out a database or broker outage (issue 11, items 3 and 6).

PostgreSQL, then (separately) Kafka, go away in the middle of a stream and come back:
no service exits, each reports not ready meanwhile and ready again afterwards, and
the state ends as an uninterrupted run leaves it. A service started while the broker
is away starts anyway, answers 503, and serves once the broker is there. Each test
runs its own server of the kind it stops; the shared ones are never touched.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import exc as sa
from sqlalchemy import func, select

from devservices import KafkaBroker, PostgresCluster, free_port
from services import runtime
from shared.bus.base import OutMessage, Record
from shared.bus.base import TopicPartition as Partition
from shared.bus.embedded import EmbeddedBus
from shared.bus.factory import ALERTS_TOPIC, all_topics
from shared.bus.offsets import next_offsets
from shared.config import Settings
from shared.storage.db import create_engine, migrate
from shared.storage.tables import alerts
from shared.worker import consume
from tests.support.harness import (
    Harness,
    assert_same_state,
    caught_up,
    facts,
    relayed,
    running,
    running_apart,
    state_snapshot,
    usage,
    wait_for,
)
from tests.support.stream import processed_all, produce, reference_state

pytestmark = pytest.mark.integration

# How long a server stays away: the reported 3 s restart, and then some.
OUTAGE_S = 5.0
# Bounds on "recovers by itself": the services back off at most 15 s between attempts
# (shared/worker.py RETRY_CAP_S), a Kafka group rejoins in seconds; far below "never".
RECOVERY_TIMEOUT_S = 60
ACCOUNTS = 12


def stream_part(rng: random.Random, part: int, n: int = 600) -> list[dict[str, Any]]:
    """Part ``part`` of a stream: account facts first, then usage (some accounts busy,
    some nearly idle, so rules fire and the alerts service has work) and ticket events."""
    out: list[dict[str, Any]] = []
    if part == 0:
        out += [
            {"kind": "account", "event_id": f"f{a}", **facts(f"acct{a}", seats=20)}
            for a in range(ACCOUNTS)
        ]
    for _ in range(n):
        a = rng.randrange(ACCOUNTS)
        users = 2 if a % 3 == 0 else 15
        out.append(
            usage(
                f"acct{a}",
                f"u{rng.randrange(users)}",
                days_ago=rng.uniform(0, 10),
                event_id=uuid.UUID(int=rng.getrandbits(128)).hex,
            )
        )
    return out


async def readiness(settings: Settings) -> dict[int, int]:
    """/readyz status of each service's port."""
    ports = (settings.ingest_port, settings.scoring_port, settings.alerts_port)
    out = {}
    async with httpx.AsyncClient(timeout=10) as client:
        for port in ports:
            try:
                out[port] = (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code
            except httpx.TransportError:
                out[port] = 0  # not listening: the service exited
    return out


async def all_ready(settings: Settings, *, want: bool) -> bool:
    states = (await readiness(settings)).values()
    assert 0 not in states, "a service stopped listening"
    return all((s == 200) is want for s in states)


async def ready_without_database(settings: Settings, *, ingest: int = 200) -> bool:
    """While the database is down: scoring and alerts not ready; ingest answering
    ``ingest``: ready (200) when it holds a key verified within the hour, which it
    accepts from, so it must stay in service; not (503) when it holds none, and would
    refuse every request (a process started during the outage)."""
    states = await readiness(settings)
    assert 0 not in states.values(), "a service stopped listening"
    consumers = (states[settings.scoring_port], states[settings.alerts_port])
    return states[settings.ingest_port] == ingest and consumers == (503, 503)


@asynccontextmanager
async def second_member(settings: Settings) -> AsyncIterator[runtime.Runtime]:
    """Another scoring process of the same group."""
    async with runtime.open_runtime(settings) as rt:
        stop = asyncio.Event()
        task = asyncio.create_task(runtime.run_scoring(rt, stop))
        try:
            yield rt
            assert not task.done(), "the second scoring member exited"
        finally:
            stop.set()
            await task


async def settle_and_compare(
    hw: Harness, settings: Settings, stream: list[dict[str, Any]], postgres_url: str
) -> None:
    """Everything scored and every alert taken in; the state equals an uninterrupted run."""
    distinct = len({e["event_id"] for e in stream})
    await wait_for(
        lambda: processed_all(hw.rt.engine, distinct),
        timeout=RECOVERY_TIMEOUT_S,
        what="every event scored",
        interval=0.5,
    )
    # Published once out of scoring's outbox: after the broker's restart its relay may
    # still be waiting to publish, and the alerts topic then looks caught up, empty.
    await wait_for(
        lambda: relayed(hw.rt.engine), timeout=RECOVERY_TIMEOUT_S, what="the outbox relayed"
    )
    await caught_up(
        hw,
        settings.consumer_group_alerts,
        [settings.topic(ALERTS_TOPIC)],
        timeout=RECOVERY_TIMEOUT_S,
    )
    async with hw.rt.engine.connect() as conn:
        stored = (await conn.execute(select(func.count()).select_from(alerts))).scalar_one()
    assert stored > 0, "no alert fired: the alerts service was not exercised"
    got = await state_snapshot(hw.rt.engine)
    expected = await reference_state(settings, postgres_url, distinct)
    assert_same_state(got, expected, "after the outage")


async def own_database(cluster: PostgresCluster) -> str:
    name = f"hw_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(cluster.url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return cluster.dsn(name)


async def test_a_postgres_restart_mid_stream_is_ridden_out(
    kafka_settings: Settings, own_cluster: PostgresCluster
) -> None:
    settings = kafka_settings.model_copy(update={"database_url": await own_database(own_cluster)})
    rng = random.Random(11)
    parts = [stream_part(rng, p) for p in range(3)]
    async with running_apart(settings) as (hw, ports), second_member(settings) as member:
        await produce(settings, parts[0])
        async with hw.client() as c:  # the key verified: ingest goes on with it
            assert (await c.post("/v1/events", json={"events": []})).status_code < 500
        await asyncio.to_thread(own_cluster.stop)
        await produce(settings, parts[1])  # the broker takes them; scoring cannot
        await wait_for(
            lambda: ready_without_database(ports),
            timeout=30,
            what="ingest ready, scoring and alerts not",
        )
        assert await member.why_not_ready()
        await asyncio.sleep(OUTAGE_S)
        await asyncio.to_thread(own_cluster.start)
        await produce(settings, parts[2])
        await wait_for(
            lambda: all_ready(ports, want=True),
            timeout=RECOVERY_TIMEOUT_S,
            what="every service ready again",
        )
        await settle_and_compare(hw, settings, [e for p in parts for e in p], own_cluster.url)
        assert await member.why_not_ready() is None


async def test_a_kafka_restart_mid_stream_is_ridden_out(
    kafka_settings: Settings, own_broker: KafkaBroker, postgres_url: str
) -> None:
    settings = kafka_settings.model_copy(update={"kafka_bootstrap": own_broker.bootstrap})
    rng = random.Random(12)
    parts = [stream_part(rng, p) for p in range(3)]
    async with running_apart(settings) as (hw, ports), second_member(settings) as member:
        await produce(settings, parts[0])
        await asyncio.to_thread(own_broker.stop)
        await wait_for(
            lambda: all_ready(ports, want=False), timeout=30, what="every service not ready"
        )
        assert await member.why_not_ready()
        await asyncio.sleep(OUTAGE_S)
        await asyncio.to_thread(own_broker.start)
        await produce(settings, parts[1])
        await produce(settings, parts[2])
        await wait_for(
            lambda: all_ready(ports, want=True),
            timeout=RECOVERY_TIMEOUT_S,
            what="every service ready again",
        )
        await settle_and_compare(hw, settings, [e for p in parts for e in p], postgres_url)
        assert await member.why_not_ready() is None


async def test_services_start_without_a_broker_and_serve_once_it_is_there(
    kafka_settings: Settings, own_broker: KafkaBroker
) -> None:
    settings = kafka_settings.model_copy(
        update={"kafka_bootstrap": own_broker.bootstrap, "produce_timeout_s": 3.0}
    )
    await asyncio.to_thread(own_broker.stop)
    engine = create_engine(settings.database_url)
    await migrate(engine)
    await engine.dispose()
    event = usage("late-broker", "u1")
    async with running(settings) as hw, hw.client() as client:
        assert (await client.get("/readyz")).status_code == 503
        r = await client.post("/v1/events", json={"events": [event]})
        assert r.status_code == 503, r.text
        await asyncio.to_thread(own_broker.start)

        async def accepted() -> bool:
            r = await client.post("/v1/events", json={"events": [event]})
            return r.status_code == 202

        await wait_for(accepted, timeout=RECOVERY_TIMEOUT_S, what="ingest to accept", interval=1)
        await wait_for(
            lambda: processed_all(hw.rt.engine, 1), timeout=RECOVERY_TIMEOUT_S, what="scored"
        )
        assert (await client.get("/readyz")).status_code == 200
        topics = await _partitions(settings)
    # Created by healthwatch, with its partition count, not auto-created with one.
    assert topics == {t: settings.kafka_partitions for t in all_topics(settings)}


async def _partitions(settings: Settings) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(settings.topic_prefix)]
        return {d["topic"]: len(d["partitions"]) for d in await admin.describe_topics(names)}
    finally:
        await admin.close()


async def test_services_start_without_the_database_and_serve_once_it_is_there(
    kafka_settings: Settings, own_cluster: PostgresCluster
) -> None:
    settings = kafka_settings.model_copy(
        update={
            "database_url": await own_database(own_cluster),
            "ingest_port": free_port(),
            "scoring_port": free_port(),
            "alerts_port": free_port(),
        }
    )
    engine = create_engine(settings.database_url)
    await migrate(engine)
    await engine.dispose()
    await asyncio.to_thread(own_cluster.stop)
    stop = asyncio.Event()
    async with (
        runtime.open_runtime(settings) as ingest_rt,
        runtime.open_runtime(settings) as scoring_rt,
        runtime.open_runtime(settings) as alerts_rt,
    ):
        tasks = [
            asyncio.create_task(runtime.run_ingest(ingest_rt, stop)),
            asyncio.create_task(runtime.run_scoring_service(scoring_rt, stop)),
            asyncio.create_task(runtime.run_alerts_service(alerts_rt, stop)),
        ]
        try:
            await produce(settings, stream_part(random.Random(13), 0, n=200))
            await wait_for(
                lambda: ready_without_database(settings, ingest=503),
                timeout=30,
                what="up; none ready (ingest has no key verified to go on with)",
            )
            await asyncio.sleep(OUTAGE_S)
            assert not any(t.done() for t in tasks), "a service exited"
            await asyncio.to_thread(own_cluster.start)
            await wait_for(
                lambda: all_ready(settings, want=True),
                timeout=RECOVERY_TIMEOUT_S,
                what="every service ready",
            )
            await wait_for(
                lambda: processed_all(scoring_rt.engine, ACCOUNTS + 200),
                timeout=RECOVERY_TIMEOUT_S,
                what="every event scored",
            )
        finally:
            stop.set()
            await asyncio.gather(*tasks)


async def test_the_embedded_consumer_waits_for_its_offsets(embedded_settings: Settings) -> None:
    """The embedded bus's consumer cannot read its offsets at first (the database is
    locked): it starts once it can, and reads every record once, in order."""
    engine = create_engine(embedded_settings.database_url)
    await migrate(engine)
    bus = EmbeddedBus(engine)
    await bus.send_many([OutMessage("t", None, f"v{i}".encode()) for i in range(6)])
    failures = [3]  # loads that fail before the database answers
    applied: list[bytes] = []
    stored: dict[Partition, int] = {}

    async def load(tps: Sequence[Partition]) -> Mapping[Partition, int]:
        if failures[0]:
            failures[0] -= 1
            raise sa.OperationalError("SELECT", {}, Exception("database is locked"))
        return dict(stored)

    async def handle(records: Sequence[Record]) -> None:
        applied.extend(r.value or b"" for r in records)
        stored.update(next_offsets(records))

    async def all_applied() -> bool:
        return len(applied) == 6

    stop = asyncio.Event()
    task = asyncio.create_task(
        consume(bus.consumer(["t"], load), handle, stop, name="t", max_records=4)
    )
    await wait_for(all_applied, timeout=60, what="every record applied")
    stop.set()
    await task
    assert applied == [f"v{i}".encode() for i in range(6)]
    await engine.dispose()
