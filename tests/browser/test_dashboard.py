"""The web dashboard in real headless Chromium, against a running embedded stack.

One stack per module: two CSMs' accounts with three weeks of daily usage (so the
score has a history to draw), tickets, a touchpoint and the alerts they raise. Then,
through the browser: pages load, every chart is drawn from real data, Acknowledge and
Snooze change the alert, a CSM sees only their own accounts, and sign-in admits the
roles it should, keeps a signed session (never the key) and refuses forged forms.
Screenshots are kept as test artefacts (see ``conftest.py``).
"""

from __future__ import annotations

import os
import re
import shutil
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select

from shared.auth import Role, create_key, role_scopes
from shared.config import Settings
from shared.storage.tables import alerts
from tests.browser.chromium import Browser
from tests.support.alerting import alerting_toml, write_alerting
from tests.support.harness import (
    Harness,
    add_account,
    at,
    running,
    send,
    ticket,
    today_moment,
    usage,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

ANNA, CARL = "anna@example.com", "carl@example.com"
HISTORY_DAYS = 21
MODULES = ["reports", "contacts", "workflow", "reports", "opportunities", "contacts"]
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Stack:
    hw: Harness
    keys: dict[str, str]

    async def alert(self, alert_id: str) -> Any:
        async with self.hw.rt.engine.connect() as conn:
            q = select(alerts).where(alerts.c.alert_id == alert_id)
            return (await conn.execute(q)).one()

    async def open_alert(self, account_id: str, rule: str) -> str:
        """The id of the account's open alert of ``rule``. Not always ``…:1``: the
        sweep at start-up may score an account as of today while its history is still
        arriving day by day, and the rule then fires, recovers and fires again."""
        async with self.hw.rt.engine.connect() as conn:
            q = select(alerts.c.alert_id).where(
                alerts.c.account_id == account_id,
                alerts.c.rule == rule,
                alerts.c.status.in_(("firing", "acknowledged")),
            )
            return str((await conn.execute(q)).scalar_one())


async def _seed(hw: Harness) -> None:
    moment = today_moment()
    soon = (date.today() + timedelta(days=20)).isoformat()
    later = (date.today() + timedelta(days=300)).isoformat()
    common = {"lifecycle_stage": "stable", "contract_end": later}
    big_facts = {"tier": "strategic", "arr": 480_000.0, "lifecycle_stage": "stable"}
    await add_account(hw, "anna-big", seats=20, email=ANNA, contract_end=soon, **big_facts)
    await add_account(
        hw, "anna-small", seats=4, tier="non-focus", arr=6_000.0, email=ANNA, **common
    )
    await add_account(
        hw, "carl-co", seats=10, tier="enterprise", arr=90_000.0, email=CARL, **common
    )
    # Day by day (each day scored on its own, so each has a snapshot): anna-big has 12
    # of 20 seats active for a week, then fewer each day down to 2 for the last week
    # (its score falls); the others stay steady.
    for d in range(HISTORY_DAYS - 1, -1, -1):
        big = 12 if d >= 14 else max(2, 12 - (14 - d) * 10 // 7)
        day = [
            usage("anna-big", f"big-u{u}", days_ago=d, base=moment, event="report_run", module=m)
            for u in range(big)
            for m in MODULES[: 2 + u % 5]
        ]
        day += [usage("anna-small", f"small-u{u}", days_ago=d, base=moment) for u in range(4)]
        day += [usage("carl-co", f"carl-u{u}", days_ago=d, base=moment) for u in range(2)]
        await send(hw, day)
    backlog = [ticket("anna-big", n, "open", n) for n in range(1, 6)]
    backlog += [ticket("carl-co", n, "open", n) for n in range(1, 6)]
    touch = {
        "kind": "touchpoint",
        "event_id": uuid.uuid4().hex,
        "account_id": "anna-big",
        "touchpoint_kind": "call",
        "csm_email": ANNA,
        "occurred_at": at(0, base=moment),
    }
    await send(hw, [*backlog, touch])

    async def alerts_stored() -> bool:
        # The alerts service stores what scoring published a moment after the batch.
        async with hw.rt.engine.connect() as conn:
            q = select(alerts.c.account_id, alerts.c.rule).where(
                alerts.c.status.in_(("firing", "acknowledged"))
            )
            found = {tuple(r) for r in await conn.execute(q)}
        wanted = {
            ("anna-big", "low_activity"),
            ("anna-big", "ticket_backlog"),
            ("carl-co", "ticket_backlog"),
        }
        return wanted <= found

    await wait_for(alerts_stored, timeout=30, what="the seeded alerts stored")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    tmp = tmp_path_factory.mktemp("dashboard")
    rules = alerting_toml(["low_activity", "ticket_backlog"])
    settings = Settings(
        _env_file=None,
        database_url=f"sqlite+aiosqlite:///{tmp / 'hw.db'}",
        kafka_bootstrap="",
        bus_poll_interval_s=0.1,
        alerting_file=write_alerting(tmp / "alerting.toml", rules),
        alert_timer_interval_s=0.2,
    )
    async with running(settings) as hw:
        await _seed(hw)
        keys = {}
        for name, role, email in (
            ("anna", Role.csm, ANNA),
            ("carl", Role.csm, CARL),
            ("lead", Role.cs_lead, None),
            ("admin", Role.admin, None),
            ("ops", Role.ops, None),
            ("ingest", Role.ingest, None),
        ):
            keys[name] = await create_key(hw.rt.engine, name, role_scopes(role, email), email)
        yield Stack(hw, keys)


@pytest.fixture
def browser(chromium: Any, stack: Stack) -> Browser:
    return Browser(chromium, stack.hw.url)


# Pixels of a canvas in a colour (RGB within a tolerance): proof a series was drawn.
COLOUR_PIXELS = """
const [canvas, r, g, b] = arguments;
const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
let painted = 0, coloured = 0;
for (let i = 0; i < data.length; i += 4) {
  if (data[i + 3] === 0) continue;
  painted++;
  if (Math.abs(data[i] - r) < 40 && Math.abs(data[i + 1] - g) < 40 && Math.abs(data[i + 2] - b) < 40) coloured++;
}
return [painted, coloured, canvas.width * canvas.height];
"""
CHART_DATA = """
const chart = Chart.getChart(arguments[0]);
return chart ? chart.data.datasets.map(d => [d.label, d.data.filter(v => v !== null).length, d.data]) : null;
"""
BLUE, PURPLE, RED = (59, 111, 212), (138, 85, 201), (214, 69, 69)


async def _chart(browser: Browser, canvas_id: str, colour: tuple[int, int, int]) -> list[Any]:
    """The chart's datasets, after checking its canvas shows the series' colour."""
    canvas = await browser.js("return document.getElementById(arguments[0])", canvas_id)
    assert canvas is not None, f"no canvas #{canvas_id}"
    datasets = await browser.js(CHART_DATA, canvas)
    assert datasets, f"no Chart.js chart on #{canvas_id}"
    painted, coloured, area = await browser.js(COLOUR_PIXELS, canvas, *colour)
    assert painted > area * 0.01, f"#{canvas_id} is blank"
    assert coloured > 50, f"#{canvas_id} shows no series in {colour}"
    return list(datasets)


async def test_csm_sees_only_their_portfolio_alerts_and_renewals(
    browser: Browser, stack: Stack
) -> None:
    await browser.sign_in(stack.keys["anna"])
    assert (await browser.url()).endswith("/ui/")
    rows = await browser.js(
        "return [...document.querySelectorAll('#portfolio tr[data-account-id]')]"
        ".map(r => r.dataset.accountId)"
    )
    assert rows == ["anna-big", "anna-small"]  # riskiest × most valuable first
    alert_ids = await browser.js(
        "return [...document.querySelectorAll('#alerts tr[data-alert-id]')]"
        ".map(r => r.dataset.alertId)"
    )
    low = await stack.open_alert("anna-big", "low_activity")
    backlog = await stack.open_alert("anna-big", "ticket_backlog")
    # The backlog is muted by the account's critical alert: open, not to do.
    assert low in alert_ids and (backlog in alert_ids) != (await stack.alert(backlog)).muted
    assert all(a.startswith("anna-") for a in alert_ids), alert_ids
    renewals = await browser.texts("#renewals tr[data-account-id] td:first-child")
    assert renewals == ["anna-big Inc"]
    assert "carl-co" not in await browser.js("return document.body.innerText")
    await browser.screenshot("csm-portfolio")

    await browser.get("/ui/accounts/carl-co")
    assert "404" in await browser.status_of_page()
    assert "carl-co Inc" not in await browser.js("return document.body.innerText")
    await browser.screenshot("csm-other-account-404", full_page=False)
    await browser.get("/ui/accounts/anna-small")
    assert "anna-small Inc" in await browser.status_of_page()

    await browser.sign_in(stack.keys["lead"])
    everyone = await browser.js(
        "return [...document.querySelectorAll('#portfolio tr[data-account-id]')]"
        ".map(r => r.dataset.accountId)"
    )
    assert sorted(everyone) == ["anna-big", "anna-small", "carl-co"]


async def test_account_page_draws_its_charts_from_real_data(browser: Browser, stack: Stack) -> None:
    await browser.sign_in(stack.keys["anna"], "/ui/accounts/anna-big")
    assert (await browser.url()).endswith("/ui/accounts/anna-big")
    assert "anna-big Inc" in await browser.status_of_page()
    assert await browser.console_errors() == []

    score = await _chart(browser, "chart-score", BLUE)
    (label, points, values), *bands = score
    assert label == "Health score" and points >= HISTORY_DAYS - 2, score
    scores = [v for v in values if v is not None]
    assert scores[-1] < max(scores) - 10, f"the score fell when use fell: {values}"
    assert [b[2][0] for b in bands] == [40, 70]  # the band lines
    share = await _chart(browser, "chart-active-share", PURPLE)
    assert share[0][1] >= HISTORY_DAYS - 2 and share[0][2][-1] == 10.0  # 2 of 20 seats
    modules = await _chart(browser, "chart-modules", BLUE)
    assert modules[0][1] >= 4

    components = await browser.texts("#components tbody tr")
    assert len(components) >= 5
    changes = await browser.texts(".card li")
    # What changed names the model's measures (issue 15: labels, not ids).
    assert any("Active users over 7 days" in c for c in changes), changes
    assert len(await browser.texts("#tickets tbody tr")) == 5
    assert len(await browser.texts("#touchpoints li")) == 1
    open_alerts = await browser.js(
        "return [...document.querySelectorAll('#open-alerts tr[data-alert-id]')]"
        ".map(r => r.dataset.alertId)"
    )
    low = await stack.open_alert("anna-big", "low_activity")
    backlog = await stack.open_alert("anna-big", "ticket_backlog")
    assert set(open_alerts) >= {low, backlog}
    shot = await browser.screenshot("account-page")
    if os.environ.get("HEALTHWATCH_UPDATE_DOCS_SCREENSHOT"):
        shutil.copyfile(shot, ROOT / "docs" / "dashboard.png")


async def test_lead_view_trends_and_totals(browser: Browser, stack: Stack) -> None:
    await browser.sign_in(stack.keys["lead"], "/ui/lead")
    assert (await browser.url()).endswith("/ui/lead")
    assert await browser.texts("#kpi-accounts") == ["3"]
    customers = await _chart(browser, "chart-customers", BLUE)
    assert customers[0][2][-1] == 3
    active = await _chart(browser, "chart-active-users", PURPLE)
    assert active[0][2][-1] == 2 + 4 + 2
    shares = await _chart(browser, "chart-shares", (46, 125, 74))
    assert shares[0][1] > 0 and shares[1][0] == "Churned share"
    bands = await _chart(browser, "chart-bands", RED)
    assert sum(bands[0][2]) == 3
    by_rule = await _chart(browser, "chart-alerts", RED)
    assert sum(by_rule[0][2]) >= 3  # anna-big: low activity and backlog; carl-co: backlog
    await browser.screenshot("lead-view")

    await browser.sign_in(stack.keys["anna"], "/ui/lead")
    assert await browser.texts("#kpi-accounts") == ["2"]
    mine = await _chart(browser, "chart-customers", BLUE)
    assert mine[0][2][-1] == 2


async def test_acknowledge_and_snooze_buttons_change_the_alert(
    browser: Browser, stack: Stack
) -> None:
    # The account's critical alert: the first of the home page's alerts to do.
    backlog = await stack.open_alert("anna-big", "low_activity")
    assert (await stack.alert(backlog)).status == "firing"
    await browser.sign_in(stack.keys["anna"])
    await browser.submit(f"tr[data-alert-id='{backlog}'] form[action$='/acknowledge'] button")
    assert "done=acknowledged" in await browser.url()
    assert any("acknowledged" in n for n in await browser.texts(".notice"))
    row = await stack.alert(backlog)
    assert row.status == "acknowledged" and row.acknowledged_by == ANNA
    async with stack.hw.client() as api:
        answer = (await api.get(f"/v1/alerts/{backlog}")).json()
    assert answer["status"] == "acknowledged"
    assert [a["action"] for a in answer["activity"]] == ["acknowledge"]
    # Acknowledged, it leaves the alerts to do; the open alerts say who has it.
    assert not await browser.texts(f"#alerts tr[data-alert-id='{backlog}']")
    await browser.get("/ui/alerts?state=open")
    status = await browser.texts(f"tr[data-alert-id='{backlog}'] td.status")
    assert status[0].startswith("acknowledged")
    await browser.screenshot("after-acknowledge", full_page=False)

    low = await stack.open_alert("anna-big", "ticket_backlog")
    await browser.get("/ui/accounts/anna-big")
    await browser.submit(f"tr[data-alert-id='{low}'] form[action$='/snooze'] button")
    assert (await browser.url()).endswith("/ui/accounts/anna-big?done=snoozed")
    until = (await stack.alert(low)).snoozed_until
    assert until is not None
    assert timedelta(hours=23) < until - datetime.now(UTC) <= timedelta(days=1)


async def _session(stack: Stack, key: str) -> str:
    """A dashboard session cookie's value for ``key``, signed in as a browser would."""
    async with httpx.AsyncClient(base_url=stack.hw.url) as c:
        page = await c.get("/ui/login")
        token = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
        assert token is not None
        r = await c.post("/ui/login", data={"csrf": token.group(1), "key": key})
        assert r.status_code == 303
        return str(c.cookies["hw_dashboard"])


async def test_sign_in_roles_cookie_and_csrf(browser: Browser, stack: Stack) -> None:
    await browser._run(browser.driver.delete_all_cookies)
    await browser.get("/ui/accounts/anna-big")
    assert "/ui/login?next=" in await browser.url()
    await browser.fill("input[name=key]", "hwk_nope_nope")
    await browser.submit("form[action='/ui/login'] button[type=submit]")
    assert any("Unknown or revoked key" in e for e in await browser.texts(".error"))

    # Login CSRF: a sign-in form without its pre-session cookie (as when another site's
    # page posts it: the cookie is SameSite=Strict) signs nobody in.
    await browser._run(browser.driver.delete_cookie, "hw_dashboard_login")
    await browser.fill("input[name=key]", stack.keys["admin"])
    await browser.submit("form[action='/ui/login'] button[type=submit]")
    assert "403" in await browser.status_of_page()
    body = await browser.js("return document.body.innerText")
    assert "Reload the sign-in page and try again" in body and stack.keys["admin"] not in body
    assert await browser._run(browser.driver.get_cookie, "hw_dashboard") is None
    await browser.screenshot("login-csrf-403", full_page=False)

    for role in ("ingest", "ops"):
        await browser.sign_in(stack.keys[role])
        heading = await browser.status_of_page()
        assert "403" in heading, (role, heading)
        body = await browser.js("return document.body.innerText")
        assert "lacks the 'read' scope" in body and stack.keys[role] not in body
    await browser.screenshot("ingest-key-403", full_page=False)

    await browser.sign_in(stack.keys["admin"])
    assert "Portfolio" in await browser.status_of_page()
    # HttpOnly: scripts never see the session (only the time-zone preference tz.js sets).
    assert (await browser.js("return document.cookie")).split("=")[0] == "hw_tz"
    cookie = await browser._run(browser.driver.get_cookie, "hw_dashboard")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui"
    # A signed session, not the key: neither the key nor its secret part is in it.
    assert stack.keys["admin"].rsplit("_", 1)[1] not in cookie["value"]
    assert await browser._run(browser.driver.get_cookie, "hw_dashboard_login") is None
    assert stack.keys["admin"] not in await browser.js("return document.documentElement.outerHTML")

    # A forged form (another site's page, which cannot know the token) changes nothing.
    target = "carl-co:ticket_backlog:1"
    path = f"/ui/alerts/{urllib.parse.quote(target)}/acknowledge"
    lead = await _session(stack, stack.keys["lead"])
    async with httpx.AsyncClient(base_url=stack.hw.url, cookies={"hw_dashboard": lead}) as c:
        forged = await c.post(path, data={"csrf": "0" * 64, "next": "/ui/"})
        assert forged.status_code == 403
        assert (await c.post(path, data={"next": "/ui/"})).status_code == 403
    assert (await stack.alert(target)).status == "firing"
    # Carl's alert is not Anna's to act on, even with a valid token.
    await browser.sign_in(stack.keys["anna"])
    token = await browser.js("return document.querySelector('input[name=csrf]').value")
    anna = (await browser._run(browser.driver.get_cookie, "hw_dashboard"))["value"]
    async with httpx.AsyncClient(base_url=stack.hw.url, cookies={"hw_dashboard": anna}) as c:
        r = await c.post(path, data={"csrf": token, "next": "/ui/"})
        assert r.status_code == 303 and r.headers["location"] == "/ui/?done=gone"
    assert (await stack.alert(target)).status == "firing"

    await browser.submit("form[action='/ui/logout'] button")
    assert "/ui/login" in await browser.url()
    await browser.get("/ui/")
    assert "/ui/login?next=" in await browser.url()
