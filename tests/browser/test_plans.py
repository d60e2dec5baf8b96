"""Success plans in real headless Chromium, in English and Chinese: the plan section of
an account's page (milestones with progress bars, states, due days), ticking a
hand-checked milestone and adding one through its forms, and the plans at risk of a
CSM's portfolio. Screenshots of both pages in both languages are kept as artefacts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.auth import Role, create_key, role_scopes
from shared.config import Settings
from tests.browser.chromium import Browser
from tests.support.harness import add_account, running, send, usage

pytestmark = [pytest.mark.integration]

ANNA = "anna@example.com"


async def _language(browser: Browser, lang: str) -> None:
    await browser._run(browser.driver.delete_cookie, "hw_lang")
    await browser._run(browser.driver.add_cookie, {"name": "hw_lang", "value": lang, "path": "/ui"})


async def test_plan_section_and_plans_at_risk(chromium: Any, tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'hw.db'}",
        kafka_bootstrap="",
        bus_poll_interval_s=0.1,
    )
    bought = (datetime.now(UTC).date() - timedelta(days=60)).isoformat()
    async with running(settings) as hw:
        await add_account(
            hw,
            "plan-co",
            seats=10,
            email=ANNA,
            tier="strategic",
            lifecycle_stage="implementation",
            contract_start=bought,
        )
        await send(hw, [usage("plan-co", "u0", days_ago=d) for d in range(14)])
        anna = await create_key(hw.rt.engine, "anna", role_scopes(Role.csm, ANNA), ANNA)
        browser = Browser(chromium, hw.url)
        await browser.sign_in(anna, "/ui/accounts/plan-co")
        await _language(browser, "en")
        await browser.get("/ui/accounts/plan-co")
        states = dict(
            zip(
                await browser.js(
                    "return [...document.querySelectorAll('#milestones tr[data-milestone]')]"
                    ".map(r => r.dataset.milestone)"
                ),
                await browser.js(
                    "return [...document.querySelectorAll('#milestones tr[data-milestone]')]"
                    ".map(r => r.dataset.state)"
                ),
                strict=True,
            )
        )
        assert states == {
            "kickoff": "missed",
            "go_live": "on_track",
            "seat_activation": "at_risk",
            "weekly_active_days": "achieved",
        }
        assert len(await browser.texts("#milestones meter")) == 4

        # Tick the hand-checked kickoff, then add a milestone of our own.
        await browser.submit("tr[data-milestone=kickoff] button[value=tick]")
        assert "#plan" in await browser.url()
        assert (
            await browser.js(
                "return document.querySelector('tr[data-milestone=kickoff]').dataset.state"
            )
            == "achieved"
        )
        due = (datetime.now(UTC).date() + timedelta(days=45)).isoformat()
        await browser.fill("#milestone-add input[name=title]", "QBR held")
        await browser.js(
            "document.querySelector('#milestone-add input[name=due_on]').value = arguments[0]",
            due,
        )
        await browser.submit("#milestone-add button[type=submit]")
        assert "QBR held" in " ".join(await browser.texts("#milestones td"))
        assert await browser.console_errors() == []
        await browser.screenshot("plan-section-en")

        await browser.get("/ui/plans")
        assert await browser.js(
            "return [...document.querySelectorAll('#plan-list tr[data-account]')]"
            ".map(r => r.dataset.account)"
        ) == ["plan-co"]
        assert "60% of seats activated by day 90" in " ".join(await browser.texts("#plan-list td"))
        await browser.screenshot("plans-at-risk-en")

        await _language(browser, "zh-CN")
        await browser.get("/ui/accounts/plan-co")
        section = " ".join(await browser.texts("#plan"))
        assert (
            "成功计划" in section and "第 90 天前激活 60% 的席位" in section and "有风险" in section
        )
        await browser.screenshot("plan-section-zh")
        await browser.get("/ui/plans")
        assert "有风险的成功计划" in await browser.status_of_page()
        await browser.screenshot("plans-at-risk-zh")
        assert await browser.console_errors() == []
