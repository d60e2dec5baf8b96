"""The alerts API on a running embedded stack: scoping, actions, rules, quality, and
Slack's signed button clicks."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from pydantic import SecretStr

from shared.auth import Scope, create_key
from shared.config import Settings
from tests.support.alerting import alerting_toml, write_alerting
from tests.support.harness import (
    Harness,
    add_account,
    alert_stored,
    at,
    caught_up,
    running,
    send,
    ticket,
    wait_for,
)

pytestmark = pytest.mark.integration

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


def signed(body: bytes, secret: str = SIGNING_SECRET, age_s: int = 0) -> dict[str, str]:
    stamp = str(int(time.time()) - age_s)
    mac = hmac.new(secret.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256)
    return {
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": "v0=" + mac.hexdigest(),
        "Content-Type": "application/x-www-form-urlencoded",
    }


def click(action: str, alert_id: str, user: str) -> bytes:
    payload = {
        "type": "block_actions",
        "user": {"id": user},
        "actions": [{"action_id": action, "value": alert_id}],
    }
    return urllib.parse.urlencode({"payload": orjson.dumps(payload).decode()}).encode()


async def fire_backlog(hw: Harness, account: str, **owner: Any) -> str:
    """Open 5 tickets; return the alert's id once the alerts service has stored it."""
    await add_account(hw, account, seats=10, **owner)
    await send(hw, [ticket(account, n, "open", n) for n in range(1, 6)])
    alert_id = f"{account}:ticket_backlog:1"
    await alert_stored(hw, alert_id)
    return alert_id


