"""Success plans on the dashboard: the plan section of an account's page (its forms post
here) and the plans at risk of a CSM's portfolio, or of every CSM's for the lead.

Changing a plan takes the ``respond`` scope and an account the key may see, as the
API's routes do; both apply the same commands (``services.scoring.plans.queries``).
"""

from __future__ import annotations

import difflib
import urllib.parse
from datetime import date
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import TypeAdapter, ValidationError
from starlette.responses import Response

from services.dashboard.auth import NotFound, checked_form, context, safe_next, viewer
from services.dashboard.routes import page
from services.scoring.plans.queries import (
    MilestoneSpec,
    Today,
    add_milestone,
    create_plan,
    edit_milestone,
    has_plan,
    plan_rows,
    plan_templates,
    remove_milestone,
)
from shared.auth import Scope
from shared.clock import utcnow
from shared.contracts.events import Day
from shared.web import ClientError

router = APIRouter(prefix="/ui", include_in_schema=False)

# What a milestone form's action does to it.
ACTIONS = ("save", "remove", "tick", "untick")


# A refused new milestone's fields, given back to its form (``plan_<field>``): the form
# came back empty, its title and measure to type again.
KEPT_FIELDS = ("title", "measure", "op", "target", "due_on")


def _back(
    form: dict[str, str],
    account_id: str,
    error: str | None = None,
    *,
    keep: bool = False,
    done: str | None = None,
    near: list[str] | None = None,
) -> Response:
    """To the account's plan section (``next``, else the account's page), with the
    refusal's code for the section to say (``plan_error``) and, ``keep``, the fields of
    the milestone refused; or what was ``done`` (``plan_done``: a change said nothing)."""
    target = safe_next(form.get("next") or f"/ui/accounts/{urllib.parse.quote(account_id)}")
    parts = urllib.parse.urlsplit(target)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if not k.startswith("plan_")]
    if error:
        query.append(("plan_error", error))
    elif done:
        query.append(("plan_done", done))
    if error and near:  # the measures the one typed may have meant
        query.append(("plan_near", " ".join(near)))
    if error and keep:
        # As long as the form's longest field (a measure, 300): an address stays short.
        query += [(f"plan_{f}", form[f][:300]) for f in KEPT_FIELDS if form.get(f)]
    path = urllib.parse.urlunsplit(("", "", parts.path, urllib.parse.urlencode(query), "plan"))
    return RedirectResponse(path, status_code=303)


def _near(form: dict[str, str], refused: ClientError) -> list[str]:
    """For a measure the score does not compute, the nearest it does (as the API says
    them): the page had named no name, and sent the CSM to the README (found from
    outside)."""
    known = refused.extra.get("measures") if refused.code == "unknown_measure" else None
    typed = form.get("measure", "").strip()
    if not isinstance(known, list) or not typed:
        return []
    return difflib.get_close_matches(typed, [str(name) for name in known], n=3, cutoff=0.6)


def _number(raw: str) -> float | None:
    """A form's number; "60%" (or "60％") as 0.6, as the page writes a share: a target
    of a share had to be typed as a fraction beside "≥ 50%" (found from outside)."""
    text = raw.strip()
    share = text.endswith(("%", "％"))
    try:
        number = float(text.rstrip("%％").strip()) if text else None
    except ValueError:
        raise ClientError(422, "invalid_milestone", "not a number") from None
    return number / 100 if number is not None and share else number


DAY: TypeAdapter[date] = TypeAdapter(Day)


def _day(raw: str) -> date:
    """A form's day, in the range the API takes (``shared.contracts.events.Day``)."""
    try:
        day: date = DAY.validate_python(raw.strip())
    except ValidationError:
        raise ClientError(422, "invalid_milestone", "not a day between 1970 and 2200") from None
    return day


