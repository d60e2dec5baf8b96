"""Delivery under hostile data (issue 11, items 9, 10 and 19): a CR/LF in an account
name, Slack markup in it, and a delivery that cannot even be rendered. Every other
notice still goes out by email, Slack and webhook; headers stay one line; Slack shows
the markup as text; and every link a notice carries opens the dashboard's page.

On the real stack: Kafka, PostgreSQL, an aiosmtpd server, HTTP stand-ins for Slack's
Web API and a webhook receiver, the dashboard served by the ingest process."""

from __future__ import annotations

import html
import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pydantic import SecretStr
from sqlalchemy import select, update

from shared.auth import Scope, create_key
from shared.bus.factory import ALERTS_TOPIC, DEADLETTER_TOPIC
from shared.config import Settings
from shared.storage.tables import accounts, alerts, deliveries
from tests.support.alerting import alerting_toml, write_alerting
from tests.support.harness import (
    Harness,
    alert_stored,
    alerts_settled,
    facts,
    running,
    wait_for,
)
from tests.support.standins import Inbox, Recorded, SlackStandIn, smtp_server

pytestmark = pytest.mark.integration

# Links are built on this base; the test opens their paths on the running dashboard
# (whose port is only known once it runs).
PUBLIC = "https://healthwatch.example.com"
CRLF_NAME = "Acme\r\nBcc: evil@x"
MARKUP_NAME = "<!channel> <http://evil.example|click here> & co"
# account id -> (name, owner email, owner Slack id)
ACCOUNTS = {
    "crlf": (CRLF_NAME, "anna@example.com", "U0ANNA"),
    "markup": (MARKUP_NAME, "bob@example.com", "U0BOB"),
    "calm?1 #x%": ("Calm Inc", "carl@example.com", "U0CARL"),
}


class Envelopes(Inbox):
    """An inbox that also keeps each message's envelope recipients and raw bytes."""

    def __init__(self) -> None:
        super().__init__()
        self.rcpt_tos: list[str] = []
        self.raw: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.rcpt_tos += envelope.rcpt_tos
        self.raw.append(envelope.content)
        return await super().handle_DATA(server, session, envelope)


def alert(account: str) -> dict[str, Any]:
    name, email, slack = ACCOUNTS[account]
    return {
        "alert_id": f"{account}:low_activity:1",
        "account_id": account,
        "account_name": name,
        "rule": "low_activity",
        "severity": "critical",
        "title": f"{name}: only 8% of seats active",
        "summary": f"{name}: 4 of 50 seats. <!here> <https://evil.example|reset password>",
        "owner": {"email": email, "slack_id": slack},
        "fired_at": datetime.now(UTC).isoformat(),
        "details": {"changes": [{"text": "active users fell <!everyone>"}]},
    }


