"""What ``healthwatch import`` writes to keep its calendar (``services/scoring/import_days``)
while it reads accounts first seen on one day, timed alone: ``ImportCalendar.note`` and
``remember`` for each batch of new accounts, no scoring, on PostgreSQL.

    python bench/import_calendar_bench.py --database-url postgresql+asyncpg://…/postgres

The database named is the server's maintenance database; the bench creates its own
(``import_calendar_bench``) anew on each run. The tree on sys.path is the one measured.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime

from lib.services import create_database
from prometheus_client import CollectorRegistry

from services.scoring.import_days import ImportCalendar
from services.scoring.metrics import ScoringMetrics
from services.scoring.processor import ScoringProcessor
from shared.bus.base import DiscardingProducer
from shared.config import Settings
from shared.storage.db import create_engine

DATABASE = "import_calendar_bench"


async def _not_stopped() -> None:
    """No other import holds the lock here."""


async def run(url: str, accounts: int, batch: int) -> float:
    """Seconds for ``accounts`` new accounts, all first seen on one day, ``batch`` a batch."""
    bench_url = await create_database(url, DATABASE)
    engine = create_engine(bench_url)
    try:
        settings = Settings(_env_file=None, database_url=bench_url)
        metrics = ScoringMetrics(CollectorRegistry())
        processor = ScoringProcessor(engine, DiscardingProducer(), settings, metrics)
        calendar = await ImportCalendar.load(processor, DiscardingProducer(), _not_stopped)
        calendar.start_file()
        at = datetime(2026, 11, 1, 10, tzinfo=UTC)
        started = time.perf_counter()
        for start in range(0, accounts, batch):
            calendar.note(
                [(at, f"account-{n:07d}") for n in range(start, min(accounts, start + batch))]
            )
            await calendar.remember()
        return time.perf_counter() - started
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True, help="PostgreSQL, maintenance database")
    parser.add_argument("--accounts", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--batch", type=int, default=2_000, help="lines a batch (all new accounts)")
    args = parser.parse_args()
    for accounts in args.accounts:
        seconds = asyncio.run(run(args.database_url, accounts, args.batch))
        print(f"{accounts:,} accounts, batches of {args.batch:,}: {seconds:.2f} s")


if __name__ == "__main__":
    main()
