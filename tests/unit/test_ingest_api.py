"""The ingest API's contract with clients, on the embedded bus (a real SQLite file)."""

from __future__ import annotations

import gzip
import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr
from sqlalchemy import func, insert, select

from services.ingest.app import create_app
from shared.auth import Scope, create_key
from shared.bus.embedded import EmbeddedBus
from shared.config import Settings
from shared.storage.db import create_engine, migrate
from shared.storage.tables import accounts, bus_log
from tests.support.harness import usage

SECRET = "whsec-test"


class Api:
    def __init__(self, client: httpx.AsyncClient, engine: Any, keys: dict[str, str]):
        self.client = client
        self.engine = engine
        self.keys = keys

    def auth(self, scope: str = "ingest") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[scope]}"}

    async def stored(self, topic: str | None = None) -> int:
        query = select(func.count()).select_from(bus_log)
        if topic:
            query = query.where(bus_log.c.topic == topic)
        async with self.engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())


@pytest.fixture
async def api(embedded_settings: Settings) -> AsyncIterator[Api]:
    settings = embedded_settings.model_copy(
        update={"ticket_webhook_secret": SecretStr(SECRET), "max_body_bytes": 200_000}
    )
    engine = create_engine(settings.database_url)
    await migrate(engine)
    keys = {
        "ingest": await create_key(engine, "ingest", [Scope.ingest]),
        "crm": await create_key(engine, "crm", [Scope.crm]),
        "read": await create_key(engine, "read", [Scope.read]),
        "metrics": await create_key(engine, "metrics", [Scope.metrics]),
    }

    async def ready() -> str | None:
        return None  # ready

    app = create_app(
        settings, engine, EmbeddedBus(engine), registry=CollectorRegistry(), ready=ready
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        yield Api(client, engine, keys)
    await engine.dispose()


async def test_valid_batch_is_stored_before_202(api: Api) -> None:
    events = [usage("acme", f"u{i}") for i in range(3)]
    r = await api.client.post("/v1/events", json={"events": events}, headers=api.auth())
    assert r.status_code == 202
    assert r.json() == {"accepted": 3, "rejected": []}
    assert await api.stored("hw.usage") == 3


async def test_one_id_for_two_different_events_of_a_batch_is_refused(api: Api) -> None:
    """Two events of one batch with one id and other values were both answered accepted,
    and only one was counted (found from outside). The same event twice is a resend,
    counted once and accepted."""
    alice = usage("acme", "alice")
    bob = {**usage("acme", "bob"), "event_id": alice["event_id"]}
    # Another account's event may have the same id (ids are each account's); a refused
    # event is no first one (found in review).
    other = {**usage("other", "dan"), "event_id": alice["event_id"]}
    late = {**usage("late", "eve"), "event_id": "e-late", "occurred_at": "2099-01-01T00:00:00Z"}
    on_time = {**usage("late", "fay"), "event_id": "e-late"}
    events = [alice, bob, usage("acme", "carol"), alice, other, late, on_time]
    r = await api.client.post("/v1/events", json={"events": events}, headers=api.auth())
    assert r.status_code == 422
    body = r.json()
    assert body["accepted"] == 5 and [rej["index"] for rej in body["rejected"]] == [1, 5]
    error = body["rejected"][0]["errors"][0]
    assert error["field"] == "event_id" and "earlier event of this batch" in error["message"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer hwk_nope_nope"}, {"Authorization": "Bearer garbage"}],
)
async def test_missing_or_unknown_key_is_401(api: Api, headers: dict[str, str]) -> None:
    r = await api.client.post("/v1/events", json={"events": [usage("a", "u")]}, headers=headers)
    assert r.status_code == 401
    assert "keys create" in r.json()["message"]
    # Segment's SDKs log an error body's "code".
    assert r.json()["code"] == r.json()["error"] == "unauthorized"
    assert await api.stored() == 0


async def test_scopes_are_enforced(api: Api) -> None:
    r = await api.client.post(
        "/v1/events", json={"events": [usage("a", "u")]}, headers=api.auth("read")
    )
    assert r.status_code == 403
    # The scopes it could have, listed in the answer's language (the Chinese answer
    # said "'ingest' or 'crm'"; found from outside).
    assert "'ingest' or 'crm'" in r.json()["message"]
    zh = {**api.auth("read"), "Accept-Language": "zh-CN"}
    r = await api.client.post("/v1/events", json={"events": [usage("a", "u")]}, headers=zh)
    assert r.json()["message"] == "此密钥缺少这里所需的 ingest或crm 权限范围。"
    # An ingest key reads nothing, not even metrics.
    assert (await api.client.get("/metrics", headers=api.auth("ingest"))).status_code == 403
    metrics = await api.client.get("/metrics", headers=api.auth("metrics"))
    assert metrics.status_code == 200
    assert "healthwatch_ingest_requests_total" in metrics.text


async def test_malformed_json_is_400(api: Api) -> None:
    r = await api.client.post("/v1/events", content=b'{"events": [', headers=api.auth())
    assert r.status_code == 400
    assert r.json()["error"] == "malformed_json"
    # Latin-1 where UTF-8 belongs: said so, and where (orjson: "line 1 column 1").
    latin = '{"events": [{"account_id": "Müller"}]}'.encode("latin-1")
    r = await api.client.post("/v1/events", content=latin, headers=api.auth())
    assert r.status_code == 400 and r.json()["error"] == "not_utf8"
    assert "byte 29 of it, 0xfc" in r.json()["message"]


async def test_wrong_envelope_is_400(api: Api) -> None:
    r = await api.client.post("/v1/events", json=[usage("a", "u")], headers=api.auth())
    assert r.status_code == 400
    assert r.json()["error"] == "bad_envelope"


async def test_too_many_events_is_413(api: Api) -> None:
    r = await api.client.post(
        "/v1/events", json={"events": [{"kind": "usage"}] * 1001}, headers=api.auth()
    )
    assert r.status_code == 413
    assert "1000" in r.json()["message"]


async def test_oversize_body_is_413(api: Api) -> None:
    big = usage("a", "u", properties={"blob": "x" * 300_000})
    r = await api.client.post("/v1/events", json={"events": [big]}, headers=api.auth())
    assert r.status_code == 413


async def test_gzip_is_accepted_and_gzip_bombs_are_413(api: Api) -> None:
    body = orjson.dumps({"events": [usage("a", "u1"), usage("a", "u2")]})
    headers = {**api.auth(), "Content-Encoding": "gzip"}
    r = await api.client.post("/v1/events", content=gzip.compress(body), headers=headers)
    assert r.status_code == 202, r.text
    bomb = gzip.compress(b'{"events": [' + b" " * 5_000_000 + b"]}")
    assert len(bomb) < 200_000
    r = await api.client.post("/v1/events", content=bomb, headers=headers)
    assert r.status_code == 413


async def test_mixed_batch_stores_valid_and_names_each_bad_field(api: Api) -> None:
    naive = usage("a", "u")
    naive["occurred_at"] = "2026-01-01T10:00:00"
    future = usage("a", "u")
    future["occurred_at"] = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    no_id = usage("a", "u")
    del no_id["event_id"]
    wrong_type = usage("a", "u", duration_s="long")
    events = [
        usage("a", "ok1"),
        naive,
        {"kind": "telepathy", "event_id": "x"},
        future,
        no_id,
        wrong_type,
        "not an object",
        usage("a", "ok2"),
    ]
    r = await api.client.post("/v1/events", json={"events": events}, headers=api.auth())
    assert r.status_code == 422
    body = r.json()
    assert body["accepted"] == 2
    by_index = {rej["index"]: rej for rej in body["rejected"]}
    assert sorted(by_index) == [1, 2, 3, 4, 5, 6]
    assert by_index[1]["errors"][0]["field"] == "occurred_at"
    assert "timezone" in by_index[1]["errors"][0]["message"]
    assert by_index[2]["errors"][0]["field"] == "kind"
    assert by_index[3]["errors"][0]["field"] == "occurred_at"
    assert "future" in by_index[3]["errors"][0]["message"]
    assert by_index[4]["errors"][0]["field"] == "event_id"
    assert by_index[5]["errors"][0]["field"] == "duration_s"
    assert by_index[5]["event_id"] == wrong_type["event_id"]
    assert await api.stored("hw.usage") == 2
    # Rejections are counted by the kind they name, when it is one.
    metrics = (await api.client.get("/metrics", headers=api.auth("metrics"))).text
    assert 'healthwatch_ingest_events_total{kind="usage",outcome="rejected"} 4.0' in metrics
    assert 'healthwatch_ingest_events_total{kind="unknown",outcome="rejected"} 2.0' in metrics
    # An overlong id is quoted by its start, not echoed whole (found from outside).
    huge = usage("a", "u", event_id="x" * 100_000)
    r = await api.client.post("/v1/events", json={"events": [huge]}, headers=api.auth())
    quoted = r.json()["rejected"][0]["event_id"]
    assert r.status_code == 422 and quoted.endswith("…") and len(quoted) < 300
    # Through Segment's routes too (their own refusals came back whole: found in review).
    call = {"type": "bogus", "messageId": "m" * 100_000, "userId": "u"}
    r = await api.client.post("/v1/batch", json={"batch": [call]}, headers=api.auth())
    quoted = r.json()["rejected"][0]["event_id"]
    assert quoted.endswith("…") and len(quoted) < 300, r.text[:300]


async def test_segments_browser_sdk_calls_as_it_sends_them(api: Api) -> None:
    """analytics-next posts to /v1/t, /v1/g, /v1/b as text/plain with the write key in
    the body and no Authorization header, from a page of another origin: refused (404,
    401) and unreadable (no CORS), found from outside."""
    plain = {"Content-Type": "text/plain", "Origin": "https://app.example.com"}
    group = {"type": "group", "messageId": "g1", "userId": "ann", "groupId": "acme",
             "writeKey": api.keys["ingest"]}  # fmt: skip
    r = await api.client.post("/v1/g", content=orjson.dumps(group), headers=plain)
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == "*"
    track = {"type": "track", "messageId": "t1", "userId": "ann", "event": "Login",
             "writeKey": api.keys["ingest"]}  # fmt: skip
    r = await api.client.post("/v1/t", content=orjson.dumps(track), headers=plain)
    assert r.status_code == 200, r.text
    batch = {"batch": [{**track, "messageId": "t2"}], "writeKey": api.keys["ingest"]}
    r = await api.client.post("/v1/b", content=orjson.dumps(batch), headers=plain)
    assert r.status_code == 200, r.text
    assert await api.stored("hw.usage") == 2
    # Refusals are readable too; a crm key is no write key, none is none.
    for key, status in ((api.keys["crm"], 403), ("hwk_nope", 401), (None, 401)):
        call = {**track, "messageId": "t3", "writeKey": key}
        r = await api.client.post("/v1/track", content=orjson.dumps(call), headers=plain)
        assert r.status_code == status and r.headers["access-control-allow-origin"] == "*"
    # Refused before the route (the header's key) is readable too (found in review).
    for header, status in (({"Authorization": "Bearer hwk_nope"}, 401), (api.auth("crm"), 403)):
        r = await api.client.post("/v1/t", content=orjson.dumps(track), headers={**plain, **header})
        assert r.status_code == status and r.headers["access-control-allow-origin"] == "*"
    ask = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"}
    for path in ("/v1/track", "/v1/t", "/v1/batch", "/v1/b"):
        r = await api.client.options(path, headers=ask)
        assert r.status_code == 204 and "Authorization" in r.headers["access-control-allow-headers"]
    # Only Segment's calls: the company's own records stay closed to other origins.
    r = await api.client.options("/v1/events", headers=ask)
    assert r.status_code == 405 and "access-control-allow-origin" not in r.headers
    assert await api.stored("hw.usage") == 2


async def test_an_ingest_key_sends_usage_and_answers_not_the_companys_records(
    api: Api,
) -> None:
    """The ingest key ships in browsers: with it, a forged touchpoint silenced an overdue
    reminder, a forged failed payment raised a critical alert, a forged ticket went round
    the signed webhook (found from outside). Those need a crm key; usage and NPS answers
    (an in-app survey) stay the ingest key's."""
    now = datetime.now(UTC).isoformat()
    base = {"account_id": "a", "occurred_at": now}
    server = [
        {**base, "kind": "touchpoint", "event_id": "tp", "touchpoint_kind": "call"},
        {**base, "kind": "payment", "event_id": "pay", "status": "failed"},
        {**base, "kind": "ticket", "event_id": "tk", "ticket_id": "T", "status": "open",
         "created_at": now},
    ]  # fmt: skip
    answer = {**base, "kind": "nps", "event_id": "n", "score": 3}
    alone = await api.client.post("/v1/events", json={"events": server}, headers=api.auth())
    assert alone.status_code == 403 and "crm key" in alone.json()["message"]
    mixed = [*server, answer, usage("a", "u")]
    r = await api.client.post("/v1/events", json={"events": mixed}, headers=api.auth())
    assert r.status_code == 422 and r.json()["accepted"] == 2
    assert [x["index"] for x in r.json()["rejected"]] == [0, 1, 2]
    by_crm = await api.client.post("/v1/events", json={"events": server}, headers=api.auth("crm"))
    assert by_crm.status_code == 202, by_crm.text
    usage_by_crm = await api.client.post(
        "/v1/events", json={"events": [usage("a", "u")]}, headers=api.auth("crm")
    )
    assert usage_by_crm.status_code == 403
    # A crm key's batch with usage in it: the usage alone is refused, saying why.
    both = [server[0], usage("a", "u")]
    r = await api.client.post("/v1/events", json={"events": both}, headers=api.auth("crm"))
    assert r.status_code == 422 and r.json()["accepted"] == 1
    assert "lacks the 'ingest' scope" in r.json()["rejected"][0]["errors"][0]["message"]
    # A kind that is no text beside one the key may not send: a 422, never a 500 (a list
    # cannot be looked up among the kinds; the diff review found the 500).
    for odd in (["x"], {}):
        r = await api.client.post(
            "/v1/events", json={"events": [{"kind": odd}, server[2]]}, headers=api.auth()
        )
        assert r.status_code == 422, (odd, r.text)


async def test_a_ticket_whose_times_are_out_of_order_is_refused_naming_the_field(
    api: Api,
) -> None:
    """Opened after the update that reports it, or solved before it opened: a mapping's
    swapped columns, taken without a word and counted in no backlog (found from
    outside). A few minutes of clocks' disagreement are taken."""
    now = datetime.now(UTC)
    base = {"kind": "ticket", "account_id": "a", "ticket_id": "T", "status": "solved"}
    at = {"occurred_at": (now - timedelta(days=1)).isoformat()}
    events = [
        {**base, **at, "event_id": "late-open", "created_at": now.isoformat()},
        {**base, **at, "event_id": "early-solve",
         "created_at": (now - timedelta(days=3)).isoformat(),
         "solved_at": (now - timedelta(days=4)).isoformat()},
        {**base, **at, "event_id": "skewed",
         "created_at": (now - timedelta(days=1) + timedelta(minutes=2)).isoformat(),
         "solved_at": (now - timedelta(days=1)).isoformat()},
    ]  # fmt: skip
    r = await api.client.post("/v1/events", json={"events": events}, headers=api.auth("crm"))
    assert r.status_code == 422 and r.json()["accepted"] == 1, r.text
    fields = {x["event_id"]: x["errors"][0] for x in r.json()["rejected"]}
    assert fields["late-open"]["field"] == "created_at"
    assert "created_at is after occurred_at" in fields["late-open"]["message"]
    assert fields["early-solve"]["field"] == "solved_at"


async def test_every_problem_of_an_event_is_named_at_once(api: Api) -> None:
    """A time in the future was said only after the other fields were fixed and the
    event sent again (found from outside)."""
    wrong = usage("a", "u", event_id=None, colour="red")
    wrong["event_id"] = 123
    wrong["occurred_at"] = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    r = await api.client.post("/v1/events", json={"events": [wrong]}, headers=api.auth())
    assert r.status_code == 422
    (refused,) = r.json()["rejected"]
    fields = {error["field"] for error in refused["errors"]}
    assert {"event_id", "colour", "occurred_at"} <= fields, refused


async def test_usage_older_than_the_late_grace_is_refused_not_ignored(api: Api) -> None:
    """Scoring counts a late event only HEALTHWATCH_LATE_GRACE_DAYS (90) back: an older
    one was answered 202 and ignored, or made a new account whose only use lay years
    back, red with a critical alert (a device's reset clock; found from outside)."""
    now = datetime.now(UTC)
    ancient = usage("new-account", "u", base=datetime(2001, 1, 1, tzinfo=UTC))
    edge = usage("a", "u", base=now - timedelta(days=89))
    old_answer = {
        "kind": "nps",
        "event_id": "n-old",
        "account_id": "a",
        "score": 9,
        "occurred_at": "2025-01-02T00:00:00+00:00",
    }
    events = [ancient, edge, old_answer]
    r = await api.client.post("/v1/events", json={"events": events}, headers=api.auth())
    assert r.status_code == 422, r.text
    assert r.json()["accepted"] == 2  # the usage of 89 days ago, and an older NPS answer
    (refused,) = r.json()["rejected"]
    assert refused["index"] == 0 and refused["errors"][0]["field"] == "occurred_at"
    assert "healthwatch import" in refused["errors"][0]["message"]


def _signed(body: bytes, stamp: int | None = None) -> dict[str, str]:
    timestamp = str(int(time.time()) if stamp is None else stamp)
    mac = hmac.new(SECRET.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return {
        "X-Healthwatch-Timestamp": timestamp,
        "X-Healthwatch-Signature": "sha256=" + mac.hexdigest(),
    }


async def test_ticket_webhook_checks_the_signature(api: Api) -> None:
    ticket = {
        "ticket_id": "T-1",
        "account_id": "acme",
        "status": "open",
        "priority": "high",
        "created_at": "2026-11-20T09:00:00+00:00",
        "updated_at": "2026-11-20T09:00:00+00:00",
    }
    body = orjson.dumps(ticket)
    r = await api.client.post("/v1/tickets/webhook", content=body, headers=_signed(body))
    assert r.status_code == 202, r.text
    assert await api.stored("hw.ticket") == 1
    other_body = {
        **_signed(body + b" "),
        "X-Healthwatch-Signature": _signed(body)["X-Healthwatch-Signature"],
    }
    bad = await api.client.post("/v1/tickets/webhook", content=body + b" ", headers=other_body)
    assert bad.status_code == 401
    assert bad.json()["code"] == "bad_signature"
    unsigned = await api.client.post("/v1/tickets/webhook", content=body)
    assert (unsigned.status_code, unsigned.json()["code"]) == (401, "unsigned")
    # A non-ASCII signature (bytes on the wire): refused, where compare_digest would raise.
    forged = {**_signed(body), "X-Healthwatch-Signature": b"sha256=\xe9"}
    r = await api.client.post("/v1/tickets/webhook", content=body, headers=forged)
    assert (r.status_code, r.json()["code"]) == (401, "bad_signature")
    assert await api.stored("hw.ticket") == 1


async def test_a_ticket_id_sent_as_event_id_loses_no_update(api: Api) -> None:
    """A helpdesk sending its ticket's id as ``event_id`` had every later update of the
    ticket dropped as a resend after a 202 (found from outside): the id is derived from
    the ticket, its status and its update time, the sent one kept within it."""
    opened = {
        "ticket_id": "Z-1",
        "event_id": "Z-1",
        "account_id": "acme",
        "status": "open",
        "created_at": "2026-11-20T09:00:00+00:00",
        "updated_at": "2026-11-20T09:00:00+00:00",
    }
    solved = {**opened, "status": "solved", "updated_at": "2026-11-20T10:00:00+00:00"}
    other = {**opened, "ticket_id": "Z-2"}  # another ticket, the same sent id
    for ticket in (opened, solved, other, opened):  # the last: a resend
        body = orjson.dumps(ticket)
        r = await api.client.post("/v1/tickets/webhook", content=body, headers=_signed(body))
        assert r.status_code == 202, r.text
    async with api.engine.connect() as conn:
        values = (await conn.execute(select(bus_log.c.value).order_by(bus_log.c.offset))).all()
    ids = [orjson.loads(value)["event_id"] for (value,) in values]
    assert len(set(ids)) == 3 and ids[0] == ids[3]
    assert all(i.startswith("ticket:Z-1:") for i in ids)


async def test_ticket_webhook_refuses_stale_or_unstamped_signatures(api: Api) -> None:
    """A captured delivery replayed after 5 minutes, or signed without a timestamp as
    before, is refused: the timestamp is part of what is signed."""
    body = orjson.dumps({"ticket_id": "T-1", "account_id": "acme", "status": "open"})
    # 60 s past the 300 s window each way, each stamp taken just before its request: a
    # slow first request on a loaded CI machine must not bring the second into the window.
    for offset in (-360, 360):
        stamp = int(time.time()) + offset
        r = await api.client.post("/v1/tickets/webhook", content=body, headers=_signed(body, stamp))
        assert r.status_code == 401
        assert r.json()["code"] == "stale_timestamp"
    unstamped = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    r = await api.client.post(
        "/v1/tickets/webhook", content=body, headers={"X-Healthwatch-Signature": unstamped}
    )
    assert r.status_code == 401
    huge = {**_signed(body), "X-Healthwatch-Timestamp": "9" * 5000}
    assert (
        await api.client.post("/v1/tickets/webhook", content=body, headers=huge)
    ).status_code == 401
    assert await api.stored() == 0


NAIVE = "2026-11-20T08:00:00"  # no zone: refused


async def test_ticket_webhook_takes_tickets_only(api: Api) -> None:
    """The helpdesk secret must not let its holder send account facts (new owners)."""
    facts = {"kind": "account", "account_id": "acme", "owner": {"email": "m@example.com"}}
    deep = b'{"ticket_id": ' + b"[" * 1000 + b"]" * 1000 + b', "status": "open"}'
    for body in (orjson.dumps(facts), deep):
        r = await api.client.post("/v1/tickets/webhook", content=body, headers=_signed(body))
        assert r.status_code == 422, r.text[:300]
    fields = [e["field"] for e in r.json()["rejected"][0]["errors"]]
    assert "ticket_id" in fields
    # Without its update time a delivery could not be told from a replay.
    body = orjson.dumps({"ticket_id": "T-2", "account_id": "acme", "status": "open"})
    r = await api.client.post("/v1/tickets/webhook", content=body, headers=_signed(body))
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["rejected"][0]["errors"]] == ["updated_at", "created_at"]
    # An update time without its zone: the error names the field sent, not occurred_at.
    ticket = {"ticket_id": "T-3", "account_id": "acme", "status": "open"}
    body = orjson.dumps({**ticket, "updated_at": "2026-11-20T09:00:00", "created_at": NAIVE})
    r = await api.client.post("/v1/tickets/webhook", content=body, headers=_signed(body))
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["rejected"][0]["errors"]} == {"updated_at", "created_at"}
    assert await api.stored() == 0


