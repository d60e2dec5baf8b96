"""The alerts page: every alert the viewer may see, filtered and paged with true totals,
and one alert's page with its history and every action the alerts API has
(acknowledge, snooze for a chosen time, unsnooze, resolve, not useful, comment).

Actions go through ``services.alerts.actions.apply_action``, as the API's and Slack's
do, in the transaction that read the alert, and are recorded with who did them.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from services.alerts.actions import Action, ActionError, apply_action, snooze_note
from services.alerts.cases.queries import open_case_of
from services.alerts.queries import visible_alert, visible_alerts
from services.dashboard.auth import NotFound, Viewer, checked_form, context, safe_next, viewer
from services.dashboard.home import SEVERITY_ORDER, AlertFilters, Page, list_alerts, text_param
from services.dashboard.routes import _with_notice, language, page
from services.scoring.queries import account_health_row
from shared.auth import Scope
from shared.clock import utcnow
from shared.contracts.alerts import OPEN_ALERT_STATUSES
from shared.i18n import translate
from shared.storage.tables import alert_activity, alerts
from shared.web import whole_number

router = APIRouter(prefix="/ui", include_in_schema=False)

PAGE_SIZE = 50
STATES = {
    "open": OPEN_ALERT_STATUSES,
    "firing": ("firing",),
    "acknowledged": ("acknowledged",),
    "resolved": ("resolved",),
    "all": (*OPEN_ALERT_STATUSES, "resolved"),
}
# Snooze lengths offered, in hours (the API takes up to 90 days).
SNOOZE_HOURS = (1, 4, 24, 72, 168, 720)
ACTIONS = ("acknowledge", "snooze", "unsnooze", "resolve", "not_useful", "comment")
TEXT_CHARS = 10_000  # the API's limit on a comment
# What an action's redirect may say (``done``): fixed texts, never text from the request.
NOTICES = {
    "acknowledge": "Alert acknowledged: no reminders and no escalation for it.",
    "snooze": "Alert snoozed: no reminders until the time shown.",
    "unsnooze": "Snooze ended: reminders resume.",
    "resolve": "Alert resolved.",
    "not_useful": "Marked not useful: the rule's precision counts it.",
    "comment": "Comment added.",
    "conflict": "That alert changed meanwhile; what you see is current.",
    "gone": "That alert is not visible to you.",
    "invalid": "That action needs a comment or a snooze time; nothing was changed.",
}


@dataclass(frozen=True)
class AlertQuery:
    """The alerts page's filters and page, read from and written to its query string."""

    state: str = "open"
    rule: str = ""
    severity: str = ""
    account: str = ""
    page: int = 1

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> AlertQuery:
        state = params.get("state", "open")
        severity = params.get("severity", "")
        number = params.get("page", "1")
        return cls(
            state=state if state in STATES else "open",
            rule=text_param(params.get("rule"), 100),
            severity=severity if severity in SEVERITY_ORDER else "",
            account=text_param(params.get("account"), 200),
            page=whole_number(number, 6) or 1,
        )

    @property
    def filters(self) -> AlertFilters:
        return AlertFilters(
            STATES[self.state], self.rule or None, self.severity or None, self.account or None
        )

    def link(self, **changes: Any) -> str:
        changes.setdefault("page", 1)
        q = replace(self, **changes)
        pairs = [(k, str(v)) for k, v in vars(q).items() if v and (k, v) not in _DEFAULTS]
        return "/ui/alerts" + (f"?{urllib.parse.urlencode(pairs)}" if pairs else "")


_DEFAULTS = {("state", "open"), ("page", 1)}


