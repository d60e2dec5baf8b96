"""What the alert latency bench reads from the running services: readiness, metrics, scoring
progress, and when each trigger passed each stage.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from lib.measure import cores_between, cpu_seconds, system_busy_seconds, tree_cpu_seconds
from lib.processes import tail
from lib.services import plain_dsn


async def wait_ready(
    url: str, path: str, procs: dict[str, subprocess.Popen[bytes]], logs: dict[str, Path]
) -> None:
    deadline = time.monotonic() + 90
    async with httpx.AsyncClient(base_url=url, timeout=2) as client:
        while True:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail(logs[name])}")
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(path)).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url}{path} not ready after 90 s")
            await asyncio.sleep(0.2)


async def scrape(clients: Sequence[httpx.AsyncClient], names: Sequence[str]) -> dict[str, float]:
    """Sum of every sample of each metric name (all label values) on ``/metrics`` of
    each of ``clients`` (the processes of one service)."""
    texts = [(await client.get("/metrics")).raise_for_status().text for client in clients]
    sums = dict.fromkeys(names, 0.0)
    for line in "\n".join(texts).splitlines():
        if line.startswith("#"):
            continue
        metric, _, value = line.rpartition(" ")
        base = metric.split("{", 1)[0]
        if base in sums:
            with contextlib.suppress(ValueError):
                sums[base] += float(value)
    return sums


class Meter:
    """CPU seconds so far of each of our processes, PostgreSQL (all its processes), the
    broker, this process (load generator and trigger thread), and the whole machine."""

    def __init__(self, pids: dict[str, int | None], postgres_pid: int | None) -> None:
        self.pids = pids
        self.postgres_pid = postgres_pid

    def now(self) -> dict[str, float | None]:
        values: dict[str, float | None] = {"bench": time.process_time()}
        for name, pid in self.pids.items():
            values[name] = cpu_seconds(pid)
        values["postgres"] = tree_cpu_seconds(self.postgres_pid)
        values["machine"] = system_busy_seconds()
        return values

    cores = staticmethod(cores_between)


async def post_json(client: httpx.AsyncClient, path: str, body: Any) -> int:
    response = await client.post(path, content=orjson.dumps(body))
    if response.status_code != 202:
        raise RuntimeError(f"POST {path} answered {response.status_code}: {response.text[:500]}")
    return int(response.json()["accepted"])


async def scored_total(clients: Sequence[httpx.AsyncClient]) -> float:
    return (await scrape(clients, ["healthwatch_scoring_events_total"]))[
        "healthwatch_scoring_events_total"
    ]


async def wait_scored(
    clients: Sequence[httpx.AsyncClient], total: int, limit_s: float, what: str
) -> float:
    started = time.monotonic()
    while (seen := await scored_total(clients)) < total:
        if time.monotonic() - started > limit_s:
            raise TimeoutError(f"{what}: scored {seen:.0f} of {total} after {limit_s:.0f} s")
        await asyncio.sleep(0.2)
    return time.monotonic() - started


async def stage_times(url: str, accounts: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per trigger account: when the alerts service stored the alert and when it marked
    the Slack delivery delivered (its own clock). Best effort: the columns are the
    schema's as of writing."""
    conn = await asyncpg.connect(plain_dsn(url))
    try:
        rows = await conn.fetch(
            "SELECT a.account_id, a.stored_at, d.delivered_at FROM alerts a "
            "LEFT JOIN deliveries d ON d.alert_id = a.alert_id AND d.channel = 'slack' "
            "WHERE a.account_id = ANY($1::text[])",
            list(accounts),
        )
    finally:
        await conn.close()
    found: dict[str, dict[str, float]] = {}
    for r in rows:
        item = {"stored": r["stored_at"].timestamp()}
        if r["delivered_at"] is not None:
            item["delivered"] = r["delivered_at"].timestamp()
        found[r["account_id"]] = item
    return found


async def published_times(
    bootstrap: str, topic: str, partitions: int, accounts: set[str]
) -> dict[str, float]:
    """Per trigger account: the Kafka timestamp (CreateTime, set by the scoring
    service's producer when it sent the record) of its first record on the alerts topic."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    found: dict[str, float] = {}
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends: dict[Any, int] = await consumer.end_offsets(tps)
        deadline = time.monotonic() + 30

        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in tps])

        while time.monotonic() < deadline and await behind():
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batches.values():
                for record in records:
                    account = (record.key or b"").decode(errors="replace")
                    if account in accounts:
                        moment = record.timestamp / 1000
                        found[account] = min(found.get(account, moment), moment)
    finally:
        await consumer.stop()
    return found
