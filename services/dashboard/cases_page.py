"""Risk cases on the dashboard: the case board (open cases in columns by danger level,
per CSM; the lead sees every CSM's, with a CSM filter), a case's page (its plan of tasks,
its reviews, the close form), "open a case" from an alert or an account, and the task
list (mine, or everyone's for the lead).

Every change goes through ``services.alerts.cases.actions`` and ``.tasks``, the commands
the cases API applies, in the transaction that read the case; the alerts service's timer
pass then tells people (services/alerts/cases/timers.py).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from services.alerts.actions import actor_of
from services.alerts.cases import actions, queries, tasks
from services.alerts.queries import visible_alert
from services.dashboard.admin_pages import alerting_of
from services.dashboard.auth import NotFound, Viewer, checked_form, context, viewer
from services.dashboard.home import text_param
from services.dashboard.routes import _with_notice, language, page, viewer_zone
from shared.auth import Scope
from shared.clock import utcnow
from shared.i18n import translate
from shared.web import whole_number

router = APIRouter(prefix="/ui", include_in_schema=False)

CAUSES, LEVEL_LABELS, LEVELS, OUTCOMES, STATES, TASK_KINDS = queries.VOCABULARY
BOARD_SIZE = 200  # open cases on a board: far more than a team's (a CSM has a handful)
CLOSED_SHOWN = 12  # the latest closed cases under the board, for their lessons
TASKS_SHOWN = 200
# A task's due date from the form: a day (the viewer's), due at its end.
FORM_TEXT = 10_000
# What a redirect may say (``done``): fixed texts, never text from the request.
NOTICES = {
    "opened": "Case opened: plan the actions and hold the first review.",
    "found": "This account already has an open case: here it is.",
    "task": "Task added to the plan.",
    "review": "Review recorded; the next one is due by the date shown.",
    "close": "Case closed.",
    "done": "Task done.",
    "invalid": "That form was incomplete or invalid; nothing was changed.",
    "unknown_owner": "Nothing was changed: the task's owner must be someone healthwatch "
    "sends work to (an account's owner, a CSM with a key, a person of the alerting "
    "routing), or left empty for the account's owner.",
    "owner_cannot_see": "Nothing was changed: that CSM cannot see this account (it is "
    "another CSM's). Name its owner or a lead, or move the account to them first.",
    "conflict": "The case changed meanwhile (closed, or the task done); what you see is current.",
    "gone": "That is not visible to you.",
}


def _notice(request: Request) -> dict[str, str]:
    done = NOTICES.get(request.query_params.get("done", ""))
    return {"notice": translate(language(request), done)} if done else {}


@router.get("/cases", response_class=HTMLResponse)
async def board(request: Request) -> Response:
    """Open cases by danger level; a CSM's own, or (the lead) every CSM's or one's."""
    who = await viewer(request)
    csm = text_param(request.query_params.get("csm"), 320) or None
    now = utcnow()
    async with context(request).engine.connect() as conn:
        rows, total = await queries.list_cases(
            conn, who.key, queries.CaseFilter(owner=csm), limit=BOARD_SIZE
        )
        closed, _ = await queries.list_cases(
            conn, who.key, queries.CaseFilter(owner=csm, state="closed"), limit=CLOSED_SHOWN
        )
        owners = sorted({o for o in (await queries.open_cases_by_owner(conn)) if o})
    columns = {level: [c for c in rows if c["danger_level"] == level] for level in LEVELS}
    values = {
        "columns": columns,
        "total": total,
        "closed": closed,
        "csm": csm or "",
        "csms": owners if who.key.portfolio_of is None else [],
        "now": now,
        **_vocabulary(),
        **_notice(request),
    }
    return page(request, "cases.html", values, who)


def _vocabulary() -> dict[str, Any]:
    return {
        "causes": CAUSES,
        "level_labels": LEVEL_LABELS,
        "levels": LEVELS,
        "outcomes": OUTCOMES,
        "task_kinds": TASK_KINDS,
    }


@router.get("/cases/{case_id}", response_class=HTMLResponse)
async def case_view(request: Request, case_id: str) -> Response:
    """One case: what it is about, its plan, its reviews, and the forms to act."""
    return await _case_page(request, case_id, await viewer(request), _notice(request))


