"""The quiet-account sweep: an account that stops sending events is still caught."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scoring import lanes
from services.scoring import sweep as sweep_module
from services.scoring.sweep import QuietAccountSweep
from shared.bus.base import DiscardingProducer, Record
from shared.bus.embedded import EmbeddedBus
from shared.config import Settings
from shared.contracts.alerts import AlertEvent
from shared.contracts.events import EVENT_ADAPTER
from shared.contracts.wire import decode_alert, encode_event
from shared.storage.tables import account_health, bus_log, health_daily
from tests.support.factories import EngineFactory, ProcessorFactory

NOW = datetime(2026, 11, 23, 9, tzinfo=UTC)


def record(settings: Settings, offset: int, raw: dict[str, object]) -> Record:
    event = EVENT_ADAPTER.validate_python(raw)
    return Record(settings.topic(event.kind), 0, offset, b"quiet", encode_event(event))


async def test_quiet_account_is_rescored_once_a_day_and_its_rule_fires(
    embedded_settings: Settings,
    engine_factory: EngineFactory,
    processor_factory: ProcessorFactory,
) -> None:
    engine = await engine_factory()
    bus = EmbeddedBus(engine)
    processor = processor_factory(engine, producer=bus, clock=lambda: NOW)
    raws: list[dict[str, object]] = [
        {
            "kind": "account",
            "event_id": "f",
            "account_id": "quiet",
            "seats_purchased": 10,
            "occurred_at": (NOW - timedelta(days=30)).isoformat(),
        }
    ]
    for back in range(10, 21):  # six users a day, from 20 to 10 days ago
        for u in range(6):
            raws.append(
                {
                    "kind": "usage",
                    "event_id": f"{back}-{u}",
                    "account_id": "quiet",
                    "user_id": f"u{u}",
                    "event": "login",
                    "occurred_at": (NOW - timedelta(days=back)).isoformat(),
                }
            )
    await processor.handle([record(embedded_settings, i, r) for i, r in enumerate(raws)])

    async def health() -> tuple[object, ...]:
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    select(account_health.c.score, account_health.c.band, account_health.c.inputs)
                )
            ).one()
        return tuple(row)

    async def published() -> list[AlertEvent]:
        async with engine.connect() as conn:
            q = select(bus_log.c.value).where(bus_log.c.topic == embedded_settings.topic("alerts"))
            return [decode_alert(v) for v in (await conn.execute(q)).scalars()]

    async def alerts() -> list[str]:
        """The alert messages published so far, as "rule status"."""
        return sorted(f"{a.rule} {a.status}" for a in await published())

    async def symptoms() -> set[str]:
        return {s["rule"] for a in await published() for s in a.details.get("symptoms", [])}

    _score, band, inputs = await health()
    assert inputs["active_users_7d"] == 6 and band != "red"  # as of its last event
    assert "low_activity firing" not in await alerts()

    sweep = QuietAccountSweep(engine, bus, processor, clock=lambda: NOW)
    assert await sweep.run_once() == 1
    _score, band, inputs = await health()
    assert inputs["active_users_7d"] == 0 and band == "red"
    fired = await alerts()
    # 0 of 10 seats this week; the score fell to red; 6 active users fell to 0: one
    # alert for the account's health, the three its symptoms (issue 15).
    assert "low_activity firing" in fired
    assert {"low_activity", "health_red", "active_users_falling"} <= await symptoms()
    async with engine.connect() as conn:
        days = set((await conn.execute(select(health_daily.c.day))).scalars())
    assert NOW.date() in days

    # Again the same day: nothing to do. Forced anyway: nothing changes.
    assert await sweep.run_once() == 0
    before = await health()
    async with engine.begin() as conn:
        await conn.execute(update(account_health).values(swept_on=None))
    assert await sweep.run_once() == 1
    assert await health() == before
    assert await alerts() == fired
    # Its score did not change, so no health row was written: marked swept all the same.
    assert await sweep.run_once() == 0
    # A row of a later day (the account's zone moved west, say) is outdated and dropped;
    # the sweep's own mark stays (dropping it had made the account due again at once).
    async with engine.begin() as conn:
        later = {"account_id": "quiet", "day": NOW.date() + timedelta(days=1), "band": "red"}
        await conn.execute(health_daily.insert().values(**later, inputs={}, explanation={}))
        # Stored inputs that differ from today's: the sweep writes the day's row.
        await conn.execute(update(account_health).values(swept_on=None, inputs={}))
    assert await sweep.run_once() == 1
    assert await sweep.run_once() == 0
    async with engine.connect() as conn:
        days = set((await conn.execute(select(health_daily.c.day))).scalars())
    assert max(days) == NOW.date()


async def test_a_pass_takes_the_due_accounts_chunk_after_chunk_each_once(
    engine_either: AsyncEngine,
    processor_factory: ProcessorFactory,
    embedded_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Chunks go on from the last id of the one before (not from the first id again).
    On PostgreSQL an account a batch holds is skipped, and the next pass sweeps it."""
    engine = engine_either
    monkeypatch.setattr(sweep_module, "CHUNK", 2)
    monkeypatch.setattr(lanes, "LANES", 1)  # one chunk at a time: their order
    processor = processor_factory(engine, producer=DiscardingProducer(), clock=lambda: NOW)
    await _quiet_accounts(processor, embedded_settings, 7)
    sweep = QuietAccountSweep(engine, DiscardingProducer(), processor, clock=lambda: NOW)
    chunks, _ = _noting_chunks(monkeypatch)
    if engine.dialect.name != "postgresql":
        assert await sweep.run_once() == 7
        assert chunks == [
            {"acct0", "acct1"},
            {"acct2", "acct3"},
            {"acct4", "acct5"},
            {"acct6"},
            set(),
        ]
        return
    h = account_health.c
    async with engine.begin() as batch:  # a batch rescoring acct2 holds its row
        await batch.execute(select(h.account_id).where(h.account_id == "acct2").with_for_update())
        assert await sweep.run_once() == 6
    assert chunks == [{"acct0", "acct1"}, {"acct3", "acct4"}, {"acct5", "acct6"}, set()]
    assert await sweep.run_once() == 1
    async with engine.connect() as conn:
        q = select(func.count()).where(h.swept_on == NOW.date())
        assert (await conn.execute(q)).scalar() == 7


