"""Pick the bus for the settings: Kafka in production, the database log when embedded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncEngine

from shared.bus.base import BusUnavailable, Consumer, OffsetLoader, Producer
from shared.bus.embedded import EmbeddedBus
from shared.bus.kafka import KafkaConsumer, KafkaProducer, ensure_topics
from shared.config import Settings
from shared.contracts.events import KINDS

ALERTS_TOPIC = "alerts"
DEADLETTER_TOPIC = "deadletter"
# After a failed attempt to reach the broker, callers within this many seconds are
# told it is unavailable at once: a burst of requests to a broker that drops packets
# would otherwise queue behind one another's connection timeouts before each 503.
PREPARE_RETRY_S = 2.0


def event_topics(settings: Settings) -> list[str]:
    return [settings.topic(kind) for kind in KINDS]


def all_topics(settings: Settings) -> list[str]:
    return [*event_topics(settings), settings.topic(ALERTS_TOPIC), settings.topic(DEADLETTER_TOPIC)]


class Bus:
    """The bus of the settings: its producer, and consumers on demand. In Kafka mode
    the topics are created before the first produce or consume (whenever the broker is
    first reachable), so a service starts, and reports not ready, without a broker."""

    def __init__(self, settings: Settings, embedded: EmbeddedBus | None):
        self.settings = settings
        self.embedded = embedded
        self._prepared = embedded is not None
        self._failed_at = -PREPARE_RETRY_S  # when creating the topics last failed
        self._lock = asyncio.Lock()
        self.kafka = (
            None
            if embedded is not None
            else KafkaProducer(
                settings.kafka_bootstrap,
                ack_timeout_s=settings.produce_timeout_s,
                prepare=self.prepare,
            )
        )
        self.producer: Producer = embedded or self.kafka  # type: ignore[assignment]

    def consumer(
        self, topics: Sequence[str], *, group_id: str, load_offsets: OffsetLoader
    ) -> Consumer:
        if self.embedded is not None:
            return self.embedded.consumer(topics, load_offsets)
        return KafkaConsumer(
            self.settings.kafka_bootstrap,
            topics,
            group_id=group_id,
            load_offsets=load_offsets,
            prepare=self.prepare,
        )

    async def prepare(self) -> None:
        """Create the Kafka topics once (a no-op when embedded); raises BusUnavailable
        while the broker is unreachable (callers retry)."""
        async with self._lock:
            if self._prepared:
                return
            since = time.monotonic() - self._failed_at
            if since < PREPARE_RETRY_S:
                raise BusUnavailable(f"Kafka was unreachable {since:.1f} s ago")
            try:
                await ensure_topics(
                    self.settings.kafka_bootstrap,
                    all_topics(self.settings),
                    partitions=self.settings.kafka_partitions,
                    replication=self.settings.kafka_replication,
                )
            except BusUnavailable:
                self._failed_at = time.monotonic()
                raise
            self._prepared = True

    async def reachable(self) -> bool:
        """Whether producing can succeed now: the broker answers and the topics exist
        (embedded: the bus is the database, which readiness checks anyway)."""
        if self.kafka is None:
            return True
        return await self.kafka.reachable()


def create_bus(settings: Settings, engine: AsyncEngine) -> Bus:
    embedded = EmbeddedBus(engine, write_timeout_s=settings.produce_timeout_s)
    return Bus(settings, embedded if settings.embedded else None)
