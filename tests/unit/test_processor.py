"""The batch processor on the embedded bus: duplicates count once, garbage is dead-lettered,
explanations compare with earlier scores."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

import services.scoring.processor as processor_module
from services.scoring import history
from services.scoring.explain import EXTRA_LABELS, worded_changes
from services.scoring.metrics import ScoringMetrics
from shared.bus.base import Record
from shared.bus.offsets import offset_loader
from shared.config import Settings
from shared.contracts.events import Event
from shared.storage.tables import account_health, accounts, activity_daily, bus_log
from tests.support.factories import EngineFactory, ProcessorFactory

NOW = datetime(2026, 11, 23, 9, tzinfo=UTC)


def usage(settings: Settings, offset: int, event_id: str) -> Record:
    body = (
        f'{{"kind":"usage","event_id":"{event_id}","account_id":"a","user_id":"u",'
        f'"event":"x","occurred_at":"{NOW.isoformat()}"}}'
    )
    return Record(settings.topic("usage"), 0, offset, b"a", body.encode())


async def test_duplicates_count_once_and_garbage_is_dead_lettered(
    embedded_settings: Settings,
    engine_factory: EngineFactory,
    processor_factory: ProcessorFactory,
) -> None:
    engine = await engine_factory()
    registry = CollectorRegistry()
    processor = processor_factory(engine, metrics=ScoringMetrics(registry), clock=lambda: NOW)
    s = embedded_settings
    await processor.handle([usage(s, 0, "e1"), usage(s, 1, "e1"), usage(s, 2, "e2")])
    await processor.handle(
        [usage(s, 3, "e2"), Record(s.topic("usage"), 0, 4, b"a", b"\xff"), usage(s, 5, "e3")]
    )
    async with engine.connect() as conn:
        events = (await conn.execute(select(func.sum(activity_daily.c.events)))).scalar()
        dead = (
            (
                await conn.execute(
                    select(bus_log.c.headers).where(bus_log.c.topic == s.topic("deadletter"))
                )
            )
            .scalars()
            .all()
        )
    assert events == 3
    assert (
        len(dead) == 1
        and dead[0]["source_offset"] == "4"
        and dead[0]["reason"].startswith("not UTF-8 text")
    )
    assert (
        registry.get_sample_value(
            "healthwatch_scoring_events_total", {"kind": "usage", "outcome": "duplicate"}
        )
        == 2
    )
    stored = await offset_loader(engine, s.consumer_group_scoring)([(s.topic("usage"), 0)])
    assert stored == {(s.topic("usage"), 0): 6}


async def test_a_batch_of_several_slices_is_one_transaction_scoring_each_account_once(
    embedded_settings: Settings,
    engine_factory: EngineFactory,
    processor_factory: ProcessorFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Decoded and applied two records at a time, a batch counts a duplicate across its
    slices once, dead-letters the garbage in any slice, scores its account once at the
    end, and leaves the same score, counts and offsets as the same batch in one slice."""
    s = embedded_settings
    batch = [
        usage(s, 0, "e1"),
        usage(s, 1, "e2"),
        Record(s.topic("usage"), 0, 2, b"a", b"\xff"),
        usage(s, 3, "e1"),  # sent again, two slices later
        usage(s, 4, "e3"),
    ]

    async def outcome(engine: AsyncEngine) -> tuple[object, ...]:
        h = account_health.c
        async with engine.connect() as conn:
            row = (await conn.execute(select(h.score, h.band, h.events_7d, h.inputs))).one()
            events = await conn.scalar(select(func.sum(activity_daily.c.events)))
            dead = await conn.scalar(
                select(func.count()).where(bus_log.c.topic == s.topic("deadletter"))
            )
        stored = await offset_loader(engine, s.consumer_group_scoring)([(s.topic("usage"), 0)])
        return (*row, events, dead, stored)

    whole = await engine_factory()
    assert await processor_factory(whole, clock=lambda: NOW).handle(batch) == 3

    scored: list[str] = []
    real_score = processor_module.score_account

    def counting(measures: Any, *args: Any, **kwargs: Any) -> Any:
        scored.append(measures.account_id)
        return real_score(measures, *args, **kwargs)

    slices: list[int] = []
    apply_slice = processor_module.ScoringProcessor._apply_slice

    async def noted(self: Any, conn: Any, records: Any, *args: Any) -> None:
        slices.append(len(records))
        await apply_slice(self, conn, records, *args)

    monkeypatch.setattr(processor_module, "APPLY_SLICE", 2)
    monkeypatch.setattr(processor_module, "score_account", counting)
    monkeypatch.setattr(processor_module.ScoringProcessor, "_apply_slice", noted)
    sliced = await engine_factory(f"sqlite+aiosqlite:///{tmp_path / 'sliced.db'}")
    assert await processor_factory(sliced, clock=lambda: NOW).handle(batch) == 3
    assert slices == [2, 2, 1]
    assert scored == ["a"]
    assert await outcome(sliced) == await outcome(whole)
    assert (await outcome(sliced))[4:] == (3, 1, {(s.topic("usage"), 0): 5})


