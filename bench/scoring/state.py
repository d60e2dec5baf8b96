"""The size of the scoring state in PostgreSQL: rows and bytes per table, and the usage it holds."""

from __future__ import annotations

from typing import Any

import asyncpg  # type: ignore[import-untyped]
from lib.services import plain_dsn
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.storage.tables import activity_daily

# The state tables the brief names; any other table not listed in NOT_STATE that the
# schema has (it grows) is counted as state too, and named in the results.
STATE_TABLES = (
    "account_health",
    "accounts",
    "activity_daily",
    "activity_daily_users",
    "activity_daily_names",
    "tickets",
    "health_daily",
    "band_changes",
    "rule_state",
)


DEDUP_TABLE = "processed_events"


NOT_STATE = {
    DEDUP_TABLE,
    "consumer_offsets",
    "api_keys",
    "health_models",
    "alembic_version",
    "alerts",
    "deliveries",
    "bus_log",
}


async def count_rows(engine: AsyncEngine, table: Any) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def usage_in_state(engine: AsyncEngine) -> int:
    """Usage events counted in activity_daily: a check that every event was applied."""
    async with engine.connect() as conn:
        value = (await conn.execute(select(func.sum(activity_daily.c.events)))).scalar()
    return int(value or 0)


async def state_size(url: str, vacuum: bool) -> dict[str, Any]:
    """Bytes of each table (``pg_total_relation_size``: heap, TOAST and indexes) and
    rows, as left by the run and, with ``vacuum``, after ``VACUUM FULL``."""
    conn = await asyncpg.connect(plain_dsn(url))
    try:

        async def sizes() -> dict[str, dict[str, int]]:
            rows = await conn.fetch(
                "SELECT c.relname, pg_total_relation_size(c.oid) AS total, "
                "pg_indexes_size(c.oid) AS indexes FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY c.relname"
            )
            return {r["relname"]: {"bytes": r["total"], "index_bytes": r["indexes"]} for r in rows}

        as_run = await sizes()
        for name in as_run:
            as_run[name]["rows"] = int(await conn.fetchval(f'SELECT count(*) FROM "{name}"'))
        accounts = as_run.get("account_health", {}).get("rows", 0)
        compacted = None
        if vacuum:
            await conn.execute("VACUUM (FULL, ANALYZE)")
            compacted = await sizes()
        version = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()

    state_names = sorted(
        {n for n in as_run if n not in NOT_STATE} | {n for n in STATE_TABLES if n in as_run}
    )

    def per_account(tables: dict[str, dict[str, int]]) -> dict[str, Any]:
        state = sum(tables[n]["bytes"] for n in state_names)
        dedup = tables.get(DEDUP_TABLE, {}).get("bytes", 0)
        return {
            "state_bytes": state,
            "dedup_bytes": dedup,
            "state_bytes_per_account": round(state / accounts, 1) if accounts else None,
            "dedup_bytes_per_account": round(dedup / accounts, 1) if accounts else None,
            "tables_bytes_per_account": {
                n: round(tables[n]["bytes"] / accounts, 1) if accounts else None
                for n in [*state_names, DEDUP_TABLE]
                if n in tables
            },
        }

    dedup_rows = as_run.get(DEDUP_TABLE, {}).get("rows", 0)
    result: dict[str, Any] = {
        "accounts": accounts,
        "dedup_rows": dedup_rows,
        "state_tables": state_names,
        "extra_state_tables": [n for n in state_names if n not in STATE_TABLES],
        "server_version": version,
        "as_run": per_account(as_run),
        "tables_as_run": as_run,
    }
    if compacted is not None:
        result["vacuum_full"] = per_account(compacted)
        result["tables_vacuum_full"] = compacted
        if dedup_rows:
            result["dedup_bytes_per_event_vacuum_full"] = round(
                compacted.get(DEDUP_TABLE, {}).get("bytes", 0) / dedup_rows, 1
            )
    return result
