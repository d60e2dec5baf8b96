"""Silencing a rule for one account: a situation the team knows and handles (a customer
who never files tickets, a renewal sales runs) that a rule would keep raising. A snooze
quiets one alert for at most 90 days; its next episode came back to the lists and to
Slack (found from outside).

While a silence lasts, the alerts of that rule on that account are kept snoozed until it
ends: told to nobody, neither reminded nor escalated, opening no case or task, off the
to-do list, still listed (as snoozed) with their activity. When it ends, an alert still
firing is told again (the timers' snooze expiry); ended early, its alerts wake at once.
A family's alert is silenced by the rule it is stored under (its worst symptom).

``silence`` and ``unsilence`` are the commands the API (``silences_api.py``) and the
dashboard apply.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, exists, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.alerts.queries import accounts_of
from shared.alerting.schema import Alerting
from shared.auth import ApiKey
from shared.contracts.alerts import OPEN_ALERT_STATUSES
from shared.i18n import Choices, Refusal
from shared.storage.db import upsert
from shared.storage.tables import alert_activity, alerts, rule_silences

# At most a contract year: a rule wrong for an account for longer is a rule to change
# (the alerting file's conditions or tiers), not one to keep silent.
MAX_SILENCE = timedelta(days=366)
# The first key of the PostgreSQL advisory locks taken per (account, rule) silence (the
# second is their hash): any constant no other lock of this database uses.
SILENCE_LOCK_SPACE = 0x73696C65  # "sile"
# The success plans' milestones alert under this rule, which is in no alerting file.
MILESTONE_RULE = "plan_milestone"


class SilenceError(Refusal):
    """The silence asked for cannot be; the message says why."""


def silenced(now: datetime) -> Any:
    """An ``alerts`` row whose rule is silenced on its account at ``now``: told to nobody,
    so it mutes no other alert of its account either."""
    s = rule_silences.c
    return exists().where(
        s.account_id == alerts.c.account_id, s.rule == alerts.c.rule, s.until > now
    )


async def active_silence(
    conn: AsyncConnection, account_id: str, rule: str, now: datetime
) -> Any | None:
    """The silence of ``rule`` on ``account_id`` in force at ``now``, or None; on
    PostgreSQL the (account, rule)'s silence lock is held to commit first."""
    await hold_silences(conn, [(account_id, rule)])
    s = rule_silences.c
    q = select(rule_silences).where(s.account_id == account_id, s.rule == rule, s.until > now)
    return (await conn.execute(q)).first()


async def hold_silences(conn: AsyncConnection, pairs: Iterable[tuple[str, str]]) -> None:
    """Wait for any other transaction that reads or changes these (account, rule)s'
    silences, and keep others waiting to commit. An alert stored while a silence was
    being set read no silence (not yet committed) and escaped the snooze of its open
    alerts (which could not see it yet): the intake and the silences take these locks
    before they read or write an alert, in one order everywhere (sorted), so that two
    transactions needing several never wait for each other in a circle. A transaction
    may take one again (PostgreSQL counts them). (SQLite transactions are serialized
    already.)"""
    if conn.dialect.name != "postgresql":
        return
    for account_id, rule in sorted(set(pairs)):
        await conn.execute(
            text("SELECT pg_advisory_xact_lock(:space, hashtext(:key))"),
            {"space": SILENCE_LOCK_SPACE, "key": f"{account_id}\x1f{rule}"},
        )


async def silences_of(
    conn: AsyncConnection, key: ApiKey, now: datetime, account_id: str | None = None
) -> list[dict[str, Any]]:
    """The silences in force on the accounts ``key`` sees (of one, if given), the
    soonest to end first."""
    s = rule_silences.c
    q = select(rule_silences).where(s.until > now).order_by(s.until, s.account_id, s.rule)
    if account_id is not None:
        q = q.where(s.account_id == account_id)
    if key.portfolio_of is not None:
        q = q.where(s.account_id.in_(accounts_of(key.portfolio_of)))
    return [_out(r) for r in await conn.execute(q)]