async def _case_page(
    request: Request, case_id: str, who: Viewer, shown: dict[str, Any], status: int = 200
) -> Response:
    """The case page, with ``shown`` (a notice, a refused form as typed)."""
    async with context(request).engine.connect() as conn:
        row = await _visible(conn, case_id, who)
        if row is None:
            raise NotFound(case_id)
        case = await queries.case_detail(conn, row, utcnow())
    values = {"c": case, "now": utcnow(), **_vocabulary(), **shown}
    return page(request, "case.html", values, who, status)


# What a refused form kept, by form: shown again as typed.
KEPT = {
    "task": ("title", "owner_email", "due"),
    "review": ("text", "danger_after"),
    "close": ("outcome", "text"),
}


def _printable(text: str) -> str:
    return "".join(ch for ch in text if ch in "\n\t" or ch.isprintable())


async def _refused(
    request: Request, case_id: str, who: Viewer, form: Mapping[str, str], done: str
) -> Response:
    """The case page again with the refusal's notice and the refused form as typed
    (422): a redirect had thrown the title, owner, due day or notes away (found from
    outside)."""
    action = form.get("action", "")
    # As typed, less control characters (a NUL has no place in a page) and past the
    # form's own limit.
    kept = {f: _printable(form.get(f, ""))[:FORM_TEXT] for f in KEPT.get(action, ())}
    notice = NOTICES.get(done)
    shown = {
        "kept": {"action": action, **kept},
        **({"notice": translate(language(request), notice)} if notice else {}),
    }
    return await _case_page(request, case_id, who, shown, 422)


async def _visible(conn: AsyncConnection, case_id: str, who: Viewer) -> Any:
    number = _id(case_id)
    return None if number is None else await queries.visible_case(conn, number, who.key)


@router.post("/cases")
async def open_case(request: Request) -> Response:
    """Open a case from an alert's page (``alert_id``) or an account's (``account_id``,
    ``danger_level``, ``summary``); an account's open case is shown if it has one."""
    who, form = await checked_form(request, Scope.respond)
    now = utcnow()
    async with context(request).engine.begin() as conn:
        new = await _new_case(conn, form, who)
        if new is None:
            gone = "gone" if form.get("alert_id") else "account_gone"
            return RedirectResponse(_with_notice(_back(form), gone), status_code=303)
        try:
            case_id, opened = await actions.open_case(conn, new, context(request).settings, now)
        except actions.CaseError:
            return RedirectResponse(_with_notice(_back(form), "case_invalid"), status_code=303)
    target = f"/ui/cases/{case_id}"
    return RedirectResponse(_with_notice(target, "opened" if opened else "found"), 303)


async def _new_case(
    conn: AsyncConnection, form: Mapping[str, str], who: Viewer
) -> actions.NewCase | None:
    """The case a form asks for; None if its alert or account is not the viewer's."""
    alert_id = form.get("alert_id", "")
    if alert_id:
        row = await visible_alert(conn, alert_id, who.key)
        if row is None:
            return None
        level = queries.SEVERITY_LEVEL.get(row.severity, "normal")
        causes = await queries.measured_causes(conn, row.account_id)
        return actions.NewCase(
            row.account_id, level, row.title[:500], actor_of(who.key), causes, alert_id
        )
    account_id = text_param(form.get("account_id"), 200)
    if not account_id or not await queries.account_visible(conn, account_id, who.key):
        return None
    summary = form.get("summary", "").strip()[:500]
    level = form.get("danger_level", "")
    return actions.NewCase(account_id, level, summary, actor_of(who.key), _form_causes(form))


def _form_causes(form: Any) -> list[str]:
    return [code for code in CAUSES if form.get(f"cause_{code}")]


def _back(form: Mapping[str, str]) -> str:
    if form.get("alert_id"):
        return "/ui/alerts/" + urllib.parse.quote(form["alert_id"])
    return "/ui/accounts/" + urllib.parse.quote(form.get("account_id", ""), safe="")


def _id(value: str | None) -> int | None:
    """A case or task id from a form or path: 64-bit ids have at most 18 digits here."""
    return whole_number(value)


