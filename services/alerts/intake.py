"""Alert intake: each batch of messages from scoring goes through the alert lifecycle
(``lifecycle``) in one transaction with the consumed offsets, so an alert is stored,
and its notices queued, exactly once however often a message is redelivered.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.alerts.channels.text import one_line
from services.alerts.lifecycle import AlertLifecycle, log_stored
from services.alerts.metrics import AlertsMetrics
from services.alerts.outbox import Outbox
from services.alerts.silences import hold_silences
from shared.alerting.store import AlertingStore
from shared.bus.base import Record
from shared.bus.offsets import next_offsets, save_offsets
from shared.clock import Clock, utcnow
from shared.config import Settings
from shared.contracts.alerts import AlertEvent, Severity
from shared.contracts.wire import UndecodableRecord, decode_alert
from shared.storage.db import among
from shared.storage.tables import alerts

log = logging.getLogger(__name__)


class AlertIntake:
    """The alerts consumer's handler. ``alerting`` is the store of the alerting file in
    force (routing and notification policy)."""

    def __init__(
        self,
        engine: AsyncEngine,
        outbox: Outbox,
        settings: Settings,
        metrics: AlertsMetrics,
        *,
        alerting: AlertingStore,
        clock: Clock = utcnow,
    ):
        self._engine = engine
        self._outbox = outbox
        self._settings = settings
        self._alerting = alerting
        self._clock = clock
        self._lifecycle = AlertLifecycle(outbox, settings, metrics)

    async def handle(self, records: Sequence[Record]) -> None:
        now = self._clock()
        decoded = _criticals_first([_decode(r) for r in records])
        stored: list[str] = []  # log lines, written once the batch has committed
        async with self._outbox.transaction(self._engine) as conn:
            alerting, _ = await self._alerting.current(conn)
            # Every silence lock the batch's alerts need, first and in order: taken as each
            # alert came, after its own row was written, a snooze or silence of the same
            # alert (lock, then row) could deadlock with it (found in review).
            stored_rules = await conn.execute(
                select(alerts.c.alert_id, alerts.c.rule).where(
                    among(conn, alerts.c.alert_id, {a.alert_id for a in decoded})
                )
            )
            rules = {alert_id: rule for alert_id, rule in stored_rules}
            await hold_silences(
                conn,
                [
                    (a.account_id, rule)
                    for a in decoded
                    for rule in (a.rule, rules.get(a.alert_id, a.rule))
                ],
            )
            for alert in decoded:
                line = await self._lifecycle.apply(conn, alert, alerting, now)
                if line is not None:
                    stored.append(line)
            await save_offsets(conn, self._settings.consumer_group_alerts, next_offsets(records))
        log_stored(stored)


def _criticals_first(decoded: list[AlertEvent]) -> list[AlertEvent]:
    """Of the alerts one scoring step sent for an account (one account, one ``fired_at``:
    a step dates what it tells by its clock), those that fire critical first, at the
    place of the step's first message; everything else in its order. A step finding an
    account at the edge of churn sends its lesser alerts (a ticket backlog, an upsell)
    beside the critical one: in the alerting file's order they were stored and told
    first, then muted by it, a first run's flood (found from outside). Alerts of
    earlier steps stay before a later step's critical one: they were true, and told,
    before it (reordered across steps, they were muted by a critical alert that came
    after them, found in review)."""
    step_at: dict[tuple[str, datetime], int] = {}
    for k, alert in enumerate(decoded):
        step_at.setdefault((alert.account_id, alert.fired_at), k)

    def place(k: int) -> tuple[int, bool, int]:
        alert = decoded[k]
        critical = alert.status == "firing" and alert.severity == Severity.critical
        return step_at[(alert.account_id, alert.fired_at)], not critical, k

    return [decoded[k] for k in sorted(range(len(decoded)), key=place)]


def _decode(record: Record) -> AlertEvent:
    try:
        return decode_alert(record.value)
    except UndecodableRecord as exc:
        # Alerts come from our own scoring service: a bad one is a bug, logged loudly.
        # The batch fails; the consume loop narrows it down to this record and
        # dead-letters it with the reason (kept, not dropped), and the other alerts of
        # the batch go on.
        log.error(
            "undecodable alert at %s[%d]@%d: %s",
            record.topic,
            record.partition,
            record.offset,
            one_line(str(exc)),
        )
        raise
