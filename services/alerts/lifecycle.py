"""The alert lifecycle: what one message from scoring does to its alert. It opens,
updates or resolves the alert, and what people should hear about goes into the outbox,
in the caller's transaction (the intake's, with the consumed offsets).

Alertmanager's semantics, per (account, family) alert (scoring groups the symptoms of
one account problem into one alert): a new trigger of an open alert updates it, and is
told only when its severity rises; a critical alert of an account mutes (inhibits) its
other alerts until it resolves or falls below critical; a resolved notice goes to
whoever heard about the alert.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import and_, case, exists, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.alerts import routing
from services.alerts.cases import hooks as cases_hooks
from services.alerts.channels.text import one_line
from services.alerts.metrics import AlertsMetrics
from services.alerts.outbox import Outbox
from services.alerts.silences import active_silence, silenced
from shared.alerting.schema import Alerting, Recipient, worse
from shared.config import Settings
from shared.contracts.alerts import OPEN_ALERT_STATUSES, AlertEvent, Severity
from shared.contracts.events import Owner
from shared.contracts.notices import NoticeKind
from shared.people import stored_owner
from shared.storage.tables import account_health, accounts, alert_activity, alerts, deliveries

log = logging.getLogger(__name__)


class AlertLifecycle:
    def __init__(self, outbox: Outbox, settings: Settings, metrics: AlertsMetrics):
        self._outbox = outbox
        self._settings = settings
        self._metrics = metrics

    async def apply(
        self, conn: AsyncConnection, alert: AlertEvent, alerting: Alerting, now: datetime
    ) -> str | None:
        """Store ``alert`` (a new one, or a newer revision) and queue its notices; the
        line to log once committed, None for a revision already stored. The caller holds
        the silence locks of the alert's rule and its stored rule (``hold_silences``,
        before any row is written: ``intake.AlertIntake.handle`` takes its batch's)."""
        row = (
            await conn.execute(select(alerts).where(alerts.c.alert_id == alert.alert_id))
        ).first()
        if row is not None and alert.revision <= row.revision:
            self._metrics.received.labels(alert.rule, "duplicate").inc()
            return None
        if row is None and alert.imported and alert.status == "resolved":
            # An import's alert that began and ended in the past: no news, nothing to
            # list; it closes only an alert opened before (``backfill.open_alerts``).
            return None
        self._metrics.received.labels(alert.rule, alert.status).inc()
        addressed = await with_current_owners(conn, alert)
        people = routing.recipients(addressed, alerting.routing, self._settings)
        if row is None:
            await self._open(conn, alert, people, alerting, now)
            return f"alert {alert.alert_id} {alert.status}: {alert.title}"
        await self._change(conn, alert, row, people, alerting, now)
        return f"alert {alert.alert_id} {alert.status} (revision {alert.revision})"

    async def _open(
        self,
        conn: AsyncConnection,
        alert: AlertEvent,
        people: list[Recipient],
        alerting: Alerting,
        now: datetime,
    ) -> None:
        """A new alert: stored, and told unless a critical alert of its account mutes it.
        A rule silenced on the account stores it snoozed until the silence ends: nobody
        told, nothing opened (``silences.py``)."""
        if alert.status == "firing" and await _supersede(conn, alert, now):
            await self._release(conn, alert.account_id, alerting, now)
        silenced = (
            await active_silence(conn, alert.account_id, alert.rule, now)
            if alert.status == "firing"
            else None
        )
        if silenced is not None:
            await conn.execute(
                alerts.insert().values(
                    **_fields(alert, now),
                    stored_at=now,
                    muted=False,
                    last_notified_at=None,
                    snoozed_until=silenced.until,
                    snooze_reason=silenced.reason,
                )
            )
            until = silenced.until.isoformat()
            await _note(conn, alert.alert_id, now, "silence", f"until {until}: rule silenced")
            return
        muted = alert.status == "firing" and await self._inhibited(conn, alert, now)
        await conn.execute(
            alerts.insert().values(
                **_fields(alert, now),
                stored_at=now,
                muted=muted,
                last_notified_at=None if muted else now,
                resolved_at=now if alert.status == "resolved" else None,
            )
        )
        if alert.status == "resolved":
            return  # its firing predates this database: nobody heard about it
        await cases_hooks.alert_stored(conn, alert, self._settings, now, rose=True)
        if alert.severity == Severity.critical:
            await self._inhibit_others(conn, alert, now)
        if not muted:
            await self._tell(conn, alert, NoticeKind.fire, people, alerting, now)

    async def _change(
        self,
        conn: AsyncConnection,
        alert: AlertEvent,
        row: Any,
        people: list[Recipient],
        alerting: Alerting,
        now: datetime,
    ) -> None:
        """A newer revision of stored alert ``row``: an update (told to whoever heard of
        the alert when its severity rose, unless snoozed) or its end. An alert someone resolved
        by hand stays resolved (its end is not told again) unless it gets worse: then it
        opens again. A muted alert that turns critical is muted no longer."""
        # When it first fired, in the row, the payload and notices alike: a revision is
        # dated when its step ran, which read as "fired" the moment it changed.
        alert = alert.model_copy(update={"fired_at": row.fired_at})
        values = _fields(alert, now)
        if alert.rule != row.rule and alert.status == "firing":
            values.update(await _silence_moved(conn, row, alert.rule, now))
        if alert.status == "resolved" and (known := stored_alert(row)) is not None:
            # Its end keeps the name, severity and values people knew it by, the step that
            # ended it having worded its title with what ended it ("no touchpoint for 0
            # days"); its summary says how it ended ("Achieved on …").
            ending = {"status": "resolved", "revision": alert.revision, "summary": alert.summary}
            kept = known.model_copy(update=ending)
            values.update(
                title=known.title,
                severity=known.severity.value,
                payload=kept.model_dump(mode="json"),
            )
            alert = kept.model_copy(update={"title": f"Resolved: {known.title}"})
        closed = row.status == "resolved"  # by hand (or superseded) before this revision
        rose = worse(alert.severity, Severity(row.severity))
        reopens = closed and rose and alert.status == "firing"
        if alert.status == "resolved" and not closed:
            values.update(status="resolved", resolved_at=now)
        elif reopens:
            values.update(status="firing", resolved_at=None)
        else:
            values.pop("status")  # an update keeps it acknowledged (or resolved) if it was
        unmuted = row.muted and alert.status == "firing" and alert.severity == Severity.critical
        if unmuted:
            values["muted"] = False
        elif reopens:  # open again under an open critical alert of its account: muted
            values["muted"] = await self._inhibited(conn, alert, now)
        await conn.execute(
            update(alerts).where(alerts.c.alert_id == alert.alert_id).values(**values)
        )
        heard = row.last_notified_at is not None
        if alert.status == "resolved":
            # Whoever heard of it hears of its end, muted since or not (README): heard
            # means a notice of it was queued for someone. An alert an import opened is
            # marked told without one (its reminders count from then), and its end was
            # told to people who never heard of it (found in review).
            told = heard and await _told(conn, alert.alert_id)
            if alerting.notify.send_resolved and told and not closed:
                await self._tell(conn, alert, NoticeKind.resolve, people, alerting, now)
            if row.severity == Severity.critical.value:
                await self._release(conn, alert.account_id, alerting, now)
            return
        if closed and not reopens:
            return  # resolved by hand and no worse: stored, nobody told
        if reopens:
            await _note(conn, alert.alert_id, now, "reopen", "worse since it was resolved")
        # Silenced on its account: told to nobody, so it mutes nothing and opens nothing.
        quiet = await active_silence(conn, alert.account_id, alert.rule, now) is not None
        if alert.severity == Severity.critical:
            if not quiet:
                await self._inhibit_others(conn, alert, now)
        elif row.severity == Severity.critical.value:
            await self._release(conn, alert.account_id, alerting, now)
        # A symptom attached to the alert, or a severity that fell, is stored and shown,
        # not sent: people hear again only when it gets worse.
        if not quiet:
            await cases_hooks.alert_stored(conn, alert, self._settings, now, rose=rose)
        snooze = values.get("snoozed_until", row.snoozed_until)
        snoozed = snooze is not None and snooze > now
        # Acknowledged is no reason for silence here: who took on a warning has not taken
        # on the critical it became.
        if not rose or snoozed or not (row.status in OPEN_ALERT_STATUSES or reopens):
            return
        muted = values.get("muted", row.muted)
        if heard and not muted:
            update_n = f"update:{alert.revision}"
            await self._tell(conn, alert, NoticeKind.update, people, alerting, now, update_n)
        elif not heard and unmuted:  # muted from the start, critical now: its first notice
            await first_notice(conn, self._outbox, alert, people, alerting, now)

    async def _tell(
        self,
        conn: AsyncConnection,
        alert: AlertEvent,
        kind: NoticeKind,
        people: list[Recipient],
        alerting: Alerting,
        now: datetime,
        notification: str | None = None,
    ) -> None:
        group_wait = alerting.notify.group_wait
        await self._outbox.notify(
            conn, alert, kind, people, now=now, group_wait=group_wait, notification=notification
        )

    async def _inhibited(self, conn: AsyncConnection, alert: AlertEvent, now: datetime) -> bool:
        """An open critical alert of the account mutes it (one silenced, told to nobody,
        mutes nothing)."""
        if alert.severity == Severity.critical:
            return False
        found = await conn.execute(
            select(alerts.c.alert_id).where(
                alerts.c.account_id == alert.account_id,
                alerts.c.severity == Severity.critical.value,
                alerts.c.status.in_(OPEN_ALERT_STATUSES),
                alerts.c.alert_id != alert.alert_id,
                ~silenced(now),
            )
        )
        return found.first() is not None

    async def _inhibit_others(
        self, conn: AsyncConnection, alert: AlertEvent, now: datetime
    ) -> None:
        await conn.execute(
            update(alerts)
            .where(
                alerts.c.account_id == alert.account_id,
                alerts.c.severity != Severity.critical.value,
                alerts.c.status.in_(OPEN_ALERT_STATUSES),
                ~silenced(now),  # told to nobody already: nothing to hold back
            )
            .values(muted=True)
        )

    async def _release(
        self, conn: AsyncConnection, account_id: str, alerting: Alerting, now: datetime
    ) -> None:
        await release(conn, account_id, alerting, self._outbox, self._settings, now)


