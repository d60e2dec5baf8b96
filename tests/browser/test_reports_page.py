"""The reports behind the account page's print and PDF links, in real headless
Chromium, in English and Chinese.

One stack: a strategic account of Anna's with a renewal in 40 days, ten days of use of
a few modules, one old ticket; and an account of Carl's. Through the browser: Anna follows
the account page's QBR link to a report in customer words (sections in order, no internal
labels, no page script and no policy error), fetches its PDF (a real one), reads the
report in Chinese, and cannot open Carl's. Screenshots are kept as test artefacts.
"""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest
import pytest_asyncio

from shared.auth import Role, create_key, role_scopes
from shared.config import Settings
from tests.browser.chromium import Browser
from tests.support.harness import Harness, add_account, running, send, ticket, usage

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

ANNA, CARL = "anna@example.com", "carl@example.com"


@dataclass
class Stack:
    hw: Harness
    keys: dict[str, str]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    tmp = tmp_path_factory.mktemp("reports")
    settings = Settings(
        _env_file=None,
        database_url=f"sqlite+aiosqlite:///{tmp / 'hw.db'}",
        kafka_bootstrap="",
        bus_poll_interval_s=0.1,
    )
    async with running(settings) as hw:
        renewal = (date.today() + timedelta(days=40)).isoformat()
        await add_account(
            hw,
            "qbr-co",
            seats=20,
            email=ANNA,
            tier="strategic",
            plan="Enterprise",
            arr=480_000.0,
            contract_end=renewal,
        )
        await add_account(hw, "carl-co", seats=5, email=CARL, tier="strategic")
        modules = ["opportunities", "quotes", "custom_objects"]
        await send(
            hw,
            [
                usage("qbr-co", f"u{u}", days_ago=d + 0.01, module=modules[u % 3])
                for d in range(10)
                for u in range(6)
            ]
            + [usage("carl-co", "c1", days_ago=1), ticket("qbr-co", 1, "open", 1)],
        )
        keys = {
            name: await create_key(hw.rt.engine, name, role_scopes(Role.csm, email), email)
            for name, email in (("anna", ANNA), ("carl", CARL))
        }
        yield Stack(hw, keys)


@pytest.fixture
def browser(chromium: Any, stack: Stack) -> Browser:
    return Browser(chromium, stack.hw.url)


# Run on the account page (whose policy lets a page fetch from its own site): the PDF's
# type and its first bytes.
FETCH_PDF = """
const done = arguments[arguments.length - 1];
fetch(arguments[0]).then(async r => {
  const bytes = new Uint8Array(await r.arrayBuffer());
  done([r.status, r.headers.get('content-type'), btoa(String.fromCharCode(...bytes.slice(0, 8))), bytes.length]);
});
"""
INTERNAL = re.compile(r"strategic|danger|\bband\b|[a-z]+_[a-z]+|tier", re.I)


async def test_reports_from_the_account_page_in_both_languages(
    browser: Browser, stack: Stack
) -> None:
    await browser.sign_in(stack.keys["anna"], "/ui/accounts/qbr-co")
    await browser._run(browser.driver.delete_cookie, "hw_lang")
    await browser.get("/ui/accounts/qbr-co")
    pdf = await browser.js("return document.querySelector('[data-report-pdf=qbr]').href")
    status, kind, head, size = await browser._run(
        browser.driver.execute_async_script, FETCH_PDF, pdf
    )
    assert (status, kind) == (200, "application/pdf")
    assert base64.b64decode(head).startswith(b"%PDF-") and size > 10_000

    await browser.click("[data-report=qbr]")
    assert "Quarterly business review: qbr-co Inc" in await browser.status_of_page()
    sections = await browser.texts("h2")
    assert sections[:2] == ["Summary", "Goals and outcomes"]
    for section in ("Usage against your plan", "Recommendations for the next quarter", "Renewal"):
        assert section in sections
    text = await browser.js("return document.body.innerText")
    assert not INTERNAL.findall(text), INTERNAL.findall(text)
    assert "CN¥480,000" in text and "Your renewal is on" in text
    assert await browser.js("return document.scripts.length") == 0
    assert await browser.console_errors() == []  # no style or chart refused by the policy
    assert "format=pdf" in await browser.js("return document.querySelector('.noprint a').href")
    await browser.screenshot("report-qbr-en")

    await browser.get("/ui/accounts/qbr-co/reports/qbr?lang=zh-CN")
    assert "季度业务回顾" in await browser.status_of_page()
    text = await browser.js("return document.body.innerText")
    assert all(w in text for w in ("目标与成果", "续约", "下季度建议", "¥480,000")), text[:300]
    await browser.screenshot("report-qbr-zh")
    await browser.get("/ui/accounts/qbr-co/reports/bimonthly?lang=zh-CN")
    assert "双月使用报告" in await browser.status_of_page()
    await browser.screenshot("report-bimonthly-zh")
    await browser.get("/ui/accounts/qbr-co/reports/bimonthly?lang=en")
    assert "Bi-monthly usage report" in await browser.status_of_page()
    await browser.screenshot("report-bimonthly-en")
    for lang, title in (("en", "Usage report"), ("zh-CN", "使用报告")):
        await browser.get(f"/ui/accounts/qbr-co/reports/usage?lang={lang}")
        assert title in await browser.status_of_page(), lang
        await browser.screenshot(f"report-usage-{lang}")

    # Carl's account is not Anna's to see, in any form.
    for path in ("/ui/accounts/carl-co/reports/qbr", "/ui/accounts/carl-co/reports/qbr?format=pdf"):
        await browser.get(path)
        assert "Carl" not in await browser.js("return document.body.innerText")
        assert (
            "404" in await browser.status_of_page() or "Not found" in await browser.status_of_page()
        )
