"""Telling a CSM which accounts became theirs: the alerts service's timer pass finds
accounts whose owner is not the one last told (a lead's reassignment, or a CRM's new
owner, both applied by scoring to the accounts table), and puts one notice per new owner
listing them with how they stand (health, open alerts, an open risk case, whom each came
from). Reassigned accounts had reached their new owner only as their next alert did
(found from outside).

Each account is claimed by a conditional UPDATE of ``owner_notices`` before the notice is
queued (a second alerts service running the same pass claims nothing), and the notice is
keyed in the outbox by its owner and pass, so it is delivered once. An account the pass
has not seen before is recorded as told to its owner, without a notice: see
``shared.storage.tables.owner_notices``.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import func, literal, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.alerts import routing
from services.alerts.outbox import CASE_NOTIFICATION, Outbox
from shared.alerting.schema import Routing
from shared.config import Settings
from shared.contracts.alerts import OPEN_ALERT_STATUSES
from shared.contracts.events import Owner
from shared.contracts.notices import (
    HANDOVER_LISTED,
    HandedAccount,
    HandoverNote,
    Notice,
    NoticeKind,
)
from shared.storage.db import insert_ignore
from shared.storage.tables import account_health, accounts, alerts, cases, owner_notices

# Accounts per lookup of their standing: well within SQLite's and asyncpg's limits on a
# statement's parameters when a whole portfolio moves at once.
CHUNK = 1000


class Handovers:
    def __init__(self, outbox: Outbox, settings: Settings):
        self._outbox = outbox
        self._settings = settings

    async def run(self, conn: AsyncConnection, rules: Routing, now: datetime) -> int:
        """One pass in the caller's transaction; how many deliveries it queued."""
        moved = await self._claim_moved(conn, now)
        if not moved:
            return 0
        standing = await _standing(conn, [row.account_id for row in moved])
        # One notice per owner, by their email: grouped by email and Slack id, an owner
        # whose accounts carried different Slack ids got two notices of one key, and the
        # second was dropped as a duplicate after its accounts were claimed (found in
        # review). Their Slack id: the first of their accounts that has one.
        by_owner: dict[str, list[HandedAccount]] = defaultdict(list)
        slack_of: dict[str, str | None] = {}
        for row in moved:
            if not slack_of.get(row.owner_email):
                slack_of[row.owner_email] = row.owner_slack_id
            by_owner[row.owner_email].append(
                HandedAccount(
                    account_id=row.account_id,
                    account_name=row.name,
                    previous_owner=row.told or None,
                    **standing.get(row.account_id, {}),
                )
            )
        queued = 0
        for email, handed in by_owner.items():
            slack_id = slack_of[email]
            handed.sort(key=_worst_first)
            note = HandoverNote(
                owner_email=email, accounts=handed[:HANDOVER_LISTED], total=len(handed)
            )
            owner = Owner.model_construct(email=email, slack_id=slack_id)
            to = routing.account_people(owner, None, None, rules, self._settings)[:1]
            # Keyed by the pass's moment: a later handover to the same owner is news.
            notification = f"{NoticeKind.handover.value}:{now.isoformat()}"
            notice = Notice(NoticeKind.handover, [], f"{note.ref}/{notification}", handover=note)
            queued += await self._outbox.put(
                conn, notice, to, notification=CASE_NOTIFICATION + notification, now=now
            )
        return queued

    async def _claim_moved(self, conn: AsyncConnection, now: datetime) -> list[Any]:
        """The accounts whose owner changed since their last handover, claimed (those
        given to someone; one left without an owner is only recorded so); the ones never
        seen are recorded as told, quietly. No owner is kept as "": an account without
        one that a lead then gives to a CSM is a handover (it had been taken as first
        seen then, found in review)."""
        told = owner_notices.c.owner_email
        owner = func.coalesce(accounts.c.owner_email, literal(""))
        rows = (
            await conn.execute(
                select(
                    accounts.c.account_id,
                    accounts.c.name,
                    owner.label("owner_email"),
                    accounts.c.owner_slack_id,
                    told.label("told"),
                    owner_notices.c.account_id.label("known"),
                )
                .outerjoin(owner_notices, owner_notices.c.account_id == accounts.c.account_id)
                .where(told.is_distinct_from(owner))
            )
        ).all()
        if first_seen := [row for row in rows if row.known is None]:
            values = [
                {"account_id": r.account_id, "owner_email": r.owner_email, "told_at": now}
                for r in first_seen
            ]
            await conn.execute(insert_ignore(conn, owner_notices).on_conflict_do_nothing(), values)
        claimed = []
        for row in rows:
            if row.known is None:
                continue
            done = await conn.execute(
                update(owner_notices)
                .where(owner_notices.c.account_id == row.account_id, told == row.told)
                .values(owner_email=row.owner_email, told_at=now)
            )
            if done.rowcount and row.owner_email:
                claimed.append(row)
        return claimed


async def _standing(conn: AsyncConnection, account_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Each account's health now, open alerts and open case's danger, by account."""
    found: dict[str, dict[str, Any]] = defaultdict(dict)
    for start in range(0, len(account_ids), CHUNK):
        await _standing_of(conn, account_ids[start : start + CHUNK], found)
    return found


async def _standing_of(
    conn: AsyncConnection, account_ids: list[str], found: dict[str, dict[str, Any]]
) -> None:
    health = select(account_health.c.account_id, account_health.c.score, account_health.c.band)
    for row in await conn.execute(health.where(account_health.c.account_id.in_(account_ids))):
        found[row.account_id].update(score=row.score, band=row.band)
    open_alerts = (
        select(alerts.c.account_id, func.count())
        .where(alerts.c.account_id.in_(account_ids), alerts.c.status.in_(OPEN_ALERT_STATUSES))
        .group_by(alerts.c.account_id)
    )
    for account_id, n in await conn.execute(open_alerts):
        found[account_id]["open_alerts"] = n
    open_cases = select(cases.c.account_id, cases.c.danger_level).where(
        cases.c.account_id.in_(account_ids), cases.c.state == "open"
    )
    for account_id, danger in await conn.execute(open_cases):
        found[account_id]["case_danger"] = danger


def _worst_first(account: HandedAccount) -> tuple[bool, int, int, str]:
    """An open case first, then the most open alerts, then the lowest score."""
    score = account.score if account.score is not None else 101
    return (account.case_danger is None, -account.open_alerts, score, account.account_id)
