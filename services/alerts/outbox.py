"""Alert intake (bus → alerts table + outbox) and the outbox sender.

Intake stores each alert once (by its deterministic id) and one delivery row per
channel, with the consumed offsets, in one transaction. The sender claims due rows
with a lease, sends, and records the outcome; a crash between sending and recording
causes at most one duplicate, never a loss.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from services.alerts.channels import Channel, DeliveryError
from services.alerts.metrics import AlertsMetrics
from shared.bus.base import Record
from shared.clock import Clock, utcnow
from shared.config import Settings
from shared.contracts.alerts import AlertEvent
from shared.contracts.wire import UndecodableRecord, decode_alert
from shared.storage.db import insert_ignore
from shared.storage.offsets import next_offsets, save_offsets
from shared.storage.tables import alerts, deliveries
from shared.worker import pause

log = logging.getLogger(__name__)

# A claimed delivery is ours for this long; a sender that dies mid-send releases it
# when the lease runs out. Longer than any single send's timeout (30 s).
CLAIM_LEASE = timedelta(seconds=60)
CLAIM_BATCH = 20


class AlertIntake:
    def __init__(
        self,
        engine: AsyncEngine,
        channels: Sequence[Channel],
        settings: Settings,
        metrics: AlertsMetrics,
        *,
        clock: Clock = utcnow,
    ):
        self._engine = engine
        self._channels = channels
        self._settings = settings
        self._metrics = metrics
        self._clock = clock

    async def handle(self, records: Sequence[Record]) -> None:
        now = self._clock()
        decoded: list[AlertEvent] = []
        for r in records:
            try:
                decoded.append(decode_alert(r.value))
            except UndecodableRecord as exc:
                # Alerts come from our own scoring service: a bad one is a bug, logged loudly.
                log.error(
                    "skipping undecodable alert at %s[%d]@%d: %s",
                    r.topic,
                    r.partition,
                    r.offset,
                    exc,
                )
        async with self._engine.begin() as conn:
            for alert in decoded:
                stored = await conn.execute(
                    insert_ignore(conn, alerts)
                    .on_conflict_do_nothing()
                    .returning(alerts.c.alert_id),
                    [
                        {
                            "alert_id": alert.alert_id,
                            "account_id": alert.account_id,
                            "rule": alert.rule,
                            "severity": alert.severity.value,
                            "status": alert.status,
                            "title": alert.title,
                            "payload": alert.model_dump(mode="json"),
                            "fired_at": alert.fired_at,
                            "stored_at": now,
                        }
                    ],
                )
                if stored.first() is None:
                    self._metrics.received.labels(alert.rule, "duplicate").inc()
                    continue
                self._metrics.received.labels(alert.rule, "stored").inc()
                log.info("alert stored: %s — %s", alert.alert_id, alert.title)
                rows = self._delivery_rows(alert, now)
                if rows:
                    await conn.execute(
                        insert_ignore(conn, deliveries).on_conflict_do_nothing(), rows
                    )
            await save_offsets(conn, self._settings.consumer_group_alerts, next_offsets(records))

    def _delivery_rows(self, alert: AlertEvent, now: datetime) -> list[dict[str, Any]]:
        rows = []
        for channel in self._channels:
            destination = channel.destination(alert)
            if destination is None:
                log.warning(
                    "alert %s has no %s destination (no owner, no fallback)",
                    alert.alert_id,
                    channel.name,
                )
                self._metrics.deliveries.labels(channel.name, "unroutable").inc()
                continue
            rows.append(
                {
                    "alert_id": alert.alert_id,
                    "channel": channel.name,
                    "destination": destination,
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": now,
                }
            )
        return rows


def backoff_s(attempts: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter after ``attempts`` failures."""
    return rng.uniform(base_s, min(cap_s, base_s * 2 ** max(0, attempts - 1)))


