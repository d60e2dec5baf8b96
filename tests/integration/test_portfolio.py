"""The portfolio read API on a running embedded stack: filters, risk × value sorting,
aggregates, account detail and the timeline."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from services.reports.fmt import Fmt
from shared.config import Settings
from tests.support.alerting import alerting_toml, write_alerting
from tests.support.harness import (
    add_account,
    alert_stored,
    low_activity_history,
    running,
    send,
    ticket,
    wait_for,
)

pytestmark = pytest.mark.integration


async def test_portfolio_filters_sorts_and_explains_an_account(
    embedded_settings: Settings, tmp_path: Path
) -> None:
    settings = embedded_settings.model_copy(
        update={
            "alerting_file": write_alerting(
                tmp_path / "a.toml", alerting_toml(["low_activity", "ticket_backlog"])
            )
        }
    )
    soon = (date.today() + timedelta(days=20)).isoformat()
    later = (date.today() + timedelta(days=300)).isoformat()
    async with running(settings) as hw, hw.client() as client:
        await add_account(
            hw,
            "big",
            seats=50,
            tier="strategic",
            arr=500_000.0,
            contract_end=soon,
            lifecycle_stage="stable",
            email="anna@example.com",
        )
        await add_account(
            hw,
            "small",
            seats=50,
            tier="non-focus",
            arr=5_000.0,
            contract_end=later,
            lifecycle_stage="stable",
            email="anna@example.com",
        )
        await add_account(
            hw,
            "healthy",
            seats=4,
            tier="enterprise",
            arr=50_000.0,
            contract_end=later,
            email="carl@example.com",
        )
        # big and small: 4 of 50 seats active (red); healthy: 4 of 4.
        for name in ("big", "small", "healthy"):
            await send(hw, low_activity_history(name, active_users=4))
        await send(hw, [ticket("big", n, "open", n) for n in range(1, 6)])
        for alert_id in ("big:low_activity:1", "small:low_activity:1", "big:ticket_backlog:1"):
            await alert_stored(hw, alert_id)

        r = await client.get("/v1/accounts")
        assert r.status_code == 200, r.text
        rows = r.json()["accounts"]
        assert rows[0]["account_id"] == "big" and len(rows) == 3
        values = [a["risk_value"] for a in rows]
        assert values == sorted(values, reverse=True)
        assert rows[0]["risk_value"] == round((100 - rows[0]["score"]) * 500_000.0 / 100, 2)
        # Money at risk is never more than the money (it read 60 times an account's ARR).
        assert all(a["risk_value"] <= a["arr"] for a in rows if a["risk_value"] is not None)

        strategic = (await client.get("/v1/accounts?tier=strategic")).json()["accounts"]
        assert [a["account_id"] for a in strategic] == ["big"]
        renewing = (await client.get("/v1/accounts?renewal_within_days=30")).json()
        assert [a["account_id"] for a in renewing["accounts"]] == ["big"]
        assert renewing["accounts"][0]["days_to_renewal"] == 20
        carls = (await client.get("/v1/accounts?csm=carl@example.com")).json()["accounts"]
        assert [a["account_id"] for a in carls] == ["healthy"]
        by_name = (await client.get("/v1/accounts?sort=name&limit=2")).json()
        assert by_name["total"] == 3
        assert [a["account_id"] for a in by_name["accounts"]] == ["big", "healthy"]
        red = (await client.get("/v1/accounts?band=red")).json()["accounts"]
        assert [a["account_id"] for a in red] == ["big", "small"]  # riskiest × value first
        stable = (await client.get("/v1/accounts?lifecycle_stage=stable")).json()["accounts"]
        assert {a["account_id"] for a in stable} == {"big", "small"}
        for level in {a["danger_level"] for a in rows} - {None}:
            same = (await client.get(f"/v1/accounts?danger_level={level}")).json()["accounts"]
            assert {a["account_id"] for a in same} == {
                a["account_id"] for a in rows if a["danger_level"] == level
            }
        bad = await client.get("/v1/accounts?band=purple")
        assert bad.status_code == 422

        totals = (await client.get("/v1/aggregates")).json()
        assert totals["accounts"] == 3
        assert totals["by_band"].get("red") == 2
        assert totals["arr_total"] == 555_000.0
        assert totals["arr_at_risk"] == 505_000.0
        # Per currency, never added across; how many accounts have an ARR at all.
        assert totals["arr_by_currency"] == {
            "default": {"arr": 555_000.0, "arr_at_risk": 505_000.0}
        }
        assert totals["arr_accounts_known"] == 3
        assert totals["stably_active_share"] == round(1 / 3, 4)
        assert totals["open_alerts_by_rule"] == {"low_activity": 2, "ticket_backlog": 1}
        # Aggregates take the list's filters.
        anna = (await client.get("/v1/aggregates?csm=anna@example.com")).json()
        assert (anna["accounts"], anna["arr_total"]) == (2, 505_000.0)
        assert anna["by_band"] == {"red": 2}
        strategic_totals = (await client.get("/v1/aggregates?tier=strategic")).json()
        assert strategic_totals["accounts"] == 1 and strategic_totals["arr_at_risk"] == 500_000.0
        assert strategic_totals["open_alerts_by_rule"] == {"low_activity": 1, "ticket_backlog": 1}

        detail = (await client.get("/v1/accounts/big")).json()
        assert detail["facts"]["tier"] == "strategic"
        assert detail["health"]["band"] == "red"
        assert {a["rule"] for a in detail["open_alerts"]} == {"low_activity", "ticket_backlog"}

        timeline = (await client.get("/v1/accounts/big/timeline")).json()
        days = {d["day"]: d for d in timeline["days"]}
        assert sum(d.get("events", 0) for d in days.values()) == 32
        opened = [t for d in days.values() for t in d.get("tickets_opened", [])]
        assert len(opened) == 5
        fired = [a["rule"] for d in days.values() for a in d.get("alerts", [])]
        assert sorted(fired) == ["low_activity", "ticket_backlog"]
        assert any("score" in d for d in days.values())
        r = await client.get("/v1/accounts/big/timeline?from=2026-12-01&to=2026-11-01")
        assert r.status_code == 422

        # Riskiest × value never compares two currencies: the service's first (dollars
        # had been read as so many yuan).
        await add_account(hw, "small", seats=50, currency="USD")

        async def small_in_dollars() -> bool:
            rows = (await client.get("/v1/accounts")).json()["accounts"]
            return {a["account_id"]: a["currency"] for a in rows}["small"] == "USD"

        await wait_for(small_in_dollars, timeout=60, what="small's facts in dollars")
        rows = (await client.get("/v1/accounts")).json()["accounts"]
        assert [a["account_id"] for a in rows][-1] == "small"


async def test_reports_compare_with_the_tier_and_print(
    embedded_settings: Settings, tmp_path: Path
) -> None:
    async with running(embedded_settings) as hw, hw.client() as client:
        for name, users in (("alpha", 8), ("beta", 2)):
            await add_account(hw, name, seats=10, tier="enterprise")
            await send(
                hw,
                [
                    {**e, "module": "crm" if i % 2 else "reports", "duration_s": 60}
                    for i, e in enumerate(low_activity_history(name, active_users=users))
                ],
            )
        await send(hw, [ticket("alpha", 1, "open", 1)])
        r = await client.get("/v1/accounts/alpha/reports/qbr")
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/html")
        # Framed by nothing, loading nothing, kept by no cache, as the dashboard's print
        # route (the API's answered without these; found from outside).
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["cache-control"] == "no-store"
        page = r.text
        assert "Quarterly business review: alpha Inc" in page
        # alpha: 8 users, 64 actions, 64 minutes; tier average of alpha and beta: 5 users.
        assert "<td>Active users in the period</td><td class=n>8</td><td class=n>5</td>" in page
        assert "160% of average" in page
        assert "<td>Online time (hours)</td><td class=n>1.1</td>" in page
        assert "<td>crm</td><td class=n>32</td>" in page and "<td>reports</td>" in page
        assert "1 open now" in page and "alpha-T1" in page
        assert page.count("<svg") == 2 and "@page" in page
        assert (await client.get("/v1/accounts/alpha/reports/yearly")).status_code == 422
        # The usage (30 days) and bi-monthly (61 days) reports: the same figures over
        # their own periods; a period that ended before the history shows no activity.
        for kind, title, days in (
            ("usage", "Usage report", 30),
            ("bimonthly", "Bi-monthly usage report", 61),
        ):
            r = await client.get(f"/v1/accounts/alpha/reports/{kind}")
            assert r.status_code == 200, r.text
            today = date.today()
            assert f"{title}: alpha Inc" in r.text
            first = Fmt().day(today - timedelta(days=days - 1))
            assert f"{first} to {Fmt().day(today)}" in r.text  # the period, as people write it
            assert (
                "<td>Active users in the period</td><td class=n>8</td><td class=n>5</td>" in r.text
            )
        before = (today - timedelta(days=20)).isoformat()
        old = await client.get(f"/v1/accounts/alpha/reports/usage?end={before}")
        assert old.status_code == 200
        assert "<td>Active users in the period</td><td class=n>0</td>" in old.text
        # A period ending in days to come would report them as days without use.
        ahead = (today + timedelta(days=2)).isoformat()
        soon = await client.get(f"/v1/accounts/alpha/reports/usage?end={ahead}")
        assert (soon.status_code, soon.json()["code"]) == (422, "as_of_in_future")