async def test_another_kind_sent_as_account_facts_is_refused_as_such(api: Api) -> None:
    """A usage event posted to /v1/accounts was checked as usage ("user_id: Field
    required", found from outside): it is refused for its kind."""
    r = await api.client.post(
        "/v1/accounts", json={"account_id": "x1", "kind": "usage"}, headers=api.auth("crm")
    )
    assert r.status_code == 422
    assert r.json()["rejected"][0]["errors"] == [
        {"field": "kind", "message": "must be account on this endpoint"}
    ]


async def test_account_upsert_defaults_ids(api: Api) -> None:
    r = await api.client.post(
        "/v1/accounts",
        json={"account_id": "acme", "seats_purchased": 10, "tier": "strategic"},
        headers=api.auth("crm"),
    )
    assert r.status_code == 202, r.text
    bad = await api.client.post(
        "/v1/accounts",
        json={"accounts": [{"account_id": "x", "tier": "gold"}]},
        headers=api.auth("crm"),
    )
    assert bad.status_code == 422
    assert bad.json()["rejected"][0]["errors"][0]["field"] == "tier"
    # A contract that ends before it starts was stored as sent (found from outside).
    backwards = {"account_id": "x", "contract_start": "2027-01-01", "contract_end": "2026-01-01"}
    r = await api.client.post("/v1/accounts", json=backwards, headers=api.auth("crm"))
    assert r.status_code == 422, r.text
    error = r.json()["rejected"][0]["errors"][0]
    assert error["field"] == "contract_end" and "before contract_start" in error["message"]
    # Facts only: a kind in the body does not turn the endpoint into /v1/events.
    other = await api.client.post(
        "/v1/accounts", json={**usage("acme", "u"), "kind": "usage"}, headers=api.auth("crm")
    )
    assert other.status_code == 422
    assert other.json()["rejected"][0]["errors"][0]["field"] == "kind"
    refused = await api.client.post("/v1/accounts", json={"account_id": "a"}, headers=api.auth())
    assert refused.status_code == 403 and "crm" in refused.json()["message"]
    assert await api.stored("hw.usage") == 0


