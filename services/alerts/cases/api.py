"""The cases and tasks API: list, read, open (by hand or from an alert), add tasks,
review and close risk cases; list and complete tasks.

A key tied to a CSM sees and changes the cases and tasks of the accounts that CSM owns
now; others answer 404, as if they did not exist. Reading needs ``read``, changing
``respond`` (the scopes of acting on alerts).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from sqlalchemy.ext.asyncio import AsyncConnection

from services.alerts.actions import actor_of
from services.alerts.api import AlertsApiContext, Context
from services.alerts.cases import actions, people, queries
from services.alerts.cases.actions import CaseClosed, CaseError, NewCase
from services.alerts.cases.model import SEVERITY_LEVEL
from services.alerts.cases.schemas import (
    CaseDetail,
    CaseList,
    CloseBody,
    FromAlertBody,
    OpenCaseBody,
    ReviewBody,
    TaskBody,
    TaskList,
    TaskOut,
)
from services.alerts.cases.tasks import (
    OwnerRefused,
    TaskDone,
    TaskError,
    TaskFilter,
    complete_task,
    list_tasks,
    task_row,
    visible_task,
)
from services.alerts.queries import visible_alert
from shared.auth import ApiKey
from shared.contracts.events import INT32_MAX
from shared.openapi import error_responses
from shared.web import ClientError, ReadKey, RespondKey

router = APIRouter(prefix="/v1", tags=["cases"])
MAX_ID = 2**63 - 1  # case and task ids are 64-bit integers
CaseId = Annotated[int, Path(ge=1, le=MAX_ID)]
TaskId = Annotated[int, Path(ge=1, le=MAX_ID)]
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=INT32_MAX)]
NOT_FOUND = error_responses(404)
ACTED = error_responses(404, 409, 422)


def _page(total: int, limit: int, offset: int, shown: int) -> dict[str, Any]:
    return {"total": total, "limit": limit, "offset": offset, "truncated": offset + shown < total}


@router.get("/cases", response_model=CaseList)
async def list_cases(
    ctx: Context,
    key: ReadKey,
    state: Literal["open", "closed", "any"] = "open",
    danger: Literal["high", "normal", "mild"] | None = None,
    owner: Annotated[str | None, Query(max_length=320, description="the account's owner")] = None,
    account_id: Annotated[str | None, Query(max_length=200)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Risk cases, most recently opened first. ``total`` counts every match and
    ``truncated`` says when the page does not hold them all."""
    where = queries.CaseFilter(owner, None if state == "any" else state, danger, account_id)
    async with ctx.engine.connect() as conn:
        rows, total = await queries.list_cases(conn, key, where, limit=limit, offset=offset)
    now = ctx.clock()
    shown = [{**r, "review_overdue": _late(r, now)} for r in rows]
    return {"cases": shown, **_page(total, limit, offset, len(rows))}


def _late(r: dict[str, Any], now: datetime) -> bool:
    due = r["next_review_at"]
    return bool(r["state"] == "open" and due is not None and due < now)


async def _case(conn: AsyncConnection, case_id: int, key: ApiKey) -> Any:
    row = await queries.visible_case(conn, case_id, key)
    if row is None:
        raise ClientError(
            404, "not_found", "No case {case_id} visible to this key.", values={"case_id": case_id}
        )
    return row


async def _detail(
    ctx: AlertsApiContext, conn: AsyncConnection, case_id: int, key: ApiKey
) -> dict[str, Any]:
    row = await _case(conn, case_id, key)
    alerting, _ = await ctx.alerting.current(conn)
    who = await people.contacts(conn, row.account_id)
    told = people.case_people(who, alerting.routing, ctx.settings)
    watchers = [r.email or r.slack for r in told if r.email or r.slack]
    return {**await queries.case_detail(conn, row, ctx.clock()), "watchers": watchers}


@router.get("/cases/{case_id}", response_model=CaseDetail, responses=NOT_FOUND)
async def read_case(case_id: CaseId, ctx: Context, key: ReadKey) -> dict[str, Any]:
    """The case with its action plan (tasks), reviews and who hears about it."""
    async with ctx.engine.connect() as conn:
        return await _detail(ctx, conn, case_id, key)


