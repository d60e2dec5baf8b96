"""Per-account time zones: an account's activity counts on the days of its own zone."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from services.scoring.measures import load_measures
from services.scoring.sweep import QuietAccountSweep
from shared.bus.base import Record
from shared.bus.embedded import EmbeddedBus
from shared.config import Settings
from shared.contracts.events import EVENT_ADAPTER
from shared.contracts.wire import encode_event
from shared.storage.tables import account_health, activity_daily
from tests.support.factories import EngineFactory, ProcessorFactory

# Dec 2, 00:30 in Shanghai is still Dec 1 in UTC, the service's zone here.
SHANGHAI_MORNING = "2026-12-02T00:30:00+08:00"


def records(settings: Settings, raws: list[dict[str, Any]]) -> list[Record]:
    out = []
    for offset, raw in enumerate(raws):
        event = EVENT_ADAPTER.validate_python(raw)
        out.append(Record(settings.topic(event.kind), 0, offset, b"k", encode_event(event)))
    return out


def facts(account_id: str, **values: Any) -> dict[str, Any]:
    return {
        "kind": "account",
        "event_id": f"facts-{account_id}",
        "account_id": account_id,
        "occurred_at": "2026-11-01T00:00:00+00:00",
        **values,
    }


def usage(account_id: str, at: str) -> dict[str, Any]:
    return {
        "kind": "usage",
        "event_id": f"use-{account_id}",
        "account_id": account_id,
        "user_id": "u1",
        "event": "login",
        "occurred_at": at,
    }


async def test_an_account_counts_its_days_in_its_own_zone(
    embedded_settings: Settings,
    engine_factory: EngineFactory,
    processor_factory: ProcessorFactory,
) -> None:
    assert embedded_settings.timezone == "UTC"
    engine = await engine_factory()
    processor = processor_factory(engine, clock=lambda: datetime(2026, 12, 2, 1, tzinfo=UTC))
    # The facts and the usage in one batch: the zone applies to usage of the same batch.
    raws = [
        facts("sh", timezone="Asia/Shanghai"),
        facts("utc"),
        usage("sh", SHANGHAI_MORNING),
        usage("utc", SHANGHAI_MORNING),
    ]
    await processor.handle(records(embedded_settings, raws))
    async with engine.connect() as conn:
        days = dict(
            (await conn.execute(select(activity_daily.c.account_id, activity_daily.c.day))).all()
        )
        measures = {m.account_id: m for m in await load_measures(conn, {"sh", "utc"})}
    assert days == {"sh": date(2026, 12, 2), "utc": date(2026, 12, 1)}
    assert measures["sh"].as_of == date(2026, 12, 2) and measures["sh"].active_users_today == 1
    assert measures["utc"].as_of == date(2026, 12, 1)


async def test_the_sweep_starts_each_zones_day_at_its_midnight(
    embedded_settings: Settings,
    engine_factory: EngineFactory,
    processor_factory: ProcessorFactory,
) -> None:
    engine = await engine_factory()
    bus = EmbeddedBus(engine)
    processor = processor_factory(engine, producer=bus)
    raws = [
        facts("sh", timezone="Asia/Shanghai"),
        facts("utc"),
        usage("sh", "2026-12-01T10:00:00+00:00"),
        usage("utc", "2026-12-01T10:00:00+00:00"),
    ]
    await processor.handle(records(embedded_settings, raws))
    # 17:00 UTC on Dec 1 is 01:00 on Dec 2 in Shanghai: only Shanghai's day has turned.
    evening = datetime(2026, 12, 1, 17, tzinfo=UTC)
    sweep = QuietAccountSweep(engine, bus, processor, clock=lambda: evening)
    assert await sweep.run_once() == 1
    async with engine.connect() as conn:
        swept = dict(
            (
                await conn.execute(select(account_health.c.account_id, account_health.c.swept_on))
            ).all()
        )
    assert swept == {"sh": date(2026, 12, 2), "utc": None}


def test_an_unknown_zone_is_a_field_error() -> None:
    with pytest.raises(ValidationError) as caught:
        EVENT_ADAPTER.validate_python(facts("x", timezone="Asia/Shanghia"))
    [error] = caught.value.errors()
    assert error["loc"][-1] == "timezone" and "Asia/Shanghia" in error["msg"]
    for name in ("localtime", "../etc/passwd", "utc", ""):
        with pytest.raises(ValidationError):
            EVENT_ADAPTER.validate_python(facts("x", timezone=name))


def test_a_currency_is_an_iso_4217_code() -> None:
    # Money is formatted and summed per currency: a made-up code would be a total of its own.
    assert EVENT_ADAPTER.validate_python(facts("x", currency="usd")).currency == "USD"
    for code in ("ZZZ", "US$", "AB\x01"):
        with pytest.raises(ValidationError) as caught:
            EVENT_ADAPTER.validate_python(facts("x", currency=code))
        [error] = caught.value.errors()
        assert error["loc"][-1] == "currency"


async def test_a_change_of_zone_applies_from_then_on(
    embedded_settings: Settings,
    engine_factory: EngineFactory,
    processor_factory: ProcessorFactory,
) -> None:
    engine = await engine_factory()
    processor = processor_factory(engine)
    first = [facts("acme"), usage("acme", SHANGHAI_MORNING)]
    await processor.handle(records(embedded_settings, first))
    moved = facts("acme", timezone="Asia/Shanghai") | {
        "event_id": "moved",
        "occurred_at": "2026-11-20T00:00:00+00:00",
    }
    # An older fact sent late does not move it back (the newest fact wins).
    stale = facts("acme", timezone="Europe/London") | {"event_id": "stale"}
    later = usage("acme", "2026-12-03T00:30:00+08:00") | {"event_id": "later"}
    await processor.handle(records(embedded_settings, [moved, stale, later]))
    async with engine.connect() as conn:
        days = sorted((await conn.execute(select(activity_daily.c.day))).scalars())
    # The first use keeps its UTC day (Dec 1); the one after the change is Shanghai's Dec 3.
    assert days == [date(2026, 12, 1), date(2026, 12, 3)]