class OutboxSender:
    def __init__(
        self,
        engine: AsyncEngine,
        channels: Sequence[Channel],
        settings: Settings,
        metrics: AlertsMetrics,
        *,
        clock: Clock = utcnow,
        rng: random.Random | None = None,
    ):
        self._engine = engine
        self._channels = {c.name: c for c in channels}
        self._settings = settings
        self._metrics = metrics
        self._clock = clock
        self._rng = rng or random.Random()
        self._last_send: dict[tuple[str, str], float] = {}

    async def run(self, stop: asyncio.Event) -> None:
        """Send due deliveries until ``stop`` is set; a send in flight completes first."""
        while not stop.is_set():
            try:
                sent = await self.send_due()
            except Exception:
                log.exception("outbox pass failed; retrying")
                sent = 0
            if not sent:
                await pause(stop, self._settings.delivery_poll_interval_s)

    async def send_due(self) -> int:
        claimed = await self._claim()
        for row in claimed:
            await self._deliver(row)
        return len(claimed)

    async def _claim(self) -> list[Any]:
        now = self._clock()
        due = and_(
            deliveries.c.status == "pending",
            deliveries.c.next_attempt_at <= now,
            or_(deliveries.c.claimed_until.is_(None), deliveries.c.claimed_until < now),
        )
        async with self._engine.begin() as conn:
            self._metrics.outbox_depth.set(
                (
                    await conn.execute(select(func.count()).where(deliveries.c.status == "pending"))
                ).scalar_one()
            )
            candidates = (
                (
                    await conn.execute(
                        select(deliveries.c.delivery_id)
                        .where(due)
                        .order_by(deliveries.c.next_attempt_at)
                        .limit(CLAIM_BATCH)
                    )
                )
                .scalars()
                .all()
            )
            claimed = []
            for delivery_id in candidates:
                # Conditional update: only one sender (process) wins each row.
                won = await conn.execute(
                    update(deliveries)
                    .where(deliveries.c.delivery_id == delivery_id, due)
                    .values(claimed_until=now + CLAIM_LEASE)
                )
                if won.rowcount == 1:
                    claimed.append(delivery_id)
            if not claimed:
                return []
            rows = await conn.execute(
                select(deliveries, alerts.c.payload, alerts.c.stored_at)
                .join(alerts, alerts.c.alert_id == deliveries.c.alert_id)
                .where(deliveries.c.delivery_id.in_(claimed))
                .order_by(deliveries.c.next_attempt_at)
            )
            return list(rows)

    async def _deliver(self, row: Any) -> None:
        channel = self._channels.get(row.channel)
        alert = AlertEvent.model_validate(row.payload)
        try:
            if channel is None:
                raise DeliveryError(
                    f"channel {row.channel!r} is not configured any more", permanent=True
                )
            await self._pace(row.channel, row.destination)
            await channel.send(alert, row.destination)
        except DeliveryError as exc:
            await self._failed(row, exc)
            return
        now = self._clock()
        async with self._engine.begin() as conn:
            await conn.execute(
                update(deliveries)
                .where(deliveries.c.delivery_id == row.delivery_id)
                .values(
                    status="delivered",
                    attempts=row.attempts + 1,
                    delivered_at=now,
                    claimed_until=None,
                    last_error=None,
                )
            )
        self._metrics.deliveries.labels(row.channel, "delivered").inc()
        self._metrics.delivery_seconds.labels(row.channel).observe(
            (now - row.stored_at).total_seconds()
        )
        log.info("delivered alert %s by %s to %s", row.alert_id, row.channel, row.destination)

    async def _failed(self, row: Any, exc: DeliveryError) -> None:
        s = self._settings
        attempts = row.attempts + 1
        dead = exc.permanent or attempts >= s.delivery_max_attempts
        delay = backoff_s(attempts, s.delivery_backoff_base_s, s.delivery_backoff_cap_s, self._rng)
        if exc.retry_after_s is not None:
            delay = max(delay, exc.retry_after_s)
        async with self._engine.begin() as conn:
            await conn.execute(
                update(deliveries)
                .where(deliveries.c.delivery_id == row.delivery_id)
                .values(
                    status="dead" if dead else "pending",
                    attempts=attempts,
                    next_attempt_at=self._clock() + timedelta(seconds=delay),
                    claimed_until=None,
                    last_error=str(exc)[:2000],
                )
            )
        outcome = "dead" if dead else "retry"
        self._metrics.deliveries.labels(row.channel, outcome).inc()
        log.warning(
            "alert %s by %s failed (attempt %d, %s): %s",
            row.alert_id,
            row.channel,
            attempts,
            "giving up" if dead else f"retry in {delay:.1f}s",
            exc,
        )

    async def _pace(self, channel: str, destination: str) -> None:
        """At most one Slack message per second per destination (Slack's own limit)."""
        if channel != "slack":
            return
        loop = asyncio.get_running_loop()
        key = (channel, destination)
        wait = self._last_send.get(key, 0.0) + self._settings.slack_min_interval_s - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        self._last_send[key] = loop.time()
