"""Who is looking: the API key in an HttpOnly cookie, and CSRF tokens for the forms.

The login form takes an API key and stores it in a cookie (HttpOnly, SameSite=Strict,
Secure behind HTTPS, scoped to /ui); every page verifies it with the app's key store,
so a revoked key stops working within the store's cache time. State-changing forms
carry a CSRF token: an HMAC of the cookie's value with a secret of this process, which
a page of another site can neither read nor compute. The key is never logged, echoed
or rendered.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import urllib.parse
from dataclasses import dataclass, field

from fastapi import Request
from fastapi.templating import Jinja2Templates
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.responses import Response

from shared.auth import ApiKey, KeyStore, Scope
from shared.config import Settings

COOKIE = "hw_dashboard"
COOKIE_PATH = "/ui"
# A browser session of a working day; the key itself stays valid until revoked.
COOKIE_MAX_AGE_S = 12 * 3600
MAX_FORM_BYTES = 16_384


@dataclass
class DashboardContext:
    """What the dashboard's routes share (``app.state.dashboard``)."""

    engine: AsyncEngine
    settings: Settings
    templates: Jinja2Templates
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))


@dataclass(frozen=True)
class Viewer:
    """A verified key and its cookie, for one request."""

    key: ApiKey
    csrf: str

    @property
    def who(self) -> str:
        return self.key.csm_email or self.key.name

    @property
    def can_respond(self) -> bool:
        return self.key.allows(Scope.respond)


class LoginRequired(Exception):
    """No cookie, or one whose key is unknown or revoked: go to the login form."""

    def __init__(self, next_path: str):
        super().__init__(next_path)
        self.next_path = next_path


class Forbidden(Exception):
    """A known key without the scope a page needs: a 403 page saying so."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class NotFound(Exception):
    """Unknown, or not the key's to see: the same 404 either way."""


def context(request: Request) -> DashboardContext:
    ctx: DashboardContext = request.app.state.dashboard
    return ctx


def csrf_token(ctx: DashboardContext, cookie: str) -> str:
    return hmac.new(ctx.secret, cookie.encode(), hashlib.sha256).hexdigest()


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
    raw = request.cookies.get(COOKIE)
    keys: KeyStore = request.app.state.keys
    key = await keys.verify(raw) if raw else None
    if raw is None or key is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(safe_next(target))
    if not key.allows(scope):
        raise Forbidden(forbidden_message(key, scope))
    return Viewer(key, csrf_token(ctx, raw))


def forbidden_message(key: ApiKey, scope: Scope) -> str:
    have = ", ".join(sorted(s.value for s in key.scopes)) or "none"
    return (
        f"This key ({key.name!r}, scopes: {have}) lacks the '{scope.value}' scope the "
        "dashboard needs here. Ingest keys only send data and ops keys only read "
        "/metrics; sign in with a cs_lead, csm or admin key."
    )


async def read_form(request: Request) -> dict[str, str]:
    """A small url-encoded form (no multipart: nothing here uploads files)."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    pairs = urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    return dict(pairs)


async def checked_form(request: Request, scope: Scope) -> tuple[Viewer, dict[str, str]]:
    """The viewer and form of a state-changing POST whose CSRF token matches."""
    who = await viewer(request, scope)
    form = await read_form(request)
    if not hmac.compare_digest(form.get("csrf", ""), who.csrf):
        raise Forbidden(
            "This form's security token does not match your session (it may be from an "
            "old page or another site). Reload the page and try again."
        )
    return who, form


def set_key_cookie(request: Request, response: Response, raw: str) -> None:
    response.set_cookie(
        COOKIE,
        raw,
        max_age=COOKIE_MAX_AGE_S,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def clear_key_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")
