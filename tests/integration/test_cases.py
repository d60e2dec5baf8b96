"""Risk cases on the real stack (Kafka, PostgreSQL, the Slack stand-in, aiosmtpd): a
high-danger alert opens the account's case, its CSM plans, reviews (the next review due
by the danger after it) and closes it over the API, a detractor's answer opens a
follow-up task, and every notice (the follow-up's too) reaches Slack and email once:
the owner when due, the lead when overdue, a strategic account's lead and sales owner
all along (DG-10)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from shared.auth import Scope, create_key
from shared.config import Settings
from shared.storage.tables import tasks
from tests.support.alerting import alerting_toml, write_alerting
from tests.support.harness import (
    Harness,
    add_account,
    alerts_settled,
    at,
    low_activity_history,
    running,
    send,
    wait_for,
)
from tests.support.standins import Inbox, SlackStandIn, smtp_server

pytestmark = pytest.mark.integration

ROUTING = """[routing]
tiers = { strategic = ["cs_lead", "sales_manager"] }
escalate_to = ["cs_lead"]
[routing.people.cs_lead]
email = "lead@example.com"
slack = "U0LEAD"
"""
EVERYONE = {"anna@example.com", "lead@example.com", "bob@example.com"}
CALL = "Call the detractor"  # the follow-up task's title begins so


async def _client(hw: Harness, csm: str) -> httpx.AsyncClient:
    key = await create_key(hw.rt.engine, csm, [Scope.read, Scope.respond], csm_email=csm)
    return httpx.AsyncClient(
        base_url=hw.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


def _subjects(inbox: Inbox, words: str) -> set[str]:
    return {str(m["To"]) for m in inbox.messages if words in str(m["Subject"])}


async def _open_case(client: httpx.AsyncClient) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def opened() -> bool:
        r = await client.get("/v1/cases", params={"owner": "anna@example.com"})
        found.update(r.json())
        return bool(r.json()["cases"])

    await wait_for(opened, timeout=60, what="the case the critical alert opens")
    return dict(found["cases"][0])


async def test_a_case_from_alert_to_close_and_a_detractors_follow_up(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    slack = SlackStandIn()
    with smtp_server() as (inbox, smtp_port):
        file = write_alerting(
            tmp_path / "alerting.toml",
            alerting_toml(["low_activity", "nps_detractor"], routing=ROUTING),
        )
        settings = kafka_settings.model_copy(
            update={
                "alerting_file": file,
                "smtp_host": "127.0.0.1",
                "smtp_port": smtp_port,
                "slack_webhook_url": slack.webhook_url,
                "alert_timer_interval_s": 0.5,
            }
        )
        async with slack.running(), running(settings) as hw, hw.client() as lead:
            await add_account(
                hw,
                "big",
                seats=50,
                email="anna@example.com",
                slack="U0ANNA",
                tier="strategic",
                sales_owner={"email": "bob@example.com"},
            )
            await add_account(hw, "calm", seats=50, email="carl@example.com", slack="U0CARL")
            await send(hw, low_activity_history("big", active_users=4))
            case = await _open_case(lead)
            assert case["danger_level"] == "high" and case["alert_id"] == "big:low_activity:1"
            anna, carl = (
                await _client(hw, "anna@example.com"),
                await _client(hw, "carl@example.com"),
            )
            path = f"/v1/cases/{case['case_id']}"
            # Carl cannot see or touch Anna's case.
            assert (await carl.get(path)).status_code == 404
            r = await carl.post(f"{path}/reviews", json={"notes": "x", "danger_after": "mild"})
            assert r.status_code == 404
            assert (await carl.get("/v1/cases")).json()["total"] == 0
            # Opening it again (a click on the alert) finds the same case.
            r = await anna.post("/v1/alerts/big:low_activity:1/case", json={})
            assert r.status_code == 200 and r.json()["case_id"] == case["case_id"], r.text
            assert r.json()["opened"] is False
            assert set(r.json()["watchers"]) == EVERYONE
            # A plan step already two days late: due to Anna, overdue to the lead.
            due = (datetime.now(UTC) - timedelta(days=2)).isoformat()
            r = await anna.post(f"{path}/tasks", json={"title": "Meet the boss", "due": due})
            assert r.status_code == 200, r.text
            r = await anna.post(f"{path}/tasks", json={"title": "", "due": due})
            assert r.status_code == 422 and r.json()["code"]
            for far in ("0001-01-01T00:00:00+08:00", "9999-12-31T23:59:59-08:00"):
                r = await anna.post(f"{path}/tasks", json={"title": "Someday", "due": far})
                assert r.status_code == 422, (far, r.text)
            r = await anna.post(
                f"{path}/reviews",
                json={"notes": "Boss met, re-implementation agreed", "danger_after": "normal"},
            )
            assert r.status_code == 200 and r.json()["danger_level"] == "normal", r.text
            assert r.json()["reviews"][0]["reviewer"] == "anna@example.com"
            # The next review by the danger after this one: normal fortnightly, mild
            # monthly (case_review_days_normal, case_review_days_mild).
            assert _review_in(r.json(), days=14)
            r = await anna.post(f"{path}/reviews", json={"notes": "Live", "danger_after": "mild"})
            assert r.status_code == 200 and _review_in(r.json(), days=30), r.text
            await wait_for(
                lambda: _has(inbox, "Task overdue, not done: Meet the boss"),
                timeout=60,
                what="the overdue task's escalation",
            )
            # Its due notice too, before the case closes: once the case is closed the task
            # may no longer be told (a CI run saw the overdue notice only).
            await wait_for(
                lambda: _has(inbox, "Task due: Meet the boss"),
                timeout=60,
                what="the task's due notice",
            )
            r = await anna.post(
                f"{path}/close", json={"outcome": "saved", "lesson": "Meet the boss"}
            )
            assert r.status_code == 200 and r.json()["state"] == "closed", r.text
            assert (
                await anna.post(f"{path}/close", json={"outcome": "saved", "lesson": "x"})
            ).status_code == 409
            # A detractor's answer: Carl's follow-up task.
            nps = {
                "kind": "nps",
                "event_id": uuid.uuid4().hex,
                "account_id": "calm",
                "score": 3,
                "occurred_at": at(0),
            }
            await send(hw, [nps])
            await wait_for(lambda: _follow_up(carl), timeout=60, what="the detractor's follow-up")
            (task,) = (await carl.get("/v1/tasks", params={"mine": "true"})).json()["tasks"]
            assert task["kind"] == "nps_followup" and task["owner_email"] == "carl@example.com"
            # A week on, not called: Carl hears it is due, the lead a day later that it is
            # overdue. The timers read the wall clock, so the due time moves back instead.
            async with hw.rt.engine.begin() as conn:
                moved = datetime.now(UTC) - timedelta(days=2)
                await conn.execute(
                    update(tasks).where(tasks.c.task_id == task["task_id"]).values(due=moved)
                )
            await wait_for(
                lambda: _has(inbox, f"Task overdue, not done: {CALL}"),
                timeout=60,
                what="the follow-up's escalation",
            )
            r = await carl.post(f"/v1/tasks/{task['task_id']}/complete")
            assert r.status_code == 200 and r.json()["done_by"] == "carl@example.com", r.text
            # The lead opens a case by hand after the call: its opening is told to Carl
            # (the alert's case was not: its alert's own notice had just reached the same
            # people; nor is one told to whoever opened it, who knows).
            body = {
                "account_id": "calm",
                "danger_level": "mild",
                "summary": "Budget cut",
                "causes": ["budget"],
            }
            r = await lead.post("/v1/cases", json=body)
            assert r.status_code == 200 and r.json()["opened"] is True, r.text
            await wait_for(
                lambda: _has(inbox, "Risk case opened: Budget cut"), timeout=60, what="the opening"
            )
            await wait_for(
                lambda: _has(inbox, "Case closed (saved)", 2), timeout=60, what="the closing"
            )
            await alerts_settled(hw)
            await anna.aclose()
            await carl.aclose()
    assert _subjects(inbox, "Risk case opened") == {"carl@example.com"}
    assert _subjects(inbox, "big Inc: only") == EVERYONE  # the alert that opened big's case
    assert _subjects(inbox, "Task due: Meet the boss") == {"anna@example.com"}
    assert _subjects(inbox, "Task overdue, not done: Meet the boss") == {"lead@example.com"}
    # Anna closed it: she knows (her own close had been told to her).
    assert _subjects(inbox, "Case closed (saved)") == EVERYONE - {"anna@example.com"}
    # Each notice once to each person (its Message-ID is the notice's key).
    keys = [(str(m["Message-ID"]), str(m["To"])) for m in inbox.messages]
    assert len(keys) == len(set(keys)), keys
    assert _subjects(inbox, f"Task due: {CALL}") == {"carl@example.com"}
    assert _subjects(inbox, f"Task overdue, not done: {CALL}") == {"lead@example.com"}
    posts = [r.body["text"] for r in slack.delivered()]
    assert any("U0LEAD" in p and "Case closed (saved)" in p for p in posts), posts
    assert not any("U0ANNA" in p and "Case closed (saved)" in p for p in posts), posts
    for mention, words in (("U0CARL", "Task due: "), ("U0LEAD", "Task overdue, not done: ")):
        told = [p for p in posts if f"{words}{CALL}" in p]
        assert len(told) == 1 and told[0].startswith(f"<@{mention}> "), (words, told)


async def _has(inbox: Inbox, words: str, n: int = 1) -> bool:
    return sum(words in str(m["Subject"]) for m in inbox.messages) >= n


async def _follow_up(client: httpx.AsyncClient) -> bool:
    r = await client.get("/v1/tasks", params={"mine": "true", "kind": "nps_followup"})
    return bool(r.json()["tasks"])


def _review_in(case: dict[str, Any], *, days: int) -> bool:
    """The case's next review is ``days`` after its newest review (to the second)."""
    reviewed = datetime.fromisoformat(case["reviews"][-1]["at"])
    due = datetime.fromisoformat(case["next_review_at"])
    return abs(due - reviewed - timedelta(days=days)) < timedelta(seconds=1)
