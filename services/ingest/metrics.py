"""Ingest metrics, registered on an injected registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.requests = Counter(
            "healthwatch_ingest_requests_total",
            "HTTP requests to the ingest API by route and status code",
            ["route", "status"],
            registry=registry,
        )
        self.events = Counter(
            "healthwatch_ingest_events_total",
            "Events received by kind and outcome (accepted, rejected, unavailable)",
            ["kind", "outcome"],
            registry=registry,
        )
        self.produce_seconds = Histogram(
            "healthwatch_ingest_produce_seconds",
            "Time from handing a request's events to the bus until it acknowledged them",
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
