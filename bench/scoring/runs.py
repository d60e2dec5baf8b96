"""One scoring run each way the bench measures: in this process from Kafka, as service processes,
and as a file import. The runs in this process collect garbage as the commands they stand
for do (``services.cli``: ``SERVICE_COLLECTIONS`` for the scoring service and its sweep,
``BATCH_COLLECTIONS`` for ``healthwatch import``), not at the interpreter's default.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from lib.console import err
from lib.measure import PhaseMeter, rate
from lib.processes import service_command, service_env, spawn, stop_process, tail
from lib.watch import ScoringWatch, events_seen
from prometheus_client import CollectorRegistry
from rich.progress import Progress

import devservices
from scoring.state import usage_in_state
from scoring.timers import SqlTimer, StepTimer, metric_sum
from services.cli.base import BATCH_COLLECTIONS, SERVICE_COLLECTIONS, collecting
from services.runtime import open_runtime, run_scoring
from services.scoring.backfill import import_files
from services.scoring.metrics import ScoringMetrics
from services.scoring.processor import ScoringProcessor
from services.scoring.sweep import CHUNK as SWEEP_CHUNK
from services.scoring.sweep import QuietAccountSweep
from shared.bus.base import DiscardingProducer, OutMessage
from shared.bus.kafka import KafkaProducer
from shared.config import Settings
from shared.storage.db import create_engine, migrate

STALL_S = 60.0  # give up a scoring phase that made no progress for this long


SEND_CHUNK = 2000  # messages per KafkaProducer.send_many, as tests/integration does


def bench_settings(**values: Any) -> Settings:
    """Settings from the given values only (no ``.env``; ``HEALTHWATCH_*`` variables of
    the environment would still apply to fields not given)."""
    return Settings(_env_file=None, log_level="WARNING", **values)


async def produce(settings: Settings, messages: Sequence[OutMessage], progress: Progress) -> float:
    """Send with the project's producer, as ``tests/integration`` ``produce()`` does."""
    task = progress.add_task("produce to Kafka", total=len(messages))
    producer = KafkaProducer(settings.kafka_bootstrap, ack_timeout_s=30)
    await producer.start()
    started = time.perf_counter()
    try:
        for i in range(0, len(messages), SEND_CHUNK):
            chunk = messages[i : i + SEND_CHUNK]
            await producer.send_many(chunk)
            progress.advance(task, len(chunk))
    finally:
        await producer.stop()
    return time.perf_counter() - started


