"""What people (and the alerts service) do to a case: open it, add a task to its plan,
review it, close it. The cases API and the dashboard apply these same commands, in the
caller's transaction; the timer pass tells people (``timers``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.alerts.cases.model import (
    CASE_ACTION,
    CAUSES,
    LEVELS,
    OUTCOMES,
    TEXT_CHARS,
    TITLE_CHARS,
    review_every,
)
from services.alerts.cases.tasks import NewTask, create_task
from shared.alerting.store import AlertingStore
from shared.config import Settings
from shared.i18n import Refusal
from shared.storage.db import insert_ignore
from shared.storage.tables import case_reviews, cases, tasks


class CaseError(Refusal):
    """The command does not fit the case or its input; the message says why."""


class CaseClosed(CaseError):
    """The case is closed: nothing more is done to it."""


@dataclass(frozen=True)
class NewCase:
    account_id: str
    danger_level: str
    summary: str
    opened_by: str  # an email, a key's name, or "healthwatch" for an alert's
    causes: list[str] = field(default_factory=list)
    alert_id: str | None = None
    # Its people heard already: a case the intake opens with its alert goes to the same
    # people as the alert's own notice, at the same moment; a second message saying the
    # case opened would only double the alert (issue 15: one message per problem).
    told: bool = False


def _bounded_text(value: str, what: str, limit: int) -> str:
    """``value`` stripped, refused (``what``: a message template of ``limit``) unless it
    holds 1 to ``limit`` characters, none of them NUL."""
    text = value.strip()
    if not text or len(text) > limit or "\x00" in text:
        raise CaseError(what, limit=limit)
    return text


def _level(level: str) -> str:
    if level not in LEVELS:
        raise CaseError(
            "Unknown danger level {level!r}: one of {levels}.",
            level=level,
            levels=", ".join(LEVELS),
        )
    return level


def _causes(codes: list[str]) -> list[str]:
    unknown = [c for c in codes if c not in CAUSES]
    if unknown:
        raise CaseError(
            "Unknown cause codes {unknown!r}: see the cases API's causes.", unknown=unknown
        )
    return list(dict.fromkeys(codes))


async def open_case(
    conn: AsyncConnection, new: NewCase, settings: Settings, now: datetime
) -> tuple[int, bool]:
    """Open a case for the account, or find the one open already (an account has one
    open case at most: the review is of the customer, DG-10); (case id, opened now)."""
    level = _level(new.danger_level)
    values = {
        "account_id": new.account_id,
        "open_key": new.account_id,
        "state": "open",
        "danger_level": level,
        "causes": _causes(new.causes),
        "alert_id": new.alert_id,
        "summary": _bounded_text(
            new.summary, "A case's summary must be 1 to {limit} characters.", TITLE_CHARS
        ),
        "opened_at": now,
        "opened_by": new.opened_by,
        "next_review_at": now + review_every(settings, level),
        "updated_at": now,
        "opened_told_at": now if new.told else None,
    }
    added = await conn.execute(insert_ignore(conn, cases).values(**values).on_conflict_do_nothing())
    found = select(cases.c.case_id).where(cases.c.open_key == new.account_id)
    case_id = int((await conn.execute(found)).scalar_one())
    return case_id, added.rowcount == 1


def _open(row: Any) -> None:
    if row.state != "open":
        raise CaseClosed("The case is closed.")


async def add_task(
    conn: AsyncConnection,
    row: Any,
    *,
    title: str,
    due: datetime,
    owner_email: str | None,
    actor: str,
    now: datetime,
    alerting: AlertingStore,
) -> int:
    """A step of the case's action plan (DG-13: each person's task and deadline); one
    due in the past is overdue at once (a step already late when planned). ``alerting``:
    the service's alerting store (its routing's people may own the task)."""
    _open(row)
    task = NewTask(row.account_id, CASE_ACTION, title, due, actor, row.case_id, owner_email)
    return await create_task(conn, task, now, alerting)


async def add_review(
    conn: AsyncConnection,
    row: Any,
    *,
    reviewer: str,
    notes: str,
    danger_after: str,
    settings: Settings,
    now: datetime,
) -> None:
    """A review held (DG-14): its notes and the danger level after it, which sets when
    the next one is due."""
    _open(row)
    level = _level(danger_after)
    await conn.execute(
        case_reviews.insert().values(
            case_id=row.case_id,
            at=now,
            reviewer=reviewer,
            notes=_bounded_text(
                notes, "A review's notes must be 1 to {limit} characters.", TEXT_CHARS
            ),
            danger_after=level,
        )
    )
    await conn.execute(
        update(cases)
        .where(cases.c.case_id == row.case_id)
        .values(
            danger_level=level,
            next_review_at=now + review_every(settings, level),
            updated_at=now,
        )
    )


async def set_causes(conn: AsyncConnection, row: Any, codes: list[str], now: datetime) -> None:
    """The causes the review settled on (DG-11: pool everyone's knowledge)."""
    _open(row)
    await conn.execute(
        update(cases)
        .where(cases.c.case_id == row.case_id)
        .values(causes=_causes(codes), updated_at=now)
    )


async def close_case(
    conn: AsyncConnection, row: Any, *, outcome: str, lesson: str, actor: str, now: datetime
) -> None:
    """Closed with its outcome and the lesson learnt, its open tasks done with it; the
    account may get a new case."""
    _open(row)
    if outcome not in OUTCOMES:
        raise CaseError(
            "Unknown outcome {outcome!r}: one of {outcomes}.",
            outcome=outcome,
            outcomes=", ".join(OUTCOMES),
        )
    await conn.execute(
        update(cases)
        .where(cases.c.case_id == row.case_id, cases.c.state == "open")
        .values(
            state="closed",
            open_key=None,
            outcome=outcome,
            lesson=_bounded_text(lesson, "A lesson must be 1 to {limit} characters.", TEXT_CHARS),
            closed_at=now,
            closed_by=actor,
            next_review_at=None,
            updated_at=now,
        )
    )
    # Its plan's open steps close with it, as a closed CTA's tasks do elsewhere: they
    # stayed on "My tasks", with reminders, and no way to act on them from the closed
    # case (found from outside).
    await conn.execute(
        update(tasks)
        .where(tasks.c.case_id == row.case_id, tasks.c.done_at.is_(None))
        .values(done_at=now, done_by=actor)
    )