async def test_explanations_say_what_moved_since_the_last_score_and_7_and_30_days_ago(
    embedded_settings: Settings,
    engine_factory: EngineFactory,
    processor_factory: ProcessorFactory,
) -> None:
    engine = await engine_factory()
    s = embedded_settings
    processor = processor_factory(engine, clock=lambda: NOW)
    offset = 0
    # Scored on three days: 10 users 30 days ago, 6 users 7 days ago, 2 users today.
    for days_ago, users in ((30, 10), (7, 6), (0, 2)):
        at = (NOW - timedelta(days=days_ago)).isoformat()
        batch = []
        for u in range(users):
            body = orjson.dumps(
                {
                    "kind": "usage",
                    "event_id": f"d{days_ago}-u{u}",
                    "account_id": "a",
                    "user_id": f"u{u}",
                    "event": "x",
                    "occurred_at": at,
                }
            )
            batch.append(Record(s.topic("usage"), 0, offset, b"a", body))
            offset += 1
        await processor.handle(batch)
    async with engine.connect() as conn:
        stored, inputs = (
            await conn.execute(
                select(account_health.c.components, account_health.c.inputs).where(
                    account_health.c.account_id == "a"
                )
            )
        ).one()
        # What moved since the last score is stored as numbers; since 7 and 30 days
        # back it is worked out when read, from the score's day: as the API reads it.
        assert list(stored["moved"]) == ["since_previous"]
        assert stored["day"] == NOW.date().isoformat()
        why = await history.with_moved_since(conn, "a", stored, inputs)

    assert "changes" not in why
    worded = worded_changes(why, EXTRA_LABELS)

    def users_change(key: str) -> str:
        (moved,) = [c for c in worded["changes"][key] if c["measure"] == "active_users_7d"]
        return str(moved["text"])

    assert users_change("since_previous") == "active users over 7 days fell from 6 to 2, −67%"
    assert users_change("since_7d") == "active users over 7 days fell from 6 to 2, −67%"
    assert users_change("since_30d") == "active users over 7 days fell from 10 to 2, −80%"


async def test_an_event_from_the_future_is_dead_lettered_and_the_account_goes_on(
    embedded_settings: Settings,
    engine_factory: EngineFactory,
    processor_factory: ProcessorFactory,
) -> None:
    """Produced past ingest (or imported) with a time beyond its receipt + the allowed
    skew, an event is refused as ingest refuses it: applied, it made every later event
    of its account "late" (not counted) and moved the account's day windows past its
    history. A bus time no calendar holds counts as none (the clock's now)."""
    engine = await engine_factory()
    processor = processor_factory(engine, clock=lambda: NOW)
    s = embedded_settings

    def at(offset: int, moment: str, bus_time: float | None = None) -> Record:
        body = {
            "kind": "usage",
            "event_id": f"e{offset}",
            "account_id": "a",
            "user_id": "u",
            "event": "x",
            "occurred_at": moment,
        }
        return Record(s.topic("usage"), 0, offset, b"a", orjson.dumps(body), timestamp=bus_time)

    far = "2199-12-31T00:00:00+00:00"
    await processor.handle([at(0, NOW.isoformat()), at(1, far)])
    await processor.handle([at(2, NOW.isoformat(), bus_time=253402300800.0), at(3, far, 1e300)])
    async with engine.connect() as conn:
        events = await conn.scalar(select(func.sum(activity_daily.c.events)))
        days = (await conn.execute(select(activity_daily.c.day))).scalars().all()
        dead = (
            (
                await conn.execute(
                    select(bus_log.c.headers).where(bus_log.c.topic == s.topic("deadletter"))
                )
            )
            .scalars()
            .all()
        )
    assert events == 2 and len(days) == 1
    assert [d["source_offset"] for d in dead] == ["1", "3"]
    assert all("occurred_at is more than 1:00:00 in the future" in d["reason"] for d in dead)


