"""The ingest service under test, in its own process, and the checks on what it wrote to Kafka."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from lib.processes import service_env, spawn, tail

from shared.config import Settings


def ingest_command() -> list[str]:
    script = Path(sys.executable).parent / "healthwatch"
    if script.is_file():
        return [str(script), "ingest"]
    found = shutil.which("healthwatch")
    if found:
        return [found, "ingest"]
    return [sys.executable, "-m", "services.cli", "ingest"]


def spawn_server(settings: Settings, workdir: Path, log: Path) -> subprocess.Popen[bytes]:
    """``healthwatch ingest`` in its own process (and session), logging to ``log``."""
    return spawn(ingest_command(), service_env(settings, {}), workdir, log)


async def wait_until_up(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(base_url=url, timeout=2) as client:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"ingest server exited with {proc.returncode}:\n{tail(log)}")
            with contextlib.suppress(httpx.TransportError):
                if (await client.get("/readyz")).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"ingest server not ready after 60 s:\n{tail(log)}")
            await asyncio.sleep(0.2)


async def produce_seconds(client: httpx.AsyncClient) -> tuple[float, float]:
    """(sum, count) of the server's ``healthwatch_ingest_produce_seconds`` histogram."""
    text = (await client.get("/metrics")).raise_for_status().text
    values: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(r"healthwatch_ingest_produce_seconds_(sum|count) (\S+)", line)
        if match:
            values[match.group(1)] = float(match.group(2))
    return values.get("sum", 0.0), values.get("count", 0.0)


async def end_offsets(bootstrap: str, topic: str, partitions: int) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        offsets: dict[Any, int] = await consumer.end_offsets(tps)
        return sum(offsets.values())
    finally:
        await consumer.stop()


async def compare_payloads(
    bootstrap: str, topic: str, expected: dict[str, bytes], sample: int = 300
) -> dict[str, Any]:
    """Read records the server wrote; compare with the bare bytes of the same event."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        records: list[Any] = []
        deadline = time.monotonic() + 10
        while len(records) < sample and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000, max_records=sample - len(records))
            for messages in batches.values():
                records.extend(messages)
    finally:
        await consumer.stop()
    same = 0
    http_sizes: list[int] = []
    bare_sizes: list[int] = []
    for record in records:
        server = orjson.loads(record.value)
        bare_value = expected.get(server.get("event_id"))
        if bare_value is None:
            continue
        bare = orjson.loads(bare_value)
        http_sizes.append(len(record.value))
        bare_sizes.append(len(bare_value))
        server.pop("received_at", None)
        bare.pop("received_at", None)
        same += server == bare
    compared = len(http_sizes)
    return {
        "records_compared": compared,
        "identical_apart_from_received_at": same,
        "mean_value_bytes_http": round(sum(http_sizes) / compared, 1) if compared else None,
        "mean_value_bytes_bare": round(sum(bare_sizes) / compared, 1) if compared else None,
    }
