"""The dashboard's pages and forms under /ui."""

from __future__ import annotations

import time
import urllib.parse
from datetime import date, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.responses import Response

from services.alerts.actions import Action, ActionError, apply_action
from services.alerts.queries import visible_alert
from services.dashboard.account import account_page
from services.dashboard.auth import (
    COOKIE,
    COOKIE_MAX_AGE_S,
    Forbidden,
    LoginRequired,
    NotFound,
    Viewer,
    checked_form,
    clear_login_cookie,
    clear_session_cookie,
    context,
    csrf_token,
    forbidden_message,
    login_nonce,
    login_token,
    new_login_nonce,
    read_form,
    safe_next,
    same_token,
    session_key_id,
    set_login_cookie,
    set_session_cookie,
    sign_out,
    viewer,
)
from services.dashboard.charts import account_charts, lead_charts
from services.dashboard.home import PortfolioQuery, home
from services.dashboard.lead import TimeRange, lead
from shared.auth import KeyStore, Scope
from shared.clock import utcnow
from shared.i18n import negotiate

router = APIRouter(prefix="/ui", include_in_schema=False)

# Pages run only the vendored scripts; nothing is framed, cached or sent elsewhere.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

SNOOZE = timedelta(days=1)
# The language a person picked on the dashboard; a browser setting, not a secret.
LANGUAGE_COOKIE = "hw_lang"
LOGIN_CSRF = (
    "This sign-in form's security token is missing or does not match this browser (the "
    "page may be old, cookies may be blocked, or the form came from another site), so "
    "you were not signed in. Reload the sign-in page and try again."
)
# What an action's redirect may say: fixed texts, never text from the request.
NOTICES = {
    "acknowledged": "Alert acknowledged: no reminders and no escalation for it.",
    "snoozed": "Alert snoozed for a day.",
    "conflict": "That alert changed meanwhile; the list below is current.",
    "gone": "That alert is not visible to you.",
}


def page(
    request: Request, name: str, values: dict[str, Any], who: Viewer | None, status: int = 200
) -> HTMLResponse:
    ctx = context(request)
    notice = NOTICES.get(request.query_params.get("done", ""))
    response = ctx.templates.TemplateResponse(
        request,
        name,
        {
            "who": who,
            "notice": notice,
            "path": request.url.path,
            "zone": ctx.settings.zone,
            "lang": language(request),
            **values,
        },
        status_code=status,
    )
    response.headers.update(SECURITY_HEADERS)
    return response


def language(request: Request) -> str:
    """The viewer's language: the one they chose (cookie), else their browser's, else
    the service's default."""
    return negotiate(
        request.cookies.get(LANGUAGE_COOKIE),
        request.headers.get("accept-language"),
        context(request).settings.language,
    )


def _now_and_today(request: Request) -> tuple[datetime, date]:
    now = utcnow()
    return now, now.astimezone(context(request).settings.zone).date()


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str | None = None) -> Response:
    """The sign-in form, bound to this browser by a pre-session cookie (login CSRF)."""
    nonce = login_nonce(request) or new_login_nonce()  # keep it: other tabs' forms too
    response = _login_page(request, safe_next(next), None, login_token(context(request), nonce))
    set_login_cookie(request, response, nonce)
    return response


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    form = await read_form(request)
    target = safe_next(form.get("next"))
    nonce = login_nonce(request)
    token = login_token(context(request), nonce) if nonce else ""
    if not token or not same_token(form.get("csrf", ""), token):
        values = {"title": "Sign-in form not accepted", "status": 403, "message": LOGIN_CSRF}
        return page(request, "error.html", values, None, 403)
    raw = form.get("key", "").strip()
    keys: KeyStore = request.app.state.keys
    key = await keys.verify(raw) if raw else None
    if key is None:
        error = "Unknown or revoked key. Paste the whole key, starting with hwk_."
        return _login_page(request, target, error, token, 401)
    if not key.allows(Scope.read):
        message = forbidden_message(key, Scope.read)
        return page(request, "error.html", _forbidden(message), None, 403)
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(request, response, key)
    clear_login_cookie(response)
    return response


