"""The account page and the admin pages in real headless Chromium, in English and
Chinese, against a running embedded stack.

One stack for the module: an account whose use fell over ten days (its "what changed"
has real pulls) with an old ticket, a churned account, and a dead alert delivery.
Then, through the browser: the account page shows the danger and its causes next to the
score and above the fold, what changed in the model's words biggest pull first, report
links, churn and today's partial day; a CSM key is refused the admin pages; an admin
creates and revokes a key (its secret shown once), applies a health model with a mistake
and sees the problem, reads the alert rules and retries the dead delivery. Screenshots of
every page in both languages are kept as test artefacts.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import select

from shared.auth import Role, create_key, list_keys, role_scopes
from shared.config import Settings
from shared.storage.tables import accounts, deliveries
from tests.browser.chromium import Browser
from tests.support.alerting import alerting_toml, write_alerting
from tests.support.harness import (
    Harness,
    add_account,
    at,
    running,
    send,
    today_moment,
    usage,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

ANNA = "anna@example.com"
DAYS = 16


@dataclass
class Stack:
    hw: Harness
    keys: dict[str, str]
    dead_delivery: int


async def _seed(hw: Harness) -> int:
    await add_account(hw, "fall-co", seats=20, email=ANNA, tier="enterprise", arr=120_000.0)
    await add_account(hw, "gone-co", seats=10, email=ANNA, mrr=1_000.0)
    # fall-co: 14 of 20 seats a day, then 3 for the last 8 days (its score falls);
    # gone-co: steady, then the CRM says it churned.
    moment = today_moment()  # the chart's last day must be today (its label says so)
    for d in range(DAYS - 1, -1, -1):
        busy = 14 if d >= 8 else 3
        when: dict[str, Any] = {"days_ago": d, "base": moment}
        day = [usage("fall-co", f"f{u}", module="reports", **when) for u in range(busy)]
        day += [usage("gone-co", f"g{u}", **when) for u in range(5)] if d >= 4 else []
        await send(hw, day)
    async with hw.client() as client:
        churn = {"account_id": "gone-co", "lifecycle_stage": "churned", "occurred_at": at(3)}
        assert (await client.post("/v1/accounts", json=churn)).status_code == 202

    async def churned() -> bool:
        async with hw.rt.engine.connect() as conn:
            q = select(accounts.c.facts).where(accounts.c.account_id == "gone-co")
            facts = (await conn.execute(q)).scalar_one()
        return bool(facts.get("churned_at"))

    await wait_for(churned, timeout=30, what="gone-co churned")
    async with hw.rt.engine.begin() as conn:
        done = await conn.execute(
            deliveries.insert().values(
                alert_id="fall-co:low_activity:1",
                channel="webhook",
                destination="https://hooks.example.com/healthwatch",
                status="dead",
                attempts=8,
                next_attempt_at=datetime.now(UTC),
                last_error="HTTP 502 from the destination",
            )
        )
        return int(done.inserted_primary_key[0])


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    tmp = tmp_path_factory.mktemp("account-admin")
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"sqlite+aiosqlite:///{tmp / 'hw.db'}",
        kafka_bootstrap="",
        bus_poll_interval_s=0.1,
        alerting_file=write_alerting(tmp / "alerting.toml", alerting_toml(["low_activity"])),
        alert_timer_interval_s=0.2,
    )
    async with running(settings) as hw:
        dead = await _seed(hw)
        keys = {
            "lead": await create_key(hw.rt.engine, "lead", role_scopes(Role.cs_lead, None)),
            "anna": await create_key(hw.rt.engine, "anna", role_scopes(Role.csm, ANNA), ANNA),
            "admin": await create_key(hw.rt.engine, "root", role_scopes(Role.admin, None)),
        }
        yield Stack(hw, keys, dead)


@pytest.fixture
def browser(chromium: Any, stack: Stack) -> Browser:
    return Browser(chromium, stack.hw.url)


async def _language(browser: Browser, lang: str) -> None:
    """The viewer's choice of language (the cookie the language links set)."""
    await browser._run(browser.driver.delete_cookie, "hw_lang")
    cookie = {"name": "hw_lang", "value": lang, "path": "/ui"}
    await browser._run(browser.driver.add_cookie, cookie)


ABOVE_THE_FOLD = "return document.querySelector(arguments[0]).getBoundingClientRect().bottom"
PULLS = "return [...document.querySelectorAll('#what-changed ul.changes')][0]" + (
    ".querySelectorAll('li:not([data-measure=rest])').length"
)


