"""Risk cases in real headless Chromium, in English and Chinese, on an embedded stack:
a CSM opens a case from a detractor's alert, adds a task to its plan, records a review
and closes it with the lesson; the case board (the CSM's, and the lead's with every
CSM), the case page and the task list are kept as screenshots in both languages."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.auth import Role, create_key, role_scopes
from shared.config import Settings
from tests.browser.chromium import Browser
from tests.support.alerting import alerting_toml, write_alerting
from tests.support.harness import (
    add_account,
    alert_stored,
    at,
    low_activity_history,
    running,
    send,
    wait_for,
)

pytestmark = pytest.mark.integration

ANNA = "anna@example.com"


def _nps(account: str, score: int) -> dict[str, Any]:
    return {
        "kind": "nps",
        "event_id": uuid.uuid4().hex,
        "account_id": account,
        "score": score,
        "occurred_at": at(0),
    }


async def _language(browser: Browser, lang: str) -> None:
    await browser._run(browser.driver.delete_cookie, "hw_lang")
    await browser._run(browser.driver.add_cookie, {"name": "hw_lang", "value": lang, "path": "/ui"})


async def _case_from_alert(browser: Browser, alert_id: str, lang: str, due: str) -> None:
    """Open the alert's case by its button, plan a task, review, close: in ``lang``."""
    await browser.get(f"/ui/alerts/{alert_id}")
    await browser.submit("#open-case-form button[type=submit]")
    assert "/ui/cases/" in await browser.url()
    await browser.fill(
        "#task-form input[name=title]", "Call the CFO" if lang == "en" else "约见财务总监"
    )
    await browser.js(f"document.querySelector('#task-form input[name=due]').value = '{due}'")
    await browser.submit("#task-form button[type=submit]")
    assert len(await browser.texts("#case-plan tr[data-task-id]")) == 1
    await browser.fill("#review-form textarea[name=text]", "CFO met: budget kept")
    await browser.click("#review-form input[name=cause_budget]")
    await browser.js("document.querySelector('#review-form select').value = 'mild'")
    await browser.submit("#review-form button[type=submit]")
    assert len(await browser.texts("#case-reviews tbody tr")) == 1
    await browser.screenshot(f"case-{lang}")
    await browser.fill("#close-form textarea[name=text]", "Talk budgets before renewal")
    await browser.submit("#close-form button[type=submit]")


async def test_a_case_from_an_alert_to_its_close_in_both_languages(
    chromium: Any, tmp_path: Path
) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'hw.db'}",
        kafka_bootstrap="",
        bus_poll_interval_s=0.1,
        alerting_file=write_alerting(
            tmp_path / "alerting.toml", alerting_toml(["low_activity", "nps_detractor"])
        ),
    )
    async with running(settings) as hw:
        for account in ("risk-co", "nps-co", "nps2-co"):
            await add_account(hw, account, seats=20, email=ANNA, tier="enterprise")
        await add_account(hw, "carl-co", seats=20, email="carl@example.com", tier="strategic")
        await send(hw, low_activity_history("risk-co", active_users=2))  # critical: a case
        await send(hw, low_activity_history("carl-co", active_users=3))
        await send(hw, [_nps("nps-co", 3), _nps("nps2-co", 2)])  # warnings: no case
        for alert_id in ("risk-co:low_activity:1", "nps-co:nps_detractor:1"):
            await alert_stored(hw, alert_id)
        await alert_stored(hw, "nps2-co:nps_detractor:1")
        anna = await create_key(hw.rt.engine, "anna", role_scopes(Role.csm, ANNA), ANNA)
        lead = await create_key(hw.rt.engine, "lead", role_scopes(Role.cs_lead, None))
        browser = Browser(chromium, hw.url)
        due = (datetime.now(UTC) + timedelta(days=3)).strftime("%Y-%m-%d")

        await browser.sign_in(anna, "/ui/cases")
        await _language(browser, "en")
        await _case_from_alert(browser, "nps-co:nps_detractor:1", "en", due)
        assert "Customer saved" in " ".join(await browser.texts("#case-outcome"))
        await browser.get("/ui/cases")
        assert await browser.texts("#column-high [data-case-id]"), "risk-co's case is missing"
        assert "Talk budgets" in " ".join(await browser.texts("#closed-cases"))
        await browser.screenshot("case-board-en")
        await browser.get("/ui/tasks")
        assert "Call the detractor" in " ".join(await browser.texts("#task-list"))
        await browser.screenshot("case-tasks-en")

        await _language(browser, "zh-CN")
        await _case_from_alert(browser, "nps2-co:nps_detractor:1", "zh-CN", due)
        assert "已挽回" in " ".join(await browser.texts("#case-outcome"))
        await browser.get("/ui/cases")
        assert "高度危险" in " ".join(await browser.texts("#column-high h2"))
        await browser.screenshot("case-board-zh")
        await browser.get("/ui/tasks")
        assert "致电贬损者" in " ".join(await browser.texts("#task-list"))
        await browser.screenshot("case-tasks-zh")
        assert await browser.console_errors() == []

        # The lead sees every CSM's cases, and can narrow the board to one CSM.
        await browser.sign_in(lead, "/ui/cases")
        await _language(browser, "en")
        await browser.get("/ui/cases")
        await wait_for(lambda: _owners(browser, 2), timeout=10, what="both CSMs' cases")
        await browser.get("/ui/cases?csm=carl%40example.com")
        cards = " ".join(await browser.texts("#case-board [data-case-id]"))
        assert "carl-co" in cards and "risk-co" not in cards
        await browser.screenshot("case-board-lead-en")


async def _owners(browser: Browser, n: int) -> bool:
    return len(await browser.texts("#case-board [data-case-id]")) >= n