def _login_page(
    request: Request, target: str, error: str | None, csrf: str, status: int = 200
) -> HTMLResponse:
    values = {
        "next": target,
        "error": error,
        "csrf": csrf,
        "session_hours": COOKIE_MAX_AGE_S // 3600,
    }
    return page(request, "login.html", values, None, status)


@router.post("/logout")
async def logout(request: Request) -> Response:
    raw = request.cookies.get(COOKIE, "")
    form = await read_form(request)
    ctx = context(request)
    if raw and not same_token(form.get("csrf", ""), csrf_token(ctx, raw)):
        raise Forbidden("This form's security token does not match your session.")
    if raw and session_key_id(ctx, raw, time.time()) is not None:
        await sign_out(ctx, raw)
    response = RedirectResponse("/ui/login", status_code=303)
    clear_session_cookie(response)
    return response


@router.get("/", response_class=HTMLResponse)
async def csm_view(request: Request) -> Response:
    who = await viewer(request)
    now, today = _now_and_today(request)
    query = PortfolioQuery.parse(request.query_params, who.key.portfolio_of is None)
    async with context(request).engine.connect() as conn:
        values = await home(conn, who, query, today, now)
    return page(request, "home.html", values, who)


@router.get("/lead", response_class=HTMLResponse)
async def lead_view(request: Request) -> Response:
    who = await viewer(request)
    ctx = context(request)
    _, today = _now_and_today(request)
    span = TimeRange.parse(request.query_params, today)
    async with ctx.engine.connect() as conn:
        values = await lead(conn, who, span, today, ctx.settings.zone)
    return page(request, "lead.html", {"data": values, "charts": lead_charts(values)}, who)


@router.get("/accounts/{account_id:path}", response_class=HTMLResponse)
async def account_view(request: Request, account_id: str) -> Response:
    who = await viewer(request)
    ctx = context(request)
    now, _ = _now_and_today(request)
    async with ctx.engine.connect() as conn:
        values = await account_page(conn, who, account_id, now, ctx.settings.zone)
    charts = account_charts(values, language(request))
    return page(request, "account.html", {"a": values, "charts": charts}, who)


@router.post("/alerts/{alert_id:path}/{action}")
async def alert_action(request: Request, alert_id: str, action: str) -> Response:
    """Acknowledge, or snooze for a day; then back to the page the button was on."""
    if action not in ("acknowledge", "snooze"):
        raise NotFound(action)
    who, form = await checked_form(request, Scope.respond)
    now = utcnow()
    done = "acknowledged" if action == "acknowledge" else "snoozed"
    async with context(request).engine.begin() as conn:
        row = await visible_alert(conn, alert_id, who.key)
        if row is None:
            done = "gone"
        else:
            act = Action(
                action,
                who.key.csm_email or f"key:{who.key.name}",
                text="snoozed from the dashboard" if action == "snooze" else None,
                until=now + SNOOZE if action == "snooze" else None,
            )
            try:
                await apply_action(conn, row, act, now)
            except ActionError:
                done = "conflict"
    return RedirectResponse(_with_notice(safe_next(form.get("next")), done), status_code=303)


def _with_notice(path: str, done: str) -> str:
    parts = urllib.parse.urlsplit(path)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k != "done"]
    query.append(("done", done))
    return urllib.parse.urlunsplit(("", "", parts.path, urllib.parse.urlencode(query), ""))


def _forbidden(message: str) -> dict[str, Any]:
    return {"title": "Not allowed here", "status": 403, "message": message}


async def login_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    query = urllib.parse.urlencode({"next": exc.next_path})
    return RedirectResponse(f"/ui/login?{query}", status_code=303)


async def forbidden(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Forbidden)
    return page(request, "error.html", _forbidden(exc.message), None, 403)


async def not_found(request: Request, exc: Exception) -> Response:
    values = {
        "title": "Not found",
        "status": 404,
        "message": "There is no such account or alert, or it is not in your portfolio.",
    }
    return page(request, "error.html", values, None, 404)
