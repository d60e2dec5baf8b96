"""The pages to work in, in real headless Chromium against a running embedded stack, in
English and Chinese: the portfolio (search, filters, sorting, pages, a saved view), the
boss view (time range, per-CSM breakdown, churn), the alerts page with every action, and
logging a touchpoint that scoring then counts. Screenshots are kept as artefacts.

The accounts and their usage go through the API and are scored by the real services.
The alerts are written to the alerts table directly: which alerts fire is the alert
rules' business (tested with them); these pages list and act on whatever is stored.
"""

from __future__ import annotations

import os
import shutil
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import insert, select

from shared.auth import Role, create_key, role_scopes
from shared.config import Settings
from shared.storage.tables import account_health, alert_activity, alerts
from tests.browser.chromium import Browser
from tests.support.harness import Harness, facts, processed, running, usage, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

ANNA, CARL = "anna@example.com", "carl@example.com"
ACCOUNTS = 28  # more than a page of 25
CHURNED = "acct-27"
DOCS = Path(__file__).resolve().parents[2] / "docs"


def _id(i: int) -> str:
    return f"acct-{i:02d}"


def _for_readme(shot: Path) -> None:
    """Copy a screenshot the README shows into docs/ (HEALTHWATCH_UPDATE_DOCS_SCREENSHOT)."""
    if os.environ.get("HEALTHWATCH_UPDATE_DOCS_SCREENSHOT"):
        shutil.copyfile(shot, DOCS / shot.name)


@dataclass
class Stack:
    hw: Harness
    keys: dict[str, str]

    async def one(self, q: Any) -> Any:
        async with self.hw.rt.engine.connect() as conn:
            return (await conn.execute(q)).one()


async def _send_and_wait(hw: Harness, path: str, body: dict[str, Any], count: int) -> None:
    before = await processed(hw)
    async with hw.client() as client:
        r = await client.post(path, json=body)
        assert r.status_code == 202, r.text

    async def done() -> bool:
        return await processed(hw) >= before + count

    await wait_for(done, timeout=60, what=f"{count} events scored")


async def _seed(hw: Harness) -> None:
    soon = (date.today() + timedelta(days=20)).isoformat()
    people = []
    for i in range(ACCOUNTS):
        extra: dict[str, Any] = {
            "tier": "strategic" if i % 4 == 0 else "enterprise",
            "arr": 12_000.0 * (i + 1),
            "lifecycle_stage": "churned" if _id(i) == CHURNED else "stable",
            "contract_end": soon if i < 3 else "2030-01-01",
        }
        people.append(facts(_id(i), seats=10, email=ANNA if i < 20 else CARL, **extra))
    await _send_and_wait(hw, "/v1/accounts", {"accounts": people}, ACCOUNTS)
    # Busier accounts score higher: a spread of scores and bands to sort by.
    events = [
        usage(_id(i), f"{_id(i)}-u{u}", days_ago=0.01 + d)
        for i in range(ACCOUNTS)
        for u in range(1 + i % 8)
        for d in (0, 1)
    ]
    await _send_and_wait(hw, "/v1/events", {"events": events}, len(events))
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = [
        {
            "alert_id": f"{_id(i)}:{rule}:1",
            "account_id": _id(i),
            "rule": rule,
            "severity": "critical" if i == 1 else "warning",
            "status": "firing",
            "title": TITLES[rule].format(name=_id(i)),
            "payload": {},
            "owner_email": ANNA if i < 20 else CARL,
            "fired_at": now - timedelta(minutes=i),
            "stored_at": now,
        }
        for i in range(14)
        for rule in (("low_activity", "ticket_backlog") if i < 2 else ("low_activity",))
    ]
    async with hw.rt.engine.begin() as conn:
        await conn.execute(insert(alerts), rows)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    tmp = tmp_path_factory.mktemp("portfolio")
    settings = Settings(
        _env_file=None,
        database_url=f"sqlite+aiosqlite:///{tmp / 'hw.db'}",
        kafka_bootstrap="",
        bus_poll_interval_s=0.1,
    )
    async with running(settings, alerts=False) as hw:
        await _seed(hw)
        keys = {
            "anna": await create_key(hw.rt.engine, "anna", role_scopes(Role.csm, ANNA), ANNA),
            "lead": await create_key(hw.rt.engine, "lead", role_scopes(Role.cs_lead, None)),
        }
        yield Stack(hw, keys)


