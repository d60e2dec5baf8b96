"""Logging a touchpoint (call, meeting, visit, email, QBR: the handbook's 拜访/接触) or a
note on an account from the dashboard.

A touchpoint becomes a ``Touchpoint`` event published on the bus, exactly as one sent
to ``POST /v1/events``: scoring consumes it like any other, so the relationship
measures (days since the last touchpoint, the last decision-maker contact) and the
score move the same way; the dashboard never writes scoring state. Its words, and a
note's, are kept in ``account_notes`` for people to read back (the event carries the
notes too, but scoring keeps only the time). The row is written once the bus has the
event.

Logging takes the ``respond`` scope (a CSM acting on their portfolio, as with alerts)
and an account the key may see.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta, tzinfo
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from services.dashboard.auth import NotFound, Viewer, checked_form, context, safe_next, viewer
from services.dashboard.routes import _with_notice, page, viewer_zone
from services.scoring.queries import visible_account
from shared.auth import Scope
from shared.bus.base import BusUnavailable, OutMessage, Producer
from shared.clock import utcnow
from shared.contracts.events import EARLIEST_TIME, ContactRole, Touchpoint, TouchpointKind
from shared.contracts.wire import encode_event
from shared.storage.tables import account_notes, touchpoint_log
from shared.web import ClientError

router = APIRouter(prefix="/ui", include_in_schema=False)

NOTE = "note"
KINDS = (*(k.value for k in TouchpointKind), NOTE)
ROLES = tuple(r.value for r in ContactRole)
TEXT_CHARS = 10_000
RECENT = 20
# Why nothing was logged (shown above the form, which keeps what was typed).
ERRORS = {
    "kind": "Pick what happened: a call, meeting, visit, email, QBR or a note.",
    "text": "A note needs text.",
    "time": "Give a time that is not in the future (and after 2000), or leave it empty for now.",
    "invalid": "The touchpoint was refused: check the contact's name and the notes.",
    "bus": "The event bus is not reachable, so nothing was logged. Try again in a moment.",
    "no_bus": "This server runs the dashboard without the event bus: log touchpoints through "
    "POST /v1/events instead.",
}


def producer_of(request: Request) -> Producer | None:
    """The bus producer the dashboard publishes with (``mount_dashboard``'s)."""
    found: Producer | None = getattr(request.app.state, "dashboard_bus", None)
    return found


async def _account(conn: AsyncConnection, who: Viewer, account_id: str) -> str:
    """The account's name; NotFound when it is not the viewer's to see."""
    try:
        row = await visible_account(conn, account_id, who.key)
    except ClientError as exc:
        raise NotFound(account_id) from exc
    return str(row.name) if row is not None and row.name else account_id


async def recent_notes(conn: AsyncConnection, account_id: str) -> list[Any]:
    """The newest notes and touchpoints logged on the dashboard for the account, a
    touchpoint with whom it was (once scoring has applied its event)."""
    n, t = account_notes.c, touchpoint_log.c
    q = (
        select(n.at, n.author, n.touchpoint_kind, n.text, t.contact_name, t.contact_role)
        .select_from(account_notes.outerjoin(touchpoint_log, t.event_id == n.event_id))
        .where(n.account_id == account_id)
        .order_by(n.at.desc(), n.note_id.desc())
        .limit(RECENT)
    )
    return list(await conn.execute(q))


@router.get("/accounts/{account_id:path}/log", response_class=HTMLResponse)
async def log_form(request: Request, account_id: str) -> Response:
    who = await viewer(request)
    return await _log_page(request, who, account_id, {}, None)


async def _log_page(
    request: Request, who: Viewer, account_id: str, form: Mapping[str, str], error: str | None
) -> Response:
    async with context(request).engine.connect() as conn:
        name = await _account(conn, who, account_id)
        notes = await recent_notes(conn, account_id)
    values = {
        "account_id": account_id,
        "account_name": name,
        "notes": notes,
        "form": form,
        "error": error and ERRORS[error],
        "can_log": who.can_respond and producer_of(request) is not None,
    }
    status = {None: 200, "bus": 503, "no_bus": 503}.get(error, 422)
    # The notice after a redirect (``done``) is routes.NOTICES', as on the account page.
    return page(request, "activity.html", values, who, status)


def parse_when(raw: str, zone: tzinfo, now: datetime, skew: timedelta) -> datetime | None:
    """A ``datetime-local`` value in the viewer's zone (empty: now); None when it is
    malformed, later than now plus the allowed clock skew, or before 2000 (which the
    event's contract refuses: the form had blamed the contact's name and the notes)."""
    if not raw.strip():
        return now
    try:
        at = datetime.fromisoformat(raw.strip()).replace(tzinfo=zone)
    except ValueError:
        return None
    return at if EARLIEST_TIME <= at <= now + skew else None


def touchpoint(
    form: Mapping[str, str], account_id: str, who: Viewer, at: datetime, now: datetime
) -> Touchpoint:
    """The event for the form (ValidationError when the contract refuses a field)."""
    return Touchpoint(
        event_id=f"dashboard:{uuid.uuid4().hex}",
        account_id=account_id,
        occurred_at=at,
        received_at=now,
        touchpoint_kind=TouchpointKind(form["kind"]),
        csm_email=who.key.csm_email,
        contact_name=form.get("contact_name", "").strip() or None,
        contact_role=ContactRole(form["contact_role"])
        if form.get("contact_role") in ROLES
        else None,
        notes=form.get("text", "").strip()[:TEXT_CHARS] or None,
    )


def _problem(kind: str, text: str, at: datetime | None, bus: Producer | None) -> str | None:
    """Why the form cannot be logged as it stands (an ERRORS key), None when it can."""
    if kind not in KINDS:
        return "kind"
    if kind == NOTE and not text:
        return "text"
    if "\x00" in text:  # PostgreSQL refuses NUL in text (the contract does too)
        return "invalid"
    if at is None:
        return "time"
    return "no_bus" if kind != NOTE and bus is None else None


@router.post("/accounts/{account_id:path}/log")
async def log(request: Request, account_id: str) -> Response:
    """Log the form's touchpoint or note; back to the page the form was on."""
    who, form = await checked_form(request, Scope.respond)
    ctx = context(request)
    now = utcnow()
    kind = form.get("kind", "")
    text = form.get("text", "").strip()[:TEXT_CHARS]
    # The form's time is on the viewer's clock, the one the page shows times in.
    at = parse_when(form.get("when", ""), viewer_zone(request), now, ctx.settings.max_future_skew)
    bus = producer_of(request)
    error = _problem(kind, text, at, bus)
    event = None
    if error is None and kind != NOTE:
        assert at is not None
        try:
            event = touchpoint(form, account_id, who, at, now)
        except ValidationError:
            error = "invalid"
    if error is None:
        error = await _store(request, who, account_id, event, text, at or now, bus)
    if error is not None:
        return await _log_page(request, who, account_id, form, error)
    back = safe_next(form.get("next") or f"/ui/accounts/{account_id}/log")
    done = "note_saved" if event is None else "touchpoint_logged"
    return RedirectResponse(_with_notice(back, done), status_code=303)


async def _store(
    request: Request,
    who: Viewer,
    account_id: str,
    event: Touchpoint | None,
    text: str,
    at: datetime,
    bus: Producer | None,
) -> str | None:
    """Publish the event (if any), then keep the words; an error key or None. In this
    order, not in one transaction: the embedded bus writes to the same SQLite file, which
    takes one writer at a time. A failed publish keeps nothing; a note row failing after
    a publish loses the words, not the touchpoint (the event carries them too)."""
    async with context(request).engine.connect() as conn:
        await _account(conn, who, account_id)
    if event is not None and bus is not None:
        try:
            await bus.send_many([_message(request, event)])
        except BusUnavailable:
            return "bus"
    async with context(request).engine.begin() as conn:
        await conn.execute(
            insert(account_notes).values(
                account_id=account_id,
                at=at,
                author=who.who,
                touchpoint_kind=event.touchpoint_kind.value if event else None,
                event_id=event.event_id if event else None,
                text=text,
            )
        )
    return None


def _message(request: Request, event: Touchpoint) -> OutMessage:
    """The bus message ingest would publish for ``event``: its kind's topic, keyed by
    the account."""
    return OutMessage(
        topic=context(request).settings.topic(event.kind),
        key=event.account_id.encode(),
        value=encode_event(event),
    )
