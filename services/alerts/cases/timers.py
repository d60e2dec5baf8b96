"""The cases' part of the alerts service's timer pass: tell people a case opened or
closed, a review or task is due (its owner), or overdue (the lead), each once.

Each notice is recorded on its row by a conditional UPDATE before it is queued (a second
alerts service running the same pass matches no row and tells nobody), and is keyed in
the outbox by the case or task and which notice it is, so it is delivered once.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.alerts.cases import people
from services.alerts.cases.model import CAUSES
from services.alerts.cases.tasks import named_owner
from services.alerts.outbox import Outbox
from shared.alerting.schema import Recipient, Routing
from shared.config import Settings
from shared.contracts.notices import CaseNote, NoticeKind
from shared.storage.tables import accounts, cases, tasks

# Due work is told to its owner when due; the lead hears a working day later if it is
# still not done (or reviewed): a day to catch up before it is escalated.
OVERDUE_AFTER = timedelta(days=1)


class CaseTimers:
    def __init__(self, outbox: Outbox, settings: Settings):
        self._outbox = outbox
        self._settings = settings

    async def run(self, conn: AsyncConnection, rules: Routing, now: datetime) -> int:
        """One pass in the caller's transaction; how many deliveries it queued."""
        queued = await self._opened_and_closed(conn, rules, now)
        queued += await self._reviews(conn, rules, now)
        queued += await self._tasks(conn, rules, now)
        return queued

    async def _opened_and_closed(self, conn: AsyncConnection, rules: Routing, now: datetime) -> int:
        queued = 0
        for kind, told, when in (
            (NoticeKind.case_opened, cases.c.opened_told_at, cases.c.state.is_not(None)),
            (NoticeKind.case_closed, cases.c.closed_told_at, cases.c.state == "closed"),
        ):
            for row in await conn.execute(select(cases).where(told.is_(None), when)):
                if await _claim(conn, cases, cases.c.case_id == row.case_id, told, now):
                    queued += await self._tell_case(conn, row, kind, rules, now, kind.value)
        return queued

    async def _reviews(self, conn: AsyncConnection, rules: Routing, now: datetime) -> int:
        """A review due: the case's people hear; a day later the lead (DG-14)."""
        queued = 0
        for kind, told, late in (
            (NoticeKind.review_due, cases.c.review_told_for, timedelta(0)),
            (NoticeKind.review_overdue, cases.c.review_escalated_for, OVERDUE_AFTER),
        ):
            due = cases.c.next_review_at
            rows = await conn.execute(
                select(cases).where(
                    cases.c.state == "open", due <= now - late, told.is_distinct_from(due)
                )
            )
            for row in rows:
                key = cases.c.case_id == row.case_id
                if await _claim(conn, cases, key, told, row.next_review_at):
                    name = f"{kind.value}:{row.next_review_at.isoformat()}"
                    queued += await self._tell_case(conn, row, kind, rules, now, name)
        return queued

    async def _tell_case(
        self,
        conn: AsyncConnection,
        row: Any,
        kind: NoticeKind,
        rules: Routing,
        now: datetime,
        notification: str,
    ) -> int:
        who = await people.contacts(conn, row.account_id)
        note = CaseNote(
            case_id=row.case_id,
            account_id=row.account_id,
            account_name=who.name,
            danger_level=row.danger_level,
            causes=list(row.causes or []),
            cause_labels=[CAUSES.get(cause, cause) for cause in row.causes or []],
            title=row.summary,
            due=row.next_review_at,
            owner_email=who.owner.email if who.owner else None,
            outcome=row.outcome,
            lesson=row.lesson,
        )
        to = people.case_people(who, rules, self._settings)
        if kind == NoticeKind.review_overdue:
            to = people.escalation(who, rules, self._settings)
        # Who opened or closed the case knows: told it, a CSM had their own case's
        # "opened" notice seconds after opening it (found from outside).
        actor = {NoticeKind.case_opened: row.opened_by, NoticeKind.case_closed: row.closed_by}
        if (done_by := actor.get(kind)) is not None:
            to = [person for person in to if person.email != done_by]
        return await people.tell(
            conn, self._outbox, kind, note, to, notification=notification, now=now
        )

    async def _tasks(self, conn: AsyncConnection, rules: Routing, now: datetime) -> int:
        """A task due: its owner hears; a day later, not done, the lead. Tasks of a
        closed case are over with it."""
        queued = 0
        open_case = or_(
            tasks.c.case_id.is_(None),
            tasks.c.case_id.in_(select(cases.c.case_id).where(cases.c.state == "open")),
        )
        for kind, told, late in (
            (NoticeKind.task_due, tasks.c.due_told_for, timedelta(0)),
            (NoticeKind.task_overdue, tasks.c.overdue_told_for, OVERDUE_AFTER),
        ):
            rows = await conn.execute(
                select(tasks, named_owner().label("named_now"))
                .outerjoin(accounts, accounts.c.account_id == tasks.c.account_id)
                .where(
                    tasks.c.done_at.is_(None),
                    tasks.c.due <= now - late,
                    told.is_distinct_from(tasks.c.due),
                    open_case,
                )
            )
            for row in rows:
                key = tasks.c.task_id == row.task_id
                if await _claim(conn, tasks, key, told, row.due):
                    queued += await self._tell_task(conn, row, kind, rules, now)
        return queued

    async def _tell_task(
        self, conn: AsyncConnection, row: Any, kind: NoticeKind, rules: Routing, now: datetime
    ) -> int:
        who = await people.contacts(conn, row.account_id)
        owner = people.task_owner(row.named_now, who, rules, self._settings)
        note = CaseNote(
            case_id=row.case_id,
            task_id=row.task_id,
            account_id=row.account_id,
            account_name=who.name,
            title=row.title,
            due=row.due,
            owner_email=owner.email,
        )
        to: list[Recipient] = [owner]
        if kind == NoticeKind.task_overdue:
            to = people.escalation(who, rules, self._settings)
        name = f"{kind.value}:{row.due.isoformat()}"
        return await people.tell(conn, self._outbox, kind, note, to, notification=name, now=now)


async def _claim(
    conn: AsyncConnection, table: Any, key: ColumnElement[bool], told: Any, value: datetime
) -> bool:
    """Record on its row that the notice of ``value`` (a time: when, or which due date)
    is told, unless another pass did since this one read the row."""
    done = await conn.execute(
        update(table).where(key, told.is_distinct_from(value)).values({told.name: value})
    )
    return bool(done.rowcount)
