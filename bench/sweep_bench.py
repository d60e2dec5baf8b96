"""The daily sweep of quiet accounts at the size of issue 12's target (100,000 accounts
in 10 s or less), on PostgreSQL, with one and with several sweeping processes.

1. **Build**: ``--accounts`` accounts of the scoring bench's workload (``--days`` days,
   ``--events`` usage events in all, 10 users on average), imported with
   ``import_files`` as ``healthwatch import`` does (score history, rule states, usage
   states and their dedup windows) into a template database.
2. **Copy**: every per-account row of the template copied under new account ids
   (``acct-000001-c2``) until it holds ``--total`` accounts, in SQL. Each copy has its
   original's state; importing 100,000 accounts would take over an hour here.
3. **Sweep**: for each ``--processes`` count, a fresh database from the template; that
   many processes start together, each running ``QuietAccountSweep.run_once()`` as a
   scoring replica does (with the service's garbage collection thresholds,
   ``services.cli.base.SERVICE_COLLECTIONS``), the clock a day after the workload's last
   event, so every account is quiet and due. Timed from the common start to the last
   process's end; every account must be swept once.

The tree on ``sys.path`` is the one measured (``PYTHONPATH`` a copy of an older commit
measures that commit):

    python bench/sweep_bench.py --database-url postgresql+asyncpg://…/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import orjson
from lib.measure import result_header, tree_cpu_seconds
from lib.services import create_database, database_url, plain_dsn, postmaster_pid
from prometheus_client import CollectorRegistry
from scoring.runs import bench_settings
from scoring.workload import iter_workload, make_accounts

from services.cli.base import SERVICE_COLLECTIONS
from services.scoring.backfill import import_files
from services.scoring.metrics import ScoringMetrics
from services.scoring.processor import ScoringProcessor
from services.scoring.sweep import QuietAccountSweep
from shared.bus.base import DiscardingProducer
from shared.storage.db import create_engine

TEMPLATE = "sweep_bench_template"
RUN = "sweep_bench_run"
NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)  # the workload's last day
COPY_MARK = "-c"  # copies are named <original>-c<k>; originals have no such part


def write_workload(path: Path, accounts: int, events: int, days: int, seed: int) -> None:
    rng = random.Random(seed)
    with path.open("wb") as fh:
        for item in iter_workload(make_accounts(accounts, 10, rng), events, days, NOW, rng):
            fh.write(orjson.dumps(item) + b"\n")


async def build(server: str, path: Path) -> float:
    """The template: the workload in ``path`` imported; returns the import's seconds."""
    url = await create_database(server, TEMPLATE)
    engine = create_engine(url)
    try:
        settings = bench_settings(database_url=url)
        started = time.perf_counter()
        await import_files(
            [path],
            lambda sink: ScoringProcessor(
                engine, sink, settings, ScoringMetrics(CollectorRegistry())
            ),
            sweep=False,
        )
        return time.perf_counter() - started
    finally:
        await engine.dispose()


