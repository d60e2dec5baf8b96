"""The dashboard's sign-in: a signed session cookie (never the key), checked on every
request against the key store, and CSRF tokens on the sign-in form and every other form.
Against the API app with the dashboard mounted, on a real SQLite file."""

from __future__ import annotations

import html
import re
import time
import types
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from services.dashboard.app import mount_dashboard
from services.dashboard.auth import (
    COOKIE,
    COOKIE_MAX_AGE_S,
    LOGIN_COOKIE,
    DashboardContext,
    csrf_token,
    login_token,
    session_token,
)
from services.ingest.app import create_app
from shared.auth import KeyStore, Role, create_key, role_scopes, split_key
from shared.bus.embedded import EmbeddedBus
from shared.clock import utcnow
from shared.config import Settings
from shared.storage.db import create_engine, migrate
from shared.storage.tables import api_keys

RELOAD = "Reload the sign-in page and try again"
ACK = "/ui/alerts/{}/acknowledge".format(urllib.parse.quote("nope:ticket_backlog:1"))


@dataclass
class Dash:
    client: httpx.AsyncClient
    engine: AsyncEngine
    ctx: DashboardContext
    keys: KeyStore
    lead: str
    ingest: str

    async def login_page(self, next_path: str = "/ui/") -> str:
        """GET the sign-in page (setting the pre-session cookie); its form's token."""
        r = await self.client.get("/ui/login", params={"next": next_path})
        assert r.status_code == 200
        return _field(r.text, "csrf")

    async def sign_in(self, key: str, next_path: str = "/ui/") -> httpx.Response:
        token = await self.login_page(next_path)
        return await self.client.post(
            "/ui/login", data={"csrf": token, "key": key, "next": next_path}
        )

    def use_session(self, value: str) -> None:
        self.client.cookies.clear()
        self.client.cookies.set(COOKIE, value)

    async def home(self) -> httpx.Response:
        return await self.client.get("/ui/")


def _field(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no hidden field {name!r}"
    return found.group(1)


def _set_cookies(r: httpx.Response) -> dict[str, str]:
    """Set-Cookie headers by cookie name."""
    return {h.split("=", 1)[0]: h for h in r.headers.get_list("set-cookie")}


async def _app(settings: Settings, engine: AsyncEngine) -> Any:
    async def ready() -> str | None:
        return None  # ready

    app = create_app(
        settings, engine, EmbeddedBus(engine), registry=CollectorRegistry(), ready=ready
    )
    mount_dashboard(app, engine, settings)
    return app


@pytest.fixture
async def dash(embedded_settings: Settings) -> AsyncIterator[Dash]:
    engine = create_engine(embedded_settings.database_url)
    await migrate(engine)
    lead = await create_key(engine, "lead", role_scopes(Role.cs_lead, None))
    ingest = await create_key(engine, "ingest", role_scopes(Role.ingest, None))
    app = await _app(embedded_settings, engine)
    # Plain http on localhost: the one origin whose cookies are not Secure by default.
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://localhost"
    ) as client:
        yield Dash(client, engine, app.state.dashboard, app.state.keys, lead, ingest)
    await engine.dispose()


async def test_sign_in_stores_a_signed_session_never_the_key(dash: Dash) -> None:
    r = await dash.client.get("/ui/login", params={"next": "/ui/lead"})
    pre = _set_cookies(r)[LOGIN_COOKIE].lower()
    assert all(a in pre for a in ("httponly", "samesite=strict", "path=/ui", "max-age="))
    token = _field(r.text, "csrf")
    assert token == login_token(dash.ctx, dash.client.cookies[LOGIN_COOKIE])

    before = int(time.time())
    r = await dash.client.post(
        "/ui/login", data={"csrf": token, "key": dash.lead, "next": "/ui/lead"}
    )
    assert r.status_code == 303 and r.headers["location"] == "/ui/lead"
    cookies = _set_cookies(r)
    session = cookies[COOKIE]
    assert all(a in session.lower() for a in ("httponly", "samesite=strict", "path=/ui"))
    value = dash.client.cookies[COOKIE]
    key_id, secret = split_key(dash.lead) or ("", "")
    assert dash.lead not in session and secret not in session and secret not in value
    cookie_key_id, expires, nonce, signature = value.split(".")
    assert cookie_key_id == key_id and re.fullmatch(r"[0-9a-f]{64}", signature)
    assert re.fullmatch(r"[A-Za-z0-9_-]{16}", nonce)  # every sign-in its own session
    assert before + COOKIE_MAX_AGE_S <= int(expires) <= int(time.time()) + COOKIE_MAX_AGE_S
    assert LOGIN_COOKIE in cookies and "max-age=0" in cookies[LOGIN_COOKIE].lower()  # spent

    home = await dash.home()
    assert home.status_code == 200
    assert dash.lead not in home.text and secret not in home.text
    assert _field(home.text, "csrf") == csrf_token(dash.ctx, value)


