"""One import at a time per database; the sweep waits for it (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import fcntl
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scoring.backfill import import_files
from services.scoring.import_lock import ImportRunning, import_lock, import_running
from services.scoring.metrics import ScoringMetrics
from services.scoring.processor import ScoringProcessor
from services.scoring.sweep import QuietAccountSweep
from shared.bus.base import DiscardingProducer
from shared.clock import utcnow
from shared.storage.tables import activity_daily
from tests.support.factories import EngineFactory, ProcessorFactory

ROOT = Path(__file__).parents[2]


@pytest.fixture(params=["sqlite", "postgresql"])
async def engine(
    request: pytest.FixtureRequest, engine_factory: EngineFactory, database_url: str
) -> AsyncEngine:
    return await engine_factory(database_url if request.param == "postgresql" else None)


def _history(tmp_path: Path) -> Path:
    """Ten days of one account's logins, ending a week ago."""
    start = utcnow() - timedelta(days=17)
    events = [
        {
            "kind": "usage",
            "event_id": f"e{day}",
            "account_id": "acme",
            "user_id": "u1",
            "event": "login",
            "occurred_at": (start + timedelta(days=day)).isoformat(),
        }
        for day in range(10)
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