async def test_a_group_call_names_an_account_only_once(api: Api) -> None:
    """The write key is public: anyone renamed a strategic account through a group
    call, and its name is in every notice and report (found from outside)."""
    async with api.engine.begin() as conn:
        await conn.execute(
            insert(accounts).values(
                account_id="acme", name="Acme Ltd", facts={},
                facts_occurred_at=datetime.now(UTC), updated_at=datetime.now(UTC),
            )
        )  # fmt: skip
    # Spaces around the id (which the contract strips) do not get past the check.
    for group, message_id in (("acme", "g1"), ("acme ", "g3"), (" acme", "g4"), ("newco", "g2")):
        call = {"userId": "u1", "groupId": group, "messageId": message_id,
                "traits": {"name": "EVIL RENAME", "plan": "pro"}}  # fmt: skip
        r = await api.client.post("/v1/group", json=call, headers=api.auth())
        assert r.status_code == 200, r.text
    async with api.engine.connect() as conn:
        values = (await conn.execute(select(bus_log.c.value).order_by(bus_log.c.offset))).all()
    told = [orjson.loads(v) for (v,) in values]
    facts = {e["account_id"]: e for e in told}
    assert not any("name" in e for e in told if e["account_id"].strip() == "acme")
    assert facts["acme"]["plan"] == "pro"
    assert facts["newco"]["name"] == "EVIL RENAME"  # an account without a name: named


