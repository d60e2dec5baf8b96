"""Scoring past days again (``history.rewind``): the rows and band changes from the day
on go, those before it stay, in every zone."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scoring import history
from shared.storage.tables import band_changes, health_daily

DAY = date(2026, 11, 5)


@pytest.mark.parametrize("zone", ["Pacific/Kiritimati", "Pacific/Auckland", "UTC", "Etc/GMT+12"])
async def test_a_rewind_keeps_the_day_befores_band_change_in_every_zone(
    engine_either: AsyncEngine, zone: str
) -> None:
    """An import dates a day's band change at its noon in UTC. At UTC+13 and +14 the
    day before's noon falls after the day's local midnight, and scoring the day again
    dropped the day before's change, which stood (found in review)."""
    tz = ZoneInfo(zone)

    def noon(day: date) -> datetime:
        return datetime.combine(day, history.NOON, UTC)

    days = [DAY + timedelta(days=back) for back in range(-3, 3)]
    early_today = datetime.combine(DAY, datetime.min.time(), tz) + timedelta(minutes=30)
    changes = [noon(DAY - timedelta(days=2)), noon(DAY - timedelta(days=1)), early_today]
    changes += [noon(DAY), noon(DAY + timedelta(days=1))]
    async with engine_either.begin() as conn:
        await conn.execute(
            health_daily.insert(),
            [
                {
                    "account_id": "a",
                    "day": d,
                    "score": 50 + n,
                    "band": "yellow",
                    "inputs": {},
                    "explanation": {},
                }
                for n, d in enumerate(days)
            ],
        )
        await conn.execute(
            band_changes.insert(),
            [{"account_id": "a", "changed_at": at, "to_band": "yellow"} for at in changes],
        )
        before = await history.rewind(conn, {"a": (DAY, tz)})
        kept = (await conn.execute(select(band_changes.c.changed_at))).scalars().all()
        rows = (await conn.execute(select(health_daily.c.day))).scalars().all()
    assert before["a"] is not None and before["a"].score == 52  # the day before's
    assert sorted(rows) == days[:3]
    assert sorted(at.astimezone(UTC) for at in kept) == changes[:2]