@pytest.fixture
def browser(chromium: Any, stack: Stack) -> Browser:
    return Browser(chromium, stack.hw.url)


async def _in(browser: Browser, lang: str, path: str) -> None:
    """Switch the dashboard to ``lang`` (the language link every page has) on ``path``."""
    await browser.get(f"/ui/language/{lang}?next={urllib.parse.quote(path)}")
    assert await browser.js("return document.documentElement.lang") == lang


async def _ids(browser: Browser, css: str, attribute: str = "accountId") -> list[str]:
    return list(
        await browser.js(
            "return [...document.querySelectorAll(arguments[0])].map(r => r.dataset[arguments[1]])",
            css,
            attribute,
        )
    )


async def _pick(browser: Browser, css: str, value: str) -> None:
    await browser.js("document.querySelector(arguments[0]).value = arguments[1]", css, value)


async def test_portfolio_search_filter_sort_pages_and_saved_view(
    browser: Browser, stack: Stack
) -> None:
    await browser.sign_in(stack.keys["lead"])
    rows = await _ids(browser, "#portfolio tr[data-account-id]")
    assert len(rows) == 25
    assert "28" in " ".join(await browser.texts("#portfolio-count"))
    assert await browser.texts("#alerts-total") == ["16"]  # every open alert, not a cap
    assert len(await _ids(browser, "#alerts tr[data-alert-id]", "alertId")) == 10
    await browser.screenshot("portfolio-en")
    await browser.submit("nav.pager a[rel=next]")
    assert len(await _ids(browser, "#portfolio tr[data-account-id]")) == 3
    assert "page=2" in await browser.url()

    # Filters through the form: Carl's strategic accounts, by ARR, largest first.
    await browser.get("/ui/")
    await _pick(browser, "select[name=csm]", CARL)
    await _pick(browser, "select[name=tier]", "strategic")
    await browser.submit("#portfolio-filters button[type=submit]")
    carls = [_id(i) for i in range(20, ACCOUNTS) if i % 4 == 0]
    assert sorted(await _ids(browser, "#portfolio tr[data-account-id]")) == carls
    await browser.submit("th a[data-sort=arr]")
    await browser.submit("th a[data-sort=arr]")  # a second click: the other way round
    by_arr = await _ids(browser, "#portfolio tr[data-account-id]")
    assert by_arr == sorted(carls)  # ARR grows with the number: smallest first now
    assert "dir=asc" in await browser.url()

    # Saved under a name, it comes back from the menu on a later visit.
    await browser.fill("#save-view input[name=name]", "Carl strategic")
    await browser.submit("#save-view button:not([name])")
    assert any("View saved" in n for n in await browser.texts(".notice"))
    await browser.get("/ui/?q=acct-0")
    assert len(await _ids(browser, "#portfolio tr[data-account-id]")) == 10
    await browser.js("document.querySelector('#saved-views').open = true")
    await browser.submit("#saved-views a[data-view='Carl strategic']")
    assert await _ids(browser, "#portfolio tr[data-account-id]") == by_arr
    _for_readme(await browser.screenshot("portfolio-saved-view-en"))

    await _in(browser, "zh-CN", "/ui/")
    assert "客户组合" in await browser.status_of_page()
    assert any("待处理预警" in t for t in await browser.texts("#alerts h2"))
    assert "确认" in await browser.texts("#alerts button.primary")  # the macros' texts too
    assert "下一页" in " ".join(await browser.texts("nav.pager a"))
    await _pick(browser, "select[name=band]", "red")
    await browser.submit("#portfolio-filters button[type=submit]")
    await browser.fill("#save-view input[name=name]", "红色客户")
    await browser.submit("#save-view button:not([name])")
    assert any("已保存视图" in n for n in await browser.texts(".notice"))
    assert "红色客户" in await browser.texts("#saved-views a")
    await browser.screenshot("portfolio-zh-CN")


