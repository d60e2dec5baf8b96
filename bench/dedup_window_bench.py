"""Saving a busy account's usage state, batch after batch: what one save costs when the
account's dedup window (event-id hashes of the last 48 hours) holds many ids, on
PostgreSQL. Each batch adds ``--per-batch`` new ids received in the current hour, as
live traffic does, and saves the state in its own transaction (``usage_store.save``,
as the scoring step calls it). The tree on sys.path is the one measured (``PYTHONPATH``
a copy of an older commit measures that commit).

    python bench/dedup_window_bench.py --database-url postgresql+asyncpg://…/postgres

The database named is the server's maintenance database; the bench creates its own
(``dedup_window_bench``) anew for each window size.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime, timedelta

from lib.services import create_database
from sqlalchemy import func, select, text

from services.scoring import usage_store
from shared.storage.db import create_engine, migrate
from shared.storage.tables import account_usage

DATABASE = "dedup_window_bench"
START = datetime(2026, 11, 23, tzinfo=UTC)


async def run(url: str, window: int, batches: int, per_batch: int) -> dict[str, float]:
    """ms per save and bytes of the state's value, for a window of ``window`` ids spread
    over 48 hours, then ``batches`` saves of ``per_batch`` new ids each."""
    engine = create_engine(await create_database(url, DATABASE))
    try:
        await migrate(engine)
        hour = timedelta(hours=1)
        async with engine.begin() as conn:  # the window, saved once
            states = await usage_store.load(conn, {"busy"}, for_update=True)
            for n in range(window):
                states["busy"].first_sight(f"w{n}", START + (n * 48 // window) * hour)
            await usage_store.save(conn, states, START)
        now = START + 48 * hour
        cache = usage_store.UsageCache(10)  # as the scoring service holds its states
        async with engine.begin() as conn:
            cache.keep(await usage_store.load(conn, {"busy"}))
        started = time.perf_counter()
        for b in range(batches):
            async with engine.begin() as conn:
                states = await usage_store.load(conn, {"busy"}, for_update=True, cache=cache)
                for n in range(per_batch):
                    states["busy"].first_sight(f"b{b}-{n}", now)
                await usage_store.save(conn, states, now)
            cache.keep(states)
        seconds = time.perf_counter() - started
        async with engine.connect() as conn:
            value = await conn.scalar(select(func.length(account_usage.c.state)))
            tables = (await conn.execute(text("SELECT tablename FROM pg_tables"))).scalars()
            seen = await conn.scalar(
                text("SELECT coalesce(max(length(ids)), 0) FROM usage_seen")
                if "usage_seen" in set(tables)
                else text("SELECT 0")
            )
        return {"ms_per_save": seconds / batches * 1e3, "value_bytes": value, "hour_row": seen}
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True, help="the server's maintenance db")
    parser.add_argument("--windows", default="1000,10000,100000", help="ids in the window")
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--per-batch", type=int, default=20, help="new ids a batch")
    args = parser.parse_args()
    for window in (int(w) for w in args.windows.split(",")):
        got = asyncio.run(run(args.database_url, window, args.batches, args.per_batch))
        print(
            f"window {window:>7,} ids: {got['ms_per_save']:6.2f} ms a save, state value "
            f"{got['value_bytes']:>9,} B, largest hour row {got['hour_row']:>7,} B"
        )


if __name__ == "__main__":
    main()
