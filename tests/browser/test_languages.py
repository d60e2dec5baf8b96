"""Chinese and English, and the viewer's time zone, in real headless Chromium.

A browser in Asia/Shanghai (Chromium's own time-zone override) signs in: the page's
script hands its zone to the server, which then shows every time on Shanghai's clock
and says so; the language link switches the whole page to Chinese (dates, money, the
labels) and back. The Chinese page draws real CJK glyphs, not boxes (a CJK font is
installed: scripts/setup-test-services.sh). Screenshots are kept as artefacts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio

import shared.i18n
from shared.auth import Role, create_key, role_scopes
from shared.config import Settings
from shared.i18n import catalog, format_when
from tests.browser.chromium import Browser
from tests.support.harness import Harness, add_account, running, send

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

SHANGHAI = ZoneInfo("Asia/Shanghai")
# Yesterday 00:30 in Shanghai: still the day before on the service's UTC clock.
OPENED = datetime.combine(datetime.now(SHANGHAI).date() - timedelta(days=1), time(0, 30), SHANGHAI)
# Two Han characters drawn apart: without a CJK font both are the same empty box.
SAME_GLYPH = """
const font = getComputedStyle(document.body).font;
const draw = (text) => {
  const canvas = document.createElement('canvas');
  canvas.width = 64; canvas.height = 64;
  const ctx = canvas.getContext('2d');
  ctx.font = font.replace(/\\d+(\\.\\d+)?px/, '48px');
  ctx.fillText(text, 4, 52);
  return Array.from(ctx.getImageData(0, 0, 64, 64).data).join(',');
};
return draw('健') === draw('康');
"""


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Harness, str]]:
    tmp = tmp_path_factory.mktemp("languages")
    settings = Settings(
        _env_file=None,
        database_url=f"sqlite+aiosqlite:///{tmp / 'hw.db'}",
        kafka_bootstrap="",
        bus_poll_interval_s=0.1,
    )
    assert settings.timezone == "UTC" and settings.currency == "CNY"
    async with running(settings) as hw:
        facts = {"arr": 480_000.0, "tier": "strategic", "timezone": "Asia/Shanghai"}
        await add_account(hw, "sh-co", seats=20, **facts)
        opened = OPENED.isoformat()
        ticket = {"kind": "ticket", "event_id": "t1", "account_id": "sh-co", "ticket_id": "T1"}
        ticket |= {"status": "open", "created_at": opened, "occurred_at": opened}
        await send(hw, [ticket])
        key = await create_key(hw.rt.engine, "admin", role_scopes(Role.admin, None))
        yield hw, key


@pytest.fixture
def browser(chromium: Any, stack: tuple[Harness, str]) -> Browser:
    return Browser(chromium, stack[0].url)


async def test_language_link_and_times_in_the_browsers_zone(
    browser: Browser, stack: tuple[Harness, str]
) -> None:
    _, key = stack
    driver = browser.driver
    await browser._run(
        driver.execute_cdp_cmd, "Emulation.setTimezoneOverride", {"timezoneId": "Asia/Shanghai"}
    )
    try:
        await browser.sign_in(key, "/ui/accounts/sh-co")
        await browser.get("/ui/accounts/sh-co")  # tz.js has set hw_tz: drawn in Shanghai
        assert await browser.texts("#zone") == ["Times in Asia/Shanghai"]
        assert await browser.js("return document.documentElement.lang") == "en"
        tickets = " ".join(await browser.texts("#tickets"))
        assert format_when("en", OPENED, SHANGHAI) in tickets  # e.g. "Dec 2, 2026 00:30"
        assert format_when("en", OPENED, UTC) not in tickets
        assert "CN¥480,000" in " ".join(await browser.texts("main"))
        await browser.screenshot("languages-account-en")

        await browser.submit("#lang-zh-CN")
        assert (await browser.url()).endswith("/ui/accounts/sh-co")
        assert await browser.js("return document.documentElement.lang") == "zh-CN"
        assert await browser.texts("#zone") == ["所有时间均为 Asia/Shanghai 时间"]
        tickets = " ".join(await browser.texts("#tickets"))
        assert format_when("zh-CN", OPENED, SHANGHAI) in tickets  # "2026年12月2日 00:30"
        assert "¥480,000" in " ".join(await browser.texts("main"))
        assert await browser.texts("header .langs strong") == ["中文"]
        assert not await browser.js(SAME_GLYPH), "Han characters drawn as boxes: no CJK font"
        await browser.screenshot("languages-account-zh-CN")

        # The choice holds for the browser, signed out too; and back to English.
        await browser.submit("header form[action='/ui/logout'] button")
        assert await browser.texts("h1") == ["登录"]
        await browser.screenshot("languages-login-zh-CN", full_page=False)
        await browser.submit("#lang-en")
        assert await browser.texts("h1") == ["Sign in"]
        assert await browser.console_errors() == []
    finally:
        await browser._run(
            driver.execute_cdp_cmd, "Emulation.setTimezoneOverride", {"timezoneId": ""}
        )


class _Recording(dict[str, str]):
    """A catalog that notes every text asked for and not found."""

    def __init__(self, texts: dict[str, str]):
        super().__init__(texts)
        self.missing: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self.missing.add(key)
        return super().get(key, default)


async def test_every_page_shown_in_chinese_is_translated(
    browser: Browser, stack: tuple[Harness, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The texts a page picks at run time (a band, a stage, a filter's options, a
    measure's label) are beyond the catalog test's reach: each page (the admin pages and
    the reports too) is drawn in Chinese and every text asked for must be translated."""
    _, key = stack
    recording = _Recording(dict(catalog("zh-CN")))
    monkeypatch.setattr(shared.i18n, "catalog", lambda language: recording)
    await browser.sign_in(key)
    await browser.get("/ui/language/zh-CN?next=/ui/")
    pages = ("/ui/", "/ui/lead", "/ui/alerts", "/ui/accounts/sh-co", "/ui/accounts/sh-co/log")
    admin = ("/ui/admin/keys", "/ui/admin/model", "/ui/admin/rules", "/ui/admin/deliveries")
    reports = ("usage", "bimonthly", "qbr")
    for path in (*pages, *admin, *(f"/ui/accounts/sh-co/reports/{kind}" for kind in reports)):
        await browser.get(path)
        assert await browser.js("return document.documentElement.lang") == "zh-CN", path
    assert sorted(recording.missing) == []