async def _visible_account(conn: AsyncConnection, account_id: str, key: ApiKey) -> None:
    if not await queries.account_visible(conn, account_id, key):
        raise ClientError(
            404,
            "not_found",
            "No account {account_id!r} visible to this key.",
            values={"account_id": account_id[:200]},
        )


async def _opened(ctx: AlertsApiContext, key: ApiKey, new: NewCase) -> dict[str, Any]:
    async with ctx.engine.begin() as conn:
        try:
            case_id, opened = await actions.open_case(conn, new, ctx.settings, ctx.clock())
        except CaseError as exc:
            raise ClientError.refusing(422, "invalid_request", exc) from exc
        return {**await _detail(ctx, conn, case_id, key), "opened": opened}


@router.post("/cases", response_model=CaseDetail, responses=ACTED)
async def open_case(body: OpenCaseBody, ctx: Context, key: RespondKey) -> dict[str, Any]:
    """Open a case for an account by hand; an account has one open case at most, so the
    open one is answered (``opened``: false) if there is one."""
    async with ctx.engine.connect() as conn:
        await _visible_account(conn, body.account_id, key)
    new = NewCase(body.account_id, body.danger_level, body.summary, actor_of(key), body.causes)
    return await _opened(ctx, key, new)


@router.post("/alerts/{alert_id}/case", response_model=CaseDetail, responses=ACTED)
async def open_from_alert(
    alert_id: str, body: FromAlertBody, ctx: Context, key: RespondKey
) -> dict[str, Any]:
    """Open the alert's account's case from the alert (its title the summary, its
    severity the danger level, scoring's measured causes), or answer the open one."""
    async with ctx.engine.connect() as conn:
        row = await visible_alert(conn, alert_id, key)
        if row is None:
            raise ClientError(
                404,
                "not_found",
                "No alert {alert_id!r} visible to this key.",
                values={"alert_id": alert_id[:300]},
            )
        causes = (
            body.causes
            if body.causes is not None
            else await queries.measured_causes(conn, row.account_id)
        )
    level = body.danger_level or SEVERITY_LEVEL.get(row.severity, "normal")
    new = NewCase(row.account_id, level, row.title[:500], actor_of(key), causes, row.alert_id)
    return await _opened(ctx, key, new)


async def _change(ctx: AlertsApiContext, case_id: int, key: ApiKey, change: Any) -> dict[str, Any]:
    """Apply ``change(conn, row, now)`` to a visible case: a 409 when the case is closed
    or the task done already, a 422 for a value the command refuses (an unknown outcome,
    an owner nobody works as)."""
    async with ctx.engine.begin() as conn:
        row = await _case(conn, case_id, key)
        try:
            await change(conn, row, ctx.clock())
        except (CaseClosed, TaskDone) as exc:
            raise ClientError.refusing(409, "conflict", exc) from exc
        except OwnerRefused as exc:
            raise ClientError.refusing(422, exc.code, exc) from exc
        except (CaseError, TaskError) as exc:
            raise ClientError.refusing(422, "invalid_request", exc) from exc
        return await _detail(ctx, conn, case_id, key)


@router.post("/cases/{case_id}/tasks", response_model=CaseDetail, responses=ACTED)
async def add_task(
    case_id: CaseId, body: TaskBody, ctx: Context, key: RespondKey
) -> dict[str, Any]:
    """A step of the action plan: who does what by when (DG-13)."""

    async def change(conn: AsyncConnection, row: Any, now: datetime) -> None:
        await actions.add_task(
            conn,
            row,
            title=body.title,
            due=body.due,
            owner_email=body.owner_email,
            actor=actor_of(key),
            now=now,
            alerting=ctx.alerting,
        )

    return await _change(ctx, case_id, key, change)


