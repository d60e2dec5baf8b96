"""Values PostgreSQL cannot hold (a NUL character, an id past its column) are the
client's to fix: a 4xx naming what to correct, never a 503 that tells a Segment SDK to
retry forever, nor a 500 from a dashboard form (found from outside)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from services.dashboard.app import mount_dashboard
from services.ingest.app import create_app
from shared.auth import Role, Scope, create_key, role_scopes
from shared.bus.embedded import EmbeddedBus
from shared.config import Settings
from shared.storage.db import create_engine, migrate, unstorable_value


@pytest.fixture
async def on_postgres(
    embedded_settings: Settings, database_url: str
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str], Any]]:
    settings = embedded_settings.model_copy(update={"database_url": database_url})
    engine = create_engine(database_url)
    await migrate(engine)

    async def ready() -> str | None:
        return None  # ready

    bus = EmbeddedBus(engine)
    app = create_app(settings, engine, bus, registry=CollectorRegistry(), ready=ready)
    mount_dashboard(app, engine, settings, bus)
    keys = {
        "ingest": await create_key(engine, "ingest", [Scope.ingest]),
        "lead": await create_key(engine, "lead", role_scopes(Role.cs_lead, None)),
    }
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://localhost"
    ) as client:
        yield client, keys, engine
    await engine.dispose()


async def test_segment_ids_postgresql_cannot_hold_are_refused_not_a_503(
    on_postgres: tuple[httpx.AsyncClient, dict[str, str], Any],
) -> None:
    client, keys, _ = on_postgres
    auth = {"Authorization": f"Bearer {keys['ingest']}"}
    base = {"messageId": "m1", "timestamp": "2026-12-01T08:00:00Z"}
    for path, body, field in (
        ("/v1/track", {**base, "type": "track", "event": "e", "userId": "u" * 201}, "userId"),
        ("/v1/track", {**base, "type": "track", "event": "e", "userId": "u\x00x"}, "userId"),
        ("/v1/group", {**base, "type": "group", "userId": "u" * 201, "groupId": "a"}, "userId"),
        (
            "/v1/identify",
            {**base, "type": "identify", "userId": "u", "context": {"groupId": "a\x00"}},
            "context.groupId",
        ),
    ):
        answer = await client.post(path, json=body, headers=auth)
        assert answer.status_code == 400, (path, answer.status_code, answer.text)
        assert field in answer.text


async def test_a_dashboard_form_value_postgresql_cannot_hold_gets_a_page_to_correct_it(
    on_postgres: tuple[httpx.AsyncClient, dict[str, str], Any],
) -> None:
    client, keys, engine = on_postgres
    form = await client.get("/ui/login")
    csrf = re.search(r'name="csrf" value="([^"]*)"', form.text)
    assert csrf
    signed = await client.post("/ui/login", data={"csrf": csrf.group(1), "key": keys["lead"]})
    assert signed.status_code == 303
    home = await client.get("/ui/")
    token = re.search(r'name="csrf" value="([^"]*)"', home.text)
    assert token
    client.cookies.set("hw_lang", "zh-CN", path="/ui")
    refused = await client.post(
        "/ui/workload/reassign",
        data={"csrf": token.group(1), "account_ids": "a\x00b", "to_owner": "x@example.com"},
    )
    assert refused.status_code == 422, refused.text[:500]
    assert "您输入的某个值无法保存" in refused.text
    # What the handlers tell apart: a value refused, not the database down.
    async with engine.connect() as conn:
        with pytest.raises(DBAPIError) as caught:
            await conn.execute(text("SELECT CAST(:v AS text)"), {"v": "a\x00b"})
    assert unstorable_value(caught.value)
    assert not unstorable_value(DBAPIError("SELECT 1", {}, ConnectionRefusedError()))
    # A division by zero is class 22 too, but our bug: a 500, not the client's 422.
    async with engine.connect() as conn:
        with pytest.raises(DBAPIError) as ours:
            await conn.execute(text("SELECT 1 / count(*) FROM accounts WHERE false"))
    assert not unstorable_value(ours.value)


async def test_a_portfolio_past_postgresqls_parameter_limit_is_read(
    on_postgres: tuple[httpx.AsyncClient, dict[str, str], Any],
) -> None:
    """A lead seeing more than 32,767 accounts got a 500 on the home page: each visible
    id was a parameter of an IN list, and PostgreSQL takes at most 32,767."""
    client, keys, engine = on_postgres
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO accounts (account_id, facts, facts_occurred_at, updated_at) "
                "SELECT 'acct-' || n, '{}'::json, now(), now() FROM generate_series(1, 33000) n"
            )
        )
        await conn.execute(
            text(
                "INSERT INTO account_health (account_id, as_of, active_users_7d, "
                "active_users_30d, events_7d, open_tickets, score, band, updated_at) "
                "SELECT 'acct-' || n, now(), 1, 1, 1, 0, 50, 'yellow', now() "
                "FROM generate_series(1, 33000) n"
            )
        )
    form = await client.get("/ui/login")
    csrf = re.search(r'name="csrf" value="([^"]*)"', form.text)
    assert csrf
    signed = await client.post("/ui/login", data={"csrf": csrf.group(1), "key": keys["lead"]})
    assert signed.status_code == 303
    for path in ("/ui/", "/ui/lead", "/ui/renewals", "/ui/plans"):
        answer = await client.get(path)
        assert answer.status_code == 200, (path, answer.text[:300])