async def silence(
    conn: AsyncConnection,
    alerting: Alerting,
    *,
    account_id: str,
    rule: str,
    until: datetime,
    actor: str,
    reason: str | None,
    now: datetime,
) -> dict[str, Any]:
    """Silence ``rule`` on ``account_id`` until ``until`` (a later one extends it, an
    earlier one shortens it); its open alerts are snoozed until then, each saying so in
    its activity. The silence as stored."""
    known = [r.id for r in alerting.rules] + [MILESTONE_RULE]
    if rule not in known:
        raise SilenceError(
            "No rule {rule!r}: silence one of {known}.", rule=rule, known=Choices(known)
        )
    if not now < until <= now + MAX_SILENCE:
        raise SilenceError("A silence ends in the future and at most a year ahead.")
    before = await active_silence(conn, account_id, rule, now)
    row = {
        "account_id": account_id,
        "rule": rule,
        "until": until,
        "silenced_by": actor,
        "reason": reason,
        "silenced_at": now,
    }
    await upsert(
        conn,
        rule_silences,
        [row],
        keys=["account_id", "rule"],
        update=["until", "silenced_by", "reason", "silenced_at"],
    )
    ended = before.until if before is not None else None
    await _snooze_open(conn, account_id, rule, until, ended, actor, reason, now)
    return _out(row)


async def unsilence(
    conn: AsyncConnection, *, account_id: str, rule: str, actor: str, now: datetime
) -> bool:
    """End the silence now; its alerts still snoozed by it wake (told again by the next
    timer pass if they still fire). False if there was none in force."""
    found = await active_silence(conn, account_id, rule, now)
    if found is None:
        return False
    s = rule_silences.c
    await conn.execute(delete(rule_silences).where(s.account_id == account_id, s.rule == rule))
    quiet = _open_of(account_id, rule, alerts.c.snoozed_until == found.until)
    ids = [r.alert_id for r in await conn.execute(select(alerts.c.alert_id).where(quiet))]
    if ids:
        # Snoozed until now, not unsnoozed: the timers' expiry tells its people again.
        await conn.execute(
            update(alerts)
            .where(alerts.c.alert_id.in_(ids))
            .values(snoozed_until=now, snooze_reason=None, updated_at=now)
        )
        await _log(conn, ids, "unsilence", actor, None, now)
    return True


async def _snooze_open(
    conn: AsyncConnection,
    account_id: str,
    rule: str,
    until: datetime,
    ended: datetime | None,
    actor: str,
    reason: str | None,
    now: datetime,
) -> None:
    """Snooze the pair's open alerts until ``until``: those snoozed until the silence's
    earlier end (``ended``, when it is moved, sooner too) and those snoozed less long (a
    person's longer snooze stays theirs); each logs the silence."""
    shorter = or_(
        alerts.c.snoozed_until.is_(None),
        alerts.c.snoozed_until < until,
        alerts.c.snoozed_until == ended,
    )
    found = await conn.execute(select(alerts.c.alert_id).where(_open_of(account_id, rule, shorter)))
    ids = [r.alert_id for r in found]
    if not ids:
        return
    await conn.execute(
        update(alerts)
        .where(alerts.c.alert_id.in_(ids))
        .values(snoozed_until=until, snooze_reason=reason, updated_at=now)
    )
    await _log(conn, ids, "silence", actor, f"until {until.isoformat()}: {reason or ''}", now)


def _open_of(account_id: str, rule: str, *more: Any) -> Any:
    return and_(
        alerts.c.account_id == account_id,
        alerts.c.rule == rule,
        alerts.c.status.in_(OPEN_ALERT_STATUSES),
        *more,
    )


async def _log(
    conn: AsyncConnection,
    ids: list[str],
    action: str,
    actor: str,
    text: str | None,
    now: datetime,
) -> None:
    await conn.execute(
        alert_activity.insert(),
        [{"alert_id": i, "at": now, "actor": actor, "action": action, "text": text} for i in ids],
    )


def _out(r: Any) -> dict[str, Any]:
    """A silence as the API answers it (a stored row, or the dict just stored)."""
    row: dict[str, Any] = r if isinstance(r, dict) else dict(r._mapping)
    return {
        **{k: row[k] for k in ("account_id", "rule", "silenced_by", "reason")},
        "until": row["until"].isoformat(),
        "silenced_at": row["silenced_at"].isoformat(),
    }
