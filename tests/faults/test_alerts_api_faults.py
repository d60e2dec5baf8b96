"""The alerts API under hostile and changing input (issue 11, items 12-14): alert
visibility follows the account's owner now, Slack's endpoint answers 401 to malformed
signature headers, and out-of-range values are a 4xx naming the field, never a 500.

On the real stack: Kafka, PostgreSQL, the services in the test's event loop."""

from __future__ import annotations

import gzip
import hashlib
import hmac
import re
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from shared.auth import Role, Scope, create_key, role_scopes
from shared.config import Settings
from shared.storage.tables import accounts
from tests.support.alerting import alerting_toml, write_alerting
from tests.support.harness import Harness, alert_stored, at, facts, running, send, ticket, wait_for

pytestmark = pytest.mark.integration

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
ANNA, CARL = "anna@example.com", "carl@example.com"


def signed(body: bytes) -> dict[str, str]:
    stamp = str(int(time.time()))
    mac = hmac.new(SIGNING_SECRET.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256)
    return {
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": "v0=" + mac.hexdigest(),
        "Content-Type": "application/x-www-form-urlencoded",
    }


def click(action: str, alert_id: str, user: str) -> bytes:
    payload = {"user": {"id": user}, "actions": [{"action_id": action, "value": alert_id}]}
    return urllib.parse.urlencode({"payload": orjson.dumps(payload).decode()}).encode()


async def put_account(hw: Harness, admin: str, account: str, **extra: Any) -> None:
    """The CRM's facts about ``account`` (sent with an admin key, which may send them
    whatever narrower key the CRM gets), stored once scoring has applied them."""
    body = facts(account, seats=10, **extra)
    async with httpx.AsyncClient(base_url=hw.url, headers=bearer(admin), timeout=30) as c:
        r = await c.post("/v1/accounts", json=body)
        assert r.status_code == 202, r.text
    email = (body.get("owner") or {}).get("email")

    async def stored() -> bool:
        async with hw.rt.engine.connect() as conn:
            q = select(accounts.c.owner_email).where(accounts.c.account_id == account)
            row = (await conn.execute(q)).first()
        return row is not None and row.owner_email == email

    await wait_for(stored, timeout=60, what=f"account {account} stored with owner {email}")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@asynccontextmanager
async def stack(settings: Settings, tmp_path: Path) -> AsyncIterator[tuple[Harness, str]]:
    """The services with the ticket-backlog rule and Slack's signing secret; yields the
    harness and an admin key."""
    settings = settings.model_copy(
        update={
            "alerting_file": write_alerting(tmp_path / "a.toml", alerting_toml(["ticket_backlog"])),
            "slack_signing_secret": SecretStr(SIGNING_SECRET),
        }
    )
    async with running(settings) as hw:
        yield hw, await create_key(hw.rt.engine, "admin", [Scope.admin])


async def fire(hw: Harness, account: str) -> str:
    await send(hw, [ticket(account, n, "open", n) for n in range(1, 6)])
    alert_id = f"{account}:ticket_backlog:1"
    await alert_stored(hw, alert_id)
    return alert_id


