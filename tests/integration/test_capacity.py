"""CSM workload and NPS on the real stack (Kafka, PostgreSQL): capacity per CSM, the
touchpoints due by cadence, NPS per segment, advocates, and a reassignment that moves
the accounts' alerts from one CSM to another and tells the new owner once, by email."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from shared.auth import Role, create_key, role_scopes
from shared.config import Settings
from shared.storage.tables import accounts, nps_responses
from tests.support.alerting import alerting_toml, write_alerting
from tests.support.harness import (
    Harness,
    add_account,
    alert_stored,
    at,
    low_activity_history,
    running,
    send,
    wait_for,
)
from tests.support.standins import Inbox, smtp_server

pytestmark = pytest.mark.integration

ANNA, CARL = "anna@example.com", "carl@example.com"


def touch(account: str, kind: str, days_ago: float) -> dict[str, Any]:
    return {
        "kind": "touchpoint",
        "event_id": uuid.uuid4().hex,
        "account_id": account,
        "touchpoint_kind": kind,
        "occurred_at": at(days_ago),
    }


def answer(
    account: str, score: int, days_ago: float, user: str, comment: str = ""
) -> dict[str, Any]:
    return {
        "kind": "nps",
        "event_id": uuid.uuid4().hex,
        "account_id": account,
        "user_id": user,
        "score": score,
        "comment": comment or None,
        "occurred_at": at(days_ago),
    }


async def key_for(hw: Harness, role: Role, email: str | None = None) -> dict[str, str]:
    raw = await create_key(hw.rt.engine, role.value, role_scopes(role, email), email)
    return {"Authorization": f"Bearer {raw}"}


async def owner_of(hw: Harness, account: str) -> str | None:
    async with hw.rt.engine.connect() as conn:
        q = select(accounts.c.owner_email).where(accounts.c.account_id == account)
        return (await conn.execute(q)).scalar()


async def answers(hw: Harness, expected: int) -> bool:
    async with hw.rt.engine.connect() as conn:
        q = select(func.count()).select_from(nps_responses)
        return (await conn.execute(q)).scalar_one() == expected


async def alert_ids(client: httpx.AsyncClient, headers: dict[str, str]) -> set[str]:
    r = await client.get("/v1/alerts", headers=headers)
    assert r.status_code == 200, r.text
    return {a["alert_id"] for a in r.json()["alerts"]}


def handovers(inbox: Inbox) -> list[tuple[str, str]]:
    return [
        (str(m["To"]), str(m["Subject"]))
        for m in inbox.messages
        if "assigned to you" in str(m["Subject"])
    ]


async def test_capacity_due_nps_and_reassignment(kafka_settings: Settings, tmp_path: Path) -> None:
    with smtp_server() as (inbox, smtp_port):
        await _capacity_due_nps_and_reassignment(kafka_settings, tmp_path, inbox, smtp_port)


async def _capacity_due_nps_and_reassignment(
    kafka_settings: Settings, tmp_path: Path, inbox: Inbox, smtp_port: int
) -> None:
    settings = kafka_settings.model_copy(
        update={
            "alerting_file": write_alerting(tmp_path / "a.toml", alerting_toml(["low_activity"])),
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp_port,
        }
    )
    live = (date.today() - timedelta(days=400)).isoformat()
    contact = [{"name": "Li Wei", "email": "li@big.example", "role": "champion"}]
    async with running(settings) as hw, hw.client() as client:
        await add_account(
            hw, "big", seats=50, tier="strategic", arr=300_000.0, go_live=live,
            email=ANNA, industry="retail", contacts=contact,
        )  # fmt: skip
        await add_account(
            hw, "mid", seats=4, tier="enterprise", arr=60_000.0, go_live=live, email=ANNA,
            industry="finance",
        )  # fmt: skip
        await add_account(hw, "tiny", seats=4, tier="non-focus", arr=3_000.0, email=CARL)
        await send(hw, low_activity_history("big", active_users=4))  # 4 of 50 seats: red
        await send(hw, low_activity_history("mid", active_users=4))
        await send(hw, low_activity_history("tiny", active_users=4))
        await send(
            hw,
            [
                touch("big", "visit", 40),  # the monthly visit is 10 days overdue
                touch("big", "qbr", 60),
                touch("big", "email", 1),  # an email is no visit (CAD-17)
                touch("mid", "call", 10),  # enterprise: next in 51 days
                answer("big", 10, 5, "li@big.example", "Great onboarding"),
                answer("mid", 3, 20, "cfo@mid.example"),
                answer("mid", 8, 21, "ops@mid.example"),
                answer("tiny", 7, 30, "x@tiny.example"),
            ],
        )
        # Older than the grace period (a late event): it still counts once; wait for its row.
        old = answer("big", 9, 300, "old@big.example")
        assert (await client.post("/v1/events", json={"events": [old]})).status_code == 202
        await wait_for(lambda: answers(hw, 5), timeout=60, what="the old NPS answer kept")
        await alert_stored(hw, "big:low_activity:1")
        lead = await key_for(hw, Role.cs_lead)
        anna = await key_for(hw, Role.csm, ANNA)
        carl = await key_for(hw, Role.csm, CARL)

        r = await client.get("/v1/capacity", headers=lead)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["capacity"] == {"strategic": 15, "enterprise": 30, "non-focus": 250}
        csms = {c["owner_email"]: c for c in body["csms"]}
        assert csms[ANNA]["load"] == round(1 / 15 + 1 / 30, 3)
        assert csms[ANNA]["by_tier"]["strategic"] == 1 and csms[ANNA]["overdue_touchpoints"] == 1
        assert csms[ANNA]["arr_by_currency"]["default"]["arr"] == 360_000.0
        assert csms[CARL]["load"] == 0.004 and csms[CARL]["overdue_touchpoints"] == 0
        assert csms[ANNA]["open_alerts"] >= 1
        r = await client.get("/v1/capacity", headers=carl)
        assert [c["owner_email"] for c in r.json()["csms"]] == [CARL]

        r = await client.get("/v1/touchpoints/due", params={"overdue": "true"}, headers=lead)
        due = r.json()
        assert due["total"] == 1 and due["accounts"][0]["account_id"] == "big"
        assert due["accounts"][0]["cadence"] == "visit" and due["accounts"][0]["days_overdue"] == 10
        r = await client.get("/v1/touchpoints/due", headers=anna)
        assert [a["account_id"] for a in r.json()["accounts"]] == ["big", "mid"]
        r = await client.get("/v1/touchpoints/due", headers=carl)
        assert r.json()["total"] == 0  # non-focus: a mass mailing, no visit due (CAD-12)

        r = await client.get("/v1/nps", params={"by": "tier"}, headers=lead)
        segments = {s["segment"]: s for s in r.json()["segments"]}
        assert segments["strategic"]["nps"] == 100.0  # both promoters
        assert segments["enterprise"]["nps"] == -50.0  # a detractor and a passive
        assert r.json()["overall"]["responses"] == 5
        r = await client.get("/v1/nps", params={"by": "csm"}, headers=anna)
        assert [s["segment"] for s in r.json()["segments"]] == [ANNA]
        r = await client.get("/v1/accounts/big/nps", headers=anna)
        assert r.json()["latest"] == 10 and len(r.json()["answers"]) == 2
        assert (await client.get("/v1/accounts/big/nps", headers=carl)).status_code == 404

        r = await client.get("/v1/advocates", headers=lead)
        advocates = r.json()["advocates"]
        # The 300-day-old promoter is past the six months (SV-05).
        assert [(a["account_id"], a["user_id"]) for a in advocates] == [("big", "li@big.example")]
        assert advocates[0]["contact"]["name"] == "Li Wei" and advocates[0]["band"] == "red"

        move = {"account_ids": ["big"], "to_owner": CARL}
        r = await client.post("/v1/accounts/reassign", json=move, headers=anna)
        assert r.status_code == 403 and r.json()["code"] == "lead_only"
        bad = {"account_ids": ["nope"], "to_owner": CARL}
        assert (
            await client.post("/v1/accounts/reassign", json=bad, headers=lead)
        ).status_code == 404
        assert "big:low_activity:1" in await alert_ids(client, anna)
        assert "big:low_activity:1" not in await alert_ids(client, carl)
        r = await client.post("/v1/accounts/reassign", json=move, headers=lead)
        assert r.status_code == 202 and r.json()["accepted"] == 1, r.text

        async def moved() -> bool:
            return await owner_of(hw, "big") == CARL

        await wait_for(moved, timeout=60, what="the reassignment applied by scoring")

        async def told() -> bool:
            return bool(handovers(inbox))

        await wait_for(told, timeout=30, what="the new owner told of the handover")
        assert handovers(inbox) == [(CARL, "[healthwatch] Account assigned to you: big Inc")]
        assert "big:low_activity:1" in await alert_ids(client, carl)
        assert "big:low_activity:1" not in await alert_ids(client, anna)
        r = await client.get("/v1/touchpoints/due", params={"owner": CARL}, headers=lead)
        assert [a["account_id"] for a in r.json()["accounts"]] == ["big"]
        r = await client.post("/v1/accounts/reassign", json=move, headers=lead)
        assert r.json() == {"accepted": 0, "event_ids": [], "unchanged": ["big"]}
        assert len(handovers(inbox)) == 1  # told once