async def release(
    conn: AsyncConnection,
    account_id: str,
    alerting: Alerting,
    outbox: Outbox,
    settings: Settings,
    now: datetime,
) -> int:
    """Unless the account still has an open critical alert, its muted alerts speak
    again, and those nobody heard about are notified now (how many). Called when a
    critical alert ends or falls, and by the timer pass for the ends no revision brings
    (resolved by hand)."""
    # Checked in the statements themselves: a critical alert committed meanwhile (by
    # another alerts process, or the timer pass) keeps its mutes.
    still_critical = (
        select(alerts.c.alert_id)
        .where(
            alerts.c.account_id == account_id,
            alerts.c.severity == Severity.critical.value,
            alerts.c.status.in_(OPEN_ALERT_STATUSES),
            ~silenced(now),
        )
        .exists()
    )
    muted = and_(
        alerts.c.account_id == account_id,
        alerts.c.muted,
        alerts.c.status.in_(OPEN_ALERT_STATUSES),
        ~still_critical,
    )
    rows = (await conn.execute(select(alerts).where(muted))).all()
    # A snooze that ran out while it was muted ends with it: the timers' expiry skips
    # muted alerts, and left, it made a "fire" here a "reminder" at the next pass.
    expired = case((alerts.c.snoozed_until <= now, None), else_=alerts.c.snoozed_until)
    # Its escalation deadline counts again from now, as from any snooze's end (timers).
    woken = case((alerts.c.snoozed_until <= now, now), else_=alerts.c.woken_at)
    await conn.execute(
        update(alerts).where(muted).values(muted=False, snoozed_until=expired, woken_at=woken)
    )
    told = 0
    for r in rows:
        if r.last_notified_at is not None or (r.snoozed_until and r.snoozed_until > now):
            continue  # heard of already; or snoozed (a silence too): told when it wakes
        stored = stored_alert(r)
        if stored is None:
            continue
        alert = await with_current_owners(conn, stored)
        people = routing.recipients(alert, alerting.routing, settings)
        told += await first_notice(conn, outbox, alert, people, alerting, now)
    return told


