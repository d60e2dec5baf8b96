"""The dashboard's pages and forms under /ui."""

from __future__ import annotations

import logging
import time
import urllib.parse
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.responses import Response

from services.alerts.actions import Action, ActionError, apply_action
from services.alerts.queries import visible_alert
from services.dashboard.account import account_page
from services.dashboard.auth import (
    COOKIE,
    COOKIE_MAX_AGE_S,
    BadAddress,
    Forbidden,
    FormTooLarge,
    LoginRequired,
    NotFound,
    Viewer,
    address_of,
    checked_form,
    clear_login_cookie,
    clear_session_cookie,
    context,
    csrf_token,
    forbidden_scope,
    login_nonce,
    login_token,
    new_login_nonce,
    path_of,
    read_form,
    safe_next,
    secure_cookies,
    session_key_id,
    set_login_cookie,
    set_session_cookie,
    sign_out,
    viewer,
)
from services.dashboard.charts import account_charts, lead_charts
from services.dashboard.home import PortfolioQuery, home
from services.dashboard.lead import TimeRange, lead
from services.scoring.plans.queries import Today, account_plan, plan_templates, template_choices
from services.scoring.workload.reads import due_soon
from shared.auth import KeyStore, Scope, same_secret
from shared.clock import utcnow
from shared.i18n import LANGUAGES, N_, known_zone, negotiate, translate
from shared.i18n.alert_text import MEASURE_LABELS
from shared.people import remember_language
from shared.storage.db import unstorable_value
from shared.web import (
    COLLISION_RETRY_AFTER_S,
    DATABASE_RETRY_AFTER_S,
    collided,
    invalid_request_handler,
    unavailable_handler,
    unreachable,
    unstorable_value_handler,
)
from shared.worker import describe

log = logging.getLogger(__name__)

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

# A portfolio's data downloaded (CSV, Parquet): neither kept in a shared cache nor read
# by a browser as anything but the file it says it is, as the pages.
DOWNLOAD_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}

SNOOZE = timedelta(days=1)
# The language a person picked on the dashboard (a link on every page sets it) and
# their browser's time zone (static/tz.js sets it): preferences of a browser, kept a
# year, not secrets. Per browser rather than per key: a preference row per key would
# be a migration and a write per switch, for what Accept-Language and the browser's
# zone already answer on a new machine, and one click then fixes.
LANGUAGE_COOKIE = "hw_lang"
ZONE_COOKIE = "hw_tz"
PREFERENCE_MAX_AGE_S = 365 * 86400
LANGUAGE_NAMES = {"en": "English", "zh-CN": "中文"}
LOGIN_CSRF = N_(
    "This sign-in form's security token is missing or does not match this browser (the "
    "page may be old, cookies may be blocked, or the form came from another site), so "
    "you were not signed in. Reload the sign-in page and try again."
)
# What an action's redirect may say: fixed texts, never text from the request.
NOTICES = {
    "acknowledged": N_("Alert acknowledged: no reminders and no escalation for it."),
    "snoozed": N_("Alert snoozed for a day."),
    "conflict": N_("That alert changed meanwhile; the list below is current."),
    "gone": N_("That alert is not visible to you."),
    # After logging on an account's page (activity_page.py), wherever the form was.
    "touchpoint_logged": N_("Touchpoint logged: the health score counts it within moments."),
    "note_saved": N_("Note saved."),
    # After reassigning accounts on the workload view (workload_page.py).
    "reassigned": N_("Reassigned: the accounts move to the new CSM within moments."),
    # After ending a rule's silence on an account's page (alerts_page.py).
    "unsilence": N_("Silence ended: its alerts still firing are told again."),
    # After a case form refused on an alert's or an account's page (cases_page.py): the
    # account's page had said nothing, the alert's "needs a comment or a snooze time".
    "case_invalid": N_(
        "The case was not opened: give it a summary (one line, up to 500 characters) and "
        "a danger level."
    ),
    "account_gone": N_("That account is not visible to you: nothing was changed."),
}


