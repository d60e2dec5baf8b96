"""``KafkaProducer``'s life: a stop while a producer is being started stops it too."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest

import shared.bus.kafka as kafka_module
from shared.bus.kafka import KafkaProducer


class _SlowProducer:
    """Stands in for aiokafka's producer: ``start`` waits until released."""

    made: ClassVar[list[_SlowProducer]] = []

    def __init__(self, **config: Any) -> None:
        self.release = asyncio.Event()
        self.running = False
        _SlowProducer.made.append(self)

    async def start(self) -> None:
        await self.release.wait()
        self.running = True

    async def stop(self) -> None:
        self.running = False


async def test_a_stop_during_a_start_leaves_no_producer_running(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kafka_module, "AIOKafkaProducer", _SlowProducer)
    _SlowProducer.made.clear()
    bus = KafkaProducer("127.0.0.1:9", ack_timeout_s=5)
    starting = asyncio.create_task(bus.start())
    await asyncio.sleep(0)  # the start is under way, waiting for the broker
    stopping = asyncio.create_task(bus.stop())
    await asyncio.sleep(0)
    (made,) = _SlowProducer.made
    made.release.set()
    await asyncio.gather(starting, stopping)
    assert not made.running
