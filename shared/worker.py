"""The run loop every consumer service uses: read a batch, handle it, repeat; stop cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from prometheus_client import CollectorRegistry, Gauge

from shared.bus.base import Consumer, Record

log = logging.getLogger(__name__)

Handler = Callable[[Sequence[Record]], Awaitable[None]]

# Lag is read from the consumer's positions and the log ends it already knows; once
# every few seconds is plenty for a gauge scraped every 15 s.
LAG_INTERVAL_S = 5.0


class ConsumerMetrics:
    """Per-process consumer metrics; one instance per registry (every loop shares it)."""

    def __init__(self, registry: CollectorRegistry):
        self.lag = Gauge(
            "healthwatch_consumer_lag_records",
            "Records in the bus not yet read by the consumer group, per topic partition",
            ["group", "topic", "partition"],
            registry=registry,
        )


async def pause(event: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less if ``event`` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)


async def consume(
    consumer: Consumer,
    handle: Handler,
    stop: asyncio.Event,
    *,
    name: str,
    max_records: int,
    poll_timeout_s: float = 1.0,
    retry_backoff_s: float = 1.0,
    metrics: ConsumerMetrics | None = None,
    group: str = "",
) -> None:
    """Until ``stop`` is set: hand each batch to ``handle``. A failed batch is read again
    from the stored offsets after a pause, so nothing is skipped. A batch in flight
    when ``stop`` is set completes (its transaction commits) before the loop ends."""
    await consumer.start()
    log.info("%s consumer started", name)
    loop = asyncio.get_running_loop()
    lag_due = 0.0
    reported: set[tuple[str, int]] = set()
    try:
        while not stop.is_set():
            if metrics is not None and loop.time() >= lag_due:
                lag_due = loop.time() + LAG_INTERVAL_S
                reported = await _report_lag(consumer, metrics, group or name, reported)
            generation = consumer.generation
            records = await consumer.getmany(poll_timeout_s, max_records)
            if not records:
                continue
            try:
                async with consumer.handling:
                    if consumer.generation != generation:
                        # Partitions were (re)assigned while we read: the records may
                        # predate the seek. Drop them and read again from the offsets
                        # stored with the state, so nothing is skipped or applied twice.
                        await consumer.rewind()
                        continue
                    await handle(records)
            except Exception:
                log.exception("%s: batch of %d records failed; retrying", name, len(records))
                await consumer.rewind()
                await pause(stop, retry_backoff_s)
    finally:
        await consumer.stop()
        log.info("%s consumer stopped", name)


async def _report_lag(
    consumer: Consumer, metrics: ConsumerMetrics, group: str, reported: set[tuple[str, int]]
) -> set[tuple[str, int]]:
    """Set the lag of the partitions this consumer owns; drop the series of partitions
    it gave away in a rebalance (their new owner reports them). Returns what it set."""
    try:
        lag = await consumer.lag()
    except Exception:  # a metric must never stop the loop
        log.debug("could not read consumer lag", exc_info=True)
        return reported
    for topic, partition in reported - lag.keys():
        metrics.lag.remove(group, topic, str(partition))
    for (topic, partition), records in lag.items():
        metrics.lag.labels(group, topic, str(partition)).set(records)
    return set(lag)