async def test_boss_view_range_per_csm_and_churn(browser: Browser, stack: Stack) -> None:
    await browser.sign_in(stack.keys["lead"], "/ui/lead")
    assert await browser.texts("#kpi-accounts") == [str(ACCOUNTS - 1)]  # churned apart
    assert await browser.texts("#kpi-churned") == ["1"]
    assert set(await _ids(browser, "#per-csm tr[data-csm]", "csm")) == {ANNA, CARL}
    customers = await browser.texts(f"#per-csm tr[data-csm='{CARL}'] td:nth-child(2)")
    assert customers == ["7"]  # 8 accounts, one churned
    await browser.submit("a[data-days='7']")
    assert "days=7" in await browser.url()
    labels = await browser.js("return Chart.getChart('chart-customers').data.labels.length")
    assert labels == 7
    await browser.screenshot("boss-view-en")
    await browser.submit(f"#per-csm tr[data-csm='{CARL}'] a")
    assert "csm=carl%40example.com" in await browser.url()
    assert len(await _ids(browser, "#portfolio tr[data-account-id]")) == 8
    await _in(browser, "zh-CN", "/ui/lead?days=30")
    assert "主管视图" in await browser.status_of_page()
    assert await browser.texts("a[data-days].here") == ["30 天"]
    assert any("按客户成功经理" in t for t in await browser.texts("#per-csm h2"))
    _for_readme(await browser.screenshot("boss-view-zh-CN"))


# Titles as scoring renders the default rules' templates (stored in English).
TITLES = {
    "low_activity": "{name}: only 12% of seats active this week — edge of churn",
    "ticket_backlog": "{name}: 6 tickets open",
}


async def test_alerts_page_every_action(browser: Browser, stack: Stack) -> None:
    await browser.sign_in(stack.keys["lead"], "/ui/alerts")
    assert len(await _ids(browser, "#alert-list tr[data-alert-id]", "alertId")) == 16
    await _pick(browser, "select[name=rule]", "ticket_backlog")
    await browser.submit("#alert-filters button[type=submit]")
    backlog = await _ids(browser, "#alert-list tr[data-alert-id]", "alertId")
    assert backlog == ["acct-01:ticket_backlog:1", "acct-00:ticket_backlog:1"]
    await browser.screenshot("alerts-en")

    alert_id = "acct-00:ticket_backlog:1"
    await browser.submit(f"tr[data-alert-id='{alert_id}'] td a[href^='/ui/alerts/']")
    assert "/ui/alerts/acct-00" in await browser.url()
    await browser.submit("#alert-actions form[data-action=acknowledge] button")
    await _pick(browser, "#alert-actions form[data-action=snooze] select", "4")
    await browser.submit("#alert-actions form[data-action=snooze] button")
    assert any("snoozed" in n for n in await browser.texts(".notice"))
    await browser.fill("#comment-form textarea", "Called Li Na: the export fix ships Friday")
    await browser.submit("#comment-form button")
    await browser.submit("#alert-actions form[data-action=not_useful] button")
    await browser.submit("#alert-actions form[data-action=resolve] button")
    row = await stack.one(select(alerts).where(alerts.c.alert_id == alert_id))
    assert row.status == "resolved" and row.not_useful and row.acknowledged_by == "key:lead"
    assert row.snoozed_until is not None
    assert timedelta(hours=3.9) < row.snoozed_until - row.acknowledged_at < timedelta(hours=4.1)
    async with stack.hw.rt.engine.connect() as conn:
        q = select(alert_activity.c.action).where(alert_activity.c.alert_id == alert_id)
        done = [a for (a,) in await conn.execute(q.order_by(alert_activity.c.activity_id))]
    assert done == ["acknowledge", "snooze", "comment", "not_useful", "resolve"]
    assert await _ids(browser, "#activity tr[data-action]", "action") == done
    _for_readme(await browser.screenshot("alert-en"))

    await _in(browser, "zh-CN", f"/ui/alerts/{urllib.parse.quote(alert_id)}")
    assert any("历史记录" in t for t in await browser.texts("#activity h2"))
    # The rule's English title (as scoring stores it) is shown in Chinese.
    assert any("acct-00：6 个工单未解决" in t for t in await browser.texts("h1"))
    await browser.screenshot("alert-zh-CN")
    await browser.get("/ui/alerts?state=all")
    assert "预警" in await browser.status_of_page()
    row = "tr[data-alert-id='acct-02:low_activity:1']"
    await _pick(browser, f"{row} form[data-action=snooze] select", "1")
    await browser.submit(f"{row} form[data-action=snooze] button")
    assert any("预警已暂停" in n for n in await browser.texts(".notice"))
    assert "暂停提醒至" in " ".join(await browser.texts(f"{row} td.status"))
    await browser.screenshot("alerts-zh-CN")


