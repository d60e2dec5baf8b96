"""Tasks: what someone must do for an account by a date, in a case's action plan or on
their own (an NPS detractor's follow-up). The module API other packages use: create,
list, complete.

A task's owner is ``owner_email`` if one was named and may still see the account, else
the account's owner now (the accounts table), read when listed and told: a reassigned
account's tasks move with it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import ColumnElement, Select, case, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.alerts.actions import Action, apply_action
from services.alerts.cases.model import TASK_KINDS, TITLE_CHARS
from services.alerts.queries import accounts_of, total_of
from shared.alerting.store import AlertingStore
from shared.auth import ApiKey
from shared.contracts.events import Email, fold_email, folded_email
from shared.i18n import Refusal
from shared.people import may_see, sees_account, works_here
from shared.storage.db import insert_ignore
from shared.storage.tables import accounts, alerts, tasks

# The source of a task an alert opened: ``alert:<alert id>``.
ALERT_SOURCE = "alert:"


def named_owner() -> ColumnElement[str | None]:
    """The one named on a task while they may still see its account, else NULL. A CSM
    named on a task kept it when the account moved to another CSM: it left the new
    owner's lists and its reminders told the old one about an account no longer theirs
    (found from outside)."""
    named = tasks.c.owner_email
    return case((named.is_not(None) & may_see(named, accounts.c.owner_email), named))


def owner_now() -> ColumnElement[str]:
    """Who does a task: the one named on it (``named_owner``), else the account's owner
    now."""
    return func.coalesce(named_owner(), accounts.c.owner_email)


# The contracts' check of an address (the API's body uses the same type).
_EMAIL: TypeAdapter[str] = TypeAdapter(Email)


class TaskError(Refusal):
    """The task cannot be created or changed so; the message says why."""


class TaskDone(TaskError):
    """The task is done already."""


class OwnerRefused(TaskError):
    """The named owner cannot take the task: healthwatch sends them no work
    (``unknown_owner``), or they cannot see its account (``owner_cannot_see``)."""

    def __init__(self, code: str, message: str, /, **values: object):
        super().__init__(message, **values)
        self.code = code


@dataclass(frozen=True)
class NewTask:
    account_id: str
    kind: str
    title: str
    due: datetime
    source: str  # who made it: an email, or ``alert:<id>`` (ALERT_SOURCE)
    case_id: int | None = None
    owner_email: str | None = None  # None: the account's owner, whoever it is then
    # Given for a task opened automatically: a second create with it adds nothing.
    source_key: str | None = None


async def create_task(
    conn: AsyncConnection, task: NewTask, now: datetime, alerting: AlertingStore | None = None
) -> int:
    """Add ``task``; its id. With a ``source_key`` already used, the existing task's id
    (a replayed alert opens its follow-up once). ``alerting``: the service's alerting
    store, whose routing's people may own a task (needed when the task names one)."""
    if task.kind not in TASK_KINDS:
        raise TaskError("Unknown task kind {kind!r}.", kind=task.kind)
    title = task.title.strip()
    if not title or len(title) > TITLE_CHARS:
        raise TaskError("A task needs a title of 1 to {limit} characters.", limit=TITLE_CHARS)
    if any(ord(c) < 32 or ord(c) == 127 for c in title):  # the API's text refuses them too
        raise TaskError("A task's title is one line of text, without control characters.")
    if task.owner_email is not None:
        # Checked here, not only by the API's body: the dashboard's form stored
        # "不是邮箱" as an owner, whose tasks then reached nobody's list.
        try:
            task = replace(task, owner_email=_EMAIL.validate_python(task.owner_email))
        except ValidationError:
            raise TaskError(
                "The task's owner {owner!r} is not an email address.", owner=task.owner_email
            ) from None
        if alerting is None:
            raise TypeError("a task naming its owner needs the service's alerting store")
        if not await works_here(conn, task.owner_email or "", alerting):
            raise OwnerRefused(
                "unknown_owner",
                "{owner!r} is not someone healthwatch sends work to: name an account's "
                "owner, a CSM with a key or a person of the alerting file's routing, or "
                "leave the owner out (the account's owner does it).",
                owner=task.owner_email,
            )
        if not await sees_account(conn, task.owner_email or "", task.account_id):
            raise OwnerRefused(
                "owner_cannot_see",
                "{owner!r} cannot see account {account!r}: it is another CSM's. Name the "
                "account's owner, a lead or a person of the alerting file's routing, or "
                "move the account to them first.",
                owner=task.owner_email,
                account=task.account_id,
            )
    owner = folded_email(task.owner_email)
    if owner is not None and owner == await _account_owner(conn, task.account_id):
        # The account's owner named: the task is the account's owner's, whoever that is
        # then. Kept as named, it stayed with a CSM whose key was revoked or who never
        # had one after the account moved on (found in review).
        owner = None
    values = {
        "account_id": task.account_id,
        "case_id": task.case_id,
        "kind": task.kind,
        "title": title,
        # Folded as accounts' owners are (the dashboard's form and the API both land here).
        "owner_email": owner,
        "due": task.due,
        "source": task.source,
        "source_key": task.source_key,
        "created_at": now,
    }
    if task.source_key is None:
        done = await conn.execute(tasks.insert().values(**values).returning(tasks.c.task_id))
        return int(done.scalar_one())
    await conn.execute(insert_ignore(conn, tasks).values(**values).on_conflict_do_nothing())
    found = select(tasks.c.task_id).where(tasks.c.source_key == task.source_key)
    return int((await conn.execute(found)).scalar_one())


