"""A request that PostgreSQL aborts to break a deadlock is a 503 to send again, on the
API and on the dashboard's forms, never a 500; sent again, it succeeds.

A silence set while the alerts service stored a batch in which a critical alert muted
the silenced rule's alert could wait for it in a circle; PostgreSQL aborted one side.
The intake retries its batch (``shared.worker.is_transient``), but the silence's
request answered a bare 500. Here the circle is made on purpose: a second connection
holds the silence's row and then asks for the (account, rule)'s silence lock, which the
request took first."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.alerts.silences import SILENCE_LOCK_SPACE
from shared.auth import Scope, create_key
from shared.config import Settings
from shared.contracts.alerts import AlertEvent, Severity
from shared.contracts.events import Owner
from shared.storage.tables import accounts, alerts, rule_silences
from tests.support.harness import running, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ACCOUNT, RULE = "acme", "low_activity"
ALERT_ID = f"{ACCOUNT}:{RULE}:1"


async def _account_and_alert(engine: AsyncEngine) -> None:
    now = datetime.now(UTC)
    event = AlertEvent(
        alert_id=ALERT_ID,
        account_id=ACCOUNT,
        rule=RULE,
        severity=Severity.warning,
        title="acme: low activity",
        summary="",
        owner=Owner(email="anna@example.com"),
        fired_at=now,
    )
    async with engine.begin() as conn:
        await conn.execute(
            insert(accounts).values(
                account_id=ACCOUNT,
                owner_email="anna@example.com",
                facts={},
                facts_occurred_at=now,
                updated_at=now,
            )
        )
        await conn.execute(
            insert(alerts).values(
                alert_id=ALERT_ID,
                account_id=ACCOUNT,
                rule=RULE,
                severity="warning",
                status="firing",
                title=event.title,
                payload=event.model_dump(mode="json"),
                owner_email="anna@example.com",
                fired_at=now,
                stored_at=now,
            )
        )


@asynccontextmanager
async def _circle(engine: AsyncEngine) -> AsyncIterator[asyncio.Event]:
    """While the block runs: a transaction holding the pair's silence row. Set the
    yielded event once the request waits for that row; this side then asks for the
    pair's silence lock, which the request holds, and PostgreSQL aborts the request
    (this side's own deadlock check waits 10 s, the request's 1 s, so the request's runs
    first and finds the circle)."""
    waiting = asyncio.Event()
    async with engine.connect() as conn, conn.begin() as tx:
        await conn.execute(text("SET LOCAL deadlock_timeout = '10s'"))
        s = rule_silences.c
        held = select(rule_silences).where(s.account_id == ACCOUNT, s.rule == RULE)
        assert (await conn.execute(held.with_for_update())).first() is not None

        async def close_the_circle() -> None:
            await waiting.wait()
            await conn.execute(
                text("SELECT pg_advisory_xact_lock(:space, hashtext(:key))"),
                {"space": SILENCE_LOCK_SPACE, "key": f"{ACCOUNT}\x1f{RULE}"},
            )

        closing = asyncio.create_task(close_the_circle())
        try:
            yield waiting
        finally:
            if not waiting.is_set():
                closing.cancel()  # the request never came to wait: no circle to close
            await asyncio.gather(closing, return_exceptions=True)
            await tx.rollback()


async def _waits_for_the_row(engine: AsyncEngine) -> bool:
    async with engine.connect() as conn:
        q = text(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE '%rule_silences%' AND query NOT LIKE '%pg_stat_activity%'"
        )
        return bool((await conn.execute(q)).scalar_one())


async def _collide(
    engine: AsyncEngine, send: asyncio.Task[httpx.Response], waiting: asyncio.Event
) -> httpx.Response:
    await wait_for(lambda: _waits_for_the_row(engine), timeout=30, what="the request to wait")
    waiting.set()
    return await send


async def test_a_request_aborted_by_a_deadlock_is_a_503_to_send_again(
    kafka_settings: Settings,
) -> None:
    async with running(kafka_settings, scoring=False, alerts=False) as hw:
        engine = hw.rt.engine
        await _account_and_alert(engine)
        lead = await create_key(engine, "lead", [Scope.read, Scope.respond])
        body = {"account_id": ACCOUNT, "rule": RULE, "for": "2d"}
        async with httpx.AsyncClient(
            base_url=hw.url, headers={"Authorization": f"Bearer {lead}"}, timeout=60
        ) as api:
            assert (await api.put("/v1/silences", json=body)).status_code == 200
            longer = {**body, "for": "5d"}
            async with _circle(engine) as waiting:
                r = await _collide(
                    engine, asyncio.create_task(api.put("/v1/silences", json=longer)), waiting
                )
            assert r.status_code == 503, r.text
            assert r.json()["code"] == "busy" and "send the request again" in r.json()["message"]
            assert int(r.headers["Retry-After"]) >= 1
            again = await api.put("/v1/silences", json=longer)
            assert again.status_code == 200, again.text
            until = datetime.fromisoformat(again.json()["until"])
            assert until > datetime.now(UTC) + timedelta(days=4)

        async with httpx.AsyncClient(base_url=hw.url, timeout=60) as browser:
            form = await browser.get("/ui/login")
            csrf = form.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
            signed = await browser.post("/ui/login", data={"csrf": csrf, "key": lead})
            assert signed.status_code == 303
            page = await browser.get(f"/ui/alerts/{ALERT_ID}")
            csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
            silence_form = {"csrf": csrf, "alert_id": ALERT_ID, "days": "30"}
            async with _circle(engine) as waiting:
                sent = asyncio.create_task(browser.post("/ui/alerts/silence", data=silence_form))
                r = await _collide(engine, sent, waiting)
            assert r.status_code == 503 and "send the form again" in r.text, r.text
            assert int(r.headers["Retry-After"]) >= 1
            again = await browser.post("/ui/alerts/silence", data=silence_form)
            assert again.status_code == 303, again.text
            assert again.headers["location"].endswith("done=silence")
