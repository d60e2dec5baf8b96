"""SIGKILL a real scoring process mid-stream: after a restart the state equals that of
an uninterrupted run — nothing lost, nothing counted twice."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import uuid
from typing import Any

import pytest
from localservices import free_port
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.runtime import open_runtime, run_scoring
from shared.bus.base import OutMessage
from shared.bus.factory import all_topics
from shared.bus.kafka import KafkaProducer, ensure_topics
from shared.config import Settings
from shared.contracts.events import EVENT_ADAPTER
from shared.contracts.wire import encode_event
from shared.storage.db import create_engine, migrate
from shared.storage.tables import (
    processed_events,
)
from tests.support.harness import facts, state_snapshot, usage, wait_for

pytestmark = pytest.mark.integration

ACCOUNTS = 40
USAGE_EVENTS = 12_000


def make_stream(rng: random.Random) -> list[dict[str, Any]]:
    stream: list[dict[str, Any]] = []
    for a in range(ACCOUNTS):
        stream.append(
            {
                "kind": "account",
                "event_id": f"f{a}",
                **facts(f"acct{a}", seats=rng.choice([5, 20, 50])),
            }
        )
    for _ in range(USAGE_EVENTS):
        a = rng.randrange(ACCOUNTS)
        stream.append(
            usage(
                f"acct{a}",
                f"u{rng.randrange(30)}",
                days_ago=rng.uniform(0, 12),
                event_id=uuid.UUID(int=rng.getrandbits(128)).hex,
            )
        )
    for t in range(200):
        a = rng.randrange(ACCOUNTS)
        stream.append(
            {
                "kind": "ticket",
                "event_id": f"t{t}",
                "account_id": f"acct{a}",
                "ticket_id": f"T{t % 80}",
                "status": rng.choice(["open", "pending", "solved"]),
                "created_at": "2026-11-01T00:00:00+00:00",
                "occurred_at": f"2026-11-{1 + t % 20:02d}T10:00:00+00:00",
            }
        )
    # Replays: 5% of the stream again, as a retrying client would send it.
    stream += rng.sample(stream, len(stream) // 20)
    return stream


async def produce(settings: Settings, stream: list[dict[str, Any]]) -> None:
    producer = KafkaProducer(settings.kafka_bootstrap, ack_timeout_s=30)
    await producer.start()
    try:
        messages = []
        for raw in stream:
            event = EVENT_ADAPTER.validate_python(raw)
            messages.append(
                OutMessage(
                    settings.topic(event.kind), event.account_id.encode(), encode_event(event)
                )
            )
        for i in range(0, len(messages), 2000):
            await producer.send_many(messages[i : i + 2000])
    finally:
        await producer.stop()


async def count_processed(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(
            (await conn.execute(select(func.count()).select_from(processed_events))).scalar_one()
        )


def start_scoring(settings: Settings) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "HEALTHWATCH_DATABASE_URL": settings.database_url,
        "HEALTHWATCH_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "HEALTHWATCH_TOPIC_PREFIX": settings.topic_prefix,
        "HEALTHWATCH_KAFKA_PARTITIONS": str(settings.kafka_partitions),
        "HEALTHWATCH_CONSUMER_GROUP_SCORING": settings.consumer_group_scoring,
        "HEALTHWATCH_SCORING_PORT": str(free_port()),
        # Small batches: many commits, so the kill lands between two of them.
        "HEALTHWATCH_SCORING_BATCH_MAX": "100",
        "HEALTHWATCH_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen([sys.executable, "-m", "services.cli", "scoring"], env=env)


async def test_sigkill_mid_stream_then_restart_equals_uninterrupted_run(
    kafka_settings: Settings, postgres_url: str, database_url: str
) -> None:
    crashed = kafka_settings
    stream = make_stream(random.Random(42))
    distinct = len({e["event_id"] for e in stream})
    await ensure_topics(crashed.kafka_bootstrap, all_topics(crashed), partitions=3, replication=1)
    await produce(crashed, stream)

    engine = create_engine(crashed.database_url)
    await migrate(engine)
    try:
        proc = start_scoring(crashed)
        try:
            await wait_for(
                lambda: _between(engine, distinct // 5, distinct),
                timeout=120,
                what="scoring to be mid-stream",
                interval=0.05,
            )
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            killed_at = await count_processed(engine)
            assert 0 < killed_at < distinct, "the kill must land mid-stream"
            proc = start_scoring(crashed)
            await wait_for(
                lambda: _equals(engine, distinct),
                timeout=180,
                what="the restarted run to finish",
                interval=0.2,
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        after_crash = await state_snapshot(engine)
    finally:
        await engine.dispose()

    # The reference: the same topics, read uninterrupted by another group into another database.
    reference_url = database_url.rsplit("/", 1)[0] + "/" + f"ref_{uuid.uuid4().hex[:8]}"
    import asyncpg

    admin = await asyncpg.connect(postgres_url.replace("postgresql+asyncpg://", "postgresql://"))
    await admin.execute(f'CREATE DATABASE "{reference_url.rsplit("/", 1)[1]}"')
    await admin.close()
    reference = crashed.model_copy(
        update={
            "database_url": reference_url,
            "consumer_group_scoring": crashed.consumer_group_scoring + "-ref",
        }
    )
    ref_engine = create_engine(reference_url)
    await migrate(ref_engine)
    await ref_engine.dispose()
    async with open_runtime(reference) as rt:
        stop = asyncio.Event()
        task = asyncio.create_task(run_scoring(rt, stop))
        await wait_for(
            lambda: _equals(rt.engine, distinct),
            timeout=180,
            what="the reference run",
            interval=0.2,
        )
        stop.set()
        await task
        uninterrupted = await state_snapshot(rt.engine)

    assert len(after_crash["processed_events"]) == distinct
    for table in uninterrupted:
        assert after_crash[table] == uninterrupted[table], f"{table} differs after the crash"


async def _between(engine: AsyncEngine, low: int, high: int) -> bool:
    return low <= await count_processed(engine) < high


async def _equals(engine: AsyncEngine, n: int) -> bool:
    return await count_processed(engine) == n