async def copy_accounts(server: str, total: int) -> int:
    """Copy the template's per-account rows until it holds ``total`` accounts."""
    conn = await asyncpg.connect(plain_dsn(database_url(server, TEMPLATE)))
    try:
        have = await conn.fetchval("SELECT count(*) FROM accounts")
        copies = max(0, -(-total // have) - 1)
        tables = (
            []
            if copies == 0
            else await conn.fetch(
                "SELECT c.table_name, string_agg(c.column_name, ',' ORDER BY c.ordinal_position)"
                " AS columns FROM information_schema.columns c WHERE c.table_schema = 'public'"
                " GROUP BY c.table_name HAVING bool_or(c.column_name = 'account_id')"
            )
        )
        for table in tables:
            name, columns = table["table_name"], table["columns"]
            if not await conn.fetchval(f'SELECT EXISTS (SELECT 1 FROM "{name}")'):
                continue
            chosen = ",".join(
                f"t.account_id || '{COPY_MARK}' || k" if column == "account_id" else f"t.{column}"
                for column in columns.split(",")
            )
            await conn.execute(
                f'INSERT INTO "{name}" ({columns}) SELECT {chosen} FROM "{name}" t,'
                f" generate_series(1, {copies}) k"
                f" WHERE t.account_id NOT LIKE '%{COPY_MARK}%'"
            )
        await conn.execute("VACUUM ANALYZE")
        count: int = await conn.fetchval("SELECT count(*) FROM account_health")
        return count
    finally:
        await conn.close()


async def server_pid(server: str) -> int | None:
    """The PostgreSQL server's postmaster, when it runs on this machine and its data
    directory is readable (its CPU is then measured); else None."""
    conn = await asyncpg.connect(plain_dsn(server))
    try:
        data_dir = await conn.fetchval("SHOW data_directory")
    except asyncpg.PostgresError:  # not a superuser: the server's CPU goes unmeasured
        return None
    finally:
        await conn.close()
    return postmaster_pid(Path(data_dir))


def sweep_with(server: str, processes: int) -> dict[str, Any]:
    """``processes`` sweeping processes on a fresh copy of the template, started together."""
    url = asyncio.run(create_database(server, RUN, template=TEMPLATE))
    postgres = asyncio.run(server_pid(server))
    start = time.time() + 3  # every process imported and connected by then
    command = [sys.executable, __file__, "--worker", url, str(start)]
    workers = [subprocess.Popen(command, stdout=subprocess.PIPE) for _ in range(processes)]
    # Sampled after the workers' start: their set-up (imports, a pool) is not the sweep's.
    time.sleep(max(0.0, start - time.time()))
    server_before = tree_cpu_seconds(postgres)
    reports = []
    for worker in workers:
        out, _ = worker.communicate()
        if worker.returncode:
            raise RuntimeError(f"a sweeping process failed with exit code {worker.returncode}")
        reports.append(json.loads(out))
    server_after = tree_cpu_seconds(postgres)
    seconds = max(report["ended"] for report in reports) - start
    swept = sum(report["swept"] for report in reports)
    return {
        "processes": processes,
        "accounts_swept": swept,
        "seconds": round(seconds, 2),
        "accounts_per_s": round(swept / seconds, 1),
        "seconds_per_100k": round(seconds / swept * 100_000, 1),
        "cpu_seconds_per_process": [report["cpu_s"] for report in reports],
        # PostgreSQL's own CPU over the sweep (None: a server elsewhere): the target's 10 s
        # for 100,000 accounts on 2 cores leaves 200 µs of CPU an account for both sides.
        "postgres_cpu_s": (
            None
            if server_before is None or server_after is None
            else round(server_after - server_before, 2)
        ),
        "swept_per_process": [report["swept"] for report in reports],
    }


async def worker(url: str, start: float) -> dict[str, Any]:
    """One scoring replica's sweep, from ``start`` (a wall-clock time) on."""
    gc.set_threshold(*SERVICE_COLLECTIONS)
    engine = create_engine(url)
    later = NOW + timedelta(days=1)
    bus = DiscardingProducer()
    settings = bench_settings(database_url=url)
    processor = ScoringProcessor(
        engine, bus, settings, ScoringMetrics(CollectorRegistry()), clock=lambda: later
    )
    sweep = QuietAccountSweep(engine, bus, processor, clock=lambda: later)
    try:
        async with engine.connect():  # the pool's first connection, before the clock
            pass
        await asyncio.sleep(max(0.0, start - time.time()))
        cpu = time.process_time()
        swept = await sweep.run_once()
        return {"swept": swept, "ended": time.time(), "cpu_s": time.process_time() - cpu}
    finally:
        await engine.dispose()


def main() -> None:
    if sys.argv[1:2] == ["--worker"]:
        print(json.dumps(asyncio.run(worker(sys.argv[2], float(sys.argv[3])))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True, help="the server's maintenance db")
    parser.add_argument("--accounts", type=int, default=1_000, help="accounts imported")
    parser.add_argument("--events", type=int, default=100_000, help="their usage events")
    parser.add_argument("--days", type=int, default=20, help="days the events spread over")
    parser.add_argument("--total", type=int, default=100_000, help="accounts after copying")
    parser.add_argument("--processes", default="1,2", help="sweeping processes, per run")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, help="JSON results")
    parser.add_argument(
        "--reuse-template",
        action="store_true",
        help="sweep the template an earlier run left (its accounts; --accounts, --events, "
        "--days and --total unused): trees compared on one template, alternated",
    )
    args = parser.parse_args()
    server = args.database_url
    imported_s: float | None = None
    if args.reuse_template:
        accounts = asyncio.run(copy_accounts(server, 0))
    else:
        print(f"importing {args.accounts:,} accounts into the template …", file=sys.stderr)
        path = Path(f"/tmp/sweep-bench-{os.getpid()}.ndjson")
        write_workload(path, args.accounts, args.events, args.days, args.seed)
        try:
            imported_s = asyncio.run(build(server, path))
        finally:
            path.unlink()
        print(f"copying them to {args.total:,} accounts …", file=sys.stderr)
        accounts = asyncio.run(copy_accounts(server, args.total))
    runs = []
    for processes in (int(n) for n in args.processes.split(",")):
        print(f"sweeping {accounts:,} quiet accounts in {processes} process(es) …", file=sys.stderr)
        run = sweep_with(server, processes)
        if run["accounts_swept"] != accounts:
            raise RuntimeError(f"{run['accounts_swept']} of {accounts} accounts swept")
        runs.append(run)
        cpu = sum(run["cpu_seconds_per_process"])
        print(
            f"{processes} process(es): {run['seconds']} s, {run['accounts_per_s']:,} accounts/s,"
            f" {run['seconds_per_100k']} s per 100,000 (target ≤ 10 s); CPU an account:"
            f" sweeping {cpu / accounts * 1e6:.0f} µs, PostgreSQL "
            + (
                "unmeasured"
                if run["postgres_cpu_s"] is None
                else f"{run['postgres_cpu_s'] / accounts * 1e6:.0f} µs"
            )
        )
    result = {
        **result_header("sweep", __file__, sys.argv[1:]),
        # An earlier run's template: what built it is that run's to say (its result file).
        "workload": {"accounts": accounts, "reused_template": True}
        if imported_s is None
        else {
            "imported_accounts": args.accounts,
            "events": args.events,
            "days": args.days,
            "accounts": accounts,
            "import_s": round(imported_s, 1),
        },
        "runs": runs,
    }
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