async def test_facts_merge_by_instant_whatever_offset_they_are_written_in(
    embedded_settings: Settings,
    engine_factory: EngineFactory,
    processor_factory: ProcessorFactory,
) -> None:
    """10:00+08:00 is 02:00 UTC: a fact sent at 05:00 UTC is the newer one, in either
    arrival order (stamps compared as text kept the older one)."""
    s = embedded_settings
    older = {"event_id": "older", "tier": "strategic", "occurred_at": "2026-11-20T10:00:00+08:00"}
    newer = {"event_id": "newer", "tier": "enterprise", "occurred_at": "2026-11-20T05:00:00+00:00"}
    for order in ([older, newer], [newer, older]):
        engine = await engine_factory(
            f"sqlite+aiosqlite:///{s.database_url.split('///')[1]}.{order[0]['event_id']}"
        )
        processor = processor_factory(engine, clock=lambda: NOW)
        await processor.handle(
            [
                Record(
                    s.topic("account"),
                    0,
                    offset,
                    b"acme",
                    orjson.dumps({"kind": "account", "account_id": "acme", **facts}),
                )
                for offset, facts in enumerate(order)
            ]
        )
        async with engine.connect() as conn:
            assert await conn.scalar(select(accounts.c.tier)) == "enterprise"


async def test_a_batch_applied_without_scoring_leaves_its_accounts_to_be_scored_later(
    embedded_settings: Settings,
    engine_factory: EngineFactory,
    processor_factory: ProcessorFactory,
    tmp_path: Path,
) -> None:
    """``handle(score=False)`` (the backtest's feed) counts the events and commits the
    offsets, writing no score; ``rescore`` then scores the account from them, as the
    batch would have. ``handle`` tells the events it counted: a resent one is not."""
    s = embedded_settings
    scored_engine = await engine_factory()
    unscored_engine = await engine_factory(f"sqlite+aiosqlite:///{tmp_path / 'unscored.db'}")
    batch = [usage(s, 0, "e1"), usage(s, 1, "e2")]
    await processor_factory(scored_engine, clock=lambda: NOW).handle(batch)
    unscored = processor_factory(unscored_engine, clock=lambda: NOW)
    counted: list[Event] = []
    assert await unscored.handle(batch, score=False, counted=counted.append) == 2
    assert [event.event_id for event in counted] == ["e1", "e2"]

    async def health(engine: AsyncEngine) -> tuple[object, ...]:
        h = account_health.c
        async with engine.connect() as conn:
            row = (await conn.execute(select(h.score, h.band, h.events_7d))).one()
            events = await conn.scalar(select(func.sum(activity_daily.c.events)))
        return (*row, events)

    assert await health(unscored_engine) == (None, None, 0, 2)
    stored = await offset_loader(unscored_engine, s.consumer_group_scoring)([(s.topic("usage"), 0)])
    assert stored == {(s.topic("usage"), 0): 2}
    async with unscored_engine.begin() as conn:
        await unscored.rescore(conn, {"a"}, NOW)
    assert await health(unscored_engine) == await health(scored_engine)
    counted.clear()
    resent = [usage(s, 2, "e1"), usage(s, 3, "e3")]
    assert await unscored.handle(resent, score=False, counted=counted.append) == 1
    assert [event.event_id for event in counted] == ["e3"]


async def test_a_receipt_after_a_replays_simulated_day_is_no_future_receipt(
    embedded_settings: Settings,
    engine_factory: EngineFactory,
    processor_factory: ProcessorFactory,
) -> None:
    """A backtest's clock is the day it replays; a line received days after that day
    (an app back online) is checked against the real clock, not refused."""
    engine = await engine_factory()
    registry = CollectorRegistry()
    processor = processor_factory(engine, metrics=ScoringMetrics(registry), clock=lambda: NOW)
    s = embedded_settings
    late = (
        f'{{"kind":"usage","event_id":"late","account_id":"a","user_id":"u","event":"x",'
        f'"occurred_at":"{NOW.isoformat()}","received_at":"{(NOW + timedelta(days=3)).isoformat()}"}}'
    )
    assert await processor.handle([Record(s.topic("usage"), 0, 0, b"a", late.encode())]) == 1
