"""Scoring scales by adding consumers to its group: two of them share the partitions,
each account's events of every kind go to one of them, and the state they make together
equals one uninterrupted consumer's."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest
from prometheus_client import CollectorRegistry

from services.runtime import Runtime, open_runtime, run_scoring
from shared.bus.factory import event_topics
from shared.bus.kafka import ensure_topics
from shared.config import Settings
from shared.storage.db import create_engine, migrate
from tests.support.harness import assert_same_state, state_snapshot, wait_for
from tests.support.stream import make_stream, processed_all, produce, reference_state

pytestmark = pytest.mark.integration

# 3 partitions per topic and 2 consumers: not a multiple, so an assignor that deals the
# topics' partitions round robin would split an account's kinds between the two.
PARTITIONS = 3


def owned(registry: CollectorRegistry, group: str) -> set[tuple[str, int]]:
    """The (topic, partition)s this consumer reports lag for: the ones it owns."""
    return {
        (s.labels["topic"], int(s.labels["partition"]))
        for metric in registry.collect()
        if metric.name == "healthwatch_consumer_lag_records"
        for s in metric.samples
        if s.labels.get("group") == group
    }


async def test_two_consumers_split_partitions_by_account_and_match_one(
    kafka_settings: Settings, postgres_url: str
) -> None:
    s = kafka_settings.model_copy(update={"kafka_partitions": PARTITIONS})
    topics = event_topics(s)
    await ensure_topics(s.kafka_bootstrap, topics, partitions=PARTITIONS, replication=1)
    stream = make_stream(random.Random(7))
    distinct = len({e["event_id"] for e in stream})
    engine = create_engine(s.database_url)
    await migrate(engine)
    registries = [CollectorRegistry(), CollectorRegistry()]
    stop = asyncio.Event()
    try:
        async with AsyncExitStack() as stack:
            runtimes: list[Runtime] = [
                await stack.enter_async_context(_runtime(s, r)) for r in registries
            ]
            tasks = [asyncio.create_task(run_scoring(rt, stop)) for rt in runtimes]
            try:
                # Both members joined and split every partition between them.
                await _wait_split(registries, s.consumer_group_scoring, topics)
                await produce(s, stream)
                await wait_for(
                    lambda: processed_all(engine, distinct),
                    timeout=180,
                    what="the two consumers to score the stream",
                    interval=0.2,
                )
                # The gauges follow the assignment within LAG_INTERVAL_S: after any later
                # rebalance, wait until they again split every partition between the two.
                await _wait_split(registries, s.consumer_group_scoring, topics)
                shares = [owned(r, s.consumer_group_scoring) for r in registries]
            finally:
                stop.set()
                await asyncio.gather(*tasks)
        together = await state_snapshot(engine)
    finally:
        await engine.dispose()

    assert all(shares) and not (shares[0] & shares[1])
    for share in shares:  # partition p of every topic has one owner
        numbers = {p for _, p in share}
        assert share == {(t, p) for t in topics for p in numbers}, share
    alone = await reference_state(s, postgres_url, distinct)
    assert sum(row["events_seen"] for row in together["account_usage"]) == distinct
    assert_same_state(together, alone, "differs with two consumers")


def _runtime(settings: Settings, registry: CollectorRegistry) -> AsyncIterator[Runtime]:
    return open_runtime(settings, registry=registry)  # type: ignore[no-any-return]


async def _split(registries: list[CollectorRegistry], group: str, topics: list[str]) -> bool:
    shares = [owned(r, group) for r in registries]
    every = {(t, p) for t in topics for p in range(PARTITIONS)}
    return all(shares) and shares[0] | shares[1] == every and not shares[0] & shares[1]


async def _wait_split(registries: list[CollectorRegistry], group: str, topics: list[str]) -> None:
    try:
        await wait_for(lambda: _split(registries, group, topics), timeout=90, what="a split")
    except AssertionError as exc:
        shares = [sorted(owned(r, group)) for r in registries]
        raise AssertionError(f"the two consumers never split the partitions: {shares}") from exc
