"""The outbox sender: claims due deliveries with a lease, sends, records the outcome.

A crash between sending and recording causes at most one duplicate, never a loss.
Deliveries to one destination go strictly in order (the oldest pending one first,
even while it waits for a retry), so an account's alerts arrive in the order they
happened. With grouping on, the Slack deliveries waiting for one destination go as
one message.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from services.alerts import render
from services.alerts.channels import Channel, DeliveryError, Notice
from services.alerts.metrics import AlertsMetrics
from shared.alerting.store import AlertingStore
from shared.clock import Clock, utcnow
from shared.config import Settings
from shared.contracts.alerts import AlertEvent
from shared.storage.tables import alerts, deliveries
from shared.worker import pause

log = logging.getLogger(__name__)

CLAIM_BATCH = 20


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
        config: AlertingStore | None = None,
        wake: asyncio.Event | None = None,
    ):
        self._engine = engine
        self._channels = {c.name: c for c in channels}
        self._settings = settings
        self._metrics = metrics
        self._clock = clock
        self._rng = rng or random.Random()
        # Per pace key (loop time): the last send, and the end of a Retry-After.
        self._last_send: dict[tuple[str, str], float] = {}
        self._held_until: dict[tuple[str, str], float] = {}
        self._config = config or AlertingStore()
        self._wake = wake

    async def run(self, stop: asyncio.Event) -> None:
        """Send due deliveries until ``stop`` is set; a send in flight completes first."""
        while not stop.is_set():
            try:
                sent = await self.send_due()
            except Exception:
                log.exception("outbox pass failed; retrying")
                sent = 0
            if not sent:
                await self._idle(stop)

    async def _idle(self, stop: asyncio.Event) -> None:
        """Until the next poll, or sooner when this process queued deliveries."""
        interval = self._settings.delivery_poll_interval_s
        if self._wake is None:
            await pause(stop, interval)
            return
        waits = {asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())}
        try:
            await asyncio.wait(waits, timeout=interval, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        self._wake.clear()

    async def send_due(self) -> int:
        """One pass. A delivery that cannot be sent fails alone (``_deliver`` records it
        as its failed attempt); the pass goes on with the others."""
        claimed = await self._claim()
        for group in claimed:
            try:
                await self._deliver(group)
            except Exception:
                # Recording the outcome failed (the database is away): the claim lease
                # runs out and the delivery is tried again, at most one duplicate.
                log.exception("recording delivery %s failed", group[0].delivery_id)
        return sum(len(g) for g in claimed)

    async def _claim(self) -> list[list[Any]]:
        """Groups of rows to send: per (channel, destination) the oldest pending row if
        it is due, plus, for grouped Slack, the rest waiting for that destination."""
        now = self._clock()
        lease = timedelta(seconds=self._settings.delivery_claim_lease_s)
        d = deliveries
        free = or_(d.c.claimed_until.is_(None), d.c.claimed_until < now)
        async with self._engine.begin() as conn:
            pending = select(func.count()).where(d.c.status == "pending")
            self._metrics.outbox_depth.set((await conn.execute(pending)).scalar_one())
            config, _ = await self._config.current(conn)
            grouping = config.notify.group_wait > timedelta(0)
            heads = (
                select(func.min(d.c.delivery_id))
                .where(d.c.status == "pending")
                .group_by(d.c.channel, d.c.destination)
            )
            due = (
                await conn.execute(
                    select(d.c.delivery_id, d.c.channel, d.c.destination)
                    .where(d.c.delivery_id.in_(heads), d.c.next_attempt_at <= now, free)
                    .order_by(d.c.next_attempt_at)
                    .limit(CLAIM_BATCH)
                )
            ).all()
            groups: list[list[Any]] = []
            for head in due:
                ids = [head.delivery_id]
                if head.channel == "slack" and grouping:
                    ids += (
                        (
                            await conn.execute(
                                select(d.c.delivery_id)
                                .where(
                                    d.c.channel == "slack",
                                    d.c.destination == head.destination,
                                    d.c.status == "pending",
                                    d.c.delivery_id > head.delivery_id,
                                    d.c.attempts == 0,
                                    free,
                                )
                                .order_by(d.c.delivery_id)
                                .limit(render.MAX_GROUPED * 5)
                            )
                        )
                        .scalars()
                        .all()
                    )
                # Conditional update: only one sender (process) wins each row.
                won = await conn.execute(
                    update(d)
                    .where(d.c.delivery_id.in_(ids), d.c.status == "pending", free)
                    .values(claimed_until=now + lease)
                )
                if won.rowcount != len(ids):
                    continue  # another sender got there; its transaction decides
                rows = await conn.execute(
                    select(d, alerts.c.payload.label("alert_payload"))
                    .outerjoin(alerts, alerts.c.alert_id == d.c.alert_id)
                    .where(d.c.delivery_id.in_(ids))
                    .order_by(d.c.delivery_id)
                )
                groups.append(list(rows))
            return groups

    async def _deliver(self, group: list[Any]) -> None:
        head = group[0]
        channel = self._channels.get(head.channel)
        pace = _pace_key(channel, head.destination)
        if pace is not None:
            held_s = self._held_until.get(pace, 0.0) - asyncio.get_running_loop().time()
            if held_s > 0:
                await self._defer(group, held_s)
                return
        rules = ["unknown"] * len(group)
        try:
            notices = [_notice(r) for r in group]
            rules = [_rule(n) for n in notices]
            if channel is None:
                raise DeliveryError(
                    f"channel {head.channel!r} is not configured any more", permanent=True
                )
            if pace is not None:
                await self._pace(pace)
            await channel.send(_one_notice(notices), head.destination)
        except DeliveryError as exc:
            if pace is not None and exc.retry_after_s is not None:
                # A 429 limits the whole Slack channel, not this message: every delivery
                # sharing the pace key waits it out, or Slack keeps refusing (and may
                # disable the webhook).
                self._held_until[pace] = asyncio.get_running_loop().time() + exc.retry_after_s
            await self._failed_all(group, rules, exc)
            return
        except Exception as exc:
            # Data the renderer or a client library chokes on, or a bug: a failed attempt
            # of this delivery (retried with backoff, dead after the last attempt),
            # never a failed pass that would hold up every other delivery. The trace
            # only at DEBUG: a client library's may quote the webhook URL.
            failure = DeliveryError(f"{type(exc).__name__}: {exc}")
            log.error(
                "delivery %s could not be sent: %s",
                head.delivery_id,
                _loggable(failure),
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
            await self._failed_all(group, rules, failure)
            return
        await self._delivered(group, rules)

    async def _failed_all(self, group: list[Any], rules: list[str], exc: DeliveryError) -> None:
        for r, rule in zip(group, rules, strict=True):
            await self._failed(r, rule, exc)

    async def _delivered(self, group: list[Any], rules: list[str]) -> None:
        head = group[0]
        now = self._clock()
        async with self._engine.begin() as conn:
            await conn.execute(
                update(deliveries)
                .where(deliveries.c.delivery_id.in_([r.delivery_id for r in group]))
                .values(
                    status="delivered",
                    attempts=deliveries.c.attempts + 1,
                    delivered_at=now,
                    claimed_until=None,
                    last_error=None,
                )
            )
        for r, rule in zip(group, rules, strict=True):
            self._metrics.deliveries.labels(rule, r.channel, "delivered").inc()
            if r.created_at is not None:
                self._metrics.delivery_seconds.labels(r.channel).observe(
                    (now - r.created_at).total_seconds()
                )
        # The destination is an address or channel id, never a URL (the webhook's is
        # "webhook"): nothing secret is logged. Data is logged on one line, so a CR/LF
        # in it cannot forge log lines.
        log.info(
            "delivered %s by %s to %s",
            render.one_line(", ".join(r.alert_id for r in group)),
            head.channel,
            render.one_line(head.destination),
        )

    async def _failed(self, row: Any, rule: str, exc: DeliveryError) -> None:
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
                    last_error=_loggable(exc)[:2000],
                )
            )
        outcome = "dead" if dead else "retry"
        self._metrics.deliveries.labels(rule, row.channel, outcome).inc()
        log.warning(
            "alert %s by %s failed (attempt %d, %s): %s",
            render.one_line(row.alert_id),
            row.channel,
            attempts,
            "giving up" if dead else f"retry in {delay:.1f}s",
            _loggable(exc),
        )

    async def _defer(self, group: list[Any], seconds: float) -> None:
        """Back in the queue untried (no attempt counted), due when the hold ends."""
        async with self._engine.begin() as conn:
            await conn.execute(
                update(deliveries)
                .where(deliveries.c.delivery_id.in_([r.delivery_id for r in group]))
                .values(
                    next_attempt_at=self._clock() + timedelta(seconds=seconds),
                    claimed_until=None,
                )
            )

    async def _pace(self, key: tuple[str, str]) -> None:
        """At most one Slack message per second per destination (Slack's own limit)."""
        loop = asyncio.get_running_loop()
        wait = self._last_send.get(key, 0.0) + self._settings.slack_min_interval_s - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        self._last_send[key] = loop.time()


def _pace_key(channel: Channel | None, destination: str) -> tuple[str, str] | None:
    """Deliveries that share Slack's rate limit (one webhook, or one channel)."""
    if channel is None:
        return None
    key = channel.pace_key(destination)
    return None if key is None else (channel.name, key)


def _notice(row: Any) -> Notice:
    if row.payload is not None:
        return Notice.from_json(row.payload)
    # Rows queued before notices had payloads: the alert's own firing.
    alert = AlertEvent.model_validate(row.alert_payload)
    return Notice("fire", [alert], row.alert_id)


def _loggable(exc: Exception) -> str:
    """An error fit for logs and ``last_error``: one line, no NUL (PostgreSQL text
    refuses it), and no URL path or query (a webhook URL's token)."""
    return render.redact_urls(render.one_line(str(exc)))


def _one_notice(notices: list[Notice]) -> Notice:
    """A group's notices as one message (grouped Slack); a single one as it is."""
    if len(notices) == 1:
        return notices[0]
    alerts_ = [a for n in notices for a in n.alerts]
    return Notice("group", alerts_, "+".join(n.key for n in notices))


def _rule(notice: Notice) -> str:
    """The rule a delivery is about ("digest" for digests), for metric labels."""
    return "digest" if notice.kind == "digest" else notice.first.rule
