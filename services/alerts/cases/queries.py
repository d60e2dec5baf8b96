"""What other packages may read of cases: the one import they are allowed besides the
commands of ``actions`` and ``tasks`` (the import rules in ``pyproject.toml``).

A case's owner is its account's owner now (the accounts table), so a reassigned account's
case moves with it; a key tied to a CSM sees the cases of the accounts that CSM owns now.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import CompoundSelect, Select, func, select, union
from sqlalchemy.ext.asyncio import AsyncConnection

from services.alerts.cases.model import (
    CAUSES,
    LEVEL_LABELS,
    LEVELS,
    OUTCOMES,
    SEVERITY_LEVEL,
    STATES,
    TASK_KINDS,
)
from services.alerts.cases.tasks import TaskFilter, list_tasks
from services.alerts.queries import accounts_of, total_of
from shared.auth import ApiKey
from shared.contracts.events import fold_email
from shared.storage.tables import account_health, accounts, case_reviews, cases, tasks

MAX_CASE_ID = 2**63 - 1  # cases.case_id is a 64-bit integer
# The case vocabulary, lent to the dashboard (which may import this module, not model).
VOCABULARY = (CAUSES, LEVEL_LABELS, LEVELS, OUTCOMES, STATES, TASK_KINDS)
__all__ = ["SEVERITY_LEVEL", "VOCABULARY"]


def case_query(key: ApiKey | None = None) -> Select[Any]:
    """Every case with its account's name, tier and owner now (``owner``), narrowed to
    the accounts ``key`` may see."""
    open_tasks = (
        select(func.count())
        .where(tasks.c.case_id == cases.c.case_id, tasks.c.done_at.is_(None))
        .scalar_subquery()
    )
    q = select(
        cases,
        accounts.c.name.label("account_name"),
        accounts.c.tier.label("tier"),
        accounts.c.owner_email.label("owner"),
        open_tasks.label("open_tasks"),
    ).outerjoin(accounts, accounts.c.account_id == cases.c.account_id)
    if key is not None and key.portfolio_of is not None:
        q = q.where(cases.c.account_id.in_(accounts_of(key.portfolio_of)))
    return q


@dataclass(frozen=True)
class CaseFilter:
    owner: str | None = None  # the account's owner now
    state: str | None = "open"  # open / closed; None: both
    danger: str | None = None
    account_id: str | None = None


async def list_cases(
    conn: AsyncConnection,
    key: ApiKey | None,
    where: CaseFilter,
    *,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """The cases ``key`` may see that match ``where``, most recently opened first; and
    how many match in all."""
    q = case_query(key)
    if where.owner is not None:
        q = q.where(accounts.c.owner_email == fold_email(where.owner))
    for column, value in (
        (cases.c.state, where.state),
        (cases.c.danger_level, where.danger),
        (cases.c.account_id, where.account_id),
    ):
        if value is not None:
            q = q.where(column == value)
    total = await total_of(conn, q)
    q = q.order_by(cases.c.opened_at.desc(), cases.c.case_id.desc()).limit(limit).offset(offset)
    return [case_row(r) for r in await conn.execute(q)], total


async def visible_case(conn: AsyncConnection, case_id: int, key: ApiKey | None) -> Any:
    """The case's row (with its account's name, tier and owner now) if ``key`` may see it."""
    if not 0 < case_id <= MAX_CASE_ID:
        return None
    return (await conn.execute(case_query(key).where(cases.c.case_id == case_id))).first()


async def open_case_of(conn: AsyncConnection, account_id: str, key: ApiKey | None) -> Any:
    """The account's open case, if any and ``key`` may see it."""
    q = case_query(key).where(cases.c.open_key == account_id)
    return (await conn.execute(q)).first()


async def case_detail(conn: AsyncConnection, row: Any, now: datetime) -> dict[str, Any]:
    """The case with its plan (every task, open ones first) and its reviews."""
    plan, _ = await list_tasks(
        conn, None, TaskFilter(case_id=row.case_id, open_only=False), limit=1000
    )
    reviews = await conn.execute(
        select(case_reviews)
        .where(case_reviews.c.case_id == row.case_id)
        .order_by(case_reviews.c.at, case_reviews.c.review_id)
    )
    return {
        **case_row(row, now),
        "tasks": plan,
        "reviews": [
            {
                "review_id": r.review_id,
                "at": r.at,
                "reviewer": r.reviewer,
                "notes": r.notes,
                "danger_after": r.danger_after,
            }
            for r in reviews
        ],
    }


def case_row(r: Any, now: datetime | None = None) -> dict[str, Any]:
    """A case as the API and the dashboard show it (``review_overdue`` given ``now``)."""
    due = r.next_review_at
    return {
        "case_id": r.case_id,
        "account_id": r.account_id,
        "account_name": r.account_name,
        "tier": r.tier,
        "owner_email": r.owner,
        "state": r.state,
        "danger_level": r.danger_level,
        "causes": list(r.causes or []),
        "summary": r.summary,
        "open_tasks": r.open_tasks,
        "alert_id": r.alert_id,
        "opened_at": r.opened_at,
        "opened_by": r.opened_by,
        "next_review_at": due,
        "review_overdue": bool(now and due and r.state == "open" and due < now),
        "closed_at": r.closed_at,
        "closed_by": r.closed_by,
        "outcome": r.outcome,
        "lesson": r.lesson,
    }


async def open_cases_by_owner(conn: AsyncConnection) -> dict[str | None, int]:
    """How many open cases each CSM has (their accounts' now; None: no owner)."""
    q = (
        select(accounts.c.owner_email, func.count())
        .select_from(cases.outerjoin(accounts, accounts.c.account_id == cases.c.account_id))
        .where(cases.c.state == "open")
        .group_by(accounts.c.owner_email)
    )
    return {owner: int(n) for owner, n in await conn.execute(q)}


async def account_visible(conn: AsyncConnection, account_id: str, key: ApiKey | None) -> bool:
    """The account is known (its facts or a score) and ``key`` may see it."""
    q: Select[Any] | CompoundSelect[Any]
    if key is not None and key.portfolio_of is not None:
        q = accounts_of(key.portfolio_of).where(accounts.c.account_id == account_id)
    else:
        q = union(
            select(accounts.c.account_id).where(accounts.c.account_id == account_id),
            select(account_health.c.account_id).where(account_health.c.account_id == account_id),
        )
    return (await conn.execute(q)).first() is not None


async def measured_causes(conn: AsyncConnection, account_id: str) -> list[str]:
    """The danger causes scoring found for the account (``inputs.danger``), if any."""
    q = select(account_health.c.inputs).where(account_health.c.account_id == account_id)
    inputs = (await conn.execute(q)).scalar_one_or_none() or {}
    codes = inputs.get("danger") if isinstance(inputs, dict) else None
    return [c for c in codes if c in CAUSES] if isinstance(codes, list) else []
