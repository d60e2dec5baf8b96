"""Scoring metrics, registered on an injected registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


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
        self.batch_seconds = Histogram(
            "healthwatch_scoring_batch_seconds",
            "Time to apply one batch of records in one transaction",
            registry=registry,
        )
