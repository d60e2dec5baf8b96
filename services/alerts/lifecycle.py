"""Alert intake: each message from scoring opens, updates or resolves one alert, and
what people should hear about goes into the outbox, in the same transaction as the
consumed offsets.

Alertmanager's semantics, per (account, rule) alert: a new trigger of an open alert
updates it; a critical alert of an account mutes (inhibits) its other alerts until it
resolves; a resolved notice goes to whoever heard about the alert.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import and_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.alerts import render, routing
from services.alerts.channels import Channel, Notice
from services.alerts.metrics import AlertsMetrics
from shared.alerting.schema import Alerting, Recipient
from shared.alerting.store import AlertingStore
from shared.bus.base import Record
from shared.clock import Clock, utcnow
from shared.config import Settings
from shared.contracts.alerts import OPEN_ALERT_STATUSES, AlertEvent, Severity
from shared.contracts.events import Owner
from shared.contracts.wire import UndecodableRecord, decode_alert
from shared.storage.db import insert_ignore
from shared.storage.offsets import next_offsets, save_offsets
from shared.storage.tables import accounts, alerts, deliveries

log = logging.getLogger(__name__)


class Outbox:
    """Puts notices into the outbox for the channels and people that should get them."""

    def __init__(self, channels: Sequence[Channel], settings: Settings, metrics: AlertsMetrics):
        self.channels = list(channels)
        self._settings = settings
        self._metrics = metrics
        # Set once rows put by a committed transaction are visible: the sender in this
        # process starts at once instead of at its next poll (other processes poll).
        self.queued = asyncio.Event()
        # What the current transaction put, per task (intake and timers run side by
        # side): acted on only once it commits, so a retried one counts nothing twice.
        self._tx: ContextVar[_Queued | None] = ContextVar("outbox_tx", default=None)

    @asynccontextmanager
    async def transaction(self, engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
        """``engine.begin()`` for work that puts notices; once it has committed, wake the
        sender and count the notices that had nobody to go to."""
        queued = _Queued()
        token = self._tx.set(queued)
        try:
            async with engine.begin() as conn:
                yield conn
        finally:
            self._tx.reset(token)
        for rule, key in queued.unroutable:
            log.warning("%s has nobody to tell (no owner, no team fallback)", render.one_line(key))
            self._metrics.deliveries.labels(rule, "none", "unroutable").inc()
        if queued.rows:
            self.queued.set()

    async def put(
        self,
        conn: AsyncConnection,
        notice: Notice,
        people: Sequence[Recipient],
        *,
        notification: str,
        now: datetime,
        group_wait: timedelta = timedelta(0),
        only: str | None = None,
    ) -> int:
        """One row per (channel, destination); a replay of the same notification adds
        nothing. Slack rows wait ``group_wait`` so alerts close together go as one."""
        rows = []
        for channel, destination in routing.addresses(self.channels, people):
            if only is not None and channel != only:
                continue
            wait = group_wait if channel == "slack" else timedelta(0)
            rows.append(
                {
                    "alert_id": notice.first.alert_id if notice.kind != "digest" else notice.key,
                    "notification": notification,
                    "account_id": notice.first.account_id if notice.kind != "digest" else None,
                    "channel": channel,
                    "destination": destination,
                    "payload": notice.to_json(),
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": now + wait,
                    "created_at": now,
                }
            )
        queued = self._tx.get()
        if queued is None:
            raise RuntimeError("Outbox.put outside Outbox.transaction()")
        if not rows and self.channels:
            queued.unroutable.append((notice.first.rule, notice.key))
        if not rows:
            return 0
        await conn.execute(insert_ignore(conn, deliveries).on_conflict_do_nothing(), rows)
        queued.rows += len(rows)
        return len(rows)


@dataclass
class _Queued:
    """What one outbox transaction put."""

    rows: int = 0
    unroutable: list[tuple[str, str]] = field(default_factory=list)  # (rule, notice key)


class AlertIntake:
    def __init__(
        self,
        engine: AsyncEngine,
        outbox: Outbox,
        settings: Settings,
        metrics: AlertsMetrics,
        *,
        config: AlertingStore | None = None,
        clock: Clock = utcnow,
    ):
        self._engine = engine
        self._outbox = outbox
        self._settings = settings
        self._metrics = metrics
        self._config = config or AlertingStore()
        self._clock = clock

    async def handle(self, records: Sequence[Record]) -> None:
        now = self._clock()
        decoded: list[AlertEvent] = []
        for r in records:
            try:
                decoded.append(decode_alert(r.value))
            except UndecodableRecord as exc:
                # Alerts come from our own scoring service: a bad one is a bug, logged
                # loudly. The batch fails; the consume loop narrows it down to this
                # record and dead-letters it with the reason (kept, not dropped), and the
                # other alerts of the batch go on.
                log.error(
                    "undecodable alert at %s[%d]@%d: %s",
                    r.topic,
                    r.partition,
                    r.offset,
                    render.one_line(str(exc)),
                )
                raise
        stored: list[str] = []  # log lines, written once the batch has committed
        async with self._outbox.transaction(self._engine) as conn:
            config, _ = await self._config.current(conn)
            for alert in decoded:
                await self._apply(conn, alert, config, now, stored)
            await save_offsets(conn, self._settings.consumer_group_alerts, next_offsets(records))
        for line in stored:
            log.info("%s", render.one_line(line))  # data on one line: no forged log lines

    async def _apply(
        self,
        conn: AsyncConnection,
        alert: AlertEvent,
        config: Alerting,
        now: datetime,
        stored: list[str],
    ) -> None:
        row = (
            await conn.execute(select(alerts).where(alerts.c.alert_id == alert.alert_id))
        ).first()
        if row is not None and alert.revision <= row.revision:
            self._metrics.received.labels(alert.rule, "duplicate").inc()
            return
        self._metrics.received.labels(alert.rule, alert.status).inc()
        addressed = await with_current_owners(conn, alert)
        people = routing.recipients(addressed, config.routing, self._settings)
        wait = config.notify.group_wait
        if row is None:
            muted = alert.status == "firing" and await self._inhibited(conn, alert)
            await conn.execute(
                alerts.insert().values(
                    **_fields(alert, now),
                    stored_at=now,
                    muted=muted,
                    last_notified_at=None if muted else now,
                    resolved_at=now if alert.status == "resolved" else None,
                )
            )
            stored.append(f"alert {alert.alert_id} {alert.status}: {alert.title}")
            if alert.status == "resolved":
                return  # its firing predates this database: nobody heard about it
            if alert.severity == Severity.critical:
                await self._inhibit_others(conn, alert)
            if not muted:
                notice = Notice("fire", [alert], f"{alert.alert_id}/fire")
                await self._outbox.put(
                    conn, notice, people, notification="fire", now=now, group_wait=wait
                )
            return
        values = _fields(alert, now)
        if alert.status == "resolved":
            values.update(status="resolved", resolved_at=now)
        else:
            values.pop("status")  # an update keeps it acknowledged if it was
        await conn.execute(
            update(alerts).where(alerts.c.alert_id == alert.alert_id).values(**values)
        )
        stored.append(f"alert {alert.alert_id} {alert.status} (revision {alert.revision})")
        told = row.last_notified_at is not None and not row.muted
        if alert.status == "resolved":
            if config.notify.send_resolved and told:
                notice = Notice("resolve", [alert], f"{alert.alert_id}/resolve")
                await self._outbox.put(
                    conn, notice, people, notification="resolve", now=now, group_wait=wait
                )
            if row.severity == Severity.critical.value:
                await self._release(conn, alert.account_id, config, now)
            return
        if alert.severity == Severity.critical:
            await self._inhibit_others(conn, alert)
        snoozed = row.snoozed_until is not None and row.snoozed_until > now
        if told and not snoozed and row.status == "firing":
            kind = f"update:{alert.revision}"
            notice = Notice("update", [alert], f"{alert.alert_id}/{kind}")
            await self._outbox.put(
                conn, notice, people, notification=kind, now=now, group_wait=wait
            )

    async def _inhibited(self, conn: AsyncConnection, alert: AlertEvent) -> bool:
        if alert.severity == Severity.critical:
            return False
        found = await conn.execute(
            select(alerts.c.alert_id).where(
                alerts.c.account_id == alert.account_id,
                alerts.c.severity == Severity.critical.value,
                alerts.c.status.in_(OPEN_ALERT_STATUSES),
                alerts.c.alert_id != alert.alert_id,
            )
        )
        return found.first() is not None

    async def _inhibit_others(self, conn: AsyncConnection, alert: AlertEvent) -> None:
        await conn.execute(
            update(alerts)
            .where(
                alerts.c.account_id == alert.account_id,
                alerts.c.severity != Severity.critical.value,
                alerts.c.status.in_(OPEN_ALERT_STATUSES),
            )
            .values(muted=True)
        )

    async def _release(
        self, conn: AsyncConnection, account_id: str, config: Alerting, now: datetime
    ) -> None:
        """The account's last critical alert ended: its muted alerts speak again, and
        those nobody heard about are notified now."""
        still = await conn.execute(
            select(alerts.c.alert_id).where(
                alerts.c.account_id == account_id,
                alerts.c.severity == Severity.critical.value,
                alerts.c.status.in_(OPEN_ALERT_STATUSES),
            )
        )
        if still.first() is not None:
            return
        muted = and_(
            alerts.c.account_id == account_id,
            alerts.c.muted,
            alerts.c.status.in_(OPEN_ALERT_STATUSES),
        )
        rows = (await conn.execute(select(alerts).where(muted))).all()
        await conn.execute(update(alerts).where(muted).values(muted=False))
        for r in rows:
            if r.last_notified_at is not None:
                continue
            stored = stored_alert(r)
            if stored is None:
                continue
            alert = await with_current_owners(conn, stored)
            await conn.execute(
                update(alerts).where(alerts.c.alert_id == r.alert_id).values(last_notified_at=now)
            )
            people = routing.recipients(alert, config.routing, self._settings)
            notice = Notice("fire", [alert], f"{alert.alert_id}/fire")
            await self._outbox.put(
                conn,
                notice,
                people,
                notification="fire",
                now=now,
                group_wait=config.notify.group_wait,
            )


def stored_alert(row: Any) -> AlertEvent | None:
    """The AlertEvent an ``alerts`` row holds; None (logged) if it no longer reads as
    one (stored under an older contract): that alert is left out, the pass goes on."""
    try:
        return AlertEvent.model_validate(row.payload)
    except ValidationError as exc:
        why = render.one_line(str(exc))
        log.error("alert %s unreadable: %s", render.one_line(row.alert_id), why)
        return None


async def with_current_owners(conn: AsyncConnection, alert: AlertEvent) -> AlertEvent:
    """``alert`` addressed to the account's owner and sales owner now (the accounts
    table), not those stamped on it when it fired: after a hand-over, reminders and
    escalations go to the new owner. Unchanged if the account is unknown."""
    q = select(accounts.c.owner_email, accounts.c.owner_slack_id, accounts.c.facts).where(
        accounts.c.account_id == alert.account_id
    )
    row = (await conn.execute(q)).first()
    if row is None:
        return alert
    owner = None
    if row.owner_email or row.owner_slack_id:
        owner = Owner.model_construct(email=row.owner_email, slack_id=row.owner_slack_id)
    sales = ((row.facts or {}).get("fields") or {}).get("sales_owner")
    try:
        sales_owner = Owner.model_validate(sales) if isinstance(sales, dict) else None
    except ValidationError:
        sales_owner = alert.sales_owner  # not a usable owner: keep the one it fired with
    return alert.model_copy(update={"owner": owner, "sales_owner": sales_owner})


def _fields(alert: AlertEvent, now: datetime) -> dict[str, Any]:
    return {
        "alert_id": alert.alert_id,
        "account_id": alert.account_id,
        "rule": alert.rule,
        "severity": alert.severity.value,
        "status": alert.status,
        "title": alert.title,
        "payload": alert.model_dump(mode="json"),
        "revision": alert.revision,
        "owner_email": alert.owner.email if alert.owner else None,
        "tier": alert.tier,
        "fired_at": alert.fired_at,
        "updated_at": now,
    }
