"""Renewals, retention and opportunities on the real stack (Kafka and PostgreSQL): facts
sent at their moments in the past, read back as they were at a period's ends; scoped
keys; JSON and CSV; bad periods refused with a code. The same reads on SQLite: the
browser test (tests/browser/test_retention.py, this seed) and the demo's renewals
(tests/integration/test_dev_mode.py)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from services.scoring.retention import Quarter
from shared.auth import Role, create_key, role_scopes
from shared.config import Settings
from shared.storage.tables import account_health
from tests.support.alerting import alerting_toml, write_alerting
from tests.support.harness import Harness, alert_stored, running, usage, wait_for

pytestmark = pytest.mark.integration

ANNA, CARL = "anna@example.com", "carl@example.com"
RENEWING = Quarter.of(date.today()).next()


def _fact(account: str, n: int, when: str, **fields: Any) -> dict[str, Any]:
    return {"account_id": account, "event_id": f"{account}-f{n}", "occurred_at": when, **fields}


def _signed(account: str, when: str, arr: float, owner: str, tier: str, **more: Any) -> Any:
    return _fact(
        account,
        0,
        when,
        name=f"{account} Ltd",
        arr=arr,
        tier=tier,
        seats_purchased=60,
        owner={"email": owner},
        contract_start=when[:10],
        contract_end=RENEWING.start.isoformat(),
        lifecycle_stage="stable",
        **more,
    )


# Over [2026-04-01, 2026-07-01): keep expands 100k → 120k, shrink contracts 50k → 40k,
# gone churns (30k), usd stays at 10k USD, new signs during the period (not counted).
FACTS = [
    _signed("keep", "2026-01-10T09:00:00+00:00", 100_000, ANNA, "enterprise"),
    _fact("keep", 1, "2026-05-01T09:00:00+00:00", arr=120_000),
    _signed("shrink", "2025-12-01T09:00:00+00:00", 50_000, CARL, "non-focus"),
    _fact("shrink", 1, "2026-05-15T09:00:00+00:00", arr=40_000),
    _signed("gone", "2025-11-01T09:00:00+00:00", 30_000, ANNA, "strategic"),
    _fact("gone", 1, "2026-06-01T09:00:00+00:00", lifecycle_stage="churned"),
    _signed("usd", "2025-12-01T09:00:00+00:00", 10_000, CARL, "enterprise", currency="USD"),
    _signed("new", "2026-05-01T09:00:00+00:00", 80_000, ANNA, "enterprise"),
]


async def seed(hw: Harness) -> None:
    """FACTS, then a user of each live account, all scored; and the tier review alert."""
    async with hw.client() as client:
        r = await client.post("/v1/accounts", json={"accounts": FACTS})
        assert r.status_code == 202, r.text
        live = ("keep", "shrink", "usd", "new")
        r = await client.post("/v1/events", json={"events": [usage(a, f"{a}-u1") for a in live]})
        assert r.status_code == 202, r.text

        # Not a count of processed events: the facts' ids, older than the late-event
        # grace, are pruned from it as soon as they are applied.
        async def scored() -> bool:
            rows = (await client.get("/v1/accounts")).json()["accounts"]
            return {a["account_id"] for a in rows if a["active_users_7d"]} == set(live)

        await wait_for(scored, timeout=60, what="the live accounts' usage scored")
    await alert_stored(hw, "shrink:tier_review:1")  # 60 seats on non-focus


async def _stack(hw: Harness) -> dict[Role, str]:
    await seed(hw)
    return {
        role: await create_key(hw.rt.engine, role.value, role_scopes(role, email), email)
        for role, email in ((Role.cs_lead, None), (Role.csm, ANNA))
    }


async def test_renewals_retention_and_opportunities(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    alerting = write_alerting(tmp_path / "a.toml", alerting_toml(["tier_review"]))
    settings = kafka_settings.model_copy(update={"alerting_file": alerting})
    async with running(settings) as hw:
        keys = await _stack(hw)
        lead = httpx.AsyncClient(
            base_url=hw.url, headers={"Authorization": f"Bearer {keys[Role.cs_lead]}"}
        )
        anna = httpx.AsyncClient(
            base_url=hw.url, headers={"Authorization": f"Bearer {keys[Role.csm]}"}
        )
        async with lead, anna:
            await _retention(lead, anna)
            await _renewals(lead, anna)
            await _opportunities(hw, lead, anna)
            await _refusals(lead)


async def _retention(lead: httpx.AsyncClient, anna: httpx.AsyncClient) -> None:
    period = {"from": "2026-04-01", "to": "2026-07-01"}
    r = await lead.get("/v1/retention", params={**period, "by": "tier"})
    assert r.status_code == 200, r.text
    got = r.json()
    assert (got["accounts_start"], got["accounts_kept"], got["logo_retention"]) == (4, 3, 0.75)
    assert got["grr"] is None  # two currencies: no rate mixes them
    cny = got["by_currency"]["default"]
    assert (cny["start_arr"], cny["churned_arr"], cny["contraction"], cny["expansion"]) == (
        180_000,
        30_000,
        10_000,
        20_000,
    )
    assert (cny["grr"], cny["nrr"]) == (round(140 / 180, 4), round(160 / 180, 4))
    assert got["by_currency"]["USD"]["nrr"] == 1.0
    tiers = {g["tier"]: g for g in got["groups"]}
    assert tiers["strategic"]["churned_accounts"] == 1
    assert tiers["non-focus"]["grr"] == 0.8
    # Anna's portfolio: keep and gone (new signed during the period).
    mine = (await anna.get("/v1/retention", params={**period, "by": "csm"})).json()
    assert [g["csm"] for g in mine["groups"]] == [ANNA]
    assert mine["by_currency"]["default"]["nrr"] == round(120 / 130, 4)
    r = await lead.get("/v1/retention", params=period, headers={"Accept": "text/csv"})
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text.lstrip("\ufeff"))))
    # The service's currency by its name, as the dashboard's CSV writes it: a
    # spreadsheet's reader cannot know it (the API's wrote "default", found from outside).
    assert {(row["group"], row["currency"], row["expansion"]) for row in rows} == {
        ("all", "CNY", "20000.0"),
        ("all", "USD", "0.0"),
    }


async def _renewals(lead: httpx.AsyncClient, anna: httpx.AsyncClient) -> None:
    got = (await lead.get("/v1/renewals", params={"quarter": str(RENEWING), "limit": 2})).json()
    assert got["total"] == 4 and len(got["accounts"]) == 2  # gone churned: nothing to renew
    assert sum(t["accounts"] for t in got["totals"].values()) == 4
    row = got["accounts"][0]
    assert row["forecast"] in ("commit", "likely", "at_risk") and row["reasons"]
    shrink = (await lead.get("/v1/renewals", params={"quarter": str(RENEWING)})).json()
    assert {r["account_id"]: r["open_alerts"] for r in shrink["accounts"]}["shrink"] == 1
    mine = (await anna.get("/v1/renewals", params={"quarter": str(RENEWING)})).json()
    assert {r["account_id"] for r in mine["accounts"]} == {"keep", "new"}
    r = await anna.get("/v1/renewals", params={"quarter": str(RENEWING), "format": "csv"})
    rows = list(csv.DictReader(io.StringIO(r.text.lstrip("\ufeff"))))
    assert {row["account_id"] for row in rows} == {"keep", "new"}
    assert rows[0]["arr"] in ("120000.0", "80000.0")
    assert {row["currency"] for row in rows} == {"CNY"}  # as the dashboard's (was empty)


async def _opportunities(hw: Harness, lead: httpx.AsyncClient, anna: httpx.AsyncClient) -> None:
    # Red health now: no sales conversation (a tier review of a failing account was
    # listed as an opportunity, found from outside); listed again once it is not red.
    for band, listed in (("red", 0), ("yellow", 1)):
        async with hw.rt.engine.begin() as conn:
            await conn.execute(
                update(account_health)
                .where(account_health.c.account_id == "shrink")
                .values(band=band)
            )
        assert (await lead.get("/v1/opportunities")).json()["total"] == listed, band
    got = (await lead.get("/v1/opportunities")).json()
    assert got["total"] == 1
    [o] = got["opportunities"]
    assert (o["account_id"], o["rule"], o["arr"], o["seats_purchased"]) == (
        "shrink",
        "tier_review",
        40_000,
        60,
    )
    # Age from the firing's event time (the facts' or the usage's, as batches fell).
    age = datetime.now(UTC) - datetime.fromisoformat(o["fired_at"])
    assert o["owner_email"] == CARL and o["age_days"] == age.days
    assert (await anna.get("/v1/opportunities")).json()["total"] == 0


async def _refusals(lead: httpx.AsyncClient) -> None:
    for path, params, code in (
        ("/v1/renewals", {"quarter": "2027Q5"}, "bad_quarter"),
        ("/v1/renewals", {"quarter": "next"}, "bad_quarter"),
        ("/v1/retention", {"from": "2026-07-01", "to": "2026-07-01"}, "bad_period"),
        ("/v1/retention", {"from": "2010-01-01", "to": "2026-07-01"}, "period_too_long"),
    ):
        r = await lead.get(path, params=params)
        assert (r.status_code, r.json()["code"]) == (422, code), (path, params, r.text)
