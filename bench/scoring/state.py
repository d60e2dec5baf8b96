"""The size of the scoring state in PostgreSQL: rows and bytes per table, and the usage it holds."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from lib.measure import percentile
from lib.services import plain_dsn
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from scoring.workload import EVENT_NAMES, PLATFORM_WEIGHTS, PLATFORMS
from services.scoring import usage
from services.scoring.id_window import IdWindow
from services.simulate import MODULES
from shared.storage.tables import activity_daily

# The per-account tables of the scoring state: ``account_usage`` (the hot usage state:
# counters of the kept window, users, the dedup window; one value per account) and the
# rest; any other table not listed in NOT_STATE that the schema has (it grows) is counted
# as state too, and named in the results.
STATE_TABLES = (
    "account_usage",
    "activity_daily",
    "account_health",
    "accounts",
    "tickets",
    "health_daily",
    "band_changes",
    "rule_state",
)
HOT_TABLE = "account_usage"

NOT_STATE = {
    "consumer_offsets",
    "api_keys",
    "health_models",
    "alembic_version",
    "alerts",
    "deliveries",
    "bus_log",
    "bus_outbox",
    "import_rejects",
}


async def usage_in_state(engine: AsyncEngine) -> int:
    """Usage events counted in activity_daily: a check that every event was applied."""
    async with engine.connect() as conn:
        value = (await conn.execute(select(func.sum(activity_daily.c.events)))).scalar()
    return int(value or 0)


async def state_size(url: str, vacuum: bool) -> dict[str, Any]:
    """Bytes of each table (``pg_total_relation_size``: heap, TOAST and indexes) and
    rows, as left by the run and, with ``vacuum``, after ``VACUUM FULL``; and the hot
    usage state's values, one per account (``hot_state``)."""
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
        blobs = [bytes(r["state"]) for r in await conn.fetch(f"SELECT state FROM {HOT_TABLE}")]
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
        hot = tables.get(HOT_TABLE, {}).get("bytes", 0)
        return {
            "state_bytes": state,
            "state_bytes_per_account": round(state / accounts, 1) if accounts else None,
            "hot_table_bytes_per_account": round(hot / accounts, 1) if accounts else None,
            "tables_bytes_per_account": {
                n: round(tables[n]["bytes"] / accounts, 1) if accounts else None
                for n in state_names
                if n in tables
            },
        }

    result: dict[str, Any] = {
        "accounts": accounts,
        "state_tables": state_names,
        "extra_state_tables": [n for n in state_names if n not in STATE_TABLES],
        "server_version": version,
        "hot_state": hot_state(blobs),
        "as_run": per_account(as_run),
        "tables_as_run": as_run,
    }
    if compacted is not None:
        result["vacuum_full"] = per_account(compacted)
        result["tables_vacuum_full"] = compacted
    return result


def _spread(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "mean": None, "p90": None, "max": None}
    return {
        "median": round(percentile(values, 50), 2),
        "mean": round(sum(values) / len(values), 2),
        "p90": round(percentile(values, 90), 2),
        "max": round(max(values), 2),
    }


def hot_state(blobs: list[bytes]) -> dict[str, Any]:
    """The accounts' stored usage values (``account_usage.state``, msgspec + zstd): their
    length in bytes, and the shape of the accounts they hold (users, kept days, events
    per kept day, distinct names per dimension, ids in the dedup window). Also each
    value encoded again without its dedup ids: a backlog replayed or imported at once
    was all received within the 48-hour window, so its states hold every event's id,
    while a live account holds only its last 48 hours' (``usage.DEDUP_HOURS``)."""
    if not blobs:
        return {"accounts": 0}
    shapes: dict[str, list[float]] = {
        key: []
        for key in (
            "bytes",
            "bytes_without_dedup_ids",
            "users",
            "days",
            "events_per_day",
            "names",
            "event_names",
            "modules",
            "platforms",
            "dedup_ids",
            "events_seen",
        )
    }
    for blob in blobs:
        state = usage.decode(blob)
        events = sum(day.events for day in state.days.values())
        used = {index for day in state.days.values() for index in day.names}
        counters = {state.names[index] for index in used}  # "e:login", "m:reports", …
        dimensions = Counter(usage.name_key(name)[0] for name in counters)
        found: dict[str, float] = {
            "bytes": len(blob),
            "bytes_without_dedup_ids": len(usage.encode(replace(state, seen=IdWindow()))),
            "users": len(state.users),
            "days": len(state.days),
            "events_per_day": events / len(state.days) if state.days else 0,
            "names": len(counters),
            "event_names": dimensions["event"],
            "modules": dimensions["module"],
            "platforms": dimensions["platform"],
            "dedup_ids": len(state.seen),
            "events_seen": state.events_seen,
        }
        for key, value in found.items():
            shapes[key].append(value)
    return {"accounts": len(blobs), **{key: _spread(values) for key, values in shapes.items()}}


# The synthetic accounts' shapes: (kept days, users, events a day). 20 days of 5 events
# is the main workload's account (a check of the synthetic value against the stored
# ones); 90 days is the window the service keeps (HEALTHWATCH_WINDOW_DAYS's default).
SYNTHETIC_SHAPES = ((20, 10, 5), (90, 10, 5), (90, 10, 20), (90, 25, 50))
SYNTHETIC_ACCOUNTS = 10  # of each shape; the median value is reported


def synthetic_value(days: int, users: int, per_day: int, rng: random.Random) -> int:
    """Bytes of one account's stored usage value built with the service's own
    ``AccountUsage`` (as ``apply_events`` counts a usage event: its event name, module
    and platform) from ``days`` days of ``per_day`` events by ``users`` users, received
    live (each id received at its event time, so the 48-hour dedup window holds the last
    two days' ids), with the workload's names."""
    state = usage.AccountUsage()
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    moment = end
    for day in range(days):
        for _ in range(per_day):
            moment = end - timedelta(days=days - 1 - day, seconds=rng.uniform(0, 86_399))
            names = [
                ("event", rng.choice(EVENT_NAMES), 1),
                ("platform", rng.choices(PLATFORMS, PLATFORM_WEIGHTS)[0], 1),
                ("module", rng.choice(MODULES), 1),
            ]
            state.first_sight(str(uuid.UUID(int=rng.getrandbits(128))), moment)
            state.add(moment.date(), f"user-{rng.randrange(users)}", rng.uniform(5, 900), names)
        state.forget_before(moment)  # as each batch does (drop_duplicates)
    state.forget_before(end)
    return len(usage.encode(state))


def synthetic_values(seed: int) -> list[dict[str, Any]]:
    """The median stored value of SYNTHETIC_ACCOUNTS accounts of each SYNTHETIC_SHAPES."""
    rng = random.Random(seed)
    found = []
    for days, users, per_day in SYNTHETIC_SHAPES:
        sizes = [synthetic_value(days, users, per_day, rng) for _ in range(SYNTHETIC_ACCOUNTS)]
        found.append(
            {"days": days, "users": users, "events_per_day": per_day, "bytes": _spread(sizes)}
        )
    return found