async def _told(conn: AsyncConnection, alert_id: str) -> bool:
    """Whether any notice of the alert was queued for someone."""
    d = deliveries.c
    return bool(await conn.scalar(select(exists().where(d.alert_id == alert_id))))


async def first_notice(
    conn: AsyncConnection,
    outbox: Outbox,
    alert: AlertEvent,
    people: list[Recipient],
    alerting: Alerting,
    now: datetime,
) -> int:
    """Tell nobody-yet-told ``alert`` for the first time, noting when (how many notices
    were queued). Its deadline to escalation (and the time it took to acknowledge) counts
    from now, as a new alert's from its storing: one muted, silenced or snoozed before
    anyone heard of it was escalated in the pass that first told its owner."""
    await conn.execute(
        update(alerts)
        .where(alerts.c.alert_id == alert.alert_id)
        .values(last_notified_at=now, stored_at=now)
    )
    group_wait = alerting.notify.group_wait
    return await outbox.notify(conn, alert, NoticeKind.fire, people, now=now, group_wait=group_wait)


async def _silence_moved(
    conn: AsyncConnection, row: Any, rule: str, now: datetime
) -> dict[str, Any]:
    """A family's alert now led by another rule (its worst symptom changed): snoozed if
    that rule is silenced on the account; woken at the next timer pass if the silence it
    was snoozed by is its old rule's (found in review: it kept a year's snooze, or was
    told while its new rule was silenced)."""
    new = await active_silence(conn, row.account_id, rule, now)
    if new is not None:
        if row.snoozed_until is None or row.snoozed_until < new.until:
            return {"snoozed_until": new.until, "snooze_reason": new.reason}
        return {}
    old = await active_silence(conn, row.account_id, row.rule, now)
    if old is not None and row.snoozed_until == old.until:
        return {"snoozed_until": now, "snooze_reason": None}
    return {}