async def test_lanes_sweep_chunks_at_once_and_each_account_once(
    database_url: str,
    engine_factory: EngineFactory,
    processor_factory: ProcessorFactory,
    embedded_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On PostgreSQL one process sweeps two chunks at once, each in its own
    transaction: together they take every due account once, none twice."""
    engine = await engine_factory(database_url)
    monkeypatch.setattr(sweep_module, "CHUNK", 2)
    monkeypatch.setattr(lanes, "LANES", 2)
    processor = processor_factory(engine, producer=DiscardingProducer(), clock=lambda: NOW)
    await _quiet_accounts(processor, embedded_settings, 23)
    sweep = QuietAccountSweep(engine, DiscardingProducer(), processor, clock=lambda: NOW)
    chunks, most = _noting_chunks(monkeypatch)
    assert await sweep.run_once() == 23
    taken = [account for chunk in chunks for account in chunk]
    assert sorted(taken) == sorted(f"acct{a}" for a in range(23))  # each once
    assert chunks.count(set()) == 2  # each lane ended when nothing was left for it
    assert most == [2]  # two chunks were in flight at once
    assert await sweep.run_once() == 0


async def _quiet_accounts(processor: Any, settings: Settings, count: int) -> None:
    """``count`` accounts, each with one event ten days before NOW."""
    raws: list[dict[str, object]] = [
        {
            "kind": "usage",
            "event_id": f"e{a}",
            "account_id": f"acct{a}",
            "user_id": "u1",
            "event": "login",
            "occurred_at": (NOW - timedelta(days=10)).isoformat(),
        }
        for a in range(count)
    ]
    await processor.handle([record(settings, i, r) for i, r in enumerate(raws)])


def _noting_chunks(monkeypatch: pytest.MonkeyPatch) -> tuple[list[set[str]], list[int]]:
    """The chunks the sweep takes, in the order they end, and (one number) the most it
    had in flight at once."""
    chunks: list[set[str]] = []
    flight = [0]
    most = [0]
    take = QuietAccountSweep._sweep_chunk

    async def noted(self: QuietAccountSweep, *args: Any, **kwargs: Any) -> set[str]:
        flight[0] += 1
        most[0] = max(most[0], flight[0])
        try:
            ids = await take(self, *args, **kwargs)
        finally:
            flight[0] -= 1
        chunks.append(ids)
        return ids

    monkeypatch.setattr(QuietAccountSweep, "_sweep_chunk", noted)
    return chunks, most