async def test_a_group_call_dated_ahead_is_dated_at_its_receipt(api: Api) -> None:
    """A field's newest fact wins: a group call dated 55 minutes ahead (within the skew)
    had beaten the CRM's facts sent meanwhile, with the public write key (found from
    outside). Its usage calls keep their own time."""
    ahead = datetime.now(UTC) + timedelta(minutes=55)
    call = {"userId": "u1", "groupId": "race", "messageId": "g1",
            "timestamp": ahead.isoformat(), "traits": {"plan": "free"}}  # fmt: skip
    before = datetime.now(UTC)
    r = await api.client.post("/v1/group", json=call, headers=api.auth())
    assert r.status_code == 200, r.text
    async with api.engine.connect() as conn:
        (value,) = (await conn.execute(select(bus_log.c.value))).one()
    told = datetime.fromisoformat(orjson.loads(value)["occurred_at"])
    assert before <= told <= datetime.now(UTC)


async def test_an_owner_named_by_email_alone_keeps_their_slack_id(api: Api) -> None:
    """A CRM export has no Slack column, and a fact's owner replaces the stored one
    whole: re-importing unchanged owners stopped their accounts' Slack notices (found
    from outside). Filled from the account's own owner, else another account of theirs;
    a null given is meant, and a person healthwatch does not know stays as sent."""
    now = datetime.now(UTC)
    anna = {"email": "anna@example.com", "slack_id": "U0ANNA", "name": "Anna"}
    sam = {"email": "sam@example.com", "slack_id": "U0SAM", "name": "Sam"}
    async with api.engine.begin() as conn:
        await conn.execute(
            insert(accounts).values(
                account_id="acme", owner_email="anna@example.com", owner_slack_id="U0ANNA",
                facts={"fields": {"owner": anna, "sales_owner": sam}, "stamps": {}},
                facts_occurred_at=now, updated_at=now,
            )
        )  # fmt: skip
    sent = [
        {"account_id": "acme", "owner": {"email": "Anna@Example.com"}},
        {"account_id": "newco", "owner": {"email": "anna@example.com"}},
        {"account_id": "cleared", "owner": {"email": "anna@example.com", "slack_id": None}},
        {"account_id": "other", "owner": {"email": "bob@example.com"}},
        {"account_id": "plain", "tier": "strategic"},
        # A name given keeps it, the Slack id comes as known; a sales owner too (found in
        # review: both were left to be erased).
        {"account_id": "named", "owner": {"email": "anna@example.com", "name": "A. Li"}},
        {"account_id": "acme", "event_id": "s1", "sales_owner": {"email": "sam@example.com"}},
    ]
    r = await api.client.post("/v1/accounts", json={"accounts": sent}, headers=api.auth("crm"))
    assert r.status_code == 202, r.text
    async with api.engine.connect() as conn:
        values = (await conn.execute(select(bus_log.c.value).order_by(bus_log.c.offset))).all()
    published = [orjson.loads(v) for (v,) in values]
    owners = {e["account_id"]: e.get("owner") for e in published if "sales_owner" not in e}
    sellers = [e["sales_owner"] for e in published if "sales_owner" in e]
    assert sellers == [sam]
    assert owners["named"] == {"email": "anna@example.com", "slack_id": "U0ANNA", "name": "A. Li"}
    assert owners["acme"] == anna and owners["newco"] == anna
    assert owners["cleared"] == {"email": "anna@example.com"}
    assert owners["other"] == {"email": "bob@example.com"}
    assert owners["plain"] is None