async def _note(
    conn: AsyncConnection, alert_id: str, now: datetime, action: str, text: str
) -> None:
    """A line in the alert's activity, by healthwatch itself."""
    await conn.execute(
        alert_activity.insert().values(
            alert_id=alert_id, at=now, actor="healthwatch", action=action, text=text
        )
    )


async def _supersede(conn: AsyncConnection, alert: AlertEvent, now: datetime) -> bool:
    """A family's alert takes over the open alerts its symptoms had of their own (rules
    that alerted alone before the alerting file grouped them, issue 15): those would
    never hear of their end again. Closed quietly, with a note naming the new alert;
    the problem is not over, so nobody is told it resolved. True if a critical one
    was closed (its muting ends)."""
    family, symptoms = alert.details.get("family"), alert.details.get("symptoms")
    if not isinstance(family, str) or not isinstance(symptoms, list):
        return False
    rules = [s.get("rule") for s in symptoms if isinstance(s, dict)]
    open_of_rules = select(alerts.c.alert_id, alerts.c.severity).where(
        alerts.c.account_id == alert.account_id,
        alerts.c.rule.in_([r for r in rules if isinstance(r, str)]),
        alerts.c.status.in_(OPEN_ALERT_STATUSES),
    )
    ours = f"{alert.account_id}:{family}:"  # the family's own alerts are not superseded
    found = [r for r in await conn.execute(open_of_rules) if not r.alert_id.startswith(ours)]
    ids = [r.alert_id for r in found]
    if not ids:
        return False
    await conn.execute(
        update(alerts).where(alerts.c.alert_id.in_(ids)).values(status="resolved", resolved_at=now)
    )
    await conn.execute(
        alert_activity.insert(),
        [
            {
                "alert_id": old,
                "at": now,
                "actor": "healthwatch",
                "action": "resolve",
                "text": f"superseded by {alert.alert_id}",
            }
            for old in ids
        ],
    )
    return any(r.severity == Severity.critical.value for r in found)


def log_stored(lines: Sequence[str]) -> None:
    """What a committed batch stored, a line per alert."""
    for line in lines:
        log.info("%s", one_line(line))  # data on one line: no forged log lines


def stored_alert(row: Any) -> AlertEvent | None:
    """The AlertEvent an ``alerts`` row holds; None (logged) if it no longer reads as
    one (stored under an older contract): that alert is left out, the pass goes on."""
    try:
        return AlertEvent.model_validate(row.payload)
    except ValidationError as exc:
        why = one_line(str(exc))
        log.error("alert %s unreadable: %s", one_line(row.alert_id), why)
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
    owner = stored_owner(row.owner_email, row.owner_slack_id, row.facts)
    sales = ((row.facts or {}).get("fields") or {}).get("sales_owner")
    try:
        sales_owner = Owner.model_validate(sales) if isinstance(sales, dict) else None
    except ValidationError:
        sales_owner = alert.sales_owner  # not a usable owner: keep the one it fired with
    return alert.model_copy(update={"owner": owner, "sales_owner": sales_owner})


async def with_health_now(conn: AsyncConnection, alert: AlertEvent) -> AlertEvent:
    """``alert`` with its account's health now (``account_health``), not the one it
    fired with, for a notice told again (a reminder, an escalation): a renewal's reminder
    said "Health 30 (red)" of an account at 100 (green) since (found from outside).
    Unchanged when the account has no score."""
    h = account_health.c
    row = (
        await conn.execute(select(h.score, h.band).where(h.account_id == alert.account_id))
    ).first()
    if row is None or row.band is None:
        return alert
    return alert.model_copy(update={"score": row.score, "band": row.band})


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
