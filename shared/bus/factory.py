"""Pick the bus for the settings: Kafka in production, the database log when embedded."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from shared.bus.base import Consumer, OffsetLoader, Producer
from shared.bus.embedded import EmbeddedBus
from shared.bus.kafka import KafkaConsumer, KafkaProducer, ensure_topics
from shared.config import Settings
from shared.contracts.events import KINDS

ALERTS_TOPIC = "alerts"
DEADLETTER_TOPIC = "deadletter"


def event_topics(settings: Settings) -> list[str]:
    return [settings.topic(kind) for kind in KINDS]


def all_topics(settings: Settings) -> list[str]:
    return [*event_topics(settings), settings.topic(ALERTS_TOPIC), settings.topic(DEADLETTER_TOPIC)]


@dataclass
class Bus:
    settings: Settings
    producer: Producer
    embedded: EmbeddedBus | None

    def consumer(
        self, topics: Sequence[str], *, group_id: str, load_offsets: OffsetLoader
    ) -> Consumer:
        if self.embedded is not None:
            return self.embedded.consumer(topics, load_offsets)
        return KafkaConsumer(
            self.settings.kafka_bootstrap, topics, group_id=group_id, load_offsets=load_offsets
        )

    async def prepare(self) -> None:
        """Create the Kafka topics (a no-op when embedded)."""
        if self.embedded is None:
            await ensure_topics(
                self.settings.kafka_bootstrap,
                all_topics(self.settings),
                partitions=self.settings.kafka_partitions,
                replication=self.settings.kafka_replication,
            )


def create_bus(settings: Settings, engine: AsyncEngine) -> Bus:
    if settings.embedded:
        embedded = EmbeddedBus(engine)
        return Bus(settings, embedded, embedded)
    producer = KafkaProducer(settings.kafka_bootstrap, ack_timeout_s=settings.produce_timeout_s)
    return Bus(settings, producer, None)