async def test_unknown_route_is_a_json_404(api: Api) -> None:
    r = await api.client.get("/v1/nothing", headers=api.auth())
    assert r.status_code == 404
    assert r.json()["error"] == r.json()["code"] == "not_found"
    r = await api.client.get("/v1/events", headers=api.auth())
    assert r.status_code == 405
    assert r.json()["code"] == "method_not_allowed"


async def test_true_and_false_are_no_numbers(api: Api) -> None:
    """pydantic read JSON's true as 1: a CRM's ``"arr": true`` stored an ARR of 1."""
    now = datetime.now(UTC).isoformat()
    facts = {"kind": "account", "event_id": "f", "account_id": "a", "occurred_at": now}
    payment = {"kind": "payment", "event_id": "p", "account_id": "a", "occurred_at": now}
    events = [
        {**facts, "arr": True},
        {**facts, "event_id": "f2", "seats_purchased": False},
        {**payment, "status": "succeeded", "amount": False},
        usage("a", "u", duration_s=True),
    ]
    for event in events:
        scope = "ingest" if event["kind"] == "usage" else "crm"
        r = await api.client.post("/v1/events", json={"events": [event]}, headers=api.auth(scope))
        assert r.status_code == 422, (event, r.text)
        assert "not true or false" in r.text


