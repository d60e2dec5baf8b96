"""Hostile input, generated: extreme dates and numbers, any unicode, control characters,
deep nesting and huge strings, sent through HTTP and written straight onto the topics.

Whatever arrives, the services answer no 5xx, scoring goes on scoring and delivery goes
on delivering (issue 11). The services run once; hypothesis drives a client from a
worker thread while the services keep the test's event loop.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from shared.bus.factory import ALERTS_TOPIC, DEADLETTER_TOPIC
from shared.config import Settings
from shared.contracts.events import KINDS
from tests.support.harness import Harness, running, usage, wait_for
from tests.support.standins import SlackStandIn
from tests.support.usage import seen_ids

pytestmark = pytest.mark.integration

# Examples per property: enough to meet every kind of hostile value several times,
# few enough that the whole file stays near a minute on two cores.
EXAMPLES = 150
# A valid event sent after the hostile ones must be scored within this: generous for a
# loaded CI machine, far below "stuck forever".
PROGRESS_TIMEOUT_S = 90

EXTREME_TIMES = [
    "0001-01-01T00:00:00+14:00",
    "0001-01-01T00:00:00-14:00",
    "9999-12-31T23:59:59-14:00",
    "9999-12-31T23:59:59+00:00",
    "1970-01-01T00:00:00Z",
    "2262-04-12T00:00:00Z",
    "1677-09-21T00:00:00Z",
    "not a date",
    "",
]
EXTREME_NUMBERS: list[Any] = [
    2**63,
    2**63 - 1,
    -(2**63) - 1,
    2**31,
    -1,
    10**400,
    1e308,
    -1e308,
    5e-324,
    0,
    True,
]
CONTROL = "".join(chr(c) for c in (*range(0, 32), 0x7F, 0x85, 0x2028, 0x2029, 0xFEFF))


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"a": value}
    return value


hostile_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=CONTROL, min_size=1, max_size=20),
    st.sampled_from(["<!channel>", "<http://evil.example|click>", "Acme\r\nBcc: x@evil.example"]),
    st.integers(min_value=10_000, max_value=300_000).map(lambda n: "x" * n),
)
hostile_value = st.one_of(
    hostile_text,
    st.sampled_from(EXTREME_TIMES),
    st.sampled_from(EXTREME_NUMBERS),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=30, max_value=1000).map(nested),
    st.sampled_from(EXTREME_NUMBERS).map(lambda n: {"deep": [{"n": n}]}),
    st.none(),
    st.lists(st.integers(), max_size=3),
)
FIELDS = [
    "event_id",
    "account_id",
    "user_id",
    "event",
    "occurred_at",
    "created_at",
    "first_reply_at",
    "ticket_id",
    "seats_purchased",
    "mrr",
    "arr",
    "name",
    "duration_s",
    "properties",
    "score",
    "amount",
    "contract_end",
    "go_live",
    "owner",
    "subject",
]


def base_event(kind: str, account: str, event_id: str) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    event: dict[str, Any] = {
        "kind": kind,
        "event_id": event_id,
        "account_id": account,
        "occurred_at": now,
    }
    extra: dict[str, dict[str, Any]] = {
        "usage": {"user_id": "u1", "event": "login"},
        "ticket": {"ticket_id": "t1", "status": "open", "created_at": now},
        "account": {"name": "Hostile Inc", "seats_purchased": 5},
        "touchpoint": {"touchpoint_kind": "call"},
        "nps": {"score": 7},
        "payment": {"status": "failed"},
    }
    return {**event, **extra[kind]}


@st.composite
def hostile_events(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(KINDS))
    account = draw(st.sampled_from(["hostile", "hostile-2"]))
    event = base_event(kind, account, draw(st.uuids()).hex)
    for name in draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3, unique=True)):
        event[name] = draw(hostile_value)
    return event


def encode(value: Any) -> bytes:
    """JSON as a hostile client may write it: lone surrogates escaped, huge ints kept."""
    return json.dumps(value, ensure_ascii=True).encode()


@st.composite
def hostile_alerts(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "alert_id": draw(st.one_of(st.uuids().map(lambda u: u.hex), hostile_text)),
        "revision": draw(st.one_of(st.just(0), st.sampled_from(EXTREME_NUMBERS))),
        "account_id": draw(st.one_of(st.just("hostile"), hostile_text)),
        "account_name": draw(hostile_text),
        "rule": draw(st.one_of(st.just("low_activity"), hostile_text)),
        "severity": draw(st.sampled_from(["warning", "critical", "bogus"])),
        "title": draw(hostile_text),
        "summary": draw(hostile_text),
        "fired_at": draw(st.one_of(st.just(datetime.now(UTC).isoformat()), hostile_value)),
        "details": draw(st.one_of(st.just({}), hostile_value)),
    }


async def scored(hw: Harness, event_id: str) -> bool:
    return bool(await seen_ids(hw.rt.engine, [event_id]))


# The services share this process and use `random` (retry jitter) while hypothesis draws
# in another thread; hypothesis sees the global generator move and warns, though no
# strategy of ours uses it.
@pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")
async def test_hostile_events_never_stop_ingest_scoring_or_delivery(
    kafka_settings: Settings,
) -> None:
    slack = SlackStandIn()
    s = kafka_settings.model_copy(update={"slack_webhook_url": slack.webhook_url})
    loop = asyncio.get_running_loop()
    producer = AIOKafkaProducer(
        bootstrap_servers=s.kafka_bootstrap, max_request_size=4 * 1024 * 1024
    )
    await producer.start()
    server_errors: list[str] = []
    try:
        async with slack.running(), running(s) as hw:

            def to_topic(topic: str, value: bytes) -> None:
                # Straight onto the topic, as a broken or malicious producer would; a
                # record the broker refuses (too large) is no test of the consumer.
                fut = asyncio.run_coroutine_threadsafe(
                    producer.send_and_wait(topic, value, key=b"hostile"), loop
                )
                try:
                    fut.result(30)
                except Exception as exc:
                    if "TooLarge" not in type(exc).__name__:
                        raise

            def post(client: httpx.Client, path: str, body: bytes) -> None:
                r = client.post(path, content=body, headers={"Content-Type": "application/json"})
                if r.status_code >= 500:
                    server_errors.append(f"{path} {r.status_code}: {r.text[:300]}")

            @hsettings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(event=hostile_events(), raw=st.binary(max_size=64))
            def events_property(event: dict[str, Any], raw: bytes) -> None:
                with httpx.Client(
                    base_url=hw.url, headers={"Authorization": f"Bearer {hw.key}"}, timeout=30
                ) as client:
                    post(client, "/v1/events", encode({"events": [event]}))
                    post(client, "/v1/track", encode({**event, "type": "track"}))
                topic = s.topic(str(event.get("kind")))
                to_topic(topic, encode(event))
                to_topic(topic, raw)

            @hsettings(
                max_examples=EXAMPLES // 2,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(alert=hostile_alerts())
            def alerts_property(alert: dict[str, Any]) -> None:
                to_topic(s.topic(ALERTS_TOPIC), encode(alert))

            await asyncio.to_thread(events_property)
            await asyncio.to_thread(alerts_property)
            assert server_errors == [], server_errors

            # Scoring goes on: a valid event sent after all of that, both ways, is scored.
            through_http = usage("after-hostile", "u1")
            async with hw.client() as client:
                r = await client.post("/v1/events", json={"events": [through_http]})
                assert r.status_code == 202, r.text
            on_topic = usage("after-hostile", "u2")
            await producer.send_and_wait(s.topic("usage"), encode(on_topic), key=b"after-hostile")
            for e in (through_http, on_topic):
                await wait_for(
                    lambda e=e: scored(hw, e["event_id"]),
                    timeout=PROGRESS_TIMEOUT_S,
                    what=f"event {e['event_id']} scored after the hostile ones",
                )

            # Delivery goes on: a valid alert after the hostile ones reaches Slack.
            marker = f"after-hostile-{uuid.uuid4().hex[:8]}"
            alert = {
                "alert_id": marker,
                "account_id": "after-hostile",
                "account_name": "After Hostile",
                # An owner to route to: the test's routing has no team fallback.
                "owner": {"slack_id": "U0AFTER"},
                "rule": "low_activity",
                "severity": "warning",
                "title": f"{marker}: activity fell",
                "summary": "fewer active users",
                "fired_at": datetime.now(UTC).isoformat(),
            }
            await producer.send_and_wait(s.topic(ALERTS_TOPIC), encode(alert), key=b"after-hostile")

            async def delivered() -> bool:
                return any(marker in json.dumps(r.body) for r in slack.delivered())

            await wait_for(delivered, timeout=PROGRESS_TIMEOUT_S, what="the valid alert on Slack")
            for r in slack.delivered():
                text = json.dumps(r.body)
                assert "<!channel>" not in text, "Slack mention not escaped"
    finally:
        await producer.stop()


async def test_dead_letters_name_their_reason(kafka_settings: Settings) -> None:
    """Undecodable records on every event topic end in the dead-letter topic with a
    reason, and the stream behind them is scored."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka_settings.kafka_bootstrap)
    await producer.start()
    try:
        async with running(kafka_settings, alerts=False) as hw:
            for kind in KINDS:
                await producer.send_and_wait(kafka_settings.topic(kind), b"\xff{not json")
            after = usage("after-garbage", "u1")
            await producer.send_and_wait(
                kafka_settings.topic("usage"), encode(after), key=b"after-garbage"
            )
            await wait_for(
                lambda: scored(hw, after["event_id"]),
                timeout=PROGRESS_TIMEOUT_S,
                what="the event behind the garbage scored",
            )
        consumer = AIOKafkaConsumer(
            kafka_settings.topic(DEADLETTER_TOPIC),
            bootstrap_servers=kafka_settings.kafka_bootstrap,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            got = await consumer.getmany(timeout_ms=10_000)
            records = [m for ms in got.values() for m in ms]
        finally:
            await consumer.stop()
        assert len(records) >= len(KINDS)
        for m in records:
            headers = dict(m.headers or ())
            assert headers.get("reason"), headers
            assert headers.get("source_topic", b"").decode().startswith(kafka_settings.topic_prefix)
    finally:
        await producer.stop()
