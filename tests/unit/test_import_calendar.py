"""The import calendar's accounts not scored yet: a row each, written once when first
read and deleted when their day closes; migration 0013 moves an install's JSON value."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

import orjson
import pytest
from alembic import command
from sqlalchemy import event, inspect, select, text
from sqlalchemy.engine import Connection

from services.scoring import import_days, lanes
from services.scoring.import_days import ImportCalendar
from services.scoring.import_lines import Stamp
from shared.bus.base import DiscardingProducer, Record
from shared.storage.db import alembic_config
from shared.storage.tables import health_daily, import_pending
from tests.support.factories import EngineFactory, ProcessorFactory


async def _not_stopped() -> None:
    """The import lock, always held (no other import in these tests)."""


def _stamps(day: int, *accounts: str) -> list[Stamp]:
    return [(datetime(2026, 11, day, 10, tzinfo=UTC), account) for account in accounts]


async def test_a_batch_keeps_only_its_new_accounts_and_a_closed_day_forgets_them(
    engine_factory: EngineFactory, processor_factory: ProcessorFactory, database_either: str | None
) -> None:
    engine = await engine_factory(database_either)
    processor = processor_factory(engine)
    written: list[str] = []

    def keep_params(_c: Any, _cur: Any, statement: str, params: Any, _x: Any, many: bool) -> None:
        """The account ids an upsert into import_pending carries: a row each (SQLite), or
        one array of them (PostgreSQL)."""
        if "INSERT INTO import_pending" in statement:
            rows = params if many else [params]
            for row in rows:
                written.extend(row[1] if isinstance(row[1], list) else [row[1]])

    event.listen(engine.sync_engine, "before_cursor_execute", keep_params)

    async def waiting() -> dict[str, date]:
        p = import_pending.c
        async with engine.connect() as conn:
            rows = await conn.execute(select(p.account_id, p.first_day))
            return {account_id: day for account_id, day in rows}

    calendar = await ImportCalendar.load(processor, DiscardingProducer(), _not_stopped)
    calendar.start_file()
    calendar.note(_stamps(1, "a", "b"))
    await calendar.remember()
    assert sorted(written) == ["a", "b"]
    calendar.note(_stamps(2, "a", "c"))  # a read before: only c is new
    await calendar.remember()
    assert written[2:] == ["c"]
    calendar.note([(datetime(2026, 10, 31, 23, tzinfo=UTC), "b")])  # b's first day moves
    await calendar.remember()
    assert written[3:] == ["b"]
    assert (await waiting())["b"] == date(2026, 10, 31)
    calendar.note(_stamps(2, "a"))  # a seen again later: its first day stays
    await calendar.remember()
    assert await waiting() == {
        "a": date(2026, 11, 1),
        "b": date(2026, 10, 31),
        "c": date(2026, 11, 2),
    }

    await calendar.close_read_days()  # through Nov 1: a's and b's first days are scored
    assert await waiting() == {"c": date(2026, 11, 2)}
    again = await ImportCalendar.load(processor, DiscardingProducer(), _not_stopped)
    assert again.first["c"] == date(2026, 11, 2)
    assert again.closed == date(2026, 11, 1) and again.newest == date(2026, 11, 2)


def _migrate(step: str, to: str) -> Any:
    def run(sync_conn: Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = sync_conn
        getattr(command, step)(cfg, to)

    return run


def _columns(sync: Connection, table: str) -> Sequence[str]:
    return [column["name"] for column in inspect(sync).get_columns(table)]


async def test_migration_moves_the_waiting_accounts_to_rows_and_back(
    engine_factory: EngineFactory, database_either: str | None
) -> None:
    engine = await engine_factory(database_either, migrated=False)
    async with engine.begin() as conn:
        await conn.run_sync(_migrate("upgrade", "0012"))
        await conn.execute(
            text(
                "INSERT INTO import_calendar (group_id, newest, closed, pending)"
                " VALUES ('scoring', :newest, :closed, :pending)"
            ),
            {
                "newest": date(2026, 11, 5),
                "closed": date(2026, 11, 3),
                "pending": '{"a": "2026-11-04", "b": "2026-11-05"}',
            },
        )
        await conn.run_sync(_migrate("upgrade", "0013"))
        rows = (await conn.execute(text("SELECT * FROM import_pending ORDER BY account_id"))).all()
        columns = await conn.run_sync(_columns, "import_calendar")
        await conn.run_sync(_migrate("downgrade", "0012"))
        pending = await conn.scalar(text("SELECT pending FROM import_calendar"))
        tables = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
    assert [(r.group_id, r.account_id, str(r.first_day)) for r in rows] == [
        ("scoring", "a", "2026-11-04"),
        ("scoring", "b", "2026-11-05"),
    ]
    assert "pending" not in columns
    assert "import_pending" not in tables
    # PostgreSQL's driver decodes the JSON column, SQLite's gives its text.
    restored = pending if isinstance(pending, dict) else json.loads(pending)
    assert restored == {"a": "2026-11-04", "b": "2026-11-05"}


async def test_a_day_s_chunks_are_scored_in_lanes_and_its_last_chunk_closes_it(
    engine_factory: EngineFactory,
    processor_factory: ProcessorFactory,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On PostgreSQL two of a day's chunks are scored at once; the chunk that keeps the
    day as closed starts once the others have committed, and every account has a row
    for every day, each scored once."""
    engine = await engine_factory(database_url)
    processor = processor_factory(engine, clock=lambda: datetime(2026, 11, 5, tzinfo=UTC))
    accounts = ["a", "b", "c", "d", "e"]
    await processor.handle(
        [
            Record("usage", 0, n, None, orjson.dumps(event))
            for n, event in enumerate(
                {
                    "kind": "usage",
                    "event_id": f"{account}-{day}",
                    "account_id": account,
                    "user_id": "u",
                    "event": "login",
                    "occurred_at": f"2026-11-{day:02d}T10:00:00+00:00",
                }
                for day in (1, 2, 3)
                for account in accounts
            )
        ],
        score=False,
    )
    monkeypatch.setattr(import_days, "CHUNK", 1)
    monkeypatch.setattr(lanes, "LANES", 2)
    flight: list[bool] = []  # the chunks in flight: whether each closes its day
    most = 0
    scored: list[tuple[str, date, bool]] = []
    score_day = ImportCalendar._score_day

    async def noted(self: ImportCalendar, ids: list[str], day: date, *, closes: bool) -> int:
        nonlocal most
        if closes:
            assert not flight, "the closing chunk waits for the day's other chunks"
        flight.append(closes)
        most = max(most, len(flight))
        try:
            return await score_day(self, ids, day, closes=closes)
        finally:
            flight.remove(closes)
            scored.extend((account, day, closes) for account in ids)

    monkeypatch.setattr(ImportCalendar, "_score_day", noted)
    calendar = await ImportCalendar.load(processor, DiscardingProducer(), _not_stopped)
    calendar.start_file()
    calendar.note([stamp for day in (1, 2, 3) for stamp in _stamps(day, *accounts)])
    assert await calendar.close_all() == 15
    assert most == 2
    days = [date(2026, 11, d) for d in (1, 2, 3)]
    assert sorted((a, d) for a, d, _ in scored) == sorted((a, d) for a in accounts for d in days)
    assert [d for _, d, closes in scored if closes] == days  # one closing chunk a day
    assert calendar.closed == days[-1]
    h = health_daily.c
    async with engine.connect() as conn:
        rows = await conn.execute(select(h.account_id, h.day))
        assert sorted((a, d) for a, d in rows) == sorted((a, d) for a in accounts for d in days)
