"""One import at a time per database; the sweep stops for it (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import subprocess
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scoring import lanes
from services.scoring import sweep as sweep_module
from services.scoring.backfill import import_files
from services.scoring.import_lock import (
    ImportLockLost,
    ImportRunning,
    import_lock,
    import_running,
)
from services.scoring.metrics import ScoringMetrics
from services.scoring.processor import ScoringProcessor
from services.scoring.sweep import QuietAccountSweep
from shared.bus.base import DiscardingProducer, Record
from shared.clock import utcnow
from shared.storage.tables import account_health, activity_daily
from tests.support.factories import EngineFactory, ProcessorFactory

ROOT = Path(__file__).parents[2]


@pytest.fixture
def engine(engine_either: AsyncEngine) -> AsyncEngine:
    return engine_either


def _history(tmp_path: Path, every: timedelta = timedelta(days=1)) -> Path:
    """Ten of one account's logins, ``every`` apart, ending a week ago."""
    start = utcnow() - timedelta(days=7) - 9 * every
    events = [
        {
            "kind": "usage",
            "event_id": f"e{n}",
            "account_id": "acme",
            "user_id": "u1",
            "event": "login",
            "occurred_at": (start + n * every).isoformat(),
        }
        for n in range(10)
    ]
    path = tmp_path / "usage.ndjson"
    path.write_bytes(b"\n".join(orjson.dumps(event) for event in events) + b"\n")
    return path


async def test_a_second_import_is_refused_while_one_runs(
    engine: AsyncEngine, processor_factory: ProcessorFactory, tmp_path: Path
) -> None:
    """Both would start from the stored offsets and count every record twice."""
    path = _history(tmp_path)
    metrics = ScoringMetrics(CollectorRegistry())

    def processor(sink: DiscardingProducer) -> ScoringProcessor:
        return processor_factory(engine, producer=sink, metrics=metrics)

    async with import_lock(engine):
        assert await import_running(engine)
        with pytest.raises(ImportRunning, match="another `healthwatch import` is running"):
            await import_files([path], processor, sweep=False)
    assert not await import_running(engine)
    report = await import_files([path], processor, sweep=False)
    assert report.imported == 10
    async with engine.connect() as conn:
        assert await conn.scalar(select(func.sum(activity_daily.c.events))) == 10


async def test_the_sweep_waits_for_a_running_import(
    engine: AsyncEngine, processor_factory: ProcessorFactory, tmp_path: Path
) -> None:
    """Scored as of today between the import's past days, rules would step back and
    forth in time; the import sweeps when it ends."""
    metrics = ScoringMetrics(CollectorRegistry())
    sink = DiscardingProducer()
    processor = processor_factory(engine, producer=sink, metrics=metrics)
    await import_files([_history(tmp_path)], lambda _: processor, sweep=False)
    sweep = QuietAccountSweep(engine, sink, processor)
    async with import_lock(engine):
        assert await sweep.run_once() == 0
    assert await sweep.run_once() == 1  # acme, quiet for a week


async def test_the_lock_goes_with_the_process_that_held_it(engine: AsyncEngine) -> None:
    """An import killed (kill -9, a lost machine) leaves no lock behind."""
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import asyncio, sys\n"
        "from shared.storage.db import create_engine\n"
        "from services.scoring.import_lock import import_lock\n"
        "async def main():\n"
        "    async with import_lock(create_engine(sys.argv[1])):\n"
        "        print('held', flush=True)\n"
        "        await asyncio.sleep(600)\n"
        "asyncio.run(main())\n",
        engine.url.render_as_string(hide_password=False),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert await asyncio.wait_for(holder.stdout.readline(), 60) == b"held\n"
        assert await import_running(engine)
    finally:
        holder.kill()  # SIGKILL
        await holder.wait()
    # PostgreSQL ends the dead session's locks when it notices the closed socket: at
    # once on this machine's loopback, so a few seconds are ample.
    for _ in range(50):
        if not await import_running(engine):
            break
        await asyncio.sleep(0.1)
    assert not await import_running(engine)


