"""Who is looking: a signed session in an HttpOnly cookie, and CSRF tokens for forms.

Signing in takes an API key, verified with the app's key store; the cookie then holds
``<key_id>.<expires>.<nonce>.<hmac>``, an HMAC-SHA256 with the dashboard's secret, never the
key. Every page checks the signature and the expiry, then looks the key id up in the
key store, so a revoked key's sessions stop working within the store's cache time, and
that the session was not ended by signing out (``dashboard_signouts``). The
cookie is HttpOnly, SameSite=Strict, Secure (see ``secure_cookies``) and scoped to /ui. The secret
is ``dashboard_secret`` (the same on every replica), else random per process, and then
a restart signs everyone out.

State-changing forms carry a CSRF token: an HMAC of the session cookie's value, which
a page of another site can neither read nor compute. The sign-in form is bound the
same way to a random pre-session cookie its page sets, so another site cannot sign a
browser in with a key of its choosing (login CSRF). Keys, cookies and tokens are never
logged, and the key is never echoed or rendered.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime

from fastapi import Request
from fastapi.templating import Jinja2Templates
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.responses import Response

from shared.auth import ROLE_SCOPES, ApiKey, KeyStore, Role, Scope, same_secret
from shared.clock import utcnow
from shared.config import Settings
from shared.i18n import N_
from shared.request_body import read_capped
from shared.storage.db import insert_ignore
from shared.storage.tables import dashboard_signouts

COOKIE = "hw_dashboard"
COOKIE_PATH = "/ui"
# A browser session of a working day; then the key is asked for again, and the key
# itself stays valid until revoked.
COOKIE_MAX_AGE_S = 12 * 3600
LOGIN_COOKIE = "hw_dashboard_login"
# Only binds the sign-in form to this browser: an hour covers a sign-in page left open
# a while, and the cookie does not linger after that.
LOGIN_COOKIE_MAX_AGE_S = 3600
LOGIN_NONCE = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)
# A form's body at most: a comment or reason of 10,000 characters (the API's limit) is
# 90,000 bytes in Chinese once url-encoded (9 a character), the other fields beside it.
MAX_FORM_BYTES = 128 * 1024


@dataclass
class DashboardContext:
    """What the dashboard's routes share (``app.state.dashboard``)."""

    engine: AsyncEngine
    settings: Settings
    templates: Jinja2Templates
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))


@dataclass(frozen=True)
class Viewer:
    """A verified key and its session's CSRF token, for one request."""

    key: ApiKey
    csrf: str

    @property
    def who(self) -> str:
        return self.key.csm_email or self.key.name

    @property
    def can_respond(self) -> bool:
        return self.key.allows(Scope.respond)


class LoginRequired(Exception):
    """No session, or a tampered or expired one, or its key revoked: go to the login
    form."""

    def __init__(self, next_path: str):
        super().__init__(next_path)
        self.next_path = next_path


class Forbidden(Exception):
    """A known key without the scope a page needs: a 403 page saying so. ``text`` is
    English with ``{fields}`` filled from ``values``, translated where it is shown."""

    def __init__(self, text: str, **values: object):
        self.text = text
        self.values = values
        self.message = text.format(**values) if values else text
        super().__init__(self.message)


class NotFound(Exception):
    """Unknown, or not the key's to see: the same 404 either way."""


class BadAddress(Exception):
    """A value in the page's address it can read but not serve (a day to come): a 400
    page saying so. ``text`` is English with ``{fields}`` from ``values``, translated
    where it is shown."""

    def __init__(self, text: str, **values: object):
        self.text = text
        self.values = values
        super().__init__(text.format(**values) if values else text)


def path_of(request: Request) -> str:
    """The request's path as a link writes it: percent-encoded, so an account id holding
    "%41" links back to itself, not to "A" (``request.url.path`` leaves "%" decoded)."""
    return urllib.parse.quote(request.scope["path"], safe="/")


def address_of(request: Request) -> str:
    """The page's address (path and query), to come back to after a form or sign-in."""
    query = request.url.query
    return path_of(request) + (f"?{query}" if query else "")


def context(request: Request) -> DashboardContext:
    ctx: DashboardContext = request.app.state.dashboard
    return ctx


def _mac(ctx: DashboardContext, message: str) -> str:
    return hmac.new(ctx.secret, message.encode(), hashlib.sha256).hexdigest()


def csrf_token(ctx: DashboardContext, cookie: str) -> str:
    """The forms' token for a session cookie's value."""
    return _mac(ctx, cookie)


def session_token(
    ctx: DashboardContext, key_id: str, expires: int, nonce: str | None = None
) -> str:
    """The cookie's value: ``<key_id>.<expires unix time>.<nonce>.<hmac>``; the random
    nonce makes every sign-in its own session, which signing out ends alone."""
    nonce = nonce or secrets.token_urlsafe(12)
    return f"{key_id}.{expires}.{nonce}.{_mac(ctx, f'session|{key_id}|{expires}|{nonce}')}"


def session_key_id(ctx: DashboardContext, token: str, now: float) -> str | None:
    """The key id of a session token signed by ``ctx`` and unexpired at ``now``."""
    parts = token.rsplit(".", 3)
    if len(parts) != 4:
        return None
    key_id, expires, nonce, signature = parts
    if not (key_id and expires.isascii() and expires.isdigit()):
        return None
    if not same_secret(signature, _mac(ctx, f"session|{key_id}|{expires}|{nonce}")):
        return None
    return key_id if int(expires) > now else None


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def signed_out(engine: AsyncEngine, token: str) -> bool:
    """Whether this session was ended by signing out."""
    q = select(dashboard_signouts.c.token_hash).where(
        dashboard_signouts.c.token_hash == _token_hash(token)
    )
    async with engine.connect() as conn:
        return (await conn.execute(q)).first() is not None