def _tampered(dash: Dash, value: str) -> list[str]:
    key_id, expires, nonce, signature = value.split(".")
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    ingest_id = (split_key(dash.ingest) or ("",))[0]
    return [
        dash.lead,  # the old cookie: the raw key
        f"{key_id}.{expires}.{nonce}.{flipped}",
        f"{key_id}.{int(expires) + 3600}.{nonce}.{signature}",  # a longer session
        f"{ingest_id}.{expires}.{nonce}.{signature}",  # another key's id
        f"{key_id}.{expires}.x{nonce}.{signature}",  # another session's nonce
        f"{key_id}.{expires}.{signature}",  # the nonce left out
        f"{key_id}.{expires}.{nonce}.",
        f"{key_id}.{expires}",
        f"{key_id}.{expires}.{nonce}.{signature}é",
        f"{key_id}.-{expires}.{nonce}.{signature}",
        session_token(dash.ctx, key_id, int(time.time()) - 1),  # signed, but expired
        session_token(  # another process's secret
            DashboardContext(dash.ctx.engine, dash.ctx.settings, dash.ctx.templates),
            key_id,
            int(expires),
        ),
    ]


async def test_tampered_or_expired_sessions_go_to_the_sign_in_page(dash: Dash) -> None:
    assert (await dash.sign_in(dash.lead)).status_code == 303
    value = dash.client.cookies[COOKIE]
    dash.client.cookies.clear()
    for bad in _tampered(dash, value):
        cookie = {b"cookie": f"{COOKIE}={bad}".encode()}  # bytes: non-ASCII ones too
        r = await dash.client.get("/ui/lead?x=1", headers=cookie)
        assert r.status_code == 303, bad
        assert r.headers["location"] == "/ui/login?next=%2Fui%2Flead%3Fx%3D1", bad
        # Nor does a form go through, even with the token that cookie value would have.
        data = {"csrf": csrf_token(dash.ctx, bad), "next": "/ui/"}
        r = await dash.client.post(ACK, data=data, headers=cookie)
        assert r.status_code == 303 and r.headers["location"].startswith("/ui/login?"), bad
    dash.use_session(value)
    assert (await dash.home()).status_code == 200


