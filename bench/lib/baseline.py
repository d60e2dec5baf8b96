"""The baseline a consumer bench compares against: a bare aiokafka consumer that
reads the same topics with the scoring consumer's settings and does nothing else."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer
from rich.progress import Progress

from lib.measure import PhaseMeter, rate


async def bare_consume(
    bootstrap: str,
    topics: Sequence[str],
    total: int,
    max_records: int,
    meter: PhaseMeter,
    progress: Progress,
    label: str,
    timeout_s: float,
) -> dict[str, Any]:
    """Read every record of ``topics`` with a fresh group; count them, nothing else."""
    task = progress.add_task(label, total=total)
    meter.start()
    started = time.perf_counter()
    # The scoring consumer's settings (shared.bus.kafka.KafkaConsumer), its own group.
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=f"bench-bare-{uuid.uuid4().hex[:8]}",
        client_id="healthwatch-bench",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    count = 0
    first: float | None = None
    done: float | None = None
    await consumer.start()
    try:
        while count < total:
            batches = await consumer.getmany(timeout_ms=1000, max_records=max_records)
            got = sum(len(messages) for messages in batches.values())
            if got and first is None:
                first = time.perf_counter()
            count += got
            progress.update(task, completed=count)
            if time.perf_counter() - started > timeout_s:
                break
        done = time.perf_counter()
    finally:
        cores = meter.cores()
        await consumer.stop()
    seconds = done - started
    return {
        "records": count,
        "complete": count >= total,
        "seconds": round(seconds, 3),
        "events_per_s": rate(count, seconds),
        "seconds_to_first_record": round(first - started, 3) if first else None,
        "events_per_s_from_first_record": rate(count, done - first if first else None),
        "cpu_cores": cores,
    }
