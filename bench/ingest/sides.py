"""The three sides the ingest bench compares: the HTTP service, a bare batched producer and a bare
streaming producer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from rich.progress import Progress

from ingest.meter import CpuMeter, Phase
from ingest.options import Options
from ingest.server import produce_seconds
from ingest.workload import Workload
from shared.config import Settings

SIDES = ("http", "bare", "bare_stream")


def new_producer(bootstrap: str, settings: Settings) -> AIOKafkaProducer:
    """Configured like ``shared.bus.kafka.KafkaProducer`` (the ingest server's producer)."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id="healthwatch-bench",
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        request_timeout_ms=int(settings.produce_timeout_s * 1000),
    )


async def http_side(
    clients: Sequence[httpx.AsyncClient],
    work: Workload,
    progress: Progress,
    label: str,
) -> Phase:
    task = progress.add_task(label, total=work.events)
    jobs: Iterator[tuple[bytes, int]] = iter(zip(work.bodies, work.batch_sizes, strict=True))
    latencies: list[float] = []
    accepted = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal accepted
        for body, size in jobs:  # shared iterator: each batch goes to exactly one client
            sent = time.perf_counter()
            response = await client.post(
                "/v1/events", content=body, headers={"Content-Type": "application/json"}
            )
            latencies.append((time.perf_counter() - sent) * 1000)
            if response.status_code != 202:
                raise RuntimeError(
                    f"POST /v1/events answered {response.status_code}: {response.text[:500]}"
                )
            got = int(response.json()["accepted"])
            if got != size:
                raise RuntimeError(f"server accepted {got} of {size} events")
            accepted += got
            progress.advance(task, size)

    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for client in clients:
            group.create_task(worker(client))
    seconds = time.perf_counter() - started
    return Phase("http", accepted, seconds, latencies)


async def bare_stream_side(
    producer: AIOKafkaProducer,
    topic: str,
    work: Workload,
    concurrency: int,
    progress: Progress,
    label: str,
) -> Phase:
    """Send everything without waiting for acks in between; wait for all at the end.

    ``concurrency`` coroutines share the message list: aiokafka's ``send()`` blocks
    while the batch of the message's partition is full, so a single sender would
    stall on one partition while the others have room."""
    task = progress.add_task(label, total=work.events)
    messages = iter(work.messages)
    futures: list[asyncio.Future[Any]] = []

    async def sender() -> None:
        for count, (key, value) in enumerate(messages, 1):
            futures.append(await producer.send(topic, value, key=key))
            if count % 100 == 0:
                progress.advance(task, 100)

    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(sender())
    await asyncio.gather(*futures)
    seconds = time.perf_counter() - started
    progress.update(task, completed=work.events)
    return Phase("bare_stream", len(futures), seconds)


async def bare_batched_side(
    producer: AIOKafkaProducer,
    topic: str,
    work: Workload,
    concurrency: int,
    progress: Progress,
    label: str,
) -> Phase:
    task = progress.add_task(label, total=work.events)
    batches = iter(work.message_batches())
    latencies: list[float] = []

    async def worker() -> None:
        for batch in batches:
            sent = time.perf_counter()
            # What shared.bus.kafka.KafkaProducer.send_many does for one request.
            futures = [await producer.send(topic, value, key=key) for key, value in batch]
            await asyncio.gather(*futures)
            latencies.append((time.perf_counter() - sent) * 1000)
            progress.advance(task, len(batch))

    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())
    seconds = time.perf_counter() - started
    return Phase("bare", work.events, seconds, latencies)


@dataclass
class Sides:
    """The two paths of a round and what measures them."""

    opts: Options
    clients: list[httpx.AsyncClient]  # one keep-alive connection each, with the ingest key
    ops: httpx.AsyncClient  # the server's /metrics, with the metrics key
    producer: AIOKafkaProducer  # the bare side's, in this process
    bare_topic: str
    progress: Progress
    meter_pids: dict[str, int | None]  # the server's and the broker's

    async def run(self, side: str, work: Workload, label: str) -> Phase:
        if side == "http":
            return await http_side(self.clients, work, self.progress, label)
        concurrency = self.opts.concurrency
        if side == "bare_stream":
            return await bare_stream_side(
                self.producer, self.bare_topic, work, concurrency, self.progress, label
            )
        return await bare_batched_side(
            self.producer, self.bare_topic, work, concurrency, self.progress, label
        )

    async def measure(self, side: str, work: Workload, tag: str) -> Phase:
        """One side of a round with its CPU use and, for http, the server's mean wait
        for Kafka's acks (from its /metrics)."""
        meter = CpuMeter(self.meter_pids)
        before = await produce_seconds(self.ops) if side == "http" else None
        meter.start()
        label = {"http": "http", "bare_stream": "bare (stream)"}.get(side, "bare")
        phase = await self.run(side, work, f"{tag} {label}")
        phase.cpu_cores = meter.cores(phase.seconds)
        if before is not None:
            after = await produce_seconds(self.ops)
            count = after[1] - before[1]
            if count:
                phase.extra["server_ack_wait_ms_mean"] = (after[0] - before[0]) / count * 1000
        return phase
