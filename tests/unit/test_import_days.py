"""An import's quiet days: ``_carry_forward`` gives a day the newest earlier row of each
account that has one, keeps a row of the day's own, and counts the accounts with a row."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scoring.import_days import _carry_forward
from shared.storage.tables import health_daily


@pytest.fixture
def engine(engine_either: AsyncEngine) -> AsyncEngine:
    return engine_either


def row(account_id: str, day: int, score: int | None, band: str = "green") -> dict[str, Any]:
    return {
        "account_id": account_id,
        "day": date(2026, 11, day),
        "score": score,
        "band": band,
        "inputs": {"score": score, "share": 0.1 * day, "danger": ["x"], "n[a b]": None},
        "explanation": {"groups": {"usage": day + 0.5}, "missing": []},
    }


async def test_a_day_gets_each_accounts_newest_earlier_row(engine: AsyncEngine) -> None:
    stored = [
        row("a", 1, 50),
        row("a", 3, 61, "yellow"),  # the newest before day 4: copied
        row("b", 2, None, "unknown"),
        row("c", 4, 70),  # a row of the day's own: kept
        row("c", 2, 10, "red"),
        row("d", 5, 80),  # only after the day: nothing
        row("e", 1, 40),  # not among the accounts scored: nothing
    ]
    async with engine.begin() as conn:
        await conn.execute(health_daily.insert(), stored)
        scored = await _carry_forward(conn, ["a", "b", "c", "d", "z"], date(2026, 11, 4))
    async with engine.connect() as conn:
        rows = [dict(r._mapping) for r in await conn.execute(select(health_daily))]
    on_day = {r["account_id"]: r for r in rows if r["day"] == date(2026, 11, 4)}
    assert scored == 3
    assert on_day == {
        "a": row("a", 3, 61, "yellow") | {"day": date(2026, 11, 4)},
        "b": row("b", 2, None, "unknown") | {"day": date(2026, 11, 4)},
        "c": row("c", 4, 70),
    }
    assert len(rows) == len(stored) + 2
