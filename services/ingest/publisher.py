"""Hands validated events to the bus: a topic per kind, keyed by account id."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime

from services.ingest.metrics import IngestMetrics
from shared.bus.base import OutMessage, Producer
from shared.config import Settings
from shared.contracts.events import Event
from shared.contracts.wire import encode_event


class EventPublisher:
    def __init__(self, producer: Producer, settings: Settings, metrics: IngestMetrics):
        self._producer = producer
        self._settings = settings
        self._metrics = metrics

    def encode(self, events: Sequence[Event], received_at: datetime) -> list[OutMessage]:
        """One bus message per event, stamped with the time ingest received it."""
        return [
            OutMessage(
                topic=self._settings.topic(e.kind),
                key=e.account_id.encode(),
                value=encode_event(e.model_copy(update={"received_at": received_at})),
            )
            for e in events
        ]

    async def publish(self, messages: Sequence[OutMessage]) -> None:
        """Return once the bus durably stored every message; raises BusUnavailable
        (MessageTooLarge when the bus refuses one for its size)."""
        started = time.perf_counter()
        await self._producer.send_many(messages)
        self._metrics.produce_seconds.observe(time.perf_counter() - started)