@router.get("/alerts", response_class=HTMLResponse)
async def alerts_view(request: Request) -> Response:
    who = await viewer(request)
    query = AlertQuery.parse(request.query_params)
    async with context(request).engine.connect() as conn:
        number = max(1, query.page)
        total, rows = await list_alerts(
            conn, who, utcnow(), query.filters, PAGE_SIZE, (number - 1) * PAGE_SIZE
        )
        if not rows and total and number > 1:  # past the end: the last page
            number = -(-total // PAGE_SIZE)
            total, rows = await list_alerts(
                conn, who, utcnow(), query.filters, PAGE_SIZE, (number - 1) * PAGE_SIZE
            )
        rules = await _rules(conn, who)
    values = {
        "query": replace(query, page=number),
        "listing": Page(rows, total, number, PAGE_SIZE),
        "rules": rules,
        "states": tuple(STATES),
        "severities": tuple(SEVERITY_ORDER),
        "snooze_hours": SNOOZE_HOURS,
        **_notice(request),
    }
    return page(request, "alerts.html", values, who)


@router.get("/alerts/{alert_id:path}", response_class=HTMLResponse)
async def alert_view(request: Request, alert_id: str) -> Response:
    """One alert: what it says, its history, and a form for each action."""
    who = await viewer(request)
    now = utcnow()
    async with context(request).engine.connect() as conn:
        if await visible_alert(conn, alert_id, who.key) is None:
            raise NotFound(alert_id)
        _, rows = await list_alerts(conn, who, now, _one(alert_id))
        activity = await _activity(conn, alert_id)
        about = await _about(conn, who, alert_id, rows[0]["account_id"])
    values = {
        "a": rows[0],
        "about": about,
        "activity": activity,
        "snooze_hours": SNOOZE_HOURS,
        **_notice(request),
    }
    return page(request, "alert.html", values, who)


async def _about(
    conn: AsyncConnection, who: Viewer, alert_id: str, account_id: str
) -> dict[str, Any]:
    """What one needs to act on the alert, on its page (it showed the rule's id, its
    status and when it fired): what it says, what changed in the week before, the
    account's health now, its last touchpoint and its open risk case."""
    q = select(alerts.c.payload).where(alerts.c.alert_id == alert_id)
    payload = (await conn.execute(q)).scalar_one_or_none() or {}
    health = await account_health_row(conn, account_id)
    changes = (payload.get("details") or {}).get("changes") or []
    return {
        "summary": payload.get("summary"),
        "changes": [str(c["text"]) for c in changes if isinstance(c, dict) and "text" in c],
        "score": health.score if health is not None else None,
        "band": health.band if health is not None else None,
        "last_touchpoint_at": health.last_touchpoint_at if health is not None else None,
        "case": await open_case_of(conn, account_id, who.key),
    }


def _one(alert_id: str) -> AlertFilters:
    return AlertFilters(STATES["all"], alert_id=alert_id)


def _notice(request: Request) -> dict[str, str]:
    done = NOTICES.get(request.query_params.get("done", ""))
    return {"notice": translate(language(request), done)} if done else {}


async def _rules(conn: AsyncConnection, who: Viewer) -> list[str]:
    q = visible_alerts(select(alerts.c.rule).distinct(), who.key)
    return sorted(rule for (rule,) in await conn.execute(q))


async def _activity(conn: AsyncConnection, alert_id: str) -> list[dict[str, Any]]:
    """The alert's activity, a snooze's time apart from its reason (shown in the
    reader's language and zone)."""
    a = alert_activity.c
    q = (
        select(a.at, a.actor, a.action, a.text)
        .where(a.alert_id == alert_id)
        .order_by(a.at, a.activity_id)
    )
    shown = []
    for row in await conn.execute(q):
        until, text = snooze_note(row.text) if row.action == "snooze" else (None, row.text)
        shown.append(
            {"at": row.at, "actor": row.actor, "action": row.action, "until": until, "text": text}
        )
    return shown


def action_from_form(form: Mapping[str, str], actor: str, now: datetime) -> Action | None:
    """The action a form asks for, None when it is malformed (an unknown action, a
    snooze without an offered length, a comment without text)."""
    name = form.get("action", "")
    text = form.get("text", "").strip()[:TEXT_CHARS] or None
    if name not in ACTIONS or (name == "comment" and not text) or "\x00" in (text or ""):
        return None  # (PostgreSQL refuses NUL in text)
    until = None
    if name == "snooze":
        hours = form.get("hours", "")
        chosen = whole_number(hours, 3)
        if chosen not in SNOOZE_HOURS:
            return None
        until = now + timedelta(hours=chosen)
    return Action(name, actor, text=text, until=until)


@router.post("/alerts")
async def act(request: Request) -> Response:
    """Apply the form's action to the form's alert; then back to the page it came from."""
    who, form = await checked_form(request, Scope.respond)
    alert_id = form.get("alert_id", "")
    now = utcnow()
    action = action_from_form(form, who.key.csm_email or f"key:{who.key.name}", now)
    done = action.name if action else "invalid"
    async with context(request).engine.begin() as conn:
        row = await visible_alert(conn, alert_id, who.key)
        if row is None:
            done = "gone"
        elif action is not None:
            try:
                await apply_action(conn, row, action, now)
            except ActionError:
                done = "conflict"
    back = safe_next(form.get("next") or f"/ui/alerts/{urllib.parse.quote(alert_id)}")
    return RedirectResponse(_with_notice(back, done), status_code=303)