async def sign_out(ctx: DashboardContext, token: str) -> None:
    """End a valid session for good: its cookie, should it be kept or copied, signs
    nobody in again. Rows of sessions that have expired anyway are dropped."""
    expires = datetime.fromtimestamp(int(token.rsplit(".", 3)[1]), UTC)
    now = utcnow()
    async with ctx.engine.begin() as conn:
        await conn.execute(delete(dashboard_signouts).where(dashboard_signouts.c.expires_at < now))
        await conn.execute(
            insert_ignore(conn, dashboard_signouts).on_conflict_do_nothing(),
            [{"token_hash": _token_hash(token), "expires_at": expires}],
        )


def login_nonce(request: Request) -> str | None:
    """The request's pre-session cookie, if it is one this app could have set."""
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    return nonce if LOGIN_NONCE.fullmatch(nonce) else None


def new_login_nonce() -> str:
    return secrets.token_urlsafe(32)


def login_token(ctx: DashboardContext, nonce: str) -> str:
    """The sign-in form's CSRF token for a pre-session cookie."""
    return _mac(ctx, f"login|{nonce}")


def safe_next(path: str | None) -> str:
    """Only a dashboard path of this site: never an open redirect."""
    if (
        path
        and path.startswith(COOKIE_PATH + "/")
        and not any(c in path for c in ("\\", "\r", "\n"))
    ):
        return path
    return COOKIE_PATH + "/"


async def viewer(request: Request, scope: Scope = Scope.read) -> Viewer:
    """The request's verified key holding ``scope``, else LoginRequired / Forbidden."""
    ctx = context(request)
    token = request.cookies.get(COOKIE, "")
    key_id = session_key_id(ctx, token, time.time()) if token else None
    if key_id is not None and await signed_out(ctx.engine, token):
        key_id = None
    keys: KeyStore = request.app.state.keys
    key = await keys.lookup(key_id) if key_id else None
    if key is None:
        raise LoginRequired(safe_next(address_of(request)))
    if not key.allows(scope):
        raise forbidden_scope(key, scope)
    return Viewer(key, csrf_token(ctx, token))


FORBIDDEN_SCOPE = N_(
    "This key ({name}, scopes: {scopes}) lacks the '{scope}' scope the dashboard needs "
    "here: sign in with a key of the role {roles}."
)


def forbidden_scope(key: ApiKey, scope: Scope) -> Forbidden:
    """The roles named are those whose keys would do (a lead on an admin page was told
    to sign in with "a cs_lead, csm or admin key", the one they had)."""
    have = ", ".join(sorted(s.value for s in key.scopes)) or "none"
    roles = [role for role in Role if ApiKey("", "", ROLE_SCOPES[role]).allows(scope)]
    return Forbidden(
        FORBIDDEN_SCOPE,
        name=repr(key.name),
        scopes=have,
        scope=scope.value,
        roles=" / ".join(role.value for role in roles),
    )


class FormTooLarge(Exception):
    """A form past its size: a 413 page saying so (``text``, English, translated where
    it is shown)."""

    def __init__(
        self,
        text: str = N_(
            "The form's text is too long: keep a comment, reason or title under 10,000 "
            "characters, then go back and send it again."
        ),
    ):
        self.text = text
        super().__init__(text)


async def read_form(request: Request) -> dict[str, str]:
    """A url-encoded form (no multipart: nothing here uploads files), read up to
    MAX_FORM_BYTES; FormTooLarge past it. It had read as empty, so its CSRF check
    failed with a "security token" 403 for a long comment (found from outside)."""
    body = await read_capped(request, MAX_FORM_BYTES)
    if body is None:
        raise FormTooLarge
    pairs = urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    return dict(pairs)


async def checked_form(request: Request, scope: Scope) -> tuple[Viewer, dict[str, str]]:
    """The viewer and form of a state-changing POST whose CSRF token matches."""
    who = await viewer(request, scope)
    form = await read_form(request)
    if not same_secret(form.get("csrf", ""), who.csrf):
        raise Forbidden(
            N_(
                "This form's security token does not match your session (it may be from an "
                "old page or another site). Reload the page and try again."
            )
        )
    return who, form


def set_session_cookie(request: Request, response: Response, key: ApiKey) -> None:
    """Sign ``key`` in for COOKIE_MAX_AGE_S: a signed token, never the key itself."""
    expires = int(time.time()) + COOKIE_MAX_AGE_S
    token = session_token(context(request), key.key_id, expires)
    _set_cookie(request, response, COOKIE, token, COOKIE_MAX_AGE_S)


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")


def set_login_cookie(request: Request, response: Response, nonce: str) -> None:
    _set_cookie(request, response, LOGIN_COOKIE, nonce, LOGIN_COOKIE_MAX_AGE_S)


def clear_login_cookie(response: Response) -> None:
    response.delete_cookie(LOGIN_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")


def _set_cookie(request: Request, response: Response, name: str, value: str, age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=age,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=secure_cookies(context(request).settings, request),
    )


# Names a browser resolves to this machine: the one place a dashboard may be served
# over plain http (development), where Secure cookies are not reliably sent back.
LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]"}


def secure_cookies(settings: Settings, request: Request) -> bool:
    """``cookie_secure`` if set; else Secure unless the page came over plain http to a
    loopback name. Behind a TLS-terminating proxy the app sees http on a public name,
    and the cookie stays Secure: it never travels in clear text."""
    if settings.cookie_secure is not None:
        return settings.cookie_secure
    host = (request.url.hostname or "").lower()
    local = host in LOOPBACK_HOSTS or host.endswith(".localhost")
    return request.url.scheme == "https" or not local