async def _apply(request: Request, command: str) -> Response:
    """Run a plan form's ``command`` in one transaction; a refusal goes back with its
    code, an account the viewer may not see is a 404 page."""
    who, form = await checked_form(request, Scope.respond)
    account_id = form.get("account_id", "")
    ctx = context(request)
    when = Today(utcnow(), ctx.settings.zone)
    author = who.key.csm_email or f"key:{who.key.name}"
    try:
        async with ctx.engine.begin() as conn:
            if command == "create":
                if not form.get("replace") and await has_plan(conn, who.key, account_id):
                    # Remaking replaces its milestones, ticks and edits: only when asked.
                    raise ClientError(409, "replace_unconfirmed", "confirm replacing the plan")
                start = form.get("start_on", "").strip()
                await create_plan(
                    conn,
                    who.key,
                    account_id,
                    plan_templates(ctx.settings),
                    template_id=form.get("template") or None,
                    start_on=_day(start) if start else None,
                    author=author,
                    when=when,
                )
            elif command == "add":
                await add_milestone(conn, who.key, account_id, _spec(form), when, author=author)
            else:
                await _change(conn, who.key, account_id, form, when, author)
    except ClientError as exc:
        if exc.status == 404 and exc.code == "not_found":
            raise NotFound(account_id) from exc
        return _back(form, account_id, exc.code, keep=command == "add", near=_near(form, exc))
    done = form.get("action", "save") if command == "change" else command
    return _back(form, account_id, done=done)


def _spec(form: dict[str, str]) -> MilestoneSpec:
    return MilestoneSpec(
        title=form.get("title", "").strip()[:200],
        due_on=_day(form.get("due_on", "")),
        measure=form.get("measure", "").strip() or None,
        op=form.get("op", ">="),
        target=_number(form.get("target", "")),
    )


async def _change(
    conn: Any, key: Any, account_id: str, form: dict[str, str], when: Today, author: str
) -> None:
    action = form.get("action", "save")
    milestone = form.get("key", "")
    if action not in ACTIONS:
        raise ClientError(422, "invalid_milestone", "unknown action")
    if action == "remove":
        await remove_milestone(conn, key, account_id, milestone, when)
        return
    changes: dict[str, Any] = {}
    if action in ("tick", "untick"):
        changes = {"achieved": action == "tick", "checked_by": author}
    else:
        # The box shows the title in the viewer's language: a template's English title
        # had stood in a Chinese page's box (found from outside). Sent back as shown, it
        # is no change (saving the due day must not store the title in Chinese).
        title = form.get("title", "").strip()
        if title and title != form.get("title_shown", "").strip():
            changes["title"] = title[:200]
        if form.get("due_on", "").strip():
            changes["due_on"] = _day(form["due_on"])
        if "target" in form and form["target"].strip():
            changes["target"] = _number(form["target"])
    await edit_milestone(conn, key, account_id, milestone, when, **changes)


@router.post("/plans/create")
async def create_form(request: Request) -> Response:
    """Make the account's plan from a template (a click on its page)."""
    return await _apply(request, "create")


@router.post("/plans/milestones")
async def add_form(request: Request) -> Response:
    return await _apply(request, "add")


@router.post("/plans/milestone")
async def change_form(request: Request) -> Response:
    """Save, tick, untick or remove one milestone (``action``)."""
    return await _apply(request, "change")


@router.get("/plans", response_class=HTMLResponse)
async def plans_view(request: Request) -> Response:
    """The plans at risk (a milestone at risk or missed), worst first; ``show=all``:
    every plan. A CSM sees their portfolio's, the lead everyone's."""
    who = await viewer(request)
    ctx = context(request)
    show_all = request.query_params.get("show") == "all"
    async with ctx.engine.connect() as conn:
        rows = await plan_rows(
            conn, who.key, Today(utcnow(), ctx.settings.zone), at_risk=None if show_all else True
        )
    return page(request, "plans.html", {"rows": rows, "show_all": show_all}, who)
