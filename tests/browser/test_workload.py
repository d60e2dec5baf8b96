"""The CSM workload and NPS pages in real headless Chromium against a running embedded
stack, in English and Chinese: a CSM's touchpoints due on their home (logging the visit
clears it), the lead's workload view (load per CSM, its chart, reassigning an account,
which scoring applies and the account's alert follows), and the NPS page (segments, the
monthly trend, the advocacy list). Screenshots are kept as artefacts."""

from __future__ import annotations

import urllib.parse
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

from shared.auth import Role, create_key, role_scopes
from shared.config import Settings
from shared.storage.tables import accounts, alerts, touchpoint_log
from tests.browser.chromium import Browser
from tests.support.harness import Harness, at, facts, processed, running, usage, wait_for

pytestmark = pytest.mark.integration

ANNA, CARL = "anna@example.com", "carl@example.com"


async def _send(hw: Harness, path: str, body: dict[str, Any], count: int) -> None:
    before = await processed(hw)
    async with hw.client() as client:
        r = await client.post(path, json=body)
        assert r.status_code == 202, r.text

    async def done() -> bool:
        return await processed(hw) >= before + count

    await wait_for(done, timeout=60, what=f"{count} events scored")


def _event(kind: str, account: str, days_ago: float, **fields: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "event_id": uuid.uuid4().hex,
        "account_id": account,
        "occurred_at": at(days_ago),
        **fields,
    }


async def _seed(hw: Harness) -> None:
    live = (date.today() - timedelta(days=300)).isoformat()
    people = [
        facts("big", seats=10, email=ANNA, tier="strategic", arr=240_000.0, go_live=live),
        facts("mid", seats=10, email=ANNA, tier="enterprise", arr=60_000.0, go_live=live),
        facts("far", seats=10, email=CARL, tier="enterprise", arr=30_000.0, go_live=live),
        facts("tiny", seats=10, email=CARL, tier="non-focus", arr=2_000.0, industry="retail"),
    ]
    await _send(hw, "/v1/accounts", {"accounts": people}, len(people))
    events = [usage(a, f"{a}-u{u}", days_ago=0.01) for a in ("big", "mid", "far", "tiny") for u in (0, 1)]  # fmt: skip
    events += [
        _event("touchpoint", "big", 45, touchpoint_kind="visit"),  # 15 days overdue
        _event("touchpoint", "big", 50, touchpoint_kind="qbr"),  # the next in 41 days
        _event("touchpoint", "mid", 20, touchpoint_kind="call"),
        _event("touchpoint", "far", 70, touchpoint_kind="call"),  # 9 days overdue
        _event("nps", "big", 10, user_id="li@big.example", score=10, comment="They listen"),
        _event("nps", "big", 40, user_id="wu@big.example", score=6),
        _event("nps", "mid", 50, user_id="cfo@mid.example", score=9),
        _event("nps", "tiny", 15, user_id="x@tiny.example", score=3),
    ]
    await _send(hw, "/v1/events", {"events": events}, len(events))
    now = datetime.now(UTC)
    async with hw.rt.engine.begin() as conn:
        await conn.execute(
            insert(alerts).values(
                alert_id="big:low_activity:1",
                account_id="big",
                rule="low_activity",
                severity="warning",
                status="firing",
                title="big: only 12% of seats active this week — edge of churn",
                payload={},
                owner_email=ANNA,
                fired_at=now,
                stored_at=now,
            )
        )


async def _in(browser: Browser, lang: str, path: str) -> None:
    await browser.get(f"/ui/language/{lang}?next={urllib.parse.quote(path)}")
    assert await browser.js("return document.documentElement.lang") == lang


async def _rows(browser: Browser, css: str, attribute: str = "accountId") -> list[str]:
    script = "return [...document.querySelectorAll(arguments[0])].map(r => r.dataset[arguments[1]])"
    return list(await browser.js(script, css, attribute))