def test_the_import_command_says_another_runs_and_exits_2(tmp_path: Path) -> None:
    database = tmp_path / "cli.db"
    env = {
        "HEALTHWATCH_DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        "PATH": "/usr/bin:/bin",
    }

    with (tmp_path / "cli.db.import-lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        done = subprocess.run(
            [sys.executable, "-m", "services.cli", "import", str(_history(tmp_path))],
            env=env,
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
    assert done.returncode == 2, done.stderr
    assert "another `healthwatch import` is running" in done.stderr
    assert "Traceback" not in done.stderr


async def test_the_sweep_stops_when_an_import_begins(
    engine: AsyncEngine,
    processor_factory: ProcessorFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Asked before each chunk, not only at its start."""
    metrics = ScoringMetrics(CollectorRegistry())
    sink = DiscardingProducer()
    processor = processor_factory(engine, producer=sink, metrics=metrics)
    for name in ("acme", "beta", "gamma"):
        path = _history(tmp_path)
        path.write_bytes(path.read_bytes().replace(b'"acme"', f'"{name}"'.encode()))
        path.rename(tmp_path / f"{name}.ndjson")
    files = [tmp_path / f"{name}.ndjson" for name in ("acme", "beta", "gamma")]
    await import_files(files, lambda _: processor, sweep=False)
    monkeypatch.setattr(sweep_module, "CHUNK", 1)
    sweep = QuietAccountSweep(engine, sink, processor)
    chunk = QuietAccountSweep._sweep_chunk
    two_lanes = engine.dialect.name == "postgresql" and lanes.LANES == 2
    other_committed, import_seen = asyncio.Event(), asyncio.Event()
    ended = 0

    async def running(engine: AsyncEngine) -> bool:
        holds = await import_running(engine)
        if holds:
            import_seen.set()
        return holds

    monkeypatch.setattr(sweep_module, "import_running", running)
    async with contextlib.AsyncExitStack() as held:

        async def then_an_import(
            self: QuietAccountSweep, *args: object, **kwargs: object
        ) -> set[str]:
            """The first chunk to end lets an import begin once the other lane's has
            committed; the other lane is still busy (as relaying alerts after its
            commit) when the first sees the import, and must be counted all the same."""
            nonlocal ended
            swept = await chunk(self, *args, **kwargs)  # type: ignore[arg-type]
            ended += 1
            if ended == 1:
                await held.enter_async_context(import_lock(engine))
                if two_lanes:
                    await asyncio.wait_for(other_committed.wait(), timeout=10)
            else:
                other_committed.set()
                async with asyncio.timeout(10):  # (wait_for would swallow a cancel)
                    await import_seen.wait()
                await asyncio.sleep(0.2)  # cancelled here by the old sweep
            return swept

        monkeypatch.setattr(QuietAccountSweep, "_sweep_chunk", then_an_import)
        first = await sweep.run_once()
    # Both lanes' chunks (one lane on SQLite): the count says what was swept. (With
    # one lane nothing is in flight: the test fails on the old sweep on PostgreSQL only.)
    assert first == await _swept(engine) == (2 if two_lanes else 1)
    monkeypatch.setattr(QuietAccountSweep, "_sweep_chunk", chunk)
    assert await sweep.run_once() == 3 - first
    assert await _swept(engine) == 3


async def _swept(engine: AsyncEngine) -> int:
    """Accounts the sweep has marked swept."""
    async with engine.connect() as conn:
        q = select(func.count()).where(account_health.c.swept_on.is_not(None))
        return int((await conn.execute(q)).scalar_one())


def _held_shared(path: Path) -> int:
    """The lock file as ``import_running`` holds it for an instant."""
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o600)  # as an umask of 077 leaves it
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


async def test_an_import_starts_while_a_sweep_looks_at_the_lock(
    engine: AsyncEngine, processor_factory: ProcessorFactory, tmp_path: Path
) -> None:
    """``import_running`` holds the SQLite lock file shared for an instant (PostgreSQL:
    it takes nothing): an import starting then waits that instant, not refused."""
    path = _history(tmp_path)
    metrics = ScoringMetrics(CollectorRegistry())
    lock_file = Path(f"{engine.url.database}.import-lock")
    if engine.dialect.name == "sqlite":
        looking = _held_shared(lock_file)
        asyncio.get_running_loop().call_later(0.5, os.close, looking)
    else:
        assert not await import_running(engine)
    report = await import_files(
        [path],
        lambda sink: processor_factory(engine, producer=sink, metrics=metrics),
        sweep=False,
    )
    assert report.imported == 10
    if engine.dialect.name == "sqlite":
        assert os.stat(lock_file).st_mode & 0o777 == 0o644  # testable by a service's user


@pytest.mark.parametrize("batch_size", [4, 100])
async def test_an_import_that_loses_its_postgresql_lock_stops_saying_so(
    engine_factory: EngineFactory,
    database_url: str,
    processor_factory: ProcessorFactory,
    tmp_path: Path,
    batch_size: int,
) -> None:
    """Its session ended (a restart, an idle timeout, a firewall): another import could
    now start, so this one stops before its next batch or day (100: the lines are all
    in, the days to score), and says why."""
    engine = await engine_factory(database_url)
    metrics = ScoringMetrics(CollectorRegistry())
    batches = 0

    class CutOff(ScoringProcessor):
        async def handle(self, records: Sequence[Record], also: Any = None, **how: Any) -> int:
            nonlocal batches
            batches += 1
            fresh = await super().handle(records, also, **how)
            async with engine.connect() as conn:
                await conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_locks"
                        " WHERE locktype = 'advisory' AND classid = :space"
                    ),
                    {"space": 0x696D7072},
                )
            return fresh

    # Four hours apart: the ten lines fit one batch's 48 hours of event time
    # (``processor.batch_span``), so a batch holds ``batch_size`` of them.
    history = _history(tmp_path, every=timedelta(hours=4))
    with pytest.raises(ImportLockLost, match="run it again"):
        await import_files(
            [history],
            lambda sink: processor_factory(engine, producer=sink, metrics=metrics, kind=CutOff),
            sweep=False,
            batch_size=batch_size,
        )
    assert batches == 1
    assert not await import_running(engine)
    report = await import_files(
        [history],
        lambda sink: processor_factory(engine, producer=sink, metrics=metrics),
        sweep=False,
    )
    in_first = min(batch_size, 10)
    assert (report.skipped_already_imported, report.imported) == (in_first, 10 - in_first)
