"""Settings for production (issue 11, item 17): the dashboard's cookies are Secure except
on plain http://localhost (or as HEALTHWATCH_COOKIE_SECURE says), STARTTLS is on by
default, and a start with unsigned webhooks or clear-text SMTP says so. The deployment
files' side (no credential in the ConfigMap, no default password in Compose) is in
tests/unit/test_deploy_files.py."""

from __future__ import annotations

import logging

import httpx
import pytest
from pydantic import SecretStr
from starlette.requests import Request

from services.cli.serve import warn_about_settings
from services.dashboard.auth import secure_cookies
from shared.auth import Role, create_key, role_scopes
from shared.config import Settings
from tests.support.harness import running


def _request(scheme: str, host: str) -> Request:
    return Request(
        {
            "type": "http",
            "scheme": scheme,
            "server": (host, 443 if scheme == "https" else 80),
            "path": "/ui/login",
            "headers": [(b"host", host.encode())],
            "query_string": b"",
        }
    )


@pytest.mark.parametrize(
    ("setting", "scheme", "host", "secure"),
    [
        (None, "http", "localhost:8000", False),  # development
        (None, "http", "127.0.0.1:8000", False),
        (None, "http", "[::1]:8000", False),
        (None, "http", "app.localhost", False),
        (None, "https", "localhost", True),
        (None, "https", "healthwatch.example.com", True),
        (None, "http", "healthwatch.example.com", True),  # behind a TLS-terminating proxy
        (None, "http", "10.0.0.5:8000", True),
        (False, "http", "healthwatch.example.com", False),  # plain http on purpose
        (True, "http", "localhost:8000", True),
    ],
)
def test_cookie_secure_setting(setting: bool | None, scheme: str, host: str, secure: bool) -> None:
    settings = Settings(_env_file=None, cookie_secure=setting)  # type: ignore[call-arg]
    assert secure_cookies(settings, _request(scheme, host)) is secure


async def test_sign_in_cookies_are_secure_unless_on_localhost(embedded_settings: Settings) -> None:
    async with running(embedded_settings, scoring=False, alerts=False) as hw:
        key = await create_key(hw.rt.engine, "lead", role_scopes(Role.cs_lead, None))
        for host, secure in (("127.0.0.1", False), ("healthwatch.example.com", True)):
            async with httpx.AsyncClient(base_url=hw.url, headers={"Host": host}) as browser:
                form = await browser.get("/ui/login")
                assert ("; secure" in form.headers["set-cookie"].lower()) is secure, host
                csrf = form.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
                # A test client over http keeps a Secure cookie but would not send it back.
                browser.cookies.set("hw_dashboard_login", form.cookies["hw_dashboard_login"])
                signed = await browser.post(
                    "/ui/login", data={"csrf": csrf, "key": key, "next": "/ui/"}
                )
                assert signed.status_code == 303, (host, signed.text[:300])
                cookie = signed.headers["set-cookie"].lower()
                assert cookie.startswith("hw_dashboard=") and ("; secure" in cookie) is secure


def test_defaults_are_production_safe() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.smtp_starttls is True and settings.cookie_secure is None


@pytest.mark.parametrize(
    ("values", "warned"),
    [
        ({"webhook_url": "https://hooks.example.com/x"}, "go out unsigned"),
        ({"webhook_url": "https://hooks.example.com/x", "webhook_secret": SecretStr("s")}, None),
        ({"smtp_host": "smtp.example.com", "smtp_starttls": False}, "clear text"),
        ({"smtp_host": "smtp.example.com"}, None),
    ],
)
def test_a_start_warns_about_unsafe_delivery_settings(
    values: dict[str, object], warned: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(_env_file=None, **values)  # type: ignore[call-arg, arg-type]
    with caplog.at_level(logging.WARNING):
        warn_about_settings(settings, logging.getLogger("healthwatch.test"))
    messages = [r.getMessage() for r in caplog.records]
    if warned is None:
        assert messages == []
    else:
        assert len(messages) == 1 and warned in messages[0]


async def test_libpqs_sslmode_in_the_database_url_is_taken(database_url: str) -> None:
    """``?sslmode=require`` (a habit of every PostgreSQL URL) ended the start with a
    370-line traceback from asyncpg; it is libpq's name for asyncpg's ``ssl``."""
    from sqlalchemy import text

    from shared.storage.db import _asyncpg_url, create_engine

    engine = create_engine(database_url + "?sslmode=disable")  # the test server has no TLS
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("select 1"))).scalar() == 1
    finally:
        await engine.dispose()
    # Every mode goes to asyncpg under its own name for it.
    for mode in ("require", "verify-full"):
        url = _asyncpg_url(f"postgresql+asyncpg://u:p@db.example.com/hw?sslmode={mode}")
        assert url.query == {"ssl": mode}
    with pytest.raises(ValueError, match="sslmode='requir': use one of disable, allow"):
        Settings(_env_file=None, database_url=database_url + "?sslmode=requir")  # type: ignore[call-arg]
