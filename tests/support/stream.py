"""A mixed event stream on real Kafka, and the state an uninterrupted single consumer
makes of it: the reference the crash and scaling tests compare against."""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from services.runtime import open_runtime, run_scoring
from shared.bus.base import OutMessage
from shared.bus.kafka import KafkaProducer
from shared.config import Settings
from shared.contracts.events import EVENT_ADAPTER
from shared.contracts.wire import encode_event
from shared.storage.db import create_engine, migrate
from tests.support.harness import Snapshot, facts, state_snapshot, usage, wait_for
from tests.support.usage import count_processed

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


async def processed_all(engine: AsyncEngine, n: int) -> bool:
    return await count_processed(engine) == n


async def reference_state(settings: Settings, postgres_url: str, distinct: int) -> Snapshot:
    """The same topics read uninterrupted by one consumer of another group, into another
    database: the state every other way of consuming them must end with."""
    name = f"ref_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(postgres_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    reference = settings.model_copy(
        update={
            "database_url": settings.database_url.rsplit("/", 1)[0] + "/" + name,
            "consumer_group_scoring": settings.consumer_group_scoring + "-ref",
        }
    )
    engine = create_engine(reference.database_url)
    await migrate(engine)
    await engine.dispose()
    async with open_runtime(reference) as rt:
        stop = asyncio.Event()
        task = asyncio.create_task(run_scoring(rt, stop))
        await wait_for(
            lambda: processed_all(rt.engine, distinct),
            timeout=180,
            what="the reference run",
            interval=0.2,
        )
        stop.set()
        await task
        return await state_snapshot(rt.engine)
