"""Every scoring replica runs the quiet-account sweep: on PostgreSQL, replicas sweeping
at the same time split the due accounts, and each account is re-scored once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select

from services.scoring.metrics import ScoringMetrics
from services.scoring.processor import ScoringProcessor
from services.scoring.sweep import CHUNK, QuietAccountSweep
from shared.bus.base import DiscardingProducer, Record
from shared.config import Settings
from shared.contracts.events import EVENT_ADAPTER
from shared.contracts.wire import encode_event
from shared.storage.db import create_engine, migrate
from shared.storage.tables import account_health

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)
ACCOUNTS = 2 * CHUNK + 50  # more than one chunk per replica


def _record(settings: Settings, offset: int, raw: dict[str, object]) -> Record:
    event = EVENT_ADAPTER.validate_python(raw)
    return Record(
        settings.topic(event.kind), 0, offset, event.account_id.encode(), encode_event(event)
    )


async def test_two_replicas_split_the_sweep(database_url: str, alerting_file: str) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        kafka_bootstrap="",
        alerting_file=alerting_file,
    )
    engine = create_engine(database_url)
    await migrate(engine)
    try:
        raws: list[dict[str, object]] = []
        for a in range(ACCOUNTS):
            raws.append(
                {
                    "kind": "account",
                    "event_id": f"f{a}",
                    "account_id": f"acct{a:04d}",
                    "seats_purchased": 10,
                    "occurred_at": (NOW - timedelta(days=40)).isoformat(),
                }
            )
            raws.append(
                {
                    "kind": "usage",
                    "event_id": f"u{a}",
                    "account_id": f"acct{a:04d}",
                    "user_id": "u1",
                    "event": "login",
                    "occurred_at": (NOW - timedelta(days=3)).isoformat(),
                }
            )

        def processor() -> ScoringProcessor:
            return ScoringProcessor(
                engine, DiscardingProducer(), settings, ScoringMetrics(CollectorRegistry())
            )

        await processor().handle([_record(settings, i, r) for i, r in enumerate(raws)])

        replicas = [processor(), processor()]
        sweeps = [
            QuietAccountSweep(engine, DiscardingProducer(), p, clock=lambda: NOW) for p in replicas
        ]
        done = await asyncio.gather(*(s.run_once() for s in sweeps))

        # Without the split both replicas start on the same first chunk, and the second
        # re-scores it once the first commits.
        assert sum(done) == ACCOUNTS, done
        async with engine.connect() as conn:
            swept = await conn.execute(
                select(account_health.c.swept_on, func.count()).group_by(account_health.c.swept_on)
            )
            today = NOW.astimezone(replicas[0].zone).date()
            assert dict(swept.all()) == {today: ACCOUNTS}
        # A pass after both finds nothing left to do today.
        assert await sweeps[0].run_once() == 0
    finally:
        await engine.dispose()