async def test_due_workload_reassign_and_nps(chromium: Any, tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'hw.db'}",
        kafka_bootstrap="",
        bus_poll_interval_s=0.1,
    )
    async with running(settings, alerts=False) as hw:
        await _seed(hw)
        anna = await create_key(hw.rt.engine, "anna", role_scopes(Role.csm, ANNA), ANNA)
        carl = await create_key(hw.rt.engine, "carl", role_scopes(Role.csm, CARL), CARL)
        lead = await create_key(hw.rt.engine, "lead", role_scopes(Role.cs_lead, None))
        browser = Browser(chromium, hw.url)
        async with hw.client() as client:  # a risk case on Anna's strategic account
            case = {"account_id": "big", "danger_level": "high", "summary": "Low use"}
            r = await client.post("/v1/cases", json=case)
            assert r.status_code in (200, 201), r.text

        # A CSM's home: the overdue visit, logged from the list's link, is no longer due.
        await browser.sign_in(anna)
        assert await _rows(browser, "#touchpoints-due tr.late") == ["big"]
        await browser.screenshot("home-touchpoints-due-en")
        await browser.submit("#touchpoints-due tr[data-account-id=big] a.muted")
        await browser.js(
            "document.querySelector('#log-touchpoint select[name=kind]').value = 'visit'"
        )
        await browser.submit("#log-touchpoint button[type=submit]")

        async def logged() -> bool:
            async with hw.rt.engine.connect() as conn:
                q = select(touchpoint_log).where(touchpoint_log.c.account_id == "big")
                return len((await conn.execute(q)).all()) == 3

        await wait_for(logged, timeout=30, what="scoring to keep the logged visit")
        await browser.get("/ui/")
        assert await _rows(browser, "#touchpoints-due tr.late") == []
        await browser.get("/ui/workload")
        assert await _rows(browser, "#csms tr[data-csm]", "csm") == [ANNA]  # their own line
        assert await browser.texts("#reassign-form") == []  # a CSM may not reassign

        # The lead: every CSM's load, the chart, and a reassignment.
        await browser.sign_in(lead, "/ui/workload")
        assert await _rows(browser, "#csms tr[data-csm]", "csm") == [ANNA, CARL]  # busiest first
        load = await browser.texts(f"#csms tr[data-csm='{ANNA}'] td.load")
        # A share as every page writes one: "10%", not "10.0%" (found from outside).
        assert load == [f"{round((1 / 15 + 1 / 30) * 100)}%"]
        assert await browser.texts(f"#csms tr[data-csm='{ANNA}'] td.open-cases") == ["1"]
        assert await _rows(browser, "#overdue tr[data-account-id]") == ["far"]
        assert await browser.js("return Chart.getChart('chart-load').data.labels") == [ANNA, CARL]
        await browser.fill("#reassign-form textarea", "big")
        await browser.fill("#reassign-form input[name=to_owner]", CARL)
        await browser.submit("#reassign-form button[type=submit]")
        assert any("Reassigned" in n for n in await browser.texts(".notice"))

        async def moved() -> bool:
            async with hw.rt.engine.connect() as conn:
                q = select(accounts.c.owner_email).where(accounts.c.account_id == "big")
                return (await conn.execute(q)).scalar() == CARL

        await wait_for(moved, timeout=30, what="scoring to apply the reassignment")
        await browser.get("/ui/workload")
        assert await _rows(browser, "#csms tr[data-csm]", "csm") == [CARL, ANNA]
        assert await browser.texts(f"#csms tr[data-csm='{CARL}'] td.open-cases") == [
            "1"
        ]  # followed
        await browser.screenshot("workload-en")
        await _in(browser, "zh-CN", "/ui/workload")
        assert "工作量" in await browser.status_of_page()
        assert any("重新分配客户" in t for t in await browser.texts("#reassign h2"))
        await browser.screenshot("workload-zh-CN")

        # The alert followed its account to Carl.
        await browser.sign_in(carl, "/ui/alerts")
        assert await _rows(browser, "tr[data-alert-id]", "alertId") == ["big:low_activity:1"]

        # NPS: per tier over the last year, the trend, the advocacy list; then per CSM.
        await _in(browser, "en", "/ui/nps")
        await browser.sign_in(lead, "/ui/nps")
        assert await _rows(browser, "#segments tr[data-segment]", "segment") == [
            "enterprise",
            "non-focus",
            "strategic",
        ]
        assert await browser.texts("#kpi-nps") == ["0"]  # 2 promoters, 2 detractors
        assert (
            await browser.js("return Chart.getChart('chart-nps-trend').data.datasets.length") == 4
        )
        assert await _rows(browser, "#advocates tr[data-account-id]") == ["big", "mid"]
        await browser.js("document.querySelector('#nps-filters select[name=by]').value = 'csm'")
        await browser.submit("#nps-filters button[type=submit]")
        assert await _rows(browser, "#segments tr[data-segment]", "segment") == [ANNA, CARL]
        await browser.submit("#advocates tr[data-account-id=big] a.muted")
        assert await browser.texts("#account-nps h2 .sub") == ["latest answer 10"]
        await browser.screenshot("nps-en")
        await _in(browser, "zh-CN", "/ui/nps")
        assert any("推荐者名单" in t for t in await browser.texts("#advocates h2"))
        await browser.screenshot("nps-zh-CN")
        assert await browser.console_errors() == []