async def test_names_and_ids_that_reorder_or_hide_text_are_refused(api: Api) -> None:
    """A right-to-left override or a zero-width space in a name showed another name on
    every page, notice and export (found from outside); an emoji's joiner is kept."""
    now = datetime.now(UTC).isoformat()
    facts = {"kind": "account", "event_id": "f", "account_id": "a", "occurred_at": now}
    for name in ("Acme\u202egnp.exe", "Ac\u200bme", "\u2066Acme\u2069", "\ufeffAcme"):
        r = await api.client.post(
            "/v1/events", json={"events": [{**facts, "name": name}]}, headers=api.auth("crm")
        )
        assert r.status_code == 422 and "invisible marks" in r.text, (name, r.text)
    hidden = usage("a\u202e", "u")
    r = await api.client.post("/v1/events", json={"events": [hidden]}, headers=api.auth())
    assert r.status_code == 422 and "invisible marks" in r.text
    family = {**facts, "name": "Acme \U0001f468\u200d\U0001f469\u200d\U0001f467"}
    r = await api.client.post("/v1/events", json={"events": [family]}, headers=api.auth("crm"))
    assert r.status_code == 202, r.text


async def test_an_account_id_its_urls_cannot_carry_is_refused(api: Api) -> None:
    """An account id holding "/" was taken, and its own CSM's key found no route to it
    (%2F is a "/" to the router; found from outside)."""
    now = datetime.now(UTC).isoformat()
    facts = {"kind": "account", "event_id": "f", "account_id": "eu/42", "occurred_at": now}
    for event, scope in ((usage("eu/42", "u"), "ingest"), (facts, "crm")):
        r = await api.client.post("/v1/events", json={"events": [event]}, headers=api.auth(scope))
        assert r.status_code == 422 and "must not hold '/'" in r.text, r.text
    fine = usage("eu-42 ?#%", "u")
    assert (
        await api.client.post("/v1/events", json={"events": [fine]}, headers=api.auth())
    ).status_code == 202


