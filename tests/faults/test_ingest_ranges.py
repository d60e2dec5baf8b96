"""Values no store or arithmetic can hold are refused at ingest, field by field (issue 11,
items 1 and 14): year 1 with a +14:00 offset, 2**63 seats, infinite money, CR/LF in a
name, properties nested 1,000 deep. Nothing of them reaches the topics, and valid events
sent after them are scored, on real Kafka and PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import orjson
import pytest
from pydantic import ValidationError

from shared.config import Settings
from shared.contracts.events import EVENT_ADAPTER, MAX_DEPTH
from tests.support.harness import at, running, usage, wait_for
from tests.support.usage import count_processed, seen_ids

pytestmark = pytest.mark.integration

YEAR_1 = "0001-01-01T00:00:00+14:00"


DEEP = "<nested 1000 deep>"  # stands for a JSON object nested 1,000 deep (see _body)


def _body(document: Any) -> bytes:
    """``document`` as JSON, DEEP replaced by the deep object: no JSON encoder nests
    1,000 deep, which is why the attack is cheap to send and costly to handle."""
    deep = b'{"a":' * 1000 + b"{}" + b"}" * 1000
    return orjson.dumps(document).replace(orjson.dumps(DEEP), deep)


def _facts(**extra: Any) -> dict[str, Any]:
    return {
        "kind": "account",
        "event_id": uuid.uuid4().hex,
        "account_id": "acme",
        "occurred_at": at(1),
        **extra,
    }


def _ticket(**extra: Any) -> dict[str, Any]:
    return {
        "kind": "ticket",
        "event_id": uuid.uuid4().hex,
        "account_id": "acme",
        "ticket_id": "T-1",
        "status": "open",
        "created_at": at(1),
        "occurred_at": at(1),
        **extra,
    }


# Each poison event with the field its 422 must name.
POISON = [
    (usage("acme", "u", occurred_at=YEAR_1), "occurred_at"),
    (usage("acme", "u", occurred_at="9999-12-31T23:59:59-14:00"), "occurred_at"),
    (_ticket(created_at=YEAR_1), "created_at"),
    (_ticket(solved_at="2999-01-01T00:00:00Z"), "solved_at"),
    (_facts(seats_purchased=2**63), "seats_purchased"),
    (_facts(seats_purchased=2**31), "seats_purchased"),
    (_facts(mrr=1e300), "mrr"),
    (_facts(contract_end="9999-12-31"), "contract_end"),
    (_facts(go_live="0001-01-01"), "go_live"),
    (_facts(name="Acme\r\nBcc: everyone@example.com"), "name"),
    (_facts(owner={"slack_id": "U" * 101}), "owner.slack_id"),
    (_facts(usage_quotas=[{"name": "api", "limit": 2**40}]), "usage_quotas.0.limit"),
    (usage("acme", "u", duration_s=1e300), "duration_s"),
    (usage("acme", "u\u2028x"), "user_id"),
    (usage("acme", "u", properties=DEEP), "properties"),
    ({**usage("acme", "u"), "kind": DEEP}, "kind"),
    (usage("acme", "u", properties={"k": "nul\x00"}), "properties"),
    ({**usage("acme", "u"), "event_id": "id\x00"}, "event_id"),
    ({"kind": "payment", "event_id": "p", "account_id": "acme", "occurred_at": at(1),
      "status": "failed", "amount": 1e13}, "amount"),
]  # fmt: skip


async def test_poison_values_are_refused_by_field_and_valid_events_still_scored(
    kafka_settings: Settings,
) -> None:
    async with running(kafka_settings, alerts=False) as hw, hw.client() as client:
        for event, fieldname in POISON:
            r = await client.post("/v1/events", content=_body({"events": [event]}))
            assert r.status_code == 422, (fieldname, r.status_code, r.text[:300])
            errors = r.json()["rejected"][0]["errors"]
            assert fieldname in [e["field"] for e in errors], (fieldname, errors)
            assert r.json()["accepted"] == 0

        good = [usage("acme", f"u{i}") for i in range(3)]
        r = await client.post("/v1/events", json={"events": good})
        assert r.status_code == 202, r.text

        ids = {e["event_id"] for e in good}

        async def scored() -> bool:
            return await seen_ids(hw.rt.engine, ids) == ids

        await wait_for(scored, timeout=60, what="the valid events to be scored")
        assert await count_processed(hw.rt.engine) == len(good)  # and nothing else


async def test_segment_times_out_of_range_are_400_by_field(kafka_settings: Settings) -> None:
    track = {"type": "track", "userId": "u", "event": "x", "context": {"groupId": "acme"}}
    cases = [
        ({**track, "messageId": "a", "timestamp": YEAR_1}, "timestamp"),
        (
            {
                **track,
                "messageId": "b",
                "originalTimestamp": "2026-11-23T11:00:00Z",
                "sentAt": "9999-12-31T23:59:59Z",
            },
            "sentAt",
        ),
        ({**track, "messageId": "c", "properties": DEEP}, "properties"),
        # Ids and types that are no text: refused, not printed (which overflowed).
        ({**track, "messageId": "d", "userId": DEEP}, "userId"),
        ({**track, "messageId": "e", "type": DEEP}, "type"),
        ({**track, "messageId": "f", "context": {"groupId": DEEP}}, "context.groupId"),
        ({"type": "group", "messageId": "g", "userId": "u", "groupId": DEEP}, "groupId"),
    ]
    async with (
        running(kafka_settings, scoring=False, alerts=False) as hw,
        httpx.AsyncClient(base_url=hw.url, auth=(hw.key, ""), timeout=30) as client,
    ):
        for message, fieldname in cases:
            r = await client.post("/v1/track", content=_body(message))
            assert r.status_code == 400, (fieldname, r.text[:300])
            assert r.json()["rejected"][0]["errors"][0]["field"] == fieldname


async def test_deeply_nested_bodies_are_4xx_never_500(kafka_settings: Settings) -> None:
    """Past the JSON parser's own depth limit, or a list where an event belongs."""
    deep_list = b"[" * 1000 + b"]" * 1000
    bodies = [
        b'{"events": [' + deep_list + b"]}",
        b'{"events": [' + b"[" * 5000 + b"]" * 5000 + b"]}",
        b'{"events": [{"kind": "usage", "extra": ' + deep_list + b"}]}",
    ]
    async with running(kafka_settings, scoring=False, alerts=False) as hw, hw.client() as client:
        for body in bodies:
            r = await client.post(
                "/v1/events", content=body, headers={"Content-Type": "application/json"}
            )
            assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
            assert r.json()["code"]


@pytest.mark.parametrize("filler", ["", "[{" * 40])  # brackets in text force the slow walk
def test_properties_may_nest_32_levels_not_33(filler: str) -> None:
    def levels(n: int) -> dict[str, Any]:
        tree: dict[str, Any] = {"text": filler}
        for _ in range(n - 1):
            tree = {"a": tree}
        return tree

    ok = usage("acme", "u", properties=levels(MAX_DEPTH))
    assert EVENT_ADAPTER.validate_python(ok).kind == "usage"
    with pytest.raises(ValidationError, match="nested deeper than 32"):
        EVENT_ADAPTER.validate_python(usage("acme", "u", properties=levels(MAX_DEPTH + 1)))


def test_properties_that_cannot_be_sent_on_are_refused() -> None:
    """Over HTTP a JSON integer beyond 64 bits arrives as a float (orjson reads it so);
    a caller building events in Python (an import) must get a field error, not a
    TypeError when the event is encoded for the bus."""
    with pytest.raises(ValidationError, match="cannot be sent on"):
        EVENT_ADAPTER.validate_python(usage("acme", "u", properties={"n": [2**70]}))
