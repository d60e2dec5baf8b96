"""Kafka goes away mid-ingest: 503 with Retry-After, and every 2xx'd event is scored."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from devservices import KafkaBroker
from shared.config import Settings
from tests.support.harness import running, usage, wait_for
from tests.support.usage import seen_ids

pytestmark = pytest.mark.integration


async def test_outage_answers_503_and_loses_nothing(
    kafka_settings: Settings, own_broker: KafkaBroker
) -> None:
    settings = kafka_settings.model_copy(
        update={"kafka_bootstrap": own_broker.bootstrap, "produce_timeout_s": 3.0}
    )
    acknowledged: set[str] = set()
    statuses: list[int] = []

    async def send(client: httpx.AsyncClient, n: int = 5) -> httpx.Response:
        events = [usage("outage", f"u{i}", event_id=uuid.uuid4().hex) for i in range(n)]
        r = await client.post("/v1/events", json={"events": events})
        statuses.append(r.status_code)
        if r.status_code == 202:
            acknowledged.update(e["event_id"] for e in events)
        return r

    async with running(settings, alerts=False) as hw, hw.client() as client:
        for _ in range(3):
            assert (await send(client)).status_code == 202

        await asyncio.to_thread(own_broker.stop)
        during = [await send(client) for _ in range(3)]
        for r in during:
            assert r.status_code == 503
            assert r.headers["Retry-After"] == str(settings.retry_after_s)
            assert r.json()["error"] == "unavailable"

        await asyncio.to_thread(own_broker.start)

        async def accepted_again() -> bool:
            return (await send(client)).status_code == 202

        await wait_for(accepted_again, timeout=60, what="ingest to accept again", interval=0.5)
        for _ in range(3):
            assert (await send(client)).status_code == 202

        async def all_scored() -> bool:
            return await seen_ids(hw.rt.engine, acknowledged) == acknowledged

        await wait_for(
            all_scored, timeout=90, what="every acknowledged event to be scored", interval=0.5
        )
    assert statuses.count(503) >= 3
    assert len(acknowledged) >= 7 * 5
