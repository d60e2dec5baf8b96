"""Alerts-service metrics, registered on an injected registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class AlertsMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.received = Counter(
            "healthwatch_alerts_received_total",
            "Alert messages consumed by rule and outcome (firing, resolved, duplicate)",
            ["rule", "outcome"],
            registry=registry,
        )
        self.deliveries = Counter(
            "healthwatch_alert_deliveries_total",
            "Delivery attempts by rule, channel and outcome (delivered, unconfirmed, retry, dead, "
            "skipped, unroutable)",
            ["rule", "channel", "outcome"],
            registry=registry,
        )
        self.delivery_seconds = Histogram(
            "healthwatch_alert_delivery_latency_seconds",
            "Time from an alert being stored to its delivery on a channel",
            ["channel"],
            registry=registry,
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
        )
        self.escalated = Counter(
            "healthwatch_alerts_escalated_total",
            "Firing alerts escalated because nobody acknowledged them in time, by rule",
            ["rule"],
            registry=registry,
        )
        self.outbox_depth = Gauge(
            "healthwatch_alert_outbox_depth",
            "Deliveries waiting to be sent (pending), as of the last poll",
            registry=registry,
        )