async def test_csm_keys_see_and_act_on_their_own_alerts_only(
    embedded_settings: Settings, tmp_path: Path
) -> None:
    settings = embedded_settings.model_copy(
        update={
            "alerting_file": write_alerting(tmp_path / "a.toml", alerting_toml(["ticket_backlog"])),
            "slack_signing_secret": SecretStr(SIGNING_SECRET),
        }
    )
    async with running(settings) as hw:
        anna_alert = await fire_backlog(hw, "annas", email="anna@example.com", slack="U0ANNA")
        carl_alert = await fire_backlog(hw, "carls", email="carl@example.com")
        anna = await create_key(
            hw.rt.engine, "anna", [Scope.read, Scope.respond], "anna@example.com"
        )
        reader = await create_key(hw.rt.engine, "reader", [Scope.read], "anna@example.com")
        admin = await create_key(hw.rt.engine, "admin", [Scope.admin])

        def as_(key: str) -> httpx.AsyncClient:
            return httpx.AsyncClient(
                base_url=hw.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
            )

        async with as_(anna) as c:
            listed = (await c.get("/v1/alerts")).json()["alerts"]
            assert [a["alert_id"] for a in listed] == [anna_alert]
            assert (await c.get(f"/v1/alerts/{carl_alert}")).status_code == 404
            assert (await c.post(f"/v1/alerts/{carl_alert}/acknowledge")).status_code == 404
            r = await c.post(f"/v1/alerts/{anna_alert}/comments", json={"text": "called them"})
            assert r.status_code == 200, r.text
            r = await c.post(f"/v1/alerts/{anna_alert}/snooze", json={"reason": "no time"})
            assert r.status_code == 422 and "until" in r.json()["message"]
            r = await c.post(f"/v1/alerts/{anna_alert}/resolve", json={"reason": "fixed"})
            assert r.json()["status"] == "resolved"
            r = await c.post(f"/v1/alerts/{anna_alert}/acknowledge")
            assert r.status_code == 409  # resolved alerts are not acknowledged
            assert (await c.get("/v1/deliveries")).status_code == 403  # admin only
            rules = await c.put("/v1/alert-rules", content=b'version = "x"')
            assert rules.status_code == 403
        async with as_(reader) as c:
            assert (await c.post(f"/v1/alerts/{anna_alert}/not-useful", json={})).status_code == 403
        async with as_(admin) as c:
            everything = (await c.get("/v1/alerts", params={"status": "any"})).json()["alerts"]
            assert {a["alert_id"] for a in everything} == {anna_alert, carl_alert}
            detail = (await c.get(f"/v1/alerts/{anna_alert}")).json()
            assert [a["action"] for a in detail["activity"]] == ["comment", "resolve"]
            assert detail["activity"][0]["actor"] == "anna@example.com"

            bad = await c.put("/v1/alert-rules", content=b'version = "v2"\n[[rule]]\nid = "x"\n')
            assert bad.status_code == 422 and "rule.0" in bad.json()["message"]
            new = re.sub(
                r'(?m)^version = ".*"$',
                'version = "team-v2"',
                alerting_toml(["ticket_backlog", "nps_detractor"]),
            )
            r = await c.put("/v1/alert-rules", content=new.encode())
            assert r.status_code == 200 and r.json()["rules"] == 2
            r = await c.get("/v1/alert-rules")
            assert r.headers["X-Alerting-Version"] == "team-v2"
            again = await c.put("/v1/alert-rules", content=new.encode())
            assert again.status_code == 409

            quality = (await c.get("/v1/alert-rules/quality")).json()["rules"]
            assert quality == [
                {
                    "rule": "ticket_backlog",
                    "fired": 2,
                    "acknowledged": 0,
                    "median_minutes_to_acknowledge": None,
                    "not_useful": 0,
                    "escalated": 0,
                    "accounts": 2,
                    "accounts_churned_since": 0,
                }
            ]
            # The CRM says carls churned after its alert (counted), annas before (not).
            await add_account(hw, "carls", seats=10, lifecycle_stage="churned", occurred_at=at())
            await add_account(hw, "annas", seats=10, lifecycle_stage="churned")  # 30 days ago

            async def churn_counted() -> bool:
                rules = (await c.get("/v1/alert-rules/quality")).json()["rules"]
                return bool(rules[0]["accounts_churned_since"] == 1)

            await wait_for(churn_counted, timeout=60, what="the churn counted for the rule")
            await caught_up(
                hw, hw.rt.settings.consumer_group_scoring, [hw.rt.settings.topic("account")]
            )
            assert await churn_counted()  # annas's earlier churn, applied by now, is not

        # Slack buttons: signed by Slack, clicked by someone the alert went to.
        async with httpx.AsyncClient(base_url=hw.url) as slack:
            body = click("ack", carl_alert, "U0ANNA")
            r = await slack.post("/v1/slack/interactions", content=body, headers=signed(body))
            assert "not yours" in r.json()["text"]  # Anna does not own Carl's account
            third = await fire_backlog(hw, "third", email="anna@example.com", slack="U0ANNA")
            async with as_(admin) as c:  # firing, nobody has it: it waits
                fresh = (await c.get("/v1/alerts", params={"status": "to_do"})).json()["alerts"]
                assert [a["alert_id"] for a in fresh] == [third]
            body = click("ack", third, "U0ANNA")
            r = await slack.post(
                "/v1/slack/interactions", content=body, headers=signed(body, "wrong")
            )
            assert r.status_code == 401
            r = await slack.post(
                "/v1/slack/interactions", content=body, headers=signed(body, age_s=600)
            )
            assert r.status_code == 401  # a replay of an old request
            r = await slack.post("/v1/slack/interactions", content=body, headers=signed(body))
            assert r.status_code == 200 and r.json()["text"] == "Done: acknowledge."
            # Snoozed a day from the click as Slack signed it: the same request sent again
            # within its five minutes snoozes to the same end (it pushed the end out).
            body = click("snooze_1d", third, "U0ANNA")
            clicked = signed(body, age_s=120)
            for _ in range(2):
                r = await slack.post("/v1/slack/interactions", content=body, headers=clicked)
                assert r.json()["text"] == "Done: snooze.", r.text
                async with as_(anna) as c:
                    until = (await c.get(f"/v1/alerts/{third}")).json()["snoozed_until"]
                stamp = int(clicked["X-Slack-Request-Timestamp"])
                assert datetime.fromisoformat(until) == datetime.fromtimestamp(
                    stamp, UTC
                ) + timedelta(days=1)
            async with as_(anna) as c:
                asleep = (await c.get("/v1/alerts", params={"status": "snoozed"})).json()
                assert [a["alert_id"] for a in asleep["alerts"]] == [third]
                # A misspelt filter is refused, not ignored (a CS lead's ?state=).
                wrong = await c.get("/v1/alerts", params={"state": "snoozed"})
                assert wrong.status_code == 400 and wrong.json()["unknown"] == ["state"]
                assert (await c.post(f"/v1/alerts/{third}/unsnooze")).status_code == 200
            # The same click sent once more after Anna woke the alert (a replay within
            # its five minutes): done once, it does not snooze the alert anew.
            r = await slack.post("/v1/slack/interactions", content=body, headers=clicked)
            assert r.json()["text"] == "Done: snooze."
        async with as_(anna) as c:
            detail = (await c.get(f"/v1/alerts/{third}")).json()
            assert [a["action"] for a in detail["activity"]].count("snooze") == 1
            assert detail["status"] == "acknowledged"
            assert detail["acknowledged_by"] == "slack:U0ANNA"
        async with as_(admin) as c:  # open, but acknowledged: it waits for nobody
            still = (await c.get("/v1/alerts")).json()["alerts"]
            assert [a["alert_id"] for a in still] == [third]
            waiting = (await c.get("/v1/alerts", params={"status": "to_do"})).json()
            assert waiting["alerts"] == [] and waiting["total"] == 0
            asleep = (await c.get("/v1/alerts", params={"status": "snoozed"})).json()
            assert asleep["alerts"] == []  # unsnoozed