async def test_ticked_alerts_are_acted_on_at_once(browser: Browser, stack: Stack) -> None:
    """The heading's tick ticks every alert of the page (dashboard.js); one snooze, with
    its reason, for them all; the list to do shrinks by as many."""
    await browser.sign_in(stack.keys["lead"], "/ui/alerts?account=acct-1")
    ids = await _ids(browser, "#alert-list tr[data-alert-id]", "alertId")
    assert ids and all(a.startswith("acct-1") for a in ids), ids
    await browser.js("document.querySelector('input[data-pick-all]').click()")
    ticked = "return document.querySelectorAll('input[form=bulk]:checked').length"
    assert await browser.js(ticked) == len(ids)
    await _pick(browser, "#bulk select[name=action]", "snooze")
    await browser.fill("#bulk input[name=text]", "quarter close")
    await browser.submit("#bulk button[type=submit]")
    said = f"Snoozed: {len(ids)} of the {len(ids)} picked."
    assert said in await browser.texts(".notice")
    assert await _ids(browser, "#alert-list tr[data-alert-id]", "alertId") == []
    async with stack.hw.rt.engine.connect() as conn:
        q = select(alerts.c.snooze_reason).where(alerts.c.alert_id.in_(ids))
        assert set((await conn.execute(q)).scalars()) == {"quarter close"}


async def test_logged_touchpoint_reaches_the_score(browser: Browser, stack: Stack) -> None:
    account = "acct-05"
    before = await stack.one(select(account_health).where(account_health.c.account_id == account))
    assert before.last_decision_maker_contact_at is None
    await browser.sign_in(stack.keys["anna"], f"/ui/accounts/{account}/log")
    await _pick(browser, "#log-touchpoint select[name=kind]", "visit")
    await _pick(browser, "#log-touchpoint select[name=contact_role]", "decision_maker")
    await browser.fill("#log-touchpoint input[name=contact_name]", "Li Na")
    await browser.fill("#log-touchpoint textarea[name=text]", "Renewal plan agreed")
    await browser.submit("#log-touchpoint button[type=submit]")
    assert any("Touchpoint logged" in n for n in await browser.texts(".notice"))
    assert "Renewal plan agreed" in " ".join(await browser.texts("#notes td"))

    async def counted() -> bool:
        q = select(account_health).where(account_health.c.account_id == account)
        row = await stack.one(q)
        return row.last_decision_maker_contact_at is not None and row.last_touchpoint_at is not None

    await wait_for(counted, timeout=30, what="scoring to count the logged touchpoint")
    await browser.screenshot("log-touchpoint-en")

    await _in(browser, "zh-CN", f"/ui/accounts/{account}/log")
    await _pick(browser, "#log-touchpoint select[name=kind]", "note")
    await browser.fill("#log-touchpoint textarea[name=text]", "预算冻结到三月")
    await browser.submit("#log-touchpoint button[type=submit]")
    assert any("笔记已保存" in n for n in await browser.texts(".notice"))
    assert "预算冻结到三月" in " ".join(await browser.texts("#notes td"))
    await browser.screenshot("log-touchpoint-zh-CN")


async def test_pages_fit_a_laptop_and_a_phone(browser: Browser, stack: Stack) -> None:
    """The alerts table ran 1,543 px wide in a 1,400 px window, cutting its last
    buttons off, and on a 390 px phone every page was wider than the screen, its
    sign-out and language links off it (found from outside)."""
    await browser.sign_in(stack.keys["lead"], "/ui/alerts")
    wide = "return document.documentElement.scrollWidth - window.innerWidth"
    assert await browser.js(wide) <= 0
    await browser._run(browser.driver.set_window_size, 390, 844)
    try:
        for path in ("/ui/", "/ui/alerts", f"/ui/accounts/{_id(1)}", "/ui/lead"):
            await browser.get(path)
            assert await browser.js(wide) <= 0, path
        await browser.screenshot("phone-lead")
    finally:
        await browser._run(browser.driver.set_window_size, 1400, 1000)
