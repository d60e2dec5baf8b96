"""The batch processor on the embedded bus: duplicates count once, garbage is dead-lettered."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import CollectorRegistry
from sqlalchemy import func, select

from services.scoring.metrics import ScoringMetrics
from services.scoring.processor import ScoringProcessor
from shared.bus.base import Record
from shared.bus.embedded import EmbeddedBus
from shared.config import Settings
from shared.storage.db import create_engine, migrate
from shared.storage.offsets import offset_loader
from shared.storage.tables import activity_daily, bus_log

NOW = datetime(2026, 11, 23, 9, tzinfo=UTC)


def usage(settings: Settings, offset: int, event_id: str) -> Record:
    body = (
        f'{{"kind":"usage","event_id":"{event_id}","account_id":"a","user_id":"u",'
        f'"event":"x","occurred_at":"{NOW.isoformat()}"}}'
    )
    return Record(settings.topic("usage"), 0, offset, b"a", body.encode())


async def test_duplicates_count_once_and_garbage_is_dead_lettered(
    embedded_settings: Settings,
) -> None:
    engine = create_engine(embedded_settings.database_url)
    await migrate(engine)
    registry = CollectorRegistry()
    processor = ScoringProcessor(
        engine, EmbeddedBus(engine), embedded_settings, ScoringMetrics(registry), clock=lambda: NOW
    )
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
        and dead[0]["reason"].startswith("not JSON")
    )
    assert (
        registry.get_sample_value(
            "healthwatch_scoring_events_total", {"kind": "any", "outcome": "duplicate"}
        )
        == 2
    )
    stored = await offset_loader(engine, s.consumer_group_scoring)([(s.topic("usage"), 0)])
    assert stored == {(s.topic("usage"), 0): 6}
    await engine.dispose()