async def test_refusals_speak_the_language_the_request_prefers(api: Api) -> None:
    """The message follows Accept-Language (English without it); the code does not."""
    too_many = {"events": [usage("acme", f"u{i}") for i in range(1001)]}
    plain = await api.client.post("/v1/events", json=too_many, headers=api.auth())
    chinese = await api.client.post(
        "/v1/events", json=too_many, headers={**api.auth(), "Accept-Language": "zh-CN,en;q=0.5"}
    )
    assert plain.status_code == chinese.status_code == 413
    assert plain.json()["code"] == chinese.json()["code"] == "too_many_events"
    assert plain.json()["message"].startswith("1001 events in one request")
    assert chinese.json()["message"] == "一次请求中有 1001 个事件，上限为 1000：请拆分这一批。"
    assert chinese.headers["content-language"] == "zh-CN"
    assert "accept-language" in chinese.headers["vary"].lower()
    # Rejected events, the key check and an unknown route: the same.
    zh = {"Accept-Language": "zh"}
    bad = await api.client.post(
        "/v1/accounts", json={"account_id": 5}, headers={**api.auth("crm"), **zh}
    )
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_events"
    assert bad.json()["message"].startswith("1 个事件被拒绝，0 个已接受并存储")
    assert bad.json()["rejected"]  # each field's own error as before
    no_key = await api.client.post("/v1/events", json=too_many, headers=zh)
    assert no_key.status_code == 401 and no_key.json()["message"].startswith("缺少 API 密钥")
    lost = await api.client.get("/v1/nowhere", headers=zh)
    assert lost.json()["message"] == "没有路径 /v1/nowhere：请查看 /docs。"