@router.post("/cases/{case_id}/reviews", response_model=CaseDetail, responses=ACTED)
async def add_review(
    case_id: CaseId, body: ReviewBody, ctx: Context, key: RespondKey
) -> dict[str, Any]:
    """A review held: notes and the danger level after it, which sets the next review's
    date (its cadence by danger level; DG-14: again until the danger is lifted)."""

    async def change(conn: AsyncConnection, row: Any, now: datetime) -> None:
        if body.causes is not None:
            await actions.set_causes(conn, row, body.causes, now)
        await actions.add_review(
            conn,
            row,
            reviewer=actor_of(key),
            notes=body.notes,
            danger_after=body.danger_after,
            settings=ctx.settings,
            now=now,
        )

    return await _change(ctx, case_id, key, change)


@router.post("/cases/{case_id}/close", response_model=CaseDetail, responses=ACTED)
async def close_case(
    case_id: CaseId, body: CloseBody, ctx: Context, key: RespondKey
) -> dict[str, Any]:
    """Closed with its outcome (saved, churned, downgraded) and the lesson learnt."""

    async def change(conn: AsyncConnection, row: Any, now: datetime) -> None:
        await actions.close_case(
            conn, row, outcome=body.outcome, lesson=body.lesson, actor=actor_of(key), now=now
        )

    return await _change(ctx, case_id, key, change)


@router.post(
    "/cases/{case_id}/tasks/{task_id}/complete", response_model=CaseDetail, responses=ACTED
)
async def complete_case_task(
    case_id: CaseId, task_id: TaskId, ctx: Context, key: RespondKey
) -> dict[str, Any]:
    """Mark a task of the case's plan done (its first step, from an alert, acknowledges it)."""

    async def change(conn: AsyncConnection, row: Any, now: datetime) -> None:
        task = await visible_task(conn, task_id, key)
        if task is None or task.case_id != row.case_id:
            raise ClientError(
                404,
                "not_found",
                "No task {task_id} in case {case_id}.",
                values={"task_id": task_id, "case_id": case_id},
            )
        await complete_task(conn, task_id, actor_of(key), now)

    return await _change(ctx, case_id, key, change)


@router.get("/tasks", response_model=TaskList)
async def list_all_tasks(
    ctx: Context,
    key: ReadKey,
    mine: Annotated[bool, Query(description="the key's CSM's tasks only")] = False,
    owner: Annotated[str | None, Query(max_length=320)] = None,
    overdue: Annotated[bool, Query(description="open and past due only")] = False,
    state: Literal["open", "done", "any"] = "open",
    kind: Literal["case_action", "nps_followup"] | None = None,
    account_id: Annotated[str | None, Query(max_length=200)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Tasks, soonest due first: a case's plan and NPS detractors' follow-ups. A task's
    owner is the one named on it, else its account's owner now."""
    if mine and key.csm_email is None:
        raise ClientError(422, "invalid_request", "'mine' needs a key tied to a CSM (a csm key).")
    where = TaskFilter(
        owner=key.csm_email if mine else owner,
        account_id=account_id,
        kind=kind,
        open_only=state == "open",
        done_only=state == "done",
        overdue_at=ctx.clock() if overdue else None,
    )
    async with ctx.engine.connect() as conn:
        rows, total = await list_tasks(conn, key, where, limit=limit, offset=offset)
    return {"tasks": rows, **_page(total, limit, offset, len(rows))}


@router.post("/tasks/{task_id}/complete", response_model=TaskOut, responses=ACTED)
async def complete(task_id: TaskId, ctx: Context, key: RespondKey) -> dict[str, Any]:
    """Mark a task done (a case's, or an NPS follow-up); a task an alert opened
    acknowledges that alert if it is still firing."""
    async with ctx.engine.begin() as conn:
        if await visible_task(conn, task_id, key) is None:
            raise ClientError(
                404,
                "not_found",
                "No task {task_id} visible to this key.",
                values={"task_id": task_id},
            )
        try:
            await complete_task(conn, task_id, actor_of(key), ctx.clock())
        except TaskError as exc:
            raise ClientError.refusing(409, "conflict", exc) from exc
        return task_row(await visible_task(conn, task_id, key))