def page(
    request: Request, name: str, values: dict[str, Any], who: Viewer | None, status: int = 200
) -> HTMLResponse:
    ctx = context(request)
    lang = language(request)
    notice = NOTICES.get(request.query_params.get("done", ""))
    response = ctx.templates.TemplateResponse(
        request,
        name,
        {
            "who": who,
            "notice": notice and translate(lang, notice),
            "path": path_of(request),
            # This page's address, for the language links to come back to.
            "here": address_of(request),
            "zone": viewer_zone(request),
            "lang": lang,
            "languages": LANGUAGE_NAMES,
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


def viewer_zone(request: Request) -> tzinfo:
    """The zone the viewer reads times in: their browser's (``hw_tz``, when it names an
    IANA zone), else the service's."""
    return known_zone(request.cookies.get(ZONE_COOKIE)) or context(request).settings.zone


@router.get("/language/{choice}")
async def choose_language(request: Request, choice: str, next: str | None = None) -> Response:
    """Remember the viewer's language in this browser and go back to the page; signed
    in with a key bearing their email (a CSM's), what they are sent follows it too. A GET
    link that only sets a preference: another site could switch a reader's language,
    never act for them; and back only to a dashboard path (``safe_next``)."""
    if choice not in LANGUAGES:
        raise NotFound(choice)
    await _notices_in(request, choice)
    response = RedirectResponse(safe_next(next), status_code=303)
    # SameSite=Lax: a link from an alert email into the dashboard keeps the language.
    response.set_cookie(
        LANGUAGE_COOKIE,
        choice,
        max_age=PREFERENCE_MAX_AGE_S,
        path="/ui",
        httponly=True,
        samesite="lax",
        secure=secure_cookies(context(request).settings, request),
    )
    return response


async def _notices_in(request: Request, choice: str) -> None:
    """The signed-in viewer's notices in ``choice`` from now on, if their key names them
    (``csm_email``); nobody's when not signed in."""
    try:
        who = await viewer(request)
    except (LoginRequired, Forbidden):
        return
    if who.key.csm_email:
        async with context(request).engine.begin() as conn:
            await remember_language(conn, who.key.csm_email, choice, utcnow())


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
    if not token or not same_secret(form.get("csrf", ""), token):
        values = _error(request, N_("Sign-in form not accepted"), 403, LOGIN_CSRF)
        return page(request, "error.html", values, None, 403)
    raw = form.get("key", "").strip()
    keys: KeyStore = request.app.state.keys
    key = await keys.verify(raw) if raw else None
    if key is None:
        error = translate(
            language(request), "Unknown or revoked key. Paste the whole key, starting with hwk_."
        )
        return _login_page(request, target, error, token, 401)
    if not key.allows(Scope.read):
        return await forbidden(request, forbidden_scope(key, Scope.read))
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
    if raw and not same_secret(form.get("csrf", ""), csrf_token(ctx, raw)):
        raise Forbidden(N_("This form's security token does not match your session."))
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
        settings = context(request).settings
        values = await home(conn, who, query, today, now, settings.currency, settings.zone)
        if who.key.portfolio_of is not None:  # a CSM's home: their touchpoints due
            values |= await due_soon(conn, who.key, context(request).settings, today)
    return page(request, "home.html", values, who)


@router.get("/lead", response_class=HTMLResponse)
async def lead_view(request: Request) -> Response:
    who = await viewer(request)
    ctx = context(request)
    now, today = _now_and_today(request)
    span = TimeRange.parse(request.query_params, today)
    lang = language(request)
    async with ctx.engine.connect() as conn:
        values = await lead(conn, who, span, today, ctx.settings.zone, now)
    return page(
        request,
        "lead.html",
        {
            "data": values,
            "charts": lead_charts(values, lang),
            "notice": span.asked.said(lang, viewer_zone(request)),
        },
        who,
    )


# The measures a milestone most often follows, offered as the form's suggestions with the
# words the page uses for them; any measure the score computes may be typed (README,
# Success plans).
PLAN_MEASURES = tuple(MEASURE_LABELS.items())


@router.get("/accounts/{account_id:path}", response_class=HTMLResponse)
async def account_view(request: Request, account_id: str) -> Response:
    who = await viewer(request)
    ctx = context(request)
    now, _ = _now_and_today(request)
    async with ctx.engine.connect() as conn:
        values = await account_page(conn, who, account_id, now, ctx.settings.zone)
        plan = await account_plan(conn, who.key, account_id, Today(now, ctx.settings.zone))
    charts = account_charts(values, language(request))
    templates = template_choices(plan_templates(ctx.settings))
    values = {
        "a": values,
        "charts": charts,
        "plan": plan,
        "plan_templates": templates,
        "plan_measures": PLAN_MEASURES,
    }
    return page(request, "account.html", values, who)


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


def _with_notice(path: str, done: str, **counts: int) -> str:
    """``path`` (its query kept) with the notice to show, ``done``, and the numbers it
    says (``n=3``), in place of any it had."""
    said = {"done": done, **{name: str(n) for name, n in counts.items()}}
    parts = urllib.parse.urlsplit(path)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k not in said]
    query += list(said.items())
    return urllib.parse.urlunsplit(("", "", parts.path, urllib.parse.urlencode(query), ""))


def _error(
    request: Request, title: str, status: int, message: str, **values: object
) -> dict[str, Any]:
    """error.html's values, in the viewer's language."""
    lang = language(request)
    return {
        "title": translate(lang, title),
        "status": status,
        "message": translate(lang, message, **values),
    }


async def login_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    query = urllib.parse.urlencode({"next": exc.next_path})
    return RedirectResponse(f"/ui/login?{query}", status_code=303)


async def forbidden(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Forbidden)
    values = _error(request, N_("Not allowed here"), 403, exc.text, **exc.values)
    return page(request, "error.html", values, None, 403)


async def bad_address(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BadAddress)
    values = _error(request, N_("Bad address"), 400, exc.text, **exc.values)
    return page(request, "error.html", values, None, 400)


async def form_too_large(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FormTooLarge)
    return page(request, "error.html", _error(request, N_("Too long"), 413, exc.text), None, 413)


async def nul_address(request: Request) -> Response | None:
    """A page address holding a NUL byte (``/ui/?q=%00``): an error page in the viewer's
    language, as for any address it cannot read; elsewhere None (the API's JSON)."""
    if not request.url.path.startswith("/ui/"):
        return None
    # The page's own links (the language switch) must not carry the byte back.
    clean = Request({**request.scope, "path": "/ui/", "raw_path": b"/ui/", "query_string": b""})
    message = N_("This address holds a NUL byte (%00). Go back and use the page's links and forms.")
    return page(clean, "error.html", _error(clean, N_("Bad address"), 400, message), None, 400)


async def not_found(request: Request, exc: Exception) -> Response:
    # Any page's 404 (an account, an alert, a case, a report): "no such account or
    # alert" read wrong for a case's address (found from outside).
    message = N_(
        "There is no such page, or what it shows (an account, an alert, a case, a report) "
        "is not in your portfolio."
    )
    return page(request, "error.html", _error(request, N_("Not found"), 404, message), None, 404)


async def unstorable_entry(request: Request, exc: Exception) -> Response:
    """A value typed into a form that the database cannot hold (PostgreSQL: a NUL
    character, text past its column): an error page in the viewer's language saying to
    correct it, not a 500; elsewhere the API's JSON 422."""
    if not request.url.path.startswith("/ui/"):
        return await unstorable_value_handler(request, exc)
    if not unstorable_value(exc):
        return await unavailable(request, exc)
    message = N_(
        "A value you entered cannot be stored (too long, or holding a NUL character): go "
        "back and correct it."
    )
    values = _error(request, N_("Not saved"), 422, message)
    return page(request, "error.html", values, None, 422)


async def unavailable(request: Request, exc: Exception) -> Response:
    """The database cannot be reached (a restart, a failover): a page saying to reload in
    a few seconds, 503, not a 500; elsewhere the API's JSON 503."""
    if not request.url.path.startswith("/ui/"):
        return await unavailable_handler(request, exc)
    if collided(exc):
        log.warning("page not served, it met another change: %s", describe(exc))
        message = N_(
            "Someone else was changing the same records at the same moment, so nothing was "
            "saved: send the form again."
        )
        values = _error(request, N_("Not saved"), 503, message)
        response = page(request, "error.html", values, None, 503)
        response.headers["Retry-After"] = str(COLLISION_RETRY_AFTER_S)
        return response
    if not unreachable(exc):
        return await unavailable_handler(request, exc)
    log.warning("page not served, the database is unavailable: %s", describe(exc))
    message = N_("The database cannot be reached just now: reload the page in a few seconds.")
    values = _error(request, N_("Unavailable"), 503, message)
    response = page(request, "error.html", values, None, 503)
    response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER_S)
    return response


