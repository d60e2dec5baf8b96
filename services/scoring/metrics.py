"""Scoring metrics, registered on an injected registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.storage.tables import account_health


class ScoringMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.events = Counter(
            "healthwatch_scoring_events_total",
            "Events consumed by kind and outcome (scored, duplicate)",
            ["kind", "outcome"],
            registry=registry,
        )
        self.late_events = Counter(
            "healthwatch_scoring_late_events_total",
            "Usage events older than the rolling window, ignored",
            registry=registry,
        )
        self.dead_letters = Counter(
            "healthwatch_scoring_dead_letters_total",
            "Records sent to the dead-letter topic",
            registry=registry,
        )
        self.alerts = Counter(
            "healthwatch_scoring_alerts_total",
            "Alert events published by rule",
            ["rule"],
            registry=registry,
        )
        self.accounts = Gauge(
            "healthwatch_accounts",
            "Scored accounts by band and danger level (every replica reports all accounts)",
            ["band", "danger_level"],
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "healthwatch_scoring_batch_seconds",
            "Time to apply one batch of records in one transaction",
            # To two minutes: a backlog's batches of up to 100,000 records take several
            # seconds each, and the default buckets stop at 10 s, where every quantile
            # above read 10.
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120),
            registry=registry,
        )


async def count_accounts(engine: AsyncEngine, metrics: ScoringMetrics) -> None:
    """Refresh the accounts-by-band gauge from the database."""
    h = account_health
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(h.c.band, h.c.danger_level, func.count())
            .where(h.c.band.is_not(None))
            .group_by(h.c.band, h.c.danger_level)
        )
        counts = {(band, danger or "none"): n for band, danger, n in rows}
    metrics.accounts.clear()
    for (band, danger), n in counts.items():
        metrics.accounts.labels(band, danger).set(n)