async def _account_owner(conn: AsyncConnection, account_id: str) -> str | None:
    q = select(accounts.c.owner_email).where(accounts.c.account_id == account_id)
    found = (await conn.execute(q)).scalar_one_or_none()
    return None if found is None else fold_email(found)


def task_query(key: ApiKey | None = None) -> Select[Any]:
    """Every task with its owner now (``owner``) and its account's name, narrowed to the
    accounts ``key`` may see (a CSM's portfolio)."""
    q = select(tasks, owner_now().label("owner"), accounts.c.name.label("account_name")).outerjoin(
        accounts, accounts.c.account_id == tasks.c.account_id
    )
    if key is not None and key.portfolio_of is not None:
        q = q.where(tasks.c.account_id.in_(accounts_of(key.portfolio_of)))
    return q


@dataclass(frozen=True)
class TaskFilter:
    owner: str | None = None  # the owner now (named, else the account's)
    account_id: str | None = None
    case_id: int | None = None
    kind: str | None = None
    open_only: bool = True
    done_only: bool = False
    overdue_at: datetime | None = None  # open and due before this time


async def list_tasks(
    conn: AsyncConnection,
    key: ApiKey | None,
    where: TaskFilter,
    *,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """The tasks ``key`` may see that match ``where``, soonest due first; and how many
    match in all."""
    q = task_query(key)
    if where.owner is not None:
        q = q.where(owner_now() == fold_email(where.owner))
    if where.account_id is not None:
        q = q.where(tasks.c.account_id == where.account_id)
    if where.case_id is not None:
        q = q.where(tasks.c.case_id == where.case_id)
    if where.kind is not None:
        q = q.where(tasks.c.kind == where.kind)
    if where.open_only or where.overdue_at is not None:
        q = q.where(tasks.c.done_at.is_(None))
    if where.overdue_at is not None:
        q = q.where(tasks.c.due < where.overdue_at)
    if where.done_only:
        q = q.where(tasks.c.done_at.is_not(None))
    total = await total_of(conn, q)
    q = q.order_by(tasks.c.done_at.is_not(None), tasks.c.due, tasks.c.task_id)
    rows = await conn.execute(q.limit(limit).offset(offset))
    return [task_row(r) for r in rows], total


async def visible_task(conn: AsyncConnection, task_id: int, key: ApiKey | None) -> Any:
    """The task's row (with ``owner`` and ``account_name``) if ``key`` may see it."""
    q = task_query(key).where(tasks.c.task_id == task_id)
    return (await conn.execute(q)).first()


async def complete_task(conn: AsyncConnection, task_id: int, actor: str, now: datetime) -> None:
    """Mark the task done by ``actor``; TaskError if it is done already or gone. A task an
    alert opened (a detractor's follow-up, a case's first step) acknowledges that alert
    if it still waits for someone: the work it asked for is done, so it leaves the
    "alerts to do", and stays open until its rule clears (the detractor answers again)."""
    done = await conn.execute(
        update(tasks)
        .where(tasks.c.task_id == task_id, tasks.c.done_at.is_(None))
        .values(done_at=now, done_by=actor)
        .returning(tasks.c.source, tasks.c.title)
    )
    task = done.first()
    if task is None:
        raise TaskDone("the task is done already")
    alert_id = (
        task.source.removeprefix(ALERT_SOURCE) if task.source.startswith(ALERT_SOURCE) else None
    )
    if alert_id is None:
        return
    row = (
        await conn.execute(select(alerts).where(alerts.c.alert_id == alert_id).with_for_update())
    ).first()
    if row is not None and row.status == "firing":
        # The task's title says, in the alert's history, what was done.
        await apply_action(conn, row, Action("acknowledge", actor, task.title), now)


def task_row(r: Any) -> dict[str, Any]:
    """A task as the API and the dashboard show it."""
    return {
        "task_id": r.task_id,
        "account_id": r.account_id,
        "account_name": r.account_name,
        "case_id": r.case_id,
        "kind": r.kind,
        "title": r.title,
        "owner_email": r.owner,
        "due": r.due,
        "done_at": r.done_at,
        "done_by": r.done_by,
        "source": r.source,
        "created_at": r.created_at,
    }