# Last of the dashboard's routes (after its static files): any other /ui/ address.
fallback = APIRouter(prefix="/ui", include_in_schema=False)


@fallback.api_route("/{rest:path}", methods=["GET", "POST"])
async def no_such_page(request: Request, rest: str) -> Response:
    """A page the dashboard does not have: its error page in the viewer's language, with
    the way home, not the API's English JSON."""
    message = N_("The dashboard has no such page: start again from its home page.")
    return page(request, "error.html", _error(request, N_("Not found"), 404, message), None, 404)


async def invalid_address(request: Request, exc: Exception) -> Response:
    """FastAPI's 422 for a value it cannot read: on a dashboard page (a hand-edited
    address, say ``?from=yesterday``) an error page in the viewer's language naming the
    parameters; elsewhere the API's JSON."""
    if not request.url.path.startswith("/ui/"):
        return await invalid_request_handler(request, exc)
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    names = sorted({str(e["loc"][-1]) for e in errors if e.get("loc")})
    message = N_(
        "This page cannot read {names} in its address. Go back and use the page's links and forms."
    )
    # The way dates are written, only when a date was misread (a bad kind or format
    # was told it, found from outside).
    if any(str(e.get("type", "")).startswith(("date", "datetime")) for e in errors):
        message = N_(
            "This page cannot read {names} in its address. Go back and use the page's "
            "links and forms (dates are written 2026-12-31)."
        )
    values = _error(request, N_("Bad address"), 400, message, names=", ".join(names))
    return page(request, "error.html", values, None, 400)
