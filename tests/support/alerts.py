"""The alerts service's parts, wired as ``services.runtime.run_alerts`` wires them: one
outbox writer, and one store of the alerting file for the intake, timers and sender."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from services.alerts.channels import Channel
from services.alerts.intake import AlertIntake
from services.alerts.metrics import AlertsMetrics
from services.alerts.outbox import Outbox, OutboxSender
from services.alerts.timers import AlertTimers
from shared.alerting.store import AlertingStore
from shared.clock import Clock, utcnow
from shared.config import Settings


@dataclass
class AlertsParts:
    outbox: Outbox
    intake: AlertIntake
    timers: AlertTimers
    sender: OutboxSender
    metrics: AlertsMetrics


def alerts_parts(
    engine: AsyncEngine,
    settings: Settings,
    channels: Sequence[Channel],
    alerting: AlertingStore,
    *,
    clock: Clock = utcnow,
    registry: CollectorRegistry | None = None,
) -> AlertsParts:
    metrics = AlertsMetrics(registry or CollectorRegistry())
    outbox = Outbox(channels, settings, metrics)
    return AlertsParts(
        outbox=outbox,
        intake=AlertIntake(engine, outbox, settings, metrics, alerting=alerting, clock=clock),
        timers=AlertTimers(engine, outbox, settings, metrics, alerting=alerting, clock=clock),
        sender=OutboxSender(
            engine, channels, settings, metrics, alerting=alerting, clock=clock, wake=outbox.queued
        ),
        metrics=metrics,
    )