async def test_hostile_names_and_a_poison_delivery_stop_no_other_delivery(
    kafka_settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    slack, hook = SlackStandIn(), SlackStandIn()
    hook.script.append((500, {}))  # one failed webhook attempt: its error is logged
    with smtp_server(inbox=Envelopes()) as (inbox, smtp_port):
        assert isinstance(inbox, Envelopes)
        settings = kafka_settings.model_copy(
            update={
                "alerting_file": write_alerting(
                    tmp_path / "a.toml", alerting_toml(["low_activity"])
                ),
                "public_url": PUBLIC,
                "smtp_host": "127.0.0.1",
                "smtp_port": smtp_port,
                "slack_bot_token": SecretStr("xoxb-test"),
                "slack_api_url": slack.api_url,
                "webhook_url": hook.webhook_url,
                "webhook_secret": SecretStr("s3cret"),
                # The poison delivery's attempts, done quickly.
                "delivery_max_attempts": 2,
            }
        )
        async with slack.running(), hook.running(), running(settings) as hw:
            admin = await create_key(hw.rt.engine, "admin", [Scope.admin])
            await _known_account(hw, admin, "calm?1 #x%")
            poison = await _queue_poison(hw)
            await _publish(hw, [alert(a) for a in ACCOUNTS])
            await wait_for(
                lambda: _true(
                    len(inbox.messages) >= 3
                    and len(slack.delivered()) >= 3
                    and len(hook.delivered()) >= 3
                ),
                timeout=90,
                what="every notice by email, Slack and webhook",
            )
            await alerts_settled(hw)
            async with hw.rt.engine.connect() as conn:
                q = select(deliveries.c.status, deliveries.c.attempts, deliveries.c.last_error)
                dead = (await conn.execute(q.where(deliveries.c.delivery_id == poison))).one()
            links = list(_links(slack.delivered(), inbox, hook.delivered()))
            await _every_link_opens_the_dashboard(hw, admin, links)

    # The poison delivery failed alone: its own attempts, then dead, with the reason.
    assert (dead.status, dead.attempts) == ("dead", 2), dead
    assert "ValidationError" in dead.last_error
    # Email: one per owner, one line per header, no injected recipient.
    assert sorted(m["To"] for m in inbox.messages) == sorted(a[1] for a in ACCOUNTS.values())
    assert sorted(inbox.rcpt_tos) == sorted(a[1] for a in ACCOUNTS.values())
    for raw in inbox.raw:
        head = raw.split(b"\r\n\r\n", 1)[0].replace(b"\r\n ", b" ").replace(b"\r\n\t", b" ")
        assert not any(line.lower().startswith(b"bcc") for line in head.split(b"\r\n")), head
    crlf = next(m for m in inbox.messages if m["To"] == "anna@example.com")
    assert "\r" not in crlf["Subject"] and "\n" not in crlf["Subject"]
    assert "Acme" in crlf["Subject"] and "Bcc: evil@x" in crlf["Subject"]  # shown, harmless
    # Slack: one post per owner, the markup in names and text shown as text, never as a
    # mention or link.
    assert sorted(r.body["channel"] for r in slack.delivered()) == ["U0ANNA", "U0BOB", "U0CARL"]
    _assert_escaped(slack.delivered())
    # Our logs never hold the webhook's URL (its path is the credential), nor a CR/LF
    # from the data.
    ours = [r for r in caplog.records if r.name.startswith(("services.", "shared."))]
    assert any("webhook answered 500" in r.getMessage() for r in ours)
    for record in ours:
        assert hook.webhook_url.split("/", 3)[3] not in record.getMessage(), record.getMessage()
        assert "\r" not in record.getMessage() and "\n" not in record.getMessage()
    # Webhook: every notice, signed, with a one-line Idempotency-Key.
    keys = sorted(r.headers["idempotency-key"] for r in hook.delivered())
    assert keys == sorted(  # one line, a space and "%" escaped so it reads back
        [
            "crlf:low_activity:1/fire",
            "markup:low_activity:1/fire",
            "calm?1%20#x%25:low_activity:1/fire",
        ]
    )


async def _known_account(hw: Harness, admin: str, account: str, **extra: Any) -> None:
    """The account in the accounts table (sent as the CRM would, with an admin key)."""
    name, email, slack = ACCOUNTS.get(account, (f"{account} Inc", None, None))
    body = {**facts(account, seats=50, email=email, slack=slack), "name": name, **extra}
    async with httpx.AsyncClient(base_url=hw.url, timeout=30) as c:
        r = await c.post("/v1/accounts", json=body, headers={"Authorization": f"Bearer {admin}"})
        assert r.status_code == 202, r.text

    async def stored() -> bool:
        async with hw.rt.engine.connect() as conn:
            q = select(accounts.c.account_id).where(accounts.c.account_id == account)
            return (await conn.execute(q)).first() is not None

    await wait_for(stored, timeout=60, what=f"account {account} stored")


async def _queue_poison(hw: Harness) -> int:
    """A pending delivery whose notice cannot be read back (as a bug or a bad migration
    could leave one), queued before every other."""
    now = datetime.now(UTC)
    async with hw.rt.engine.begin() as conn:
        r = await conn.execute(
            deliveries.insert()
            .values(
                alert_id="poison:low_activity:1",
                notification="fire",
                account_id="poison",
                channel="email",
                destination="anna@example.com",
                payload={"kind": "fire", "key": "poison", "alerts": [{"not": "an alert"}]},
                status="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
            .returning(deliveries.c.delivery_id)
        )
        return int(r.scalar_one())


async def _publish(hw: Harness, alerts_: list[dict[str, Any]]) -> None:
    """Straight onto the alerts topic, as scoring publishes them."""
    s = hw.rt.settings
    producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap)
    await producer.start()
    try:
        for a in alerts_:
            value = json.dumps(a).encode()  # as a stranger may write it: any int, any depth
            await producer.send_and_wait(s.topic(ALERTS_TOPIC), value, key=a["account_id"].encode())
    finally:
        await producer.stop()


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _blocks(post: Recorded) -> list[dict[str, Any]]:
    blocks = post.body["blocks"]
    return orjson.loads(blocks) if isinstance(blocks, str) else blocks  # type: ignore[no-any-return]


def _assert_escaped(posts: list[Recorded]) -> None:
    for post in posts:
        texts = [post.body["text"], *_strings(_blocks(post))]
        for text in texts:
            # Slack's special syntax: only our own mention and links may use it.
            for found in re.findall(r"<([^>]*)>", text):
                assert found.startswith(("@U0", PUBLIC)), (found, text)
        if post.body["channel"] == "U0BOB":  # the account named with Slack markup
            joined = "\n".join(texts)
            assert "&lt;!channel&gt; &lt;http://evil.example|click here&gt; &amp; co" in joined
            assert "&lt;!here&gt;" in joined and "&lt;!everyone&gt;" in joined


def _links(slack: list[Recorded], inbox: Inbox, hook: list[Recorded]) -> Iterator[str]:
    """Every link of every notice: Slack buttons and mrkdwn links, email HTML and text,
    the webhook's account URLs."""
    for post in slack:
        for block in _blocks(post):
            for element in block.get("elements", []):
                if "url" in element:
                    yield element["url"]
        for text in [post.body["text"], *_strings(_blocks(post))]:
            yield from re.findall(r"<(https?://[^|>]+)\|", text)
    for message in inbox.messages:
        page = message.get_body(("html",)).get_content()
        yield from (html.unescape(u) for u in re.findall(r'href="([^"]+)"', page))
        text = message.get_body(("plain",)).get_content()
        yield from re.findall(r"Open the account: (\S+)", text)
        yield from re.findall(r"Acknowledge, snooze or resolve: (\S+)", text)
    for request in hook:
        yield from request.body["account_urls"].values()


async def _every_link_opens_the_dashboard(hw: Harness, admin: str, links: list[str]) -> None:
    """Signed out, each link asks for sign-in (to come back to it); signed in, the known
    account's page opens. A wrong path would be a 404 either way."""
    assert links and all(u.startswith(PUBLIC + "/") for u in links), links
    # Slack button and link; email HTML and text, each to the account and to the alert's
    # page (email has no buttons); the webhook.
    per_account = 2 + 4 + 1
    assert len(links) == per_account * len(ACCOUNTS), links
    paths = sorted({u[len(PUBLIC) :] for u in links})
    async with httpx.AsyncClient(base_url=hw.url, timeout=30) as anonymous:
        for path in paths:
            r = await anonymous.get(path)
            assert r.status_code == 303, (path, r.status_code)
            assert r.headers["location"].startswith("/ui/login?"), (path, r.headers)
    async with httpx.AsyncClient(base_url=hw.url, timeout=30) as browser:
        form = await browser.get("/ui/login")
        csrf = re.search(r'name="csrf" value="([^"]*)"', form.text)
        assert csrf, form.text
        r = await browser.post("/ui/login", data={"csrf": csrf[1], "key": admin, "next": "/ui/"})
        assert r.status_code == 303, r.text
        calm = [p for p in paths if p.startswith("/ui/accounts/calm")]
        assert calm == ["/ui/accounts/calm%3F1%20%23x%25"], paths
        page = await browser.get(calm[0])
        assert page.status_code == 200 and "Calm Inc" in page.text, page.status_code
        alert = [p for p in paths if p.startswith("/ui/alerts/calm")]
        assert alert == ["/ui/alerts/calm%3F1%20%23x%25%3Alow_activity%3A1"], paths
        page = await browser.get(alert[0])
        assert page.status_code == 200 and 'id="alert-actions"' in page.text, page.status_code


async def _true(value: bool) -> bool:
    return value


async def test_reminders_escalations_and_digests_go_to_the_accounts_owner_now(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    """An alert that fired for Anna (and sales owner Sam) on an account the CRM has
    since handed to Carl (and Sue): whatever is queued about it from now on goes to
    Carl and Sue, never to Anna or Sam."""
    routing = """[routing]
escalate_to = ["cs_lead", "sales_manager"]
[routing.people.cs_lead]
email = "lead@example.com"
"""
    toml = alerting_toml(
        ["low_activity"],
        routing=routing,
        repeat_interval='"1s"',
        escalate_after='{ critical = "1s", warning = "1d" }',
        digest_hour="0",
    )
    with smtp_server() as (inbox, smtp_port):
        settings = kafka_settings.model_copy(
            update={
                "alerting_file": write_alerting(tmp_path / "a.toml", toml),
                "smtp_host": "127.0.0.1",
                "smtp_port": smtp_port,
            }
        )
        async with running(settings) as hw:
            admin = await create_key(hw.rt.engine, "admin", [Scope.admin])
            owner = {"owner": {"email": "carl@example.com"}}
            sales = {"sales_owner": {"email": "sue@example.com"}}
            await _known_account(hw, admin, "handed", **owner, **sales)
            fired = {
                **alert("crlf"),
                "alert_id": "handed:low_activity:1",
                "account_id": "handed",
                "account_name": "Handed Inc",
                "owner": {"email": "anna@example.com"},
                "sales_owner": {"email": "sam@example.com"},
            }
            await _publish(hw, [fired])
            # Stored before today's digest hour: the day's digest holds the alerts open at
            # its hour, not one told since.
            await alert_stored(hw, "handed:low_activity:1")
            async with hw.rt.engine.begin() as conn:
                await conn.execute(
                    update(alerts)
                    .where(alerts.c.alert_id == "handed:low_activity:1")
                    .values(stored_at=datetime.now(UTC) - timedelta(days=1))
                )

            async def told() -> set[str]:
                async with hw.rt.engine.connect() as conn:
                    q = select(deliveries.c.notification).where(deliveries.c.status == "delivered")
                    kinds = {n.split(":")[0] for n in (await conn.execute(q)).scalars()}
                return kinds if {"fire", "repeat", "escalate", "digest"} <= kinds else set()

            await wait_for(told, timeout=90, what="fire, reminder, escalation and digest sent")
            async with hw.rt.engine.connect() as conn:
                sent = (await conn.execute(select(deliveries.c.destination))).scalars().all()
    assert set(sent) == {"carl@example.com", "sue@example.com", "lead@example.com"}, sent
    assert {m["To"] for m in inbox.messages} <= set(sent)


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"a": value}
    return value


UNSTORABLE: list[dict[str, Any]] = [
    {"alert_id": "x" * 5000},
    {"revision": 2**63},
    {"title": "nul \u0000 in the title"},
    {"account_id": "a\u0000b"},
    {"fired_at": "0001-01-01T00:00:00+14:00"},
    {"fired_at": "9999-12-31T23:59:59-14:00"},
    {"details": {"deep": _nested(300)}},  # beyond orjson's 254 levels
    {"score": 10**30},
    {"tier": "t" * 100},
    {"rule": "r" * 1000},
]


async def test_alerts_the_store_cannot_hold_are_dead_lettered_and_delivery_goes_on(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    """Alerts on the topic that no column could hold (as a bug or a stranger could put
    there) are dead-lettered with the reason: the ones after them are stored and
    delivered."""
    slack = SlackStandIn()
    settings = kafka_settings.model_copy(
        update={
            "alerting_file": write_alerting(tmp_path / "a.toml", alerting_toml(["low_activity"])),
            "slack_webhook_url": slack.webhook_url,
        }
    )
    async with slack.running(), running(settings, scoring=False) as hw:
        good = {**alert("calm?1 #x%"), "account_name": "After Inc", "title": "After Inc: quiet"}
        bad = [{**alert("markup"), "alert_id": f"bad:{n}", **u} for n, u in enumerate(UNSTORABLE)]
        await _publish(hw, [*bad, good])
        await wait_for(
            lambda: _true(any("After Inc" in r.body["text"] for r in slack.delivered())),
            timeout=60,
            what="the alert after the unstorable ones delivered",
        )
        await alerts_settled(hw)
        async with hw.rt.engine.connect() as conn:
            stored = (await conn.execute(select(alerts.c.alert_id))).scalars().all()
        letters = await _dead_letters(hw, len(UNSTORABLE))
    assert stored == [good["alert_id"]]
    assert len(slack.delivered()) == 1
    reasons = {orjson.loads(value)["alert_id"][:10]: reason for value, reason in letters}
    assert sorted(reasons) == sorted(b["alert_id"][:10] for b in bad), reasons
    assert all("UndecodableRecord" in r for r in reasons.values()), reasons
    assert "NUL" in reasons["bad:2"] and "2000 and 2200" in reasons["bad:4"], reasons


async def _dead_letters(hw: Harness, count: int) -> list[tuple[bytes, str]]:
    """(value, reason) of the first ``count`` records on the dead-letter topic."""
    s = hw.rt.settings
    consumer = AIOKafkaConsumer(
        s.topic(DEADLETTER_TOPIC), bootstrap_servers=s.kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    found: list[tuple[bytes, str]] = []
    try:

        async def read() -> bool:
            for batch in (await consumer.getmany(timeout_ms=1000)).values():
                for m in batch:
                    found.append((m.value or b"", dict(m.headers or ())["reason"].decode()))
            return len(found) >= count

        await wait_for(read, timeout=60, what=f"{count} dead letters")
    finally:
        await consumer.stop()
    return found
