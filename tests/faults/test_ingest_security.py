"""Who may say what at ingest (issue 11, items 7, 8, 11, 20), on real Kafka and
PostgreSQL: account facts and owners need a crm key; a Segment group call (its write key
ships in browsers) sets descriptive traits only; the helpdesk webhook takes tickets only,
signed with a fresh timestamp, and a replayed delivery counts once; error bodies carry
the ``code`` Segment's SDKs log."""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from typing import Any

import httpx
import orjson
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from shared.auth import Role, create_key, role_scopes
from shared.config import Settings
from shared.storage.tables import accounts, tickets
from tests.support.harness import Harness, at, running, usage, wait_for
from tests.support.usage import count_processed, seen_ids

pytestmark = pytest.mark.integration

SECRET = "whsec-faults"


def _client(hw: Harness, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=hw.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


async def _owner(hw: Harness, account: str) -> Any:
    async with hw.rt.engine.connect() as conn:
        q = select(
            accounts.c.owner_email, accounts.c.name, accounts.c.tier, accounts.c.facts
        ).where(accounts.c.account_id == account)
        return (await conn.execute(q)).first()


async def test_account_facts_need_a_crm_key(kafka_settings: Settings) -> None:
    async with running(kafka_settings, alerts=False) as hw:
        ingest = await create_key(hw.rt.engine, "product", role_scopes(Role.ingest, None))
        crm = await create_key(hw.rt.engine, "crm", role_scopes(Role.crm, None))
        facts = {"account_id": "acme", "name": "Acme", "owner": {"email": "anna@example.com"}}
        async with _client(hw, crm) as c:
            assert (await c.post("/v1/accounts", json=facts)).status_code == 202
            # A crm key sends facts, not usage.
            r = await c.post("/v1/events", json={"events": [usage("acme", "u")]})
            assert r.status_code == 403
        await wait_for(lambda: _owner(hw, "acme"), timeout=60, what="acme's facts")

        moved = {**facts, "owner": {"email": "mallory@example.com"}}
        event = {"kind": "account", "event_id": uuid.uuid4().hex, "occurred_at": at(0), **moved}
        beside = usage("acme", "u")
        async with _client(hw, ingest) as c:
            refused = [
                await c.post("/v1/accounts", json=moved),
                await c.post("/v1/events", json={"events": [event]}),
            ]
            # Beside events the key may send, the facts alone are refused: the whole
            # batch was, and a client does not resend a 4xx, so its usage was lost.
            mixed = await c.post("/v1/events", json={"events": [event, beside]})
        for r in refused:
            assert r.status_code == 403, r.text
            assert r.json()["code"] == "forbidden"
            assert "crm" in r.json()["message"]
        assert mixed.status_code == 422, mixed.text
        assert mixed.json()["accepted"] == 1
        (rejected,) = mixed.json()["rejected"]
        assert rejected["index"] == 0 and "crm key" in rejected["errors"][0]["message"]
        await wait_for(
            lambda: _has_seen(hw, beside["event_id"]), timeout=60, what="the usage beside"
        )
        # Segment's group call with the same (browser-shipped) key: descriptive traits
        # only, and a name only for an account without one (the CRM named acme).
        group = {
            "type": "group",
            "messageId": uuid.uuid4().hex,
            "userId": "u1",
            "groupId": "acme",
            "traits": {"name": "Acme Corp", "plan": "team", "owner": {"email": "mallory@example.com"},
                       "tier": "strategic", "seats": 1, "mrr": 0},
        }  # fmt: skip
        async with httpx.AsyncClient(base_url=hw.url, auth=(ingest, ""), timeout=30) as c:
            assert (await c.post("/v1/group", json=group)).status_code == 200

        async def described() -> bool:
            row = await _owner(hw, "acme")
            return row is not None and (row.facts.get("fields") or {}).get("plan") == "team"

        await wait_for(described, timeout=60, what="the group call's plan")
        row = await _owner(hw, "acme")
        assert (row.name, row.owner_email, row.tier) == ("Acme", "anna@example.com", None)


async def _has_seen(hw: Harness, event_id: str) -> bool:
    return event_id in await seen_ids(hw.rt.engine, [event_id])


def _signed(body: bytes, stamp: int | None = None) -> dict[str, str]:
    timestamp = str(int(time.time()) if stamp is None else stamp)
    mac = hmac.new(SECRET.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return {
        "X-Healthwatch-Timestamp": timestamp,
        "X-Healthwatch-Signature": "sha256=" + mac.hexdigest(),
    }


async def test_ticket_webhook_takes_fresh_ticket_deliveries_once(kafka_settings: Settings) -> None:
    settings = kafka_settings.model_copy(update={"ticket_webhook_secret": SecretStr(SECRET)})
    ticket = {
        "ticket_id": "T-9",
        "account_id": "acme",
        "status": "open",
        "created_at": at(0.1),
        "updated_at": at(0.05),
    }
    body = orjson.dumps(ticket)
    async with (
        running(settings, alerts=False) as hw,
        httpx.AsyncClient(base_url=hw.url, timeout=30) as c,
    ):
        # Whoever holds the helpdesk secret cannot send account facts through it.
        facts = orjson.dumps({"kind": "account", "account_id": "acme", "occurred_at": at(0),
                              "owner": {"email": "mallory@example.com"}})  # fmt: skip
        r = await c.post("/v1/tickets/webhook", content=facts, headers=_signed(facts))
        assert r.status_code == 422, r.text
        assert r.json()["rejected"][0]["errors"][-1]["field"] == "kind"

        # A delivery and its replay within the window: stored twice on the bus, once
        # in the state (the event id comes from the ticket id and its update time).
        headers = _signed(body)
        for _ in range(2):
            r = await c.post("/v1/tickets/webhook", content=body, headers=headers)
            assert r.status_code == 202, r.text
        # The same body re-signed later (the helpdesk's retry) is the same update too.
        r = await c.post("/v1/tickets/webhook", content=body, headers=_signed(body))
        assert r.status_code == 202
        # Replayed after 5 minutes, or signed without a timestamp: 401 with a code.
        stale = await c.post(
            "/v1/tickets/webhook", content=body, headers=_signed(body, int(time.time()) - 301)
        )
        assert stale.status_code == 401 and stale.json()["code"] == "stale_timestamp"
        unstamped = {"X-Healthwatch-Signature": headers["X-Healthwatch-Signature"]}
        r = await c.post("/v1/tickets/webhook", content=body, headers=unstamped)
        assert r.status_code == 401

        # A later update of another ticket of the account follows on the same partition
        # (keyed by account): once it is applied, every copy before it was handled.
        marker = {**ticket, "kind": "ticket", "ticket_id": "T-10", "event_id": "T-10-open"}
        marker["occurred_at"] = marker.pop("updated_at")
        async with hw.client() as ingest:
            assert (await ingest.post("/v1/events", json={"events": [marker]})).status_code == 202

        async def applied() -> bool:
            return bool(await seen_ids(hw.rt.engine, ["T-10-open"], kind="ticket"))

        await wait_for(applied, timeout=60, what="the later ticket to be scored")
        async with hw.rt.engine.connect() as conn:
            rows = (await conn.execute(select(tickets.c.ticket_id))).scalars().all()
        # The three copies of T-9's update and the marker: two events applied.
        assert await count_processed(hw.rt.engine) == 2
        assert sorted(rows) == ["T-10", "T-9"]


async def test_error_bodies_carry_a_code(kafka_settings: Settings) -> None:
    """Segment's SDKs log ``code``; ``error`` stays for existing clients."""
    async with running(kafka_settings, scoring=False, alerts=False) as hw:
        async with httpx.AsyncClient(base_url=hw.url, auth=("hwk_x_y", ""), timeout=30) as c:
            r = await c.post("/v1/track", json={"userId": "u", "event": "x", "messageId": "m"})
        assert r.status_code == 401
        assert r.json()["code"] == r.json()["error"] == "unauthorized"
        async with hw.client() as c:
            r = await c.post("/v1/events", json={"events": [{"kind": "usage"}]})
        assert r.status_code == 422 and r.json()["code"] == "invalid_events"
