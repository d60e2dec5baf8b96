"""SIGKILL a real scoring process mid-stream: after a restart the state equals that of
an uninterrupted run — nothing lost, nothing counted twice."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from devservices import free_port
from shared.bus.factory import all_topics
from shared.bus.kafka import ensure_topics
from shared.config import Settings
from shared.storage.db import create_engine, migrate
from tests.support.harness import assert_same_state, state_snapshot, wait_for
from tests.support.stream import (
    count_processed,
    make_stream,
    processed_all,
    produce,
    reference_state,
)

pytestmark = pytest.mark.integration


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
    kafka_settings: Settings, postgres_url: str
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
                lambda: processed_all(engine, distinct),
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

    uninterrupted = await reference_state(crashed, postgres_url, distinct)

    assert sum(row["events_seen"] for row in after_crash["account_usage"]) == distinct
    assert_same_state(after_crash, uninterrupted, "differs after the crash")


async def _between(engine: AsyncEngine, low: int, high: int) -> bool:
    return low <= await count_processed(engine) < high