async def test_alerts_follow_the_accounts_owner_now_in_every_route(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    async with stack(kafka_settings, tmp_path) as (hw, admin):
        await put_account(hw, admin, "moving", email=ANNA, slack="U0ANNA")
        alert = await fire(hw, "moving")
        # The CRM hands the account to Carl (a later fact than the first).
        await put_account(hw, admin, "moving", email=CARL, slack="U0CARL", occurred_at=at())
        keys = {
            who: await create_key(hw.rt.engine, who, role_scopes(Role.csm, who), who)
            for who in (ANNA, CARL)
        }
        async with (
            httpx.AsyncClient(base_url=hw.url, headers=bearer(keys[ANNA]), timeout=30) as anna,
            httpx.AsyncClient(base_url=hw.url, headers=bearer(keys[CARL]), timeout=30) as carl,
            httpx.AsyncClient(base_url=hw.url, headers=bearer(admin), timeout=30) as lead,
        ):
            # The old owner: gone from every route, as if it did not exist.
            assert (await anna.get("/v1/alerts?status=any")).json()["alerts"] == []
            assert (await anna.get(f"/v1/alerts/{alert}")).status_code == 404
            r = await anna.post(f"/v1/alerts/{alert}/comments", json={"text": "mine?"})
            assert r.status_code == 404
            assert (await anna.post(f"/v1/alerts/{alert}/acknowledge")).status_code == 404
            # The new owner: sees it, reads it, comments, acts.
            listed = (await carl.get("/v1/alerts?status=any")).json()["alerts"]
            assert [a["alert_id"] for a in listed] == [alert]
            one = await carl.get(f"/v1/alerts/{alert}")
            assert one.status_code == 200
            # Named as the owner now, not the CSM it fired for (found from outside).
            assert listed[0]["owner_email"] == one.json()["owner_email"] == CARL
            r = await carl.post(f"/v1/alerts/{alert}/comments", json={"text": "on it"})
            assert r.status_code == 200, r.text
            quality = (await carl.get("/v1/alert-rules/quality")).json()["rules"]
            assert [q["fired"] for q in quality] == [1]
            assert (await anna.get("/v1/alert-rules/quality")).json()["rules"] == []
            # The owner filter means the owner now, too.
            by_carl = await lead.get("/v1/alerts", params={"owner": CARL})
            assert [a["alert_id"] for a in by_carl.json()["alerts"]] == [alert]
            assert (await lead.get("/v1/alerts", params={"owner": ANNA})).json()["alerts"] == []
        # Slack buttons: the old owner's click is refused, the new owner's works.
        async with httpx.AsyncClient(base_url=hw.url, timeout=30) as slack:
            body = click("ack", alert, "U0ANNA")
            r = await slack.post("/v1/slack/interactions", content=body, headers=signed(body))
            assert "not yours" in r.json()["text"]
            body = click("ack", alert, "U0CARL")
            r = await slack.post("/v1/slack/interactions", content=body, headers=signed(body))
            assert r.json()["text"] == "Done: acknowledge.", r.text


BAD_SLACK_HEADERS: list[dict[str, str]] = [
    {},
    {"X-Slack-Signature": "v0=00"},
    {"X-Slack-Request-Timestamp": "", "X-Slack-Signature": "v0=00"},
    {"X-Slack-Request-Timestamp": "yesterday", "X-Slack-Signature": "v0=00"},
    {"X-Slack-Request-Timestamp": "1e9", "X-Slack-Signature": "v0=00"},
    {"X-Slack-Request-Timestamp": "-5", "X-Slack-Signature": "v0=00"},
    {"X-Slack-Request-Timestamp": "9" * 400, "X-Slack-Signature": "v0=00"},
    {"X-Slack-Request-Timestamp": "\u0661\u0662", "X-Slack-Signature": "v0=00"},
    {"X-Slack-Request-Timestamp": str(int(time.time()))},
    {"X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "v0=\u00e9t\u00e9"},
]


async def test_slack_interactions_refuse_malformed_signature_headers_with_401(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    body = click("ack", "x:ticket_backlog:1", "U0ANNA")
    async with stack(kafka_settings, tmp_path) as (hw, _), httpx.AsyncClient(base_url=hw.url) as c:
        answers = []
        for headers in BAD_SLACK_HEADERS:
            encoded = {k: v.encode("utf-8") for k, v in headers.items()}
            r = await c.post("/v1/slack/interactions", content=body, headers=encoded)
            answers.append((headers, r.status_code, r.json().get("error")))
        # Bytes that are no UTF-8 under a fresh timestamp (any signature): a 500 before.
        for raw, encoding in ((b"\xff\xfe", "identity"), (gzip.compress(b"\xff\xfe"), "gzip")):
            stamp = {
                "X-Slack-Request-Timestamp": str(int(time.time())),
                "X-Slack-Signature": "v0=00",
                "Content-Encoding": encoding,
            }
            r = await c.post("/v1/slack/interactions", content=raw, headers=stamp)
            answers.append((stamp, r.status_code, r.json().get("error")))
        # Open to anyone before the signature check: nothing larger than Slack sends.
        r = await c.post("/v1/slack/interactions", content=b"x" * 2_000_000)
        assert r.status_code == 413, r.text
        # Signed, but a payload that is not ours, or an alert id no alert can have.
        for payload in (b"payload=%5B%5D", b"payload=nope", click("ack", "a\x00b", "U0ANNA")):
            r = await c.post("/v1/slack/interactions", content=payload, headers=signed(payload))
            answers.append((payload, r.status_code, r.json().get("error")))
    refused = len(BAD_SLACK_HEADERS) + 2
    assert [a[1:] for a in answers[:refused]] == [(401, "bad_signature")] * refused, answers
    assert [a[1] for a in answers[refused:]] == [400, 400, 200], answers


FAR = (datetime.now(UTC) + timedelta(days=91)).isoformat()
BAD_SNOOZES: list[tuple[bytes, str]] = [
    (b'{"for": 1e20}', "for"),
    (b'{"for": 1e400}', "for"),
    (b'{"for": -60}', "for"),
    (b'{"for": 0}', "for"),
    (b'{"for": NaN}', "for"),
    (b'{"for": Infinity}', "for"),
    (b'{"for": "99999999999999999999w"}', "for"),
    (b'{"for": "91d"}', "for"),
    (b'{"for": "soon"}', "for"),
    (b'{"for": true}', "for"),  # was a 1-second snooze
    ('{"for": "１d"}'.encode(), "for"),  # full-width digits: was a day
    (b'{"for": "P100D"}', "for"),
    (b'{"until": "9999-12-31T23:59:59-14:00"}', "until"),
    (b'{"until": "0001-01-01T00:00:00+14:00"}', "until"),
    (f'{{"until": "{FAR}"}}'.encode(), "until"),
    (b'{"for": "1h", "reason": "a\\u0000b"}', "reason"),
]


async def test_out_of_range_values_are_a_4xx_naming_the_field(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    async with stack(kafka_settings, tmp_path) as (hw, admin):
        await put_account(hw, admin, "acme", email=ANNA)
        alert = await fire(hw, "acme")
        async with httpx.AsyncClient(base_url=hw.url, headers=bearer(admin), timeout=30) as c:
            json = {"Content-Type": "application/json"}
            wrong = []
            for body, field in BAD_SNOOZES:
                r = await c.post(f"/v1/alerts/{alert}/snooze", content=body, headers=json)
                if r.status_code != 422 or field not in r.text:
                    wrong.append((body, r.status_code, r.text))
            for path, body in (
                (f"/v1/alerts/{alert}/comments", b'{"text": "\\u0000"}'),
                (f"/v1/alerts/{alert}/resolve", b'{"reason": "x\\u0000"}'),
                (f"/v1/alerts/{alert}/not-useful", b'{"reason": "x\\u0000"}'),
                # A lone surrogate: PostgreSQL cannot store it (it was a 500).
                (f"/v1/alerts/{alert}/snooze", b'{"for": "1h", "reason": "x\\ud800"}'),
                (f"/v1/alerts/{alert}/resolve", b'{"reason": "x\\ud800"}'),
                (f"/v1/alerts/{alert}/not-useful", b'{"reason": "x\\ud800"}'),
            ):
                r = await c.post(path, content=body, headers=json)
                if r.status_code != 422:
                    wrong.append((path, r.status_code, r.text))
            for path in (
                "/v1/deliveries/99999999999999999999/retry",
                "/v1/deliveries/9223372036854775808/retry",
                "/v1/deliveries/-1/retry",
                "/v1/deliveries/0/retry",
                "/v1/deliveries/1e3/retry",
            ):
                r = await c.post(path)
                if r.status_code not in (404, 422) or "delivery_id" not in r.text:
                    wrong.append((path, r.status_code, r.text))
            for params in (
                {"limit": "99999999999999999999"},
                {"limit": "-1"},
                {"status": "everything"},
                {"severity": "fatal"},
                {"rule": "r" * 1000},
                {"account_id": "a" * 1000},
                {"owner": "o" * 1000},
            ):
                r = await c.get("/v1/alerts", params=params)
                if r.status_code != 422 or next(iter(params)) not in r.text:
                    wrong.append((params, r.status_code, r.text))
            for params in ({"limit": "99999999999999999999"}, {"status": "lost"}):
                r = await c.get("/v1/deliveries", params=params)
                if r.status_code != 422:
                    wrong.append((params, r.status_code, r.text))
            for path in (f"/v1/alerts/{'x' * 5000}", f"/v1/alerts/{'x' * 5000}/acknowledge"):
                r = await c.request("GET" if path.count("/") == 3 else "POST", path)
                if r.status_code != 404:
                    wrong.append((path[:40], r.status_code, r.text))
            valid = alerting_toml(["ticket_backlog"])
            for toml in (
                _with_repeat(valid, '"99999999999999999999w"'),
                _with_repeat(valid, "1e400"),
                _with_repeat(valid, "nan"),
                'version = "deep"\nx = ' + "[" * 5000 + "]" * 5000 + "\n",
                'version = "deep2"\nx = ' + "{a = " * 5000 + "1" + "}" * 5000 + "\n",
            ):
                r = await c.put("/v1/alert-rules", content=toml.encode())
                if not 400 <= r.status_code < 500:
                    wrong.append((toml[-40:], r.status_code, r.text))
            r = await c.put("/v1/alert-rules", content=b"#" * 300_000)
            if r.status_code != 413 or "at most" not in r.json()["message"]:
                wrong.append(("300 kB alerting file", r.status_code, r.text))
            # Within the bounds, all is well.
            r = await c.post(f"/v1/alerts/{alert}/snooze", json={"for": "90d", "reason": "q"})
            assert r.status_code == 200, r.text
            # Refusals in the language the request prefers; their codes stay as they are.
            zh = {"Accept-Language": "zh-CN"}
            r = await c.get("/v1/alerts", params={"limit": "-1"}, headers=zh)
            assert r.status_code == 422 and r.json()["code"] == "invalid_request"
            assert r.json()["message"].startswith("以下字段的值无效：query.limit")
            assert (await c.post(f"/v1/alerts/{alert}/resolve", json={})).status_code == 200
            r = await c.post(f"/v1/alerts/{alert}/acknowledge", headers=zh)
            assert r.status_code == 409 and r.json()["code"] == "conflict"
            assert r.json()["message"] == "该预警已解决：只有触发中的预警才能确认。"
            r = await c.post(f"/v1/alerts/{alert}/acknowledge")
            assert r.json()["message"] == (
                "The alert is resolved: only a firing alert can be acknowledged."
            )
    assert wrong == []


def _with_repeat(toml: str, value: str) -> str:
    """``toml`` with a new version and ``notify.repeat_interval = value``."""
    toml = re.sub(r'(?m)^version = ".*"$', f'version = "r-{uuid.uuid4().hex[:6]}"', toml)
    return re.sub(r"(?m)^repeat_interval = .*$", f"repeat_interval = {value}", toml)


async def test_hostile_silences_are_a_4xx_and_the_next_is_kept(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    """/v1/silences on PostgreSQL, which refuses NUL and lone surrogates in text: each
    hostile body or parameter is a 4xx, never a 500, and a good one still works."""
    async with stack(kafka_settings, tmp_path) as (hw, admin):
        await put_account(hw, admin, "acme", email=ANNA)
        await fire(hw, "acme")
        good = {"account_id": "acme", "rule": "ticket_backlog", "for": "30d"}
        json = {"Content-Type": "application/json"}
        async with httpx.AsyncClient(base_url=hw.url, headers=bearer(admin), timeout=30) as c:
            wrong = []
            for body in (
                b'{"account_id": "a\\u0000b", "rule": "ticket_backlog", "for": "1d"}',
                b'{"account_id": "acme", "rule": "t\\u0000", "for": "1d"}',
                b'{"account_id": "a\\ud800", "rule": "ticket_backlog", "for": "1d"}',
                b'{"account_id": "acme", "rule": "ticket_backlog", "for": "1d", "reason": "\\u0000"}',
                b'{"account_id": "acme", "rule": "ticket_backlog", "for": "99999999999999999999d"}',
                b'{"account_id": "acme", "rule": "ticket_backlog", "for": 1e400}',
                b'{"account_id": "acme", "rule": "ticket_backlog", "until": "9999-12-31T23:59:59Z"}',
                b'{"account_id": "acme", "rule": "ticket_backlog", "until": "0001-01-01T00:00:00Z"}',
                b'{"account_id": "' + b"a" * 1000 + b'", "rule": "ticket_backlog", "for": "1d"}',
                b'{"account_id": ' + b"[" * 5000 + b"]" * 5000 + b"}",
            ):
                r = await c.put("/v1/silences", content=body, headers=json)
                if not 400 <= r.status_code < 500:
                    wrong.append((body[:60], r.status_code, r.text[:200]))
            for params in (
                {"account_id": "a\x00b"},
                {"account_id": "a" * 1000},
            ):
                r = await c.get("/v1/silences", params=params)
                if not 400 <= r.status_code < 500:
                    wrong.append((params, r.status_code, r.text[:200]))
            for params in (
                {"account_id": "a\x00b", "rule": "ticket_backlog"},
                {"account_id": "acme", "rule": "t\x00"},
                {"account_id": "acme"},
            ):
                r = await c.delete("/v1/silences", params=params)
                if not 400 <= r.status_code < 500:
                    wrong.append((params, r.status_code, r.text[:200]))
            assert wrong == []
            r = await c.put("/v1/silences", json=good)
            assert r.status_code == 200, r.text
            listed = (await c.get("/v1/silences", params={"account_id": "acme"})).json()
            assert [s["rule"] for s in listed["silences"]] == ["ticket_backlog"]
