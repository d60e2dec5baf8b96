"""Migration 0015 on PostgreSQL: the score's JSON columns compress new values with LZ4,
values written before stay readable, and a downgrade sets pglz back."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from alembic import command
from sqlalchemy import insert, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.storage.db import alembic_config
from shared.storage.tables import health_daily
from tests.support.factories import EngineFactory

pytestmark = pytest.mark.integration

SCORE_COLUMNS = {
    ("account_health", "inputs"),
    ("account_health", "components"),
    ("health_daily", "inputs"),
    ("health_daily", "explanation"),
}
# Inputs as large as a typical score's (about a hundred numbers, 2.6 KB as JSON): above
# the 2 KB past which PostgreSQL compresses a row's values.
INPUTS = {f"events_28d[name-{n}]": n * 1.5 for n in range(120)}


def _migrate(to: str, *, down: bool = False) -> Any:
    def run(sync_conn: Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = sync_conn
        (command.downgrade if down else command.upgrade)(cfg, to)

    return run


async def _methods(conn: AsyncConnection) -> dict[tuple[str, str], str]:
    """(table, column) → the compression method set for new values ('' the default)."""
    rows = await conn.execute(
        text(
            "SELECT c.relname, a.attname, a.attcompression::text FROM pg_attribute a"
            " JOIN pg_class c ON c.oid = a.attrelid"
            " WHERE c.relname IN ('account_health', 'health_daily') AND a.attnum > 0"
            " AND a.attname IN ('inputs', 'components', 'explanation')"
        )
    )
    return {(table, column): method for table, column, method in rows}


async def _write_day(conn: AsyncConnection, day: date) -> str | None:
    """A day's score row with typical inputs; the method its inputs were stored with."""
    await conn.execute(
        insert(health_daily).values(
            account_id="acme", day=day, score=70, band="green", inputs=INPUTS, explanation={}
        )
    )
    method: str | None = await conn.scalar(
        text("SELECT pg_column_compression(inputs) FROM health_daily WHERE day = :day"),
        {"day": day},
    )
    return method


async def test_new_score_values_use_lz4_and_old_ones_stay_readable(
    engine_factory: EngineFactory, database_url: str
) -> None:
    engine = await engine_factory(database_url, migrated=False)
    async with engine.begin() as conn:
        await conn.run_sync(_migrate("0014"))
        assert await _write_day(conn, date(2026, 11, 1)) == "pglz"
        await conn.run_sync(_migrate("0015"))
        assert {key: (await _methods(conn))[key] for key in SCORE_COLUMNS} == dict.fromkeys(
            SCORE_COLUMNS, "l"
        )
        assert await _write_day(conn, date(2026, 11, 2)) == "lz4"
        stored = (await conn.execute(select(health_daily.c.inputs))).scalars().all()
        assert stored == [INPUTS, INPUTS]  # the pglz value and the LZ4 one

        await conn.run_sync(_migrate("0014", down=True))
        assert {key: (await _methods(conn))[key] for key in SCORE_COLUMNS} == dict.fromkeys(
            SCORE_COLUMNS, "p"
        )
        assert await _write_day(conn, date(2026, 11, 3)) == "pglz"
        stored = (await conn.execute(select(health_daily.c.inputs))).scalars().all()
        assert stored == [INPUTS, INPUTS, INPUTS]