async def test_a_bus_that_refuses_is_a_503_said_once_in_the_log(
    embedded_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Ingest answered 503 for minutes after a broker restart without a line in its log
    (found from outside): the first 503 is logged, the next ones within ten seconds not."""
    import logging

    import services.ingest.routes as ingest_routes
    from shared.bus.base import BusUnavailable

    class Refusing(EmbeddedBus):
        async def send_many(self, messages: Any, conn: Any = None) -> None:
            raise BusUnavailable("Kafka did not acknowledge: OutOfOrderSequenceNumber()")

    engine = create_engine(embedded_settings.database_url)
    await migrate(engine)
    key = await create_key(engine, "ingest", [Scope.ingest])
    ingest_routes._unavailable_logged[0] = float("-inf")

    async def ready() -> str | None:
        return None  # ready

    app = create_app(
        embedded_settings, engine, Refusing(engine), registry=CollectorRegistry(), ready=ready
    )
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        with caplog.at_level(logging.WARNING, logger="services.ingest.routes"):
            for n in range(3):
                events = {"events": [usage("a", f"u{n}")]}
                r = await client.post("/v1/events", json=events, headers=headers)
                assert r.status_code == 503 and r.headers["retry-after"]
    said = [r.getMessage() for r in caplog.records if "answering 503" in r.getMessage()]
    assert len(said) == 1 and "OutOfOrderSequenceNumber" in said[0], said
    await engine.dispose()
