"""Per-account time zones on the real stack: HTTP → Kafka → scoring → PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from shared.config import Settings
from shared.storage.tables import activity_daily
from tests.support.harness import Harness, facts, processed, running, usage, wait_for

pytestmark = pytest.mark.integration
SHANGHAI = ZoneInfo("Asia/Shanghai")


async def test_a_shanghai_morning_counts_on_shanghais_day(kafka_settings: Settings) -> None:
    assert kafka_settings.timezone == "UTC"
    # 00:30 in Shanghai on its yesterday: still the day before in UTC.
    day = datetime.now(SHANGHAI).date() - timedelta(days=1)
    morning = datetime.combine(day, time(0, 30), SHANGHAI)
    assert morning.astimezone(UTC).date() == day - timedelta(days=1)
    async with running(kafka_settings, alerts=False) as hw, hw.client() as client:
        wrong = await client.post("/v1/accounts", json=facts("sh", seats=5, timezone="Shanghai"))
        assert wrong.status_code == 422 and "timezone" in wrong.text, wrong.text
        r = await client.post("/v1/accounts", json=facts("sh", seats=5, timezone="Asia/Shanghai"))
        assert r.status_code == 202, r.text
        await wait_for(lambda: _processed(hw, 1), timeout=60, what="the facts scored")
        event = usage("sh", "u1") | {"occurred_at": morning.isoformat()}
        r = await client.post("/v1/events", json={"events": [event]})
        assert r.status_code == 202, r.text
        await wait_for(lambda: _processed(hw, 2), timeout=60, what="the usage scored")
        async with hw.rt.engine.connect() as conn:
            days = (await conn.execute(select(activity_daily.c.day))).scalars().all()
        assert days == [day]
        assert (await hw.health("sh")).active_users_7d == 1


async def _processed(hw: Harness, count: int) -> bool:
    return await processed(hw) == count