async def test_account_page_danger_changes_reports_churn_in_both_languages(
    browser: Browser, stack: Stack
) -> None:
    await browser.sign_in(stack.keys["lead"], "/ui/accounts/fall-co")
    assert "fall-co Inc" in await browser.status_of_page()
    assert await browser.console_errors() == []
    # Danger and its causes (or why there are none) next to the score, above the fold.
    height = await browser.js("return window.innerHeight")
    assert await browser.js(ABOVE_THE_FOLD, "#danger") < height
    assert "Danger:" in " ".join(await browser.texts("#score-card"))
    # What changed: the model's words, the biggest pull first, no raw ids, no "9% → 9%".
    # (What the measures leave of the score's move is a line of its own, last.)
    moves = await browser.texts("#what-changed li:not([data-measure=rest])")
    assert moves, "nothing listed as changed after use fell"
    assert not any(re.search(r"\b[a-z]+_[a-z0-9_]+\b", m) for m in moves), moves
    pulls = [abs(int(m.split()[0].replace("−", "-"))) for m in moves[: await browser.js(PULLS)]]
    assert pulls == sorted(pulls, reverse=True) and pulls[0] >= 1, moves
    for move in moves:
        before, after = move.rsplit(": ", 1)[1].split(" → ")
        assert before != after, move
    links = await browser.js(
        "return [...document.querySelectorAll('#reports a')].map(a => a.getAttribute('href'))"
    )
    for kind in ("usage", "bimonthly", "qbr"):
        assert f"/ui/accounts/fall-co/reports/{kind}" in links
        assert f"/ui/accounts/fall-co/reports/{kind}?format=pdf" in links
    labels = await browser.js(
        "return Chart.getChart(document.getElementById('chart-score')).data.labels"
    )
    assert labels[-1].endswith("(today, so far)"), labels[-3:]
    await browser.screenshot("account-en")

    await _language(browser, "zh-CN")
    await browser.get("/ui/accounts/fall-co")
    text = await browser.js("return document.body.innerText")
    assert all(word in text for word in ("危险等级", "变化情况", "报告", "季度业务回顾")), text[
        :400
    ]
    labels = await browser.js(
        "return Chart.getChart(document.getElementById('chart-score')).data.labels"
    )
    assert "今天" in labels[-1]
    await browser.screenshot("account-zh")

    await browser.get("/ui/accounts/gone-co")
    assert "流失" in " ".join(await browser.texts("#churned"))
    assert "已流失" in " ".join(await browser.texts("#score-card"))
    await browser.screenshot("account-churned-zh")
    await _language(browser, "en")
    await browser.get("/ui/accounts/gone-co")
    assert "no longer a customer" in " ".join(await browser.texts("#churned"))
    assert "12,000" in " ".join(await browser.texts("#arr"))  # MRR × 12
    # No review to hold with a customer it no longer is: only its usage, for the record.
    assert await browser.js(
        "return [...document.querySelectorAll('#reports a')].map(a => a.getAttribute('href'))"
    ) == ["/ui/accounts/gone-co/reports/usage", "/ui/accounts/gone-co/reports/usage?format=pdf"]
    await browser.screenshot("account-churned-en")


async def test_admin_pages_and_actions_in_both_languages(
    browser: Browser, stack: Stack, tmp_path: Path
) -> None:
    await browser.sign_in(stack.keys["anna"], "/ui/")
    assert await browser.texts("#nav-admin") == []
    await browser.get("/ui/admin/keys")
    assert "403" in await browser.status_of_page()

    await browser.sign_in(stack.keys["admin"], "/ui/")
    await _language(browser, "en")
    await browser.click("#nav-admin")
    await wait_for(lambda: _at(browser, "/ui/admin/keys"), timeout=10, what="the keys page")
    await browser.fill("#create-key input[name=name]", "Li Na")
    await browser.js("document.querySelector('#create-key select').value = 'csm'")
    await browser.fill("#create-key input[name=csm_email]", "li.na@example.com")
    await browser.submit("#create-key button[type=submit]")
    secret = " ".join(await browser.texts("#new-secret"))
    assert secret.startswith("hwk_"), secret
    await browser.screenshot("admin-keys-created-en")
    (li,) = [k for k in await list_keys(stack.hw.rt.engine) if k.name == "Li Na"]
    await browser.submit(f"tr[data-key-id='{li.key_id}'] button[type=submit]")
    assert "revoked" in " ".join(await browser.texts("#admin-notice"))
    assert secret not in await browser.js("return document.body.innerText")

    await browser.get("/ui/admin/model")
    source = await browser.js("return document.getElementById('toml-text').value")
    broken = re.sub(r'^version = "[^"]*"', 'version = "browser-1"', source, count=1, flags=re.M)
    upload = tmp_path / "model.toml"
    upload.write_text(broken.replace("red_below = 40", "red_below = 'forty'"), encoding="utf-8")
    chooser = await browser._run(
        browser.driver.find_element, "css selector", "input[data-load-into]"
    )
    await browser._run(chooser.send_keys, str(upload))
    await wait_for(
        lambda: browser.js("return document.getElementById('toml-text').dataset.loaded"),
        timeout=10,
        what="the file loaded into the editor",
    )
    await browser.submit("#apply-document button[type=submit]")
    problems = await browser.texts("#problems li")
    assert any("bands.red_below" in p for p in problems), problems
    await browser.screenshot("admin-model-problems-en")

    await browser.get("/ui/admin/rules")
    assert "[[rule]]" in await browser.js("return document.getElementById('toml-text').value")
    await browser.screenshot("admin-rules-en")
    await browser.get("/ui/admin/deliveries")
    assert "HTTP 502" in " ".join(await browser.texts("#deliveries td"))
    await browser.screenshot("admin-deliveries-en")
    await browser.submit(f"tr[data-delivery-id='{stack.dead_delivery}'] button[type=submit]")
    assert "queued again" in " ".join(await browser.texts("#admin-notice"))

    await _language(browser, "zh-CN")
    for path, name, word in (
        ("/ui/admin/keys", "admin-keys-zh", "创建密钥"),
        ("/ui/admin/model", "admin-model-zh", "校验并应用"),
        ("/ui/admin/rules", "admin-rules-zh", "预警规则"),
        ("/ui/admin/deliveries?status=pending", "admin-deliveries-zh", "待发送"),
    ):
        await browser.get(path)
        assert word in await browser.js("return document.body.innerText"), path
        await browser.screenshot(name)
    # The refused model answered 422 (Chromium logs the status); nothing else went wrong.
    errors = [e for e in await browser.console_errors() if "status of 422" not in e]
    assert errors == []
    await _language(browser, "en")


async def _at(browser: Browser, path: str) -> bool:
    return (await browser.url()).endswith(path)