async def wait_for_leaders(bootstrap: str, topics: Sequence[str], timeout_s: float = 30) -> None:
    """Until every partition of ``topics`` has a leader (fresh topics take a moment; a
    producer would meanwhile log NotLeaderForPartition and retry)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            described = await admin.describe_topics(list(topics))
            if len(described) == len(topics) and all(
                t["error_code"] == 0
                and t["partitions"]
                and all(p["error_code"] == 0 and p["leader"] >= 0 for p in t["partitions"])
                for t in described
            ):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"topics without leaders after {timeout_s} s: {described}")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def records_in_topics(bootstrap: str, topics: Sequence[str], partitions: int) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(partitions)]
        ends: dict[Any, int] = await consumer.end_offsets(tps)
        return sum(ends.values())
    finally:
        await consumer.stop()


async def _wait_until_scored(
    watch: ScoringWatch,
    consumer: asyncio.Task[None],
    started: float,
    label: str,
    timeout_s: float,
) -> float:
    """When ``watch`` saw every record processed, or gave up: timed out, or no progress for
    STALL_S. Raises what stopped the consumer if it stopped first."""
    total = watch.total
    last = (time.perf_counter(), 0)  # (when, count) of the last progress seen
    while True:
        if await watch.poll():
            return watch.now
        now, count = watch.now, watch.count  # for the stall check below
        if consumer.done():
            await consumer  # raises what stopped it
            raise RuntimeError("the scoring consumer stopped before the end")
        if count != last[1]:
            last = (now, count)
        stalled = now - last[0] > STALL_S
        if now - started > timeout_s or stalled:
            why = f"no progress for {STALL_S:.0f} s" if stalled else "timed out"
            err.print(f"[red]{label}: {why} at {count:,} of {total:,}[/]")
            return now


async def scoring_run(
    settings: Settings,
    total: int,
    usage_events: int,
    meter: PhaseMeter,
    progress: Progress,
    label: str,
    timeout_s: float,
) -> dict[str, Any]:
    """``open_runtime`` + ``run_scoring``; timed until the offsets committed with the
    state say ``total`` records were consumed (read every POLL_S from another engine),
    then stopped gracefully."""
    counter = create_engine(settings.database_url)
    watch = ScoringWatch(counter, settings, total, progress, progress.add_task(label, total=total))
    registry = CollectorRegistry()
    done: float | None = None
    meter.start()
    started = time.perf_counter()
    try:
        with collecting(SERVICE_COLLECTIONS):
            async with open_runtime(settings, registry=registry) as rt:
                ready = time.perf_counter()
                steps = StepTimer(rt.bus.producer)
                sql = SqlTimer(rt.engine, steps)
                stop = asyncio.Event()
                consumer = asyncio.create_task(run_scoring(rt, stop))
                try:
                    done = await _wait_until_scored(watch, consumer, started, label, timeout_s)
                    cores = meter.cores()
                finally:
                    stop.set()
                    await consumer
                    sql.detach()
                    steps.detach()
        applied = await usage_in_state(counter)
        seen = await events_seen(counter)
    finally:
        await counter.dispose()
    assert done is not None
    seconds = done - started
    batches = metric_sum(registry, "healthwatch_scoring_batch_seconds_count")
    in_batches = metric_sum(registry, "healthwatch_scoring_batch_seconds_sum")
    handled, first = watch.handled, watch.first
    result: dict[str, Any] = {
        "records_consumed_per_offsets": watch.count,
        "events_seen": seen,
        "complete": handled >= total,
        "seconds": round(seconds, 3),
        "events_per_s": rate(handled, seconds),
        "seconds_to_ready": round(ready - started, 3),
        "seconds_to_first_processed": round(first[0] - started, 3) if first else None,
        "events_per_s_after_first_poll": (
            rate(handled - first[1], done - first[0]) if first and done > first[0] else None
        ),
        "batches": int(batches),
        "records_per_batch_mean": round(handled / batches, 1) if batches else None,
        "batch_ms_mean": round(in_batches / batches * 1e3, 2) if batches else None,
        "share_of_wall_in_batches": round(in_batches / seconds, 3) if seconds else None,
        "events_scored": int(
            metric_sum(registry, "healthwatch_scoring_events_total", outcome="scored")
        ),
        "duplicates": int(
            metric_sum(registry, "healthwatch_scoring_events_total", outcome="duplicate")
        ),
        "alerts_published": int(metric_sum(registry, "healthwatch_scoring_alerts_total")),
        "late_events": int(metric_sum(registry, "healthwatch_scoring_late_events_total")),
        "usage_events_in_activity_daily": applied,
        "usage_events_expected": usage_events,
        "sql": sql.summary(seconds, batches),
        "steps": steps.summary(handled),
        "cpu_cores": cores,
    }
    return result


async def processes_run(
    settings: Settings,
    total: int,
    processes: int,
    workdir: Path,
    meter: PhaseMeter,
    progress: Progress,
    timeout_s: float,
) -> dict[str, Any]:
    """``processes`` × ``healthwatch scoring``, one consumer group, as production scales;
    timed from their start until the committed offsets say ``total`` records."""
    env = service_env(settings, {"HEALTHWATCH_LOG_LEVEL": "WARNING"})
    engine = create_engine(settings.database_url)
    await migrate(engine)  # as `healthwatch migrate` does before production services start
    task = progress.add_task(f"scoring, {processes} process(es)", total=total)
    watch = ScoringWatch(engine, settings, total, progress, task)
    procs: list[subprocess.Popen[bytes]] = []
    logs = [workdir / f"scoring-{processes}-{i}.log" for i in range(processes)]
    meter.start()
    started = time.perf_counter()
    try:
        for log_path in logs:
            port = {"HEALTHWATCH_SCORING_PORT": str(devservices.free_port())}
            procs.append(spawn(service_command("scoring"), {**env, **port}, workdir, log_path))
        while not await watch.poll():
            for proc, log_path in zip(procs, logs, strict=True):
                if proc.poll() is not None:
                    raise RuntimeError(f"a scoring process exited:\n{tail(log_path)}")
            if watch.now - started > timeout_s:
                raise TimeoutError(f"{processes} processes: {watch.count:,} of {total:,}")
        done = watch.now
        cores = meter.cores()
    finally:
        for proc in procs:
            stop_process(proc)
    try:
        seen = await events_seen(engine)
    finally:
        await engine.dispose()
    handled, first = watch.handled, watch.first
    return {
        "processes": processes,
        "scoring_batch_max": settings.scoring_batch_max,
        "seconds": round(done - started, 3),
        "events_per_s": rate(handled, done - started),
        "seconds_to_first_processed": round(first[0] - started, 3) if first else None,
        # Start-up (interpreter, imports, the group join) is not scoring: the rate after
        # the first rows appeared is the one to compare between process counts.
        "events_per_s_after_first_poll": (
            rate(handled - first[1], done - first[0]) if first and done > first[0] else None
        ),
        "records_consumed_per_offsets": watch.count,
        "events_seen": seen,
        "cpu_cores": cores,
    }


async def import_run(
    url: str,
    path: Path,
    lines: int,
    usage_events: int,
    meter: PhaseMeter,
    progress: Progress,
    label: str,
) -> dict[str, Any]:
    """``import_files`` exactly as ``healthwatch import`` calls it, into ``url``."""
    settings = bench_settings(database_url=url)
    engine = create_engine(url)
    task = progress.add_task(label, total=lines)
    lines_done: float | None = None
    try:
        if url.startswith("sqlite"):
            await migrate(engine)  # what the CLI does for the embedded database
        metrics = ScoringMetrics(CollectorRegistry())
        steps = StepTimer()
        sql = SqlTimer(engine, steps)

        def report(name: str, seen: int, total: int) -> None:
            nonlocal lines_done
            progress.update(task, completed=seen)
            if seen >= lines:
                lines_done = time.perf_counter()

        meter.start()
        started = time.perf_counter()
        try:
            with collecting(BATCH_COLLECTIONS):
                result = await import_files(
                    [path],
                    lambda sink: ScoringProcessor(engine, sink, settings, metrics),
                    progress=report,
                )
            seconds = time.perf_counter() - started
            cores = meter.cores()
        finally:
            sql.detach()
            steps.detach()
        applied = await usage_in_state(engine)
        seen = await events_seen(engine)
    finally:
        await engine.dispose()
    lines_s = (lines_done - started) if lines_done else None
    data: dict[str, Any] = {
        "lines": lines,
        "imported": result.imported,
        "rejected": len(result.rejected),
        "swept_accounts": result.swept,
        "days_scored": result.days_scored,
        "alerts_opened": result.alerts_opened,
        "alerts_not_sent": result.alerts_not_sent,
        "seconds": round(seconds, 3),
        "events_per_s": rate(result.imported, seconds),
        "seconds_lines_only": round(lines_s, 3) if lines_s else None,
        "events_per_s_lines_only": rate(result.imported, lines_s),
        "seconds_sweep": round(seconds - lines_s, 3) if lines_s else None,
        "transactions_of_lines": steps.calls["handle"],  # batches: by size and event time
        "usage_events_in_activity_daily": applied,
        "usage_events_expected": usage_events,
        "events_seen": seen,
        "sql": sql.summary(seconds, steps.calls["handle"]),
        "steps": steps.summary(result.imported),
        "cpu_cores": cores,
    }
    if url.startswith("sqlite"):
        file = Path(url.split("///", 1)[1])
        data["sqlite_file_bytes"] = sum(
            p.stat().st_size for p in file.parent.glob(file.name + "*") if p.is_file()
        )
    return data


async def sweep_run(url: str, meter: PhaseMeter, later: datetime) -> dict[str, Any]:
    """The daily sweep of quiet accounts (``QuietAccountSweep.run_once``, as the scoring
    service runs it) on the state in ``url``, with the clock at ``later``: a day after
    the state's newest event, every account is quiet and due, and each is rescored as of
    that day."""
    settings = bench_settings(database_url=url)
    engine = create_engine(url)
    try:
        bus = DiscardingProducer()
        processor = ScoringProcessor(
            engine, bus, settings, ScoringMetrics(CollectorRegistry()), clock=lambda: later
        )
        sweep = QuietAccountSweep(engine, bus, processor, clock=lambda: later)
        steps = StepTimer()
        sql = SqlTimer(engine, steps)
        meter.start()
        started = time.perf_counter()
        try:
            with collecting(SERVICE_COLLECTIONS):
                swept = await sweep.run_once()
            seconds = time.perf_counter() - started
            cores = meter.cores()
        finally:
            sql.detach()
            steps.detach()
    finally:
        await engine.dispose()
    return {
        "clock": later.isoformat(timespec="seconds"),
        "accounts_swept": swept,
        "seconds": round(seconds, 3),
        "accounts_per_s": rate(swept, seconds),
        "seconds_per_100k_accounts": round(seconds / swept * 100_000, 1) if swept else None,
        "transactions": -(-swept // SWEEP_CHUNK),
        "sql": sql.summary(seconds, -(-swept // SWEEP_CHUNK)),
        "rescore_parts": steps.summary()["rescore_parts"]["outside_batches"],
        "outside_handle_seconds": steps.summary()["outside_handle_seconds"],
        "cpu_cores": cores,
    }
