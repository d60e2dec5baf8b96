"""The renewals, retention and opportunities pages in real headless Chromium against a
running embedded stack, in English and Chinese: the quarter's pipeline with its
forecast, retention charts per quarter and the breakdown by tier for a period, the
opportunities list; a CSM sees their own portfolio. Screenshots are kept as artefacts
(the retention view's are the README's docs/retention-*.png)."""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from shared.auth import Role, create_key, role_scopes
from shared.config import Settings
from shared.storage.tables import account_health
from tests.browser.chromium import Browser
from tests.integration.test_retention import ANNA, RENEWING, seed
from tests.support.alerting import alerting_toml, write_alerting
from tests.support.harness import running

pytestmark = pytest.mark.integration

PERIOD = "/ui/retention?from=2026-04-01&to=2026-07-01&by=tier"


async def _rows(browser: Browser, css: str, attribute: str) -> list[str]:
    script = "return [...document.querySelectorAll(arguments[0])].map(r => r.dataset[arguments[1]])"
    return list(await browser.js(script, css, attribute))


# A download link's file, read by the signed-in page itself (its session cookie).
FETCH = "return fetch(arguments[0]).then(r => r.text())"


async def _href(browser: Browser, css: str) -> str:
    return str(await browser.js("return document.querySelector(arguments[0]).href", css))


async def _breakdown_charts(browser: Browser, tiers: list[str], churned: str) -> None:
    """The period's breakdown by tier drawn per tier: churned ARR, contraction and
    expansion in the service's currency (CNY; the USD account is only in the table),
    and GRR and NRR."""
    flows = "return Chart.getChart('chart-breakdown-flows').data"
    assert await browser.js(flows + ".labels") == tiers
    datasets = await browser.js(flows + ".datasets")
    assert datasets[0]["label"] == f"{churned} (CNY)"
    assert [sum(v or 0 for v in d["data"]) for d in datasets] == [30_000, 10_000, 20_000]
    rates = "return Chart.getChart('chart-breakdown-rates').data"
    assert len(await browser.js(rates + ".datasets")) == 2
    assert await browser.texts("#breakdown-currency") != []


async def _in(browser: Browser, lang: str, path: str) -> None:
    await browser.get(f"/ui/language/{lang}?next={urllib.parse.quote(path)}")
    assert await browser.js("return document.documentElement.lang") == lang


async def test_renewals_retention_and_opportunities_pages(chromium: Any, tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'hw.db'}",
        kafka_bootstrap="",
        bus_poll_interval_s=0.1,
        alerting_file=write_alerting(tmp_path / "a.toml", alerting_toml(["tier_review"])),
    )
    async with running(settings) as hw:
        await seed(hw)
        lead = await create_key(hw.rt.engine, "lead", role_scopes(Role.cs_lead, None))
        anna = await create_key(hw.rt.engine, "anna", role_scopes(Role.csm, ANNA), ANNA)
        browser = Browser(chromium, hw.url)

        # The lead's pipeline of the renewing quarter, and the picker's next quarter.
        await browser.sign_in(lead, f"/ui/renewals?quarter={RENEWING}")
        rows = await _rows(browser, "#renewals-table tr[data-account-id]", "accountId")
        assert sorted(rows) == ["keep", "new", "shrink", "usd"]
        forecasts = await _rows(browser, "#renewals-table tr[data-forecast]", "forecast")
        totals = {f: forecasts.count(f) for f in ("commit", "likely", "at_risk")}
        for forecast, count in totals.items():
            assert (await browser.texts(f"#forecast-{forecast} .v")) == [str(count)]
        await browser.screenshot("renewals-en")
        await browser.submit("#quarter-next")
        assert (await browser.url()).endswith(f"quarter={RENEWING.next()}")
        assert (await browser.texts("#renewals-table p.muted"))[:1] == [
            "No contract ends in this quarter."
        ]

        # Retention: the charts per quarter and the period's breakdown by tier.
        await browser.get(PERIOD)
        groups = await _rows(browser, "#breakdown tr[data-group]", "group")
        assert groups == ["all", "enterprise", "non-focus", "strategic"]
        assert await browser.texts("#breakdown tr[data-group=all] td:nth-child(4)") == ["75.0%"]
        chart = "return Chart.getChart('chart-retention').data"
        assert await browser.js(chart + ".datasets.length") == 3
        # The two years' quarters from the first with customers at its start.
        labels = await browser.js(chart + ".labels")
        starts = await browser.texts("#quarters tbody td:nth-child(2)")
        assert 1 <= len(labels) == len(starts) <= 8 and starts[0] != "0", (labels, starts)
        await _breakdown_charts(browser, ["enterprise", "non-focus", "strategic"], "Churned ARR")
        csv = await browser.js(FETCH, await _href(browser, "#retention-csv"))
        # In the service's currency (the API's file says "default"), its rates as the
        # page writes them (the Chinese file had percentages, the English fractions).
        assert csv.splitlines()[1].startswith("all,CNY,4,3,1,75.0%,180000"), csv
        await browser.screenshot("retention-en")
        await _in(browser, "zh-CN", PERIOD)
        assert any("各季度留存" in t for t in await browser.texts("h2"))
        await _breakdown_charts(browser, ["企业客户", "非重点客户", "战略客户"], "流失 ARR")
        await browser.screenshot("retention-zh-CN")

        # Opportunities: the expansion alert with its account's ARR and seats (its health
        # not red: a failing account is no sales conversation, and is left out).
        async with hw.rt.engine.begin() as conn:
            await conn.execute(
                update(account_health)
                .where(account_health.c.account_id == "shrink")
                .values(band="yellow")
            )
        await browser.get("/ui/opportunities")
        assert await _rows(browser, "#opportunities tr[data-alert-id]", "alertId") == [
            "shrink:tier_review:1"
        ]
        assert any("¥40,000" in t for t in await browser.texts("#opportunities td"))
        await browser.screenshot("opportunities-zh-CN")
        await _in(browser, "en", "/ui/opportunities")

        # A CSM: their own renewals only, and no opportunity of Carl's.
        await browser.sign_in(anna, f"/ui/renewals?quarter={RENEWING}")
        rows = await _rows(browser, "#renewals-table tr[data-account-id]", "accountId")
        assert sorted(rows) == ["keep", "new"]
        # Her downloads (the pipeline's CSV, the portfolio's export): her accounts only.
        csv = await browser.js(FETCH, await _href(browser, "#renewals-csv"))
        assert sorted(line.split(",")[0] for line in csv.splitlines()[1:]) == ["keep", "new"]
        await browser.get("/ui/")
        csv = await browser.js(FETCH, await _href(browser, "#export-accounts-csv"))
        assert sorted(line.split(",")[0] for line in csv.splitlines()[1:]) == [
            "gone",  # churned, still hers
            "keep",
            "new",
        ]
        await browser.get("/ui/opportunities")
        assert await browser.texts("#opportunities-total") == ["0"]
        assert await browser.console_errors() == []
