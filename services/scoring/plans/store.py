"""The plan tables (``success_plans``, ``plan_milestones``), read and written. Every
function takes the caller's connection: scoring writes in its batch's transaction, the
API and the dashboard in their own."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import Row, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scoring.model.labels import measured_name
from services.scoring.plans.progress import AlertState, Milestone, value_of
from services.scoring.plans.templates import NewMilestone
from shared.storage.db import among, upsert
from shared.storage.tables import account_health, plan_milestones, success_plans


@dataclass(frozen=True)
class StoredMilestone:
    milestone: Milestone
    alert: AlertState
    checked_by: str | None = None
    removed: bool = False  # removed while its alert was open (scoring ends the alert)


@dataclass(frozen=True)
class Plan:
    account_id: str
    template: str | None
    start_on: date
    created_by: str
    milestones: list[StoredMilestone] = field(default_factory=list)


def _milestone(row: Row[Any]) -> StoredMilestone:
    return StoredMilestone(
        Milestone(
            row.key,
            row.title,
            row.measure,
            row.op,
            row.target,
            row.baseline,
            row.start_on,
            row.due_on,
            row.achieved_on,
        ),
        AlertState(row.alert_status, row.fire_count, row.revision),
        row.checked_by,
        bool(row.removed),
    )


async def plan_names(conn: AsyncConnection, ids: Iterable[str]) -> dict[str, frozenset[str]]:
    """account → the event names its milestones measure per name (``events_28d[export]``),
    which its score measures besides its most used (accounts without one left out)."""
    t = plan_milestones.c
    found: dict[str, set[str]] = {}
    q = select(t.account_id, t.measure).where(among(conn, t.account_id, ids), t.measure.like("%]"))
    for account_id, measure in await conn.execute(q):
        if (name := measured_name(measure)) is not None:
            found.setdefault(account_id, set()).add(name)
    return {account_id: frozenset(names) for account_id, names in found.items()}


async def load_plans(
    conn: AsyncConnection, ids: Iterable[str], *, removed: bool = False
) -> dict[str, Plan]:
    """account → its plan with its milestones in order (accounts without one left out);
    ``removed``: with the removed milestones whose alert scoring has yet to end."""
    wanted = list(ids)
    if not wanted:
        return {}
    plans = {
        r.account_id: Plan(r.account_id, r.template, r.start_on, r.created_by)
        for r in await conn.execute(
            select(success_plans).where(among(conn, success_plans.c.account_id, wanted))
        )
    }
    if not plans and not removed:
        return {}
    m = plan_milestones.c
    q = select(plan_milestones).where(among(conn, m.account_id, wanted if removed else list(plans)))
    if not removed:
        q = q.where(m.removed.is_(False))
    for row in await conn.execute(q.order_by(m.position, m.key)):
        # A plan dropped while a milestone's alert was open: that milestone alone.
        plan = plans.setdefault(row.account_id, Plan(row.account_id, None, row.start_on, ""))
        plan.milestones.append(_milestone(row))
    return plans


async def plan_accounts(conn: AsyncConnection) -> set[str]:
    return set((await conn.execute(select(success_plans.c.account_id))).scalars())


async def replace_plan(
    conn: AsyncConnection,
    account_id: str,
    *,
    template: str | None,
    start_on: date,
    milestones: list[NewMilestone],
    values: Mapping[str, Any],
    author: str,
    now: datetime,
) -> None:
    """Make the account's plan anew. A milestone's alert stays with its key: a key made
    again keeps counting its alerts (so a new problem gets a new alert id), and one
    dropped while its alert is open is kept, removed, until scoring ends the alert."""
    m = plan_milestones.c
    old = list((await conn.execute(select(m.key).where(m.account_id == account_id))).scalars())
    await conn.execute(delete(success_plans).where(success_plans.c.account_id == account_id))
    await conn.execute(
        insert(success_plans).values(
            account_id=account_id,
            template=template,
            start_on=start_on,
            created_at=now,
            created_by=author,
            updated_at=now,
        )
    )
    for key in old:
        await remove_milestone(conn, account_id, key)
    for position, new in enumerate(milestones):
        await add_milestone(conn, account_id, new, start_on, values, now, position=position)


def _baseline(new: NewMilestone, start_on: date, values: Mapping[str, Any]) -> float | None:
    """Where the measure stands when the milestone starts: the pace is judged from it.
    A plan starting before today (a new account's, from its purchase) starts from
    nothing used: 0 for a measure to raise, unknown for one to bring down."""
    if new.measure is None:
        return None
    if values.get("as_of") != start_on.isoformat():
        return 0.0 if new.op == ">=" else None
    probe = Milestone(new.key, new.title, new.measure, new.op, new.target, None, start_on, start_on)
    return value_of(probe, values)


def restart(
    measure: str | None, op: str, target: float | None, today: date, values: Mapping[str, Any]
) -> dict[str, Any]:
    """The columns of a milestone given another measure: it starts anew today."""
    new = NewMilestone("", "", measure, op, target, today)
    return {"start_on": today, "baseline": _baseline(new, today, values), "achieved_on": None}


async def add_milestone(
    conn: AsyncConnection,
    account_id: str,
    new: NewMilestone,
    start_on: date,
    values: Mapping[str, Any],
    now: datetime,
    *,
    position: int | None = None,
) -> None:
    if position is None:
        last = await conn.execute(
            select(func.max(plan_milestones.c.position)).where(
                plan_milestones.c.account_id == account_id
            )
        )
        position = (last.scalar() or 0) + 1
    row = {
        "account_id": account_id,
        "key": new.key,
        "position": position,
        "title": new.title,
        "measure": new.measure,
        "op": new.op,
        "target": new.target,
        "baseline": _baseline(new, start_on, values),
        "start_on": start_on,
        "due_on": new.due_on,
        "achieved_on": None,
        "checked_by": None,
        "removed": False,
        "updated_at": now,
    }
    # Over a removed milestone of the same key: its alert columns stay (see replace_plan).
    await upsert(conn, plan_milestones, [row], keys=["account_id", "key"], update=list(row)[2:])


async def change_milestone(
    conn: AsyncConnection, account_id: str, key: str, now: datetime, **changes: Any
) -> bool:
    """Set ``changes`` on the milestone; False when there is none with ``key``."""
    m = plan_milestones.c
    done = await conn.execute(
        update(plan_milestones)
        .where(m.account_id == account_id, m.key == key)
        .values(**changes, updated_at=now)
    )
    return bool(done.rowcount)


async def remove_milestone(conn: AsyncConnection, account_id: str, key: str) -> bool:
    """Delete the milestone, or mark it removed while its alert is open (scoring then
    publishes the alert's end and deletes it); False when there is none."""
    m = plan_milestones.c
    mine = (m.account_id == account_id, m.key == key, m.removed.is_(False))
    marked = await conn.execute(
        update(plan_milestones).where(*mine, m.alert_status != "ok").values(removed=True)
    )
    if marked.rowcount:
        return True
    done = await conn.execute(delete(plan_milestones).where(*mine))
    return bool(done.rowcount)


async def forget_removed(conn: AsyncConnection, account_id: str, key: str) -> None:
    m = plan_milestones.c
    await conn.execute(
        delete(plan_milestones).where(m.account_id == account_id, m.key == key, m.removed)
    )


async def save_steps(
    conn: AsyncConnection,
    account_id: str,
    moved: Mapping[str, tuple[AlertState, date | None]],
    now: datetime,
) -> None:
    """Write what scoring's step decided per milestone key: its alert state and the day
    it was achieved."""
    for key, (alert, achieved_on) in moved.items():
        await change_milestone(
            conn,
            account_id,
            key,
            now,
            alert_status=alert.status,
            fire_count=alert.fire_count,
            revision=alert.revision,
            achieved_on=achieved_on,
        )


async def drop_plan(conn: AsyncConnection, account_id: str) -> None:
    """The plan row (its milestones removed first: an open alert's stays until ended)."""
    await conn.execute(delete(success_plans).where(success_plans.c.account_id == account_id))


async def rescore_soon(conn: AsyncConnection, account_id: str) -> None:
    """Have scoring's next sweep pass (``sweep_interval_s``) step the account's plan
    again, so a milestone ticked, changed or removed by hand ends or opens its alert
    without waiting for the account's next event. (The sweep rescoring an account twice
    in a day changes nothing else.)"""
    h = account_health.c
    await conn.execute(
        update(account_health).where(h.account_id == account_id).values(swept_on=None)
    )
