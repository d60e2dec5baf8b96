"""Wall-clock work on open alerts: reminders, snooze expiry, escalation, digests (and
the cases' notices, and accounts handed over to a new owner).

One pass every ``alert_timer_interval_s``. Each notice it queues has a deterministic
key (``repeat:3``, ``escalate``, ``digest`` of a day), so two alerts services running
the same pass queue it once.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import String, and_, case, cast, exists, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.alerts import routing
from services.alerts.cases.timers import CaseTimers
from services.alerts.channels.text import one_line
from services.alerts.channels.webhook import WebhookChannel
from services.alerts.handover import Handovers
from services.alerts.lifecycle import (
    first_notice,
    release,
    stored_alert,
    with_current_owners,
    with_health_now,
)
from services.alerts.metrics import AlertsMetrics
from services.alerts.outbox import Outbox
from services.alerts.queries import urgency
from services.alerts.silences import silenced
from shared.alerting.schema import Alerting, Recipient
from shared.alerting.store import AlertingStore
from shared.clock import Clock, pause, utcnow
from shared.config import Settings
from shared.contracts.alerts import OPEN_ALERT_STATUSES, AlertEvent, Severity
from shared.contracts.notices import Notice, NoticeKind
from shared.storage.tables import account_health, accounts, alert_activity, alerts, deliveries
from shared.worker import log_failed

log = logging.getLogger(__name__)

# An alert resolved by hand this recently is told as ended. Timer passes run every few
# seconds; the hour covers a stopped alerts service, and alerts resolved before an
# upgrade brought this are not told days late.
RESOLVED_LOOKBACK = timedelta(hours=1)
# The notification of an end someone set, per revision of the alert then.
HAND_RESOLVE = "resolve:hand:"
# Who the service's own actions are logged as (``lifecycle._supersede``).
SYSTEM_ACTOR = "healthwatch"


class AlertTimers:
    """The timer pass. ``alerting`` is the store of the alerting file in force."""

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
        self._metrics = metrics
        self._alerting = alerting
        self._clock = clock
        self._cases = CaseTimers(outbox, settings)
        self._handovers = Handovers(outbox, settings)
        self._checked: str | None = None  # the alerting version whose routing was checked

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception as exc:
                log_failed(log, "alert timer pass failed; retrying", exc)
            await pause(stop, self._settings.alert_timer_interval_s)

    async def run_once(self) -> int:
        """One pass; returns how many notices it queued."""
        now = self._clock()
        queued = 0
        escalated: list[tuple[str, str]] = []  # (alert id, rule)
        async with self._outbox.transaction(self._engine) as conn:
            alerting, _ = await self._alerting.current(conn)
            self._check_routing(alerting)
            queued += await self._unmute(conn, alerting, now)
            queued += await self._resolved_by_hand(conn, alerting, now)
            queued += await self._wake_snoozed(conn, alerting, now)
            queued += await self._repeat(conn, alerting, now)
            queued += await self._escalate(conn, alerting, now, escalated)
            queued += await self._digest(conn, alerting, now)
            queued += await self._cases.run(conn, alerting.routing, now)
            queued += await self._handovers.run(conn, alerting.routing, now)
        # Told only once committed: a pass that failed and is retried counts nothing twice.
        for alert_id, rule in escalated:
            self._metrics.escalated.labels(rule).inc()
            log.info("escalated %s: unacknowledged past its deadline", one_line(alert_id))
        return queued

    def _check_routing(self, alerting: Alerting) -> None:
        """Once per alerting version: say which roles hear nothing for want of an
        address. The shipped file leaves the CS lead's to fill in, and escalations then
        reached nobody with nothing said until one was due."""
        if alerting.version == self._checked:
            return
        self._checked = alerting.version
        if missing := alerting.routing.unaddressed():
            log.warning(
                "routing: %s %s no email or Slack id in the alerting file (version %s): "
                "escalations go to the team instead, and strategic accounts' copies for "
                "them reach nobody; set [routing.people.<role>] email or slack "
                "(PUT /v1/alert-rules)",
                ", ".join(missing),
                "has" if len(missing) == 1 else "have",
                one_line(alerting.version),
            )

    async def _remind(
        self, conn: AsyncConnection, row: Any, alerting: Alerting, now: datetime, **also: Any
    ) -> int:
        """Tell the alert's people again (the n-th reminder), recording it on the alert."""
        stored = stored_alert(row)
        if stored is None:
            return 0
        n = row.repeats + 1
        changed = await conn.execute(
            update(alerts)
            .where(*_unchanged_since_read(row))
            .values(repeats=n, last_notified_at=now, **also)
        )
        if changed.rowcount == 0:
            return 0  # acknowledged, snoozed or resolved meanwhile: nobody is reminded
        alert = await with_current_owners(conn, stored)
        people = routing.recipients(alert, alerting.routing, self._settings)
        return await self._outbox.notify(
            conn,
            await with_health_now(conn, stored),
            NoticeKind.repeat,
            people,
            now=now,
            group_wait=alerting.notify.group_wait,
            notification=f"repeat:{n}",
        )

    async def _unmute(self, conn: AsyncConnection, alerting: Alerting, now: datetime) -> int:
        """Muted alerts of accounts no open critical alert mutes any more (it was resolved
        by hand, which no revision tells the lifecycle): they speak again."""
        critical = select(alerts.c.account_id).where(
            alerts.c.severity == Severity.critical.value,
            alerts.c.status.in_(OPEN_ALERT_STATUSES),
            ~silenced(now),  # told to nobody: it mutes nothing
        )
        stale = select(alerts.c.account_id).where(
            alerts.c.muted,
            alerts.c.status.in_(OPEN_ALERT_STATUSES),
            alerts.c.account_id.not_in(critical),
        )
        told = 0
        for account_id in sorted(set((await conn.execute(stale)).scalars())):
            told += await release(conn, account_id, alerting, self._outbox, self._settings, now)
        return told

    async def _resolved_by_hand(
        self, conn: AsyncConnection, alerting: Alerting, now: datetime
    ) -> int:
        """Alerts someone resolved (no revision tells the lifecycle of it): whoever heard
        of one hears of its end, as of one scoring resolved. Nobody did: a webhook that
        mirrors alerts into tickets kept them open for ever (found from outside)."""
        if not alerting.notify.send_resolved:
            return 0
        d = deliveries.c
        a, later = alert_activity.alias("a").c, alert_activity.alias("later").c
        # By a person (an alert a family's took over is closed by "healthwatch", and the
        # problem goes on), and not reopened since; told under a key of its own, apart
        # from the end scoring tells once it reopened (``resolve``).
        key = literal(HAND_RESOLVE) + cast(alerts.c.revision, String)
        reopened = exists().where(
            later.alert_id == a.alert_id,
            later.action == "reopen",
            later.activity_id > a.activity_id,
        )
        by_hand = exists().where(
            a.alert_id == alerts.c.alert_id,
            a.action == "resolve",
            a.actor != SYSTEM_ACTOR,
            ~reopened,
        )
        told = exists().where(d.alert_id == alerts.c.alert_id, d.notification == key)
        rows = await conn.execute(
            select(alerts).where(
                alerts.c.status == "resolved",
                alerts.c.resolved_at >= now - RESOLVED_LOOKBACK,
                alerts.c.last_notified_at.is_not(None),
                by_hand,
                ~told,
            )
        )
        queued = 0
        for r in rows.all():
            if (stored := stored_alert(r)) is None:
                continue
            ended = stored.model_copy(
                update={"status": "resolved", "title": f"Resolved: {stored.title}"}
            )
            alert = await with_current_owners(conn, ended)
            people = routing.recipients(alert, alerting.routing, self._settings)
            if not people:
                continue  # nobody to tell: not counted as unroutable at every pass
            queued += await self._outbox.notify(
                conn,
                alert,
                NoticeKind.resolve,
                people,
                now=now,
                group_wait=alerting.notify.group_wait,
                notification=f"{HAND_RESOLVE}{r.revision}",
            )
        return queued

    async def _wake_snoozed(self, conn: AsyncConnection, alerting: Alerting, now: datetime) -> int:
        """A snooze that ran out on a still-firing alert: tell its people again (one
        judged not useful: the snooze ends untold; read again and again otherwise, its
        reminder never matching)."""
        await conn.execute(
            update(alerts)
            .where(alerts.c.snoozed_until <= now, alerts.c.not_useful)
            .values(snoozed_until=None)
        )
        rows = await conn.execute(
            select(alerts).where(
                alerts.c.status == "firing", alerts.c.snoozed_until <= now, ~alerts.c.muted
            )
        )
        queued = 0
        for r in rows.all():
            if r.last_notified_at is None and (stored := stored_alert(r)) is not None:
                # Stored while its rule was silenced: nobody has heard of it yet
                # (``first_notice`` starts its deadline to escalation now).
                await conn.execute(
                    update(alerts).where(alerts.c.alert_id == r.alert_id).values(snoozed_until=None)
                )
                alert = await with_current_owners(conn, stored)
                people = routing.recipients(alert, alerting.routing, self._settings)
                queued += await first_notice(conn, self._outbox, alert, people, alerting, now)
                continue
            queued += await self._remind(conn, r, alerting, now, snoozed_until=None, woken_at=now)
        return queued

    async def _repeat(self, conn: AsyncConnection, alerting: Alerting, now: datetime) -> int:
        """Open, unacknowledged, unchanged alerts are told again after their interval."""
        shortest = min(
            [alerting.notify.repeat_interval]
            + [rule.repeat_interval for rule in alerting.rules if rule.repeat_interval]
        )
        rows = await conn.execute(
            select(alerts).where(
                alerts.c.status == "firing",
                alerts.c.snoozed_until.is_(None),
                ~alerts.c.muted,
                ~alerts.c.not_useful,
                alerts.c.last_notified_at <= now - shortest,
            )
        )
        queued = 0
        for r in rows.all():
            rule = alerting.rule(r.rule)
            interval = (rule.repeat_interval if rule else None) or alerting.notify.repeat_interval
            if r.last_notified_at <= now - interval:
                queued += await self._remind(conn, r, alerting, now)
        return queued

    async def _escalate(
        self,
        conn: AsyncConnection,
        alerting: Alerting,
        now: datetime,
        escalated: list[tuple[str, str]],
    ) -> int:
        """Firing past its severity's deadline and nobody acknowledged: the lead hears.
        The deadline counts from when its people were told, and again from when a snooze
        or silence ran out (``woken_at``): the lead was paged in the second the CSM was
        reminded (found from outside). Told means delivered: its deadline counts from
        when its first notice first reached someone, and while none has yet (every
        channel down, retrying) it is not escalated: the lead had heard of it before
        its owner (found from outside). One recipient's channel down holds nothing up
        once another was told; first notices all given up on (``dead``), or none queued
        (nobody to tell), leave the deadline counting from its storing. The generic
        webhook (a system, not its people) counts for neither."""
        d = deliveries.c
        first = and_(
            d.alert_id == alerts.c.alert_id,
            d.notification == NoticeKind.fire.value,
            d.channel != WebhookChannel.name,
        )
        queued = 0
        for severity, after in alerting.notify.escalate_after.items():
            told_in_time = exists().where(first, d.delivered_at <= now - after)
            never_told = ~exists().where(first, d.delivered_at.is_not(None))
            nothing_waits = ~exists().where(first, d.status == "pending")
            rows = await conn.execute(
                select(alerts).where(
                    or_(told_in_time, and_(never_told, nothing_waits)),
                    alerts.c.status == "firing",
                    alerts.c.severity == severity.value,
                    alerts.c.escalated_at.is_(None),
                    ~alerts.c.muted,
                    ~alerts.c.not_useful,
                    or_(alerts.c.snoozed_until.is_(None), alerts.c.snoozed_until <= now),
                    alerts.c.stored_at <= now - after,
                    or_(alerts.c.woken_at.is_(None), alerts.c.woken_at <= now - after),
                )
            )
            for r in rows.all():
                stored = stored_alert(r)
                if stored is None:
                    continue
                changed = await conn.execute(
                    update(alerts)
                    .where(*_unchanged_since_read(r), alerts.c.escalated_at.is_(None))
                    .values(escalated_at=now)
                )
                if changed.rowcount == 0:
                    continue  # acknowledged, snoozed or resolved meanwhile
                alert = await with_current_owners(conn, stored)
                people = routing.escalation_recipients(alert, alerting.routing, self._settings)
                escalated.append((r.alert_id, r.rule))
                queued += await self._outbox.notify(
                    conn,
                    await with_health_now(conn, stored),
                    NoticeKind.escalate,
                    people,
                    now=now,
                    group_wait=alerting.notify.group_wait,
                )
        return queued

    async def _digest(self, conn: AsyncConnection, alerting: Alerting, now: datetime) -> int:
        """Once a day, from ``digest_hour`` on, each CSM's alerts open at that hour in one
        email. An alert told since is no news for the day's digest: a CSM whose first
        alert of the day came later got a "digest" of it seconds after its notice (found
        from outside, 25 times in an afternoon)."""
        hour = alerting.notify.digest_hour
        local = now.astimezone(ZoneInfo(self._settings.timezone))
        if hour < 0 or local.hour < hour:
            return 0
        digest_at = local.replace(hour=hour, minute=0, second=0, microsecond=0)
        # Each open alert in the digest of its account's owner now (the one it fired
        # with if the account is unknown).
        owner = case(
            (accounts.c.account_id.is_(None), alerts.c.owner_email), else_=accounts.c.owner_email
        )
        # The most urgent first (criticals were items 19 to 28 of a CSM's 37, after the
        # info), as the dashboard lists them; each with its account's health now, not the
        # one it fired with (a digest said "12 (red)" of an account green since).
        h = account_health.c
        rows = await conn.execute(
            select(alerts.c.alert_id, alerts.c.payload, owner.label("owner"), h.score, h.band)
            .select_from(alerts)
            .outerjoin(accounts, accounts.c.account_id == alerts.c.account_id)
            .outerjoin(account_health, h.account_id == alerts.c.account_id)
            .where(
                alerts.c.status.in_(OPEN_ALERT_STATUSES),
                alerts.c.stored_at <= digest_at,
                owner.is_not(None),
                ~silenced(now),  # told to nobody, in a digest neither
            )
            .order_by(owner, *urgency(), alerts.c.fired_at, alerts.c.alert_id)
        )
        by_owner: dict[str, list[AlertEvent]] = {}
        for r in rows.all():
            if (stored := stored_alert(r)) is not None:
                if r.band is not None:
                    stored = stored.model_copy(update={"score": r.score, "band": r.band})
                by_owner.setdefault(r.owner, []).append(stored)
        queued = 0
        day = local.date().isoformat()
        for email, open_alerts in by_owner.items():
            key = f"digest:{email}:{day}"
            notice = Notice(NoticeKind.digest, open_alerts, key)
            queued += await self._outbox.put(
                conn,
                notice,
                [Recipient(email=email)],
                notification="digest",
                now=now,
                only="email",
            )
        return queued


def _unchanged_since_read(row: Any) -> list[Any]:
    """The alert as a pass read it: still firing, unmuted, not judged not useful (it
    is reminded and escalated no more: only a rise in its severity is told), its snooze
    as it was. An
    acknowledgement or snooze committed after the read makes the pass's UPDATE match no
    row (PostgreSQL re-checks the condition on the newest row version), so the pass
    tells nobody about an alert somebody has just acted on."""
    return [
        alerts.c.alert_id == row.alert_id,
        alerts.c.status == "firing",
        ~alerts.c.muted,
        ~alerts.c.not_useful,
        alerts.c.snoozed_until.is_not_distinct_from(row.snoozed_until),
    ]