async def test_a_rule_silenced_on_an_account_keeps_its_alerts_snoozed(
    embedded_settings: Settings, tmp_path: Path
) -> None:
    """/v1/silences: a CSM silences a rule on an account of theirs (not on another's);
    the open alert is snoozed until the silence ends, listed and ended through the API."""
    settings = embedded_settings.model_copy(
        update={
            "alerting_file": write_alerting(tmp_path / "a.toml", alerting_toml(["ticket_backlog"]))
        }
    )
    async with running(settings) as hw:
        anna_alert = await fire_backlog(hw, "annas", email="anna@example.com")
        await add_account(hw, "carls", seats=10, email="carl@example.com")
        anna = await create_key(
            hw.rt.engine, "anna", [Scope.read, Scope.respond], "anna@example.com"
        )
        headers = {"Authorization": f"Bearer {anna}"}
        async with httpx.AsyncClient(base_url=hw.url, headers=headers, timeout=30) as c:
            asked = {"account_id": "annas", "rule": "ticket_backlog", "for": "90d",
                     "reason": "Migration week: tickets expected"}  # fmt: skip
            r = await c.put("/v1/silences", json=asked)
            assert r.status_code == 200, r.text
            until = r.json()["until"]
            alert = (await c.get(f"/v1/alerts/{anna_alert}")).json()
            assert alert["snoozed_until"] == until
            assert [a["action"] for a in alert["activity"]] == ["silence"]
            listed = (await c.get("/v1/silences")).json()["silences"]
            assert [(s["account_id"], s["rule"], s["silenced_by"]) for s in listed] == [
                ("annas", "ticket_backlog", "anna@example.com")
            ]
            for body, status in (
                ({**asked, "account_id": "carls"}, 404),  # another CSM's account
                ({**asked, "rule": "no_such_rule"}, 422),
                ({**asked, "for": "400d"}, 422),
                ({"account_id": "annas", "rule": "ticket_backlog"}, 422),  # no end
            ):
                r = await c.put("/v1/silences", json=body)
                assert r.status_code == status, (body, r.text)
            # Both ends, or a "for" of nothing: said, not one of them used without a word
            # (found from outside); the snooze reads its end the same way.
            both = {**asked, "until": "2027-01-01T00:00:00Z"}
            for body, words in ((both, "not both"), ({**asked, "for": "0d"}, "longer than")):
                r = await c.put("/v1/silences", json=body)
                assert r.status_code == 422 and words in r.json()["message"], r.text
                assert r.json()["code"] == "invalid_request"
            r = await c.post(f"/v1/alerts/{anna_alert}/snooze", json=both)
            assert r.status_code == 422 and "not both" in r.json()["message"], r.text
            zh = await c.put("/v1/silences", json=both, headers={"accept-language": "zh-CN"})
            assert "只能发送一个" in zh.json()["message"]
            # A long text is "characters", not "items" (pydantic worded it as a list).
            long = await c.put("/v1/silences", json={**asked, "reason": "x" * 2001})
            assert "at most 2000 characters" in long.text, long.text
            long = await c.get("/v1/silences", params={"account_id": "x" * 201})
            assert long.status_code == 422 and "at most 200 characters" in long.text, long.text
            nul = await c.get("/v1/silences", params={"account_id": "a\x00"})
            assert nul.status_code == 400 and "NUL" in nul.text, nul.text
            params = {"account_id": "annas", "rule": "ticket_backlog"}
            assert (await c.delete("/v1/silences", params=params)).status_code == 204
            assert (await c.delete("/v1/silences", params=params)).status_code == 404
            assert (await c.get("/v1/silences")).json()["silences"] == []
