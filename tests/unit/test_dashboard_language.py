"""The dashboard in the viewer's language and time zone: the language links, the zone
cookie, and the sign-in and error texts in Chinese. Against the API app with the
dashboard mounted, on a real SQLite file."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from prometheus_client import CollectorRegistry

from services.dashboard import app as dashboard_app
from services.dashboard.app import mount_dashboard
from services.ingest.app import create_app
from shared.auth import Role, create_key, role_scopes
from shared.bus.embedded import EmbeddedBus
from shared.config import Settings
from shared.storage.db import create_engine, migrate


@pytest.fixture
async def client(embedded_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    engine = create_engine(embedded_settings.database_url)
    await migrate(engine)

    async def ready() -> str | None:
        return None  # ready

    app = create_app(
        embedded_settings, engine, EmbeddedBus(engine), registry=CollectorRegistry(), ready=ready
    )
    mount_dashboard(app, engine, embedded_settings)
    app.state.test_keys = {
        role: await create_key(engine, role.value, role_scopes(role, None))
        for role in (Role.cs_lead, Role.ingest)
    }
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://localhost"
    ) as http:
        http.app = app  # type: ignore[attr-defined]
        yield http
    await engine.dispose()


async def sign_in(client: httpx.AsyncClient, role: Role) -> httpx.Response:
    page = await client.get("/ui/login")
    csrf = re.search(r'name="csrf" value="([^"]*)"', page.text)
    assert csrf
    key = client.app.state.test_keys[role]  # type: ignore[attr-defined]
    return await client.post("/ui/login", data={"csrf": csrf.group(1), "key": key, "next": "/ui/"})


async def test_the_language_link_sets_a_cookie_and_goes_back(client: httpx.AsyncClient) -> None:
    page = await client.get("/ui/login", params={"next": "/ui/lead"})
    assert '<html lang="en"' in page.text and "Sign in" in page.text
    # The link comes back to this very page, query and all.
    link = re.search(r'href="(/ui/language/zh-CN\?next=[^"]*)"', page.text)
    assert link and link.group(1).endswith("=/ui/login%3Fnext%3D%252Fui%252Flead")
    r = await client.get(link.group(1))
    assert r.status_code == 303 and r.headers["location"] == "/ui/login?next=%2Fui%2Flead"
    cookie = r.headers["set-cookie"].lower()
    assert cookie.startswith("hw_lang=zh-cn;")
    assert all(part in cookie for part in ("path=/ui", "samesite=lax", "httponly", "max-age="))
    page = await client.get("/ui/login")
    assert '<html lang="zh-CN"' in page.text and "<h1>登录</h1>" in page.text
    # Never an open redirect; an unknown language is a 404, in the chosen language.
    away = await client.get("/ui/language/en", params={"next": "https://evil.example/"})
    assert away.headers["location"] == "/ui/"
    client.cookies.set("hw_lang", "zh-CN", path="/ui")
    unknown = await client.get("/ui/language/klingon")
    assert unknown.status_code == 404 and "未找到" in unknown.text


async def test_the_browsers_language_then_the_setting(client: httpx.AsyncClient) -> None:
    zh = await client.get("/ui/login", headers={"accept-language": "zh-TW,zh;q=0.9"})
    assert '<html lang="zh-CN"' in zh.text and "API 密钥" in zh.text
    en = await client.get("/ui/login", headers={"accept-language": "de-DE"})
    assert '<html lang="en"' in en.text


async def test_times_in_the_viewers_zone(client: httpx.AsyncClient) -> None:
    assert (await sign_in(client, Role.cs_lead)).status_code == 303
    home = await client.get("/ui/")
    assert 'data-zone="UTC"' in home.text and "Times in UTC" in home.text
    assert '<script src="/ui/static/tz.js"></script>' in home.text
    client.cookies.set("hw_tz", "Asia/Shanghai", path="/ui")
    client.cookies.set("hw_lang", "zh-CN", path="/ui")
    home = await client.get("/ui/")
    assert 'data-zone="Asia/Shanghai"' in home.text
    assert "所有时间均为 Asia/Shanghai 时间" in home.text
    # A forged or unknown zone falls back to the service's, without an error.
    for forged in ("../../etc/passwd", "Mars/Olympus", "localtime"):
        client.cookies.set("hw_tz", forged, path="/ui")
        page = await client.get("/ui/")
        assert page.status_code == 200 and 'data-zone="UTC"' in page.text


async def test_sign_in_errors_in_chinese(client: httpx.AsyncClient) -> None:
    client.cookies.set("hw_lang", "zh-CN", path="/ui")
    page = await client.get("/ui/login")
    csrf = re.search(r'name="csrf" value="([^"]*)"', page.text)
    assert csrf
    bad = await client.post("/ui/login", data={"csrf": csrf.group(1), "key": "hwk_nope"})
    assert bad.status_code == 401 and "密钥无效或已被吊销" in bad.text
    forged = await client.post("/ui/login", data={"csrf": "forged", "key": "hwk_nope"})
    assert forged.status_code == 403 and "登录表单未被接受" in forged.text
    ingest = await sign_in(client, Role.ingest)
    assert ingest.status_code == 403
    assert "无权访问" in ingest.text and "缺少此处所需的“read”权限" in ingest.text


async def test_a_page_address_it_cannot_read_gets_a_page_in_the_viewers_language(
    client: httpx.AsyncClient,
) -> None:
    """A hand-edited dashboard address (a date it cannot read) gets an error page naming
    the parameter, in the viewer's language, not the API's English JSON; the API keeps
    its JSON."""
    assert (await sign_in(client, Role.cs_lead)).status_code == 303
    english = await client.get("/ui/export/accounts", params={"from": "yesterday"})
    assert english.status_code == 400 and english.headers["content-type"].startswith("text/html")
    assert "This page cannot read from in its address" in english.text
    client.cookies.set("hw_lang", "zh-CN", path="/ui")
    chinese = await client.get("/ui/accounts/a/reports/usage", params={"end": "31/12/2026"})
    assert chinese.status_code == 400 and "此页面无法读取地址中的 end" in chinese.text
    assert "2026-12-31" in chinese.text  # a date misread: how dates are written
    # A format it does not have: no word of dates (found from outside).
    other = await client.get("/ui/export/accounts", params={"format": "xls"})
    assert other.status_code == 400 and "此页面无法读取地址中的 format" in other.text
    assert "2026-12-31" not in other.text
    # A day it can read but that has not begun anywhere: refused, as the API refuses it
    # (the report showed the days to come as days without use).
    ahead = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
    future = await client.get("/ui/accounts/a/reports/usage", params={"end": ahead})
    assert future.status_code == 400 and f"报告不能截止于 {ahead}" in future.text
    # Outside the dashboard the API's handler answers, as before.
    api = client.app.exception_handlers[RequestValidationError]  # type: ignore[attr-defined]
    request = Request({"type": "http", "path": "/v1/health", "headers": [], "query_string": b""})
    answer = await api(request, RequestValidationError([{"loc": ("query", "as_of")}]))
    assert answer.status_code == 422 and answer.media_type == "application/json"


async def test_a_page_address_with_a_nul_byte_gets_a_page_the_api_its_json(
    client: httpx.AsyncClient,
) -> None:
    """``/ui/?q=%00`` answered the API's English JSON (found by a CS lead); the page's
    language links do not carry the byte back."""
    client.cookies.set("hw_lang", "zh-CN", path="/ui")
    ui = await client.get("/ui/?q=%00")
    assert ui.status_code == 400 and ui.headers["content-type"].startswith("text/html")
    assert "此地址中含有 NUL 字节" in ui.text
    assert "%00" not in ui.text.replace("（%00）", "")
    api = await client.get("/v1/health?q=%00")
    assert api.status_code == 400 and api.json()["code"] == "bad_request"


async def test_a_page_the_dashboard_does_not_have_gets_its_error_page(
    client: httpx.AsyncClient,
) -> None:
    """An unknown /ui/ address answered the API's English JSON ("No route …")."""
    client.cookies.set("hw_lang", "zh-CN", path="/ui")
    missing = await client.get("/ui/no-such-page")
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
    assert "看板中没有此页面" in missing.text and 'href="/ui/"' in missing.text
    posted = await client.post("/ui/no-such-form", data={"x": "1"})
    assert posted.status_code == 404 and "看板中没有此页面" in posted.text  # was a 405
    # The static files and the real pages are still found.
    assert (await client.get("/ui/login")).status_code == 200
    static = sorted((Path(dashboard_app.__file__).parent / "static").iterdir())[0]
    assert (await client.get(f"/ui/static/{static.name}")).status_code == 200


async def test_numbers_in_other_scripts_are_no_numbers_not_a_500(client: httpx.AsyncClient) -> None:
    """``str.isdigit`` takes "²" and "①", ``int()`` refuses them: a hand-edited address
    gave 500s (found from outside). They read as no number: the page's default, or 404."""
    assert (await sign_in(client, Role.cs_lead)).status_code == 303
    for path, params in (
        ("/ui/", {"page": "²"}),
        ("/ui/", {"renewal_within_days": "①"}),
        ("/ui/lead", {"days": "²"}),
        ("/ui/alerts", {"page": "²"}),
    ):
        answer = await client.get(path, params=params)
        assert answer.status_code == 200, (path, params, answer.text[:300])
    assert (await client.get("/ui/cases/%C2%B2")).status_code == 404