async def test_a_revoked_keys_session_stops_working(
    dash: Dash, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (await dash.sign_in(dash.lead)).status_code == 303
    assert (await dash.home()).status_code == 200
    key_id = dash.client.cookies[COOKIE].split(".")[0]
    async with dash.engine.begin() as conn:
        await conn.execute(
            update(api_keys).where(api_keys.c.key_id == key_id).values(revoked_at=utcnow())
        )
    # Within the key store's cache time the session still works (as a key would) …
    assert (await dash.home()).status_code == 200
    # … and once the cached entry is stale it does not.
    later = time.monotonic() + KeyStore.CACHE_TTL_S + 1
    monkeypatch.setattr("shared.auth.time", types.SimpleNamespace(monotonic=lambda: later))
    r = await dash.home()
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/login?")
    assert await dash.keys.lookup(key_id) is None


async def test_sign_in_without_the_forms_token_is_403_and_signs_nobody_in(dash: Dash) -> None:
    async def refused(data: dict[str, str], pre: str | None) -> None:
        dash.client.cookies.clear()
        if pre is not None:
            dash.client.cookies.set(LOGIN_COOKIE, pre)
        r = await dash.client.post("/ui/login", data={"key": dash.lead, "next": "/ui/", **data})
        assert r.status_code == 403, (data, pre)
        assert RELOAD in r.text and dash.lead not in r.text
        assert COOKIE not in _set_cookies(r) and COOKIE not in dash.client.cookies
        assert (await dash.home()).status_code == 303

    token = await dash.login_page()
    pre = dash.client.cookies[LOGIN_COOKIE]
    other = "A" * 43
    await refused({"csrf": token}, None)  # another site's form: no pre-session cookie
    await refused({}, pre)
    await refused({"csrf": ""}, pre)
    await refused({"csrf": "0" * 64}, pre)
    await refused({"csrf": token + "é"}, pre)
    await refused({"csrf": login_token(dash.ctx, other)}, pre)  # another browser's form
    await refused({"csrf": csrf_token(dash.ctx, pre)}, pre)  # a form token, not a sign-in one
    await refused({"csrf": login_token(dash.ctx, "x")}, "x")  # no cookie this app would set

    # The sign-in page keeps a valid pre-session cookie (other tabs' forms stay good).
    dash.client.cookies.clear()
    dash.client.cookies.set(LOGIN_COOKIE, other)
    assert await dash.login_page() == login_token(dash.ctx, other)
    r = await dash.client.post("/ui/login", data={"csrf": token, "key": dash.lead})
    assert r.status_code == 403


async def test_wrong_key_and_wrong_role_on_a_valid_form(dash: Dash) -> None:
    token = await dash.login_page()
    r = await dash.client.post("/ui/login", data={"csrf": token, "key": "hwk_nope_nope"})
    assert r.status_code == 401 and "Unknown or revoked key" in r.text
    assert _field(r.text, "csrf") == token  # the form can be sent again as it is
    r = await dash.client.post("/ui/login", data={"csrf": token, "key": dash.ingest})
    assert r.status_code == 403 and "lacks the 'read' scope" in html.unescape(r.text)
    assert "of the role admin / cs_lead / csm." in html.unescape(r.text)
    assert dash.ingest not in r.text and COOKIE not in dash.client.cookies


async def test_forms_need_the_sessions_token(dash: Dash) -> None:
    assert (await dash.sign_in(dash.lead)).status_code == 303
    token = _field((await dash.home()).text, "csrf")
    for bad in ({}, {"csrf": ""}, {"csrf": "0" * 64}, {"csrf": token + "é"}):
        r = await dash.client.post(ACK, data={"next": "/ui/", **bad})
        assert r.status_code == 403 and "security token" in r.text, bad
        r = await dash.client.post("/ui/logout", data=bad)
        assert r.status_code == 403, bad
    r = await dash.client.post(ACK, data={"csrf": token, "next": "/ui/"})
    assert r.status_code == 303 and r.headers["location"] == "/ui/?done=gone"

    session = dash.client.cookies[COOKIE]
    key_id, expires, _, _ = session.split(".")
    elsewhere = session_token(dash.ctx, key_id, int(expires))  # the same key, another browser
    r = await dash.client.post("/ui/logout", data={"csrf": token})
    assert r.status_code == 303 and r.headers["location"] == "/ui/login"
    assert COOKIE not in dash.client.cookies
    assert (await dash.home()).status_code == 303
    # A copy of the cookie kept from before signing out signs nobody in either.
    dash.use_session(session)
    assert (await dash.home()).status_code == 303
    # The key's other session goes on.
    dash.use_session(elsewhere)
    assert (await dash.home()).status_code == 200
    # A new sign-in, even within the same second, is a session of its own.
    dash.client.cookies.clear()
    assert (await dash.sign_in(dash.lead)).status_code == 303
    assert dash.client.cookies[COOKIE] != session
    assert (await dash.home()).status_code == 200


async def test_replicas_sharing_the_secret_accept_each_others_sessions(
    embedded_settings: Settings,
) -> None:
    shared = embedded_settings.model_copy(update={"dashboard_secret": SecretStr("s" * 32)})
    engine = create_engine(shared.database_url)
    await migrate(engine)
    key = await create_key(engine, "lead", role_scopes(Role.cs_lead, None))
    apps = [await _app(shared, engine), await _app(shared, engine)]
    apps.append(await _app(embedded_settings, engine))  # a random secret of its own
    clients = [
        httpx.AsyncClient(transport=httpx.ASGITransport(app=a), base_url="http://localhost")
        for a in apps
    ]
    try:
        one, two, alone = clients
        r = await one.get("/ui/login")
        two.cookies.set(LOGIN_COOKIE, one.cookies[LOGIN_COOKIE])
        r = await two.post("/ui/login", data={"csrf": _field(r.text, "csrf"), "key": key})
        assert r.status_code == 303
        for c in (one, alone):
            c.cookies.set(COOKIE, two.cookies[COOKIE])
        assert (await one.get("/ui/")).status_code == 200
        assert (await alone.get("/ui/")).status_code == 303
    finally:
        for c in clients:
            await c.aclose()
        await engine.dispose()
