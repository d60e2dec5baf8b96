"""The dashboard's CSV import in real headless Chromium: a lead uploads an export of our
own columns, sees the mapping and a row's error, imports the good rows, and the account
appears; the page in English and Chinese is kept as screenshots."""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from shared.auth import Role, create_key, role_scopes
from shared.config import Settings
from shared.storage.tables import accounts
from tests.browser.chromium import Browser
from tests.support.harness import running, wait_for

pytestmark = pytest.mark.integration

EXPORT = (
    "account_id,name,tier,owner_email,arr,contract_end,notes\n"
    "imp-1,Hotel Ltd,strategic,anna@example.com,120000,2027-03-31,top account\n"
    "imp-2,India Ltd,gold,,abc,,\n"
)

EXCEL_ZH = (
    "account_id,name,tier,arr,contract_end\n"
    "hz-1,杭州数智,战略客户,8万,2027年3月31日\n"
    "hz-2,西湖软件,企业客户,三万,\n"
)


async def test_a_lead_imports_a_csv_on_the_dashboard(chromium: Any, tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'hw.db'}",
        kafka_bootstrap="",
        bus_poll_interval_s=0.1,
    )
    upload = tmp_path / "accounts.csv"
    upload.write_text(EXPORT)
    async with running(settings, alerts=False) as hw:
        lead = await create_key(hw.rt.engine, "lead", role_scopes(Role.cs_lead, None))
        browser = Browser(chromium, hw.url)
        await browser.sign_in(lead, "/ui/import")
        assert await browser.texts("#nav-import") == ["Import"]
        await browser.fill("#import-file", str(upload))
        await browser.submit("#import-preview")
        assert await browser.texts("#import-counts") == [
            "1 of 2 rows can be imported; 1 have errors and will be left out."
        ]
        errors = await browser.texts("#import-errors tbody tr")
        assert any(e.startswith("3") and "tier" in e for e in errors), errors
        assert any(e.startswith("3") and "arr" in e for e in errors), errors
        await browser.screenshot("import-preview-en")
        await browser.submit("#import-go")
        assert await browser.texts("#import-done")

        async def imported() -> bool:
            async with hw.rt.engine.connect() as conn:
                q = select(accounts.c.tier).where(accounts.c.account_id == "imp-1")
                return (await conn.execute(q)).scalar() == "strategic"

        await wait_for(imported, timeout=30, what="the imported account")
        await browser.get("/ui/language/zh-CN?next=" + urllib.parse.quote("/ui/import"))
        assert await browser.texts("h1 .sub") == ["来自 CRM 导出文件（CSV）"]
        await browser.screenshot("import-zh-CN")

        # What Excel in Chinese saves (GB18030), with a Chinese CRM's values: read, its
        # errors in Chinese, and the names intact after the confirming round trip.
        excel = tmp_path / "excel-zh.csv"
        excel.write_bytes(EXCEL_ZH.encode("gb18030"))
        await browser.fill("#import-file", str(excel))
        await browser.submit("#import-preview")
        assert await browser.texts("#import-encoding")
        assert "战略客户" in " ".join(await browser.texts("#import-rows tbody tr"))
        errors = " ".join(await browser.texts("#import-errors tbody tr"))
        assert "'三万' 不是数字" in errors, errors
        await browser.screenshot("import-preview-gb18030-zh-CN")
        await browser.submit("#import-go")

        async def named() -> bool:
            async with hw.rt.engine.connect() as conn:
                q = select(accounts.c.name, accounts.c.tier).where(accounts.c.account_id == "hz-1")
                return tuple((await conn.execute(q)).first() or ()) == ("杭州数智", "strategic")

        await wait_for(named, timeout=30, what="the account from Excel's Chinese CSV")