@router.post("/cases/{case_id}")
async def act(request: Request, case_id: str) -> Response:
    """The case page's forms: add a task, complete one, record a review, close."""
    who, form = await checked_form(request, Scope.respond)
    now = utcnow()
    try:  # a refused form changes nothing: the transaction rolls back
        async with context(request).engine.begin() as conn:
            row = await _visible(conn, case_id, who)
            if row is None:
                raise NotFound(case_id)
            done = await _apply(request, conn, row, form, who, now)
    except (actions.CaseClosed, tasks.TaskDone):
        done = "conflict"
    except tasks.OwnerRefused as exc:
        return await _refused(request, case_id, who, form, exc.code)
    except ValueError:  # CaseError, TaskError: the form's values
        return await _refused(request, case_id, who, form, "invalid")
    return RedirectResponse(_with_notice(f"/ui/cases/{case_id}", done), status_code=303)


async def _apply(
    request: Request,
    conn: AsyncConnection,
    row: Any,
    form: Mapping[str, str],
    who: Viewer,
    now: datetime,
) -> str:
    """Apply one form to the case; the notice to show. ValueError: a malformed form."""
    name, text = form.get("action", ""), form.get("text", "").strip()[:FORM_TEXT]
    settings = context(request).settings
    if name == "task":
        due = _due(form.get("due", ""), request)
        asked = form.get("owner_email", "").strip()
        # Passed on as typed: a malformed address is refused by the task's own check,
        # not blanked into the account's owner and answered "task added" (found from
        # outside).
        owner = asked or None
        title = form.get("title", "")
        await actions.add_task(
            conn,
            row,
            title=title,
            due=due,
            owner_email=owner,
            actor=actor_of(who.key),
            now=now,
            alerting=alerting_of(request),
        )
    elif name == "done":
        number = _id(form.get("task_id"))
        task = None if number is None else await tasks.visible_task(conn, number, who.key)
        if task is None or task.case_id != row.case_id:
            raise ValueError("not this case's task")
        await tasks.complete_task(conn, task.task_id, actor_of(who.key), now)
    elif name == "review":
        await actions.set_causes(conn, row, _form_causes(form), now)
        level = form.get("danger_after", "")
        await actions.add_review(
            conn,
            row,
            reviewer=actor_of(who.key),
            notes=text,
            danger_after=level,
            settings=settings,
            now=now,
        )
    elif name == "close":
        outcome = form.get("outcome", "")
        await actions.close_case(
            conn, row, outcome=outcome, lesson=text, actor=actor_of(who.key), now=now
        )
    else:
        raise ValueError(f"unknown action {name!r}")
    return name


def _due(value: str, request: Request) -> datetime:
    """A form's due day (YYYY-MM-DD) as the end of that day in the viewer's zone."""
    day = datetime.strptime(value, "%Y-%m-%d")
    end = day.replace(hour=23, minute=59, tzinfo=viewer_zone(request))
    if end.year < 2000 or end > utcnow() + timedelta(days=3660):
        raise ValueError("a due day within ten years")
    return end


@router.get("/tasks", response_class=HTMLResponse)
async def task_list(request: Request) -> Response:
    """Open tasks, soonest due first: a CSM's own, or everyone's (the lead) or one
    owner's; ``overdue=1`` only those past due."""
    who = await viewer(request)
    owner = text_param(request.query_params.get("owner"), 320) or who.key.csm_email
    overdue = request.query_params.get("overdue") == "1"
    now = utcnow()
    where = tasks.TaskFilter(owner=owner, overdue_at=now if overdue else None)
    async with context(request).engine.connect() as conn:
        rows, total = await tasks.list_tasks(conn, who.key, where, limit=TASKS_SHOWN)
    values = {
        "tasks": rows,
        "total": total,
        "owner": owner or "",
        "overdue": overdue,
        "now": now,
        **_vocabulary(),
        **_notice(request),
    }
    return page(request, "cases_tasks.html", values, who)


@router.post("/tasks")
async def complete(request: Request) -> Response:
    """Mark a task done from the task list."""
    who, form = await checked_form(request, Scope.respond)
    number = _id(form.get("task_id"))
    done = "done"
    async with context(request).engine.begin() as conn:
        task = None if number is None else await tasks.visible_task(conn, number, who.key)
        if task is None:
            done = "gone"
        else:
            try:
                await tasks.complete_task(conn, task.task_id, actor_of(who.key), utcnow())
            except tasks.TaskError:
                done = "conflict"
    return RedirectResponse(_with_notice("/ui/tasks", done), status_code=303)
