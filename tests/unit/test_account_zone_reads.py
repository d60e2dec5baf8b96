"""Reads of one account count its days in its own zone: its health as of a day (the
facts at the end of that day, as the portfolio's as-of read), its timeline, and no
measures as of a day after its today."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from services.scoring.api import _health_as_of
from services.scoring.as_of import portfolio_health_as_of
from services.scoring.processor import ScoringProcessor
from services.scoring.queries import account_measures, timeline
from shared.auth import ApiKey, Scope
from shared.bus.base import Record
from shared.bus.embedded import EmbeddedBus
from shared.config import Settings
from shared.contracts.events import EVENT_ADAPTER
from shared.contracts.wire import encode_event
from shared.web import ClientError
from tests.support.factories import EngineFactory, ProcessorFactory


def _record(settings: Settings, offset: int, raw: dict[str, object]) -> Record:
    event = EVENT_ADAPTER.validate_python(raw)
    return Record(settings.topic(event.kind), 0, offset, b"a", encode_event(event))


async def _handle_each(
    processor: ScoringProcessor, settings: Settings, raws: list[dict[str, object]]
) -> None:
    """Each event in a batch of its own, in order."""
    for n, raw in enumerate(raws):
        await processor.handle([_record(settings, n, raw)])


async def test_the_tier_as_of_a_day_is_read_in_the_accounts_zone(
    embedded_settings: Settings, engine_factory: EngineFactory, processor_factory: ProcessorFactory
) -> None:
    engine = await engine_factory()
    processor = processor_factory(engine, producer=EmbeddedBus(engine))
    facts = {"kind": "account", "account_id": "ny", "timezone": "America/New_York"}
    raws: list[dict[str, object]] = [
        {**facts, "event_id": "f1", "tier": "enterprise", "occurred_at": "2026-09-01T12:00:00Z"},
        # 20:00 on 30 September in New York: the account's day of the change.
        {**facts, "event_id": "f2", "tier": "strategic", "occurred_at": "2026-10-01T00:00:00Z"},
        {
            "kind": "usage",
            "event_id": "u",
            "account_id": "ny",
            "user_id": "u1",
            "event": "login",
            "occurred_at": "2026-09-30T16:00:00Z",
        },
    ]
    await _handle_each(processor, embedded_settings, raws)
    day = date(2026, 9, 30)
    lead = ApiKey("k", "lead", frozenset({Scope.read}))
    async with engine.connect() as conn:
        one = await _health_as_of(conn, "ny", day, UTC)
        (row,) = await portfolio_health_as_of(conn, lead, day, UTC)
    assert one["tier"] == row["tier"] == "strategic"


async def test_measures_and_scores_as_of_a_day_after_today_are_refused(
    embedded_settings: Settings, engine_factory: EngineFactory, processor_factory: ProcessorFactory
) -> None:
    """Measures as of a day to come would count its days as days without use, and its
    score is not known yet: 422."""
    engine = await engine_factory()
    processor = processor_factory(engine, producer=EmbeddedBus(engine))
    use = {
        "kind": "usage",
        "event_id": "u",
        "account_id": "a",
        "user_id": "u1",
        "event": "login",
        "occurred_at": "2026-09-30T16:00:00Z",
    }
    await processor.handle([_record(embedded_settings, 0, use)])
    later = datetime.now(UTC).date() + timedelta(days=2)
    async with engine.connect() as conn:
        then = await account_measures(conn, "a", date(2026, 9, 30), UTC, (90, 730))
        assert then is not None and then.active_users_7d == 1
        with pytest.raises(ClientError) as refused:
            await account_measures(conn, "a", later, UTC, (90, 730))
        assert (await _health_as_of(conn, "a", date(2026, 9, 30), UTC))["score"] is not None
        with pytest.raises(ClientError) as no_score_yet:
            await _health_as_of(conn, "a", later, UTC)
    assert (refused.value.status, refused.value.code) == (422, "as_of_in_future")
    assert (no_score_yet.value.status, no_score_yet.value.code) == (422, "as_of_in_future")


async def test_the_timeline_puts_each_moment_on_its_day_in_the_accounts_zone(
    embedded_settings: Settings, engine_factory: EngineFactory, processor_factory: ProcessorFactory
) -> None:
    """A ticket opened at 12:00 UTC is on the next day at UTC+14, as the account's usage
    and open tickets count it."""
    engine = await engine_factory()
    processor = processor_factory(engine, producer=EmbeddedBus(engine))
    raws: list[dict[str, object]] = [
        {
            "kind": "account",
            "event_id": "f",
            "account_id": "k",
            "timezone": "Pacific/Kiritimati",
            "occurred_at": "2026-12-01T00:00:00Z",
        },
        {
            "kind": "ticket",
            "event_id": "t",
            "account_id": "k",
            "ticket_id": "T1",
            "status": "open",
            "priority": "high",
            "created_at": "2026-12-05T12:00:00Z",
            "occurred_at": "2026-12-05T12:00:00Z",
        },
    ]
    await _handle_each(processor, embedded_settings, raws)
    async with engine.connect() as conn:
        days = await timeline(conn, "k", date(2026, 12, 1), date(2026, 12, 10), UTC)
        just_one = await timeline(conn, "k", date(2026, 12, 5), date(2026, 12, 5), UTC)
    opened = {day["day"]: day["tickets_opened"] for day in days if "tickets_opened" in day}
    assert opened == {"2026-12-06": ["T1"]}
    assert all("tickets_opened" not in day for day in just_one)
