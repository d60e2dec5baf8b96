"""The outbox sender's lanes: deliveries that share a pace (one Slack webhook) go one
after another, others side by side, and none is begun so late that its claim's lease
could run out while it is sent."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from services.alerts.channels import DeliveryError
from services.alerts.channels.base import SEND_TIMEOUT_S
from services.alerts.metrics import AlertsMetrics
from services.alerts.outbox import OutboxSender
from shared.alerting.schema import Recipient
from shared.alerting.store import AlertingStore
from shared.config import Settings
from shared.contracts.alerts import AlertEvent, Severity
from shared.contracts.notices import Notice, NoticeKind
from shared.storage.tables import alerts, deliveries
from tests.support.alerting import alerting_toml
from tests.support.clocks import MovingClock
from tests.support.factories import EngineFactory

T0 = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)


@dataclass
class Channel:
    """A stand-in channel: records sends; ``before_send`` runs first (a hang, a delay)."""

    name: str
    pace: str | None
    sent: list[str] = field(default_factory=list)
    before_send: Any = None
    broadcast: bool = False
    one_post: bool = False
    # True: it can look at what it sent (as Slack's Web API): ``posted`` answers.
    sees: bool = False
    out: set[tuple[str, str]] = field(default_factory=set)  # (destination, notice key)
    looked: list[tuple[str, datetime]] = field(default_factory=list)
    after_send: Any = None

    def address(self, recipient: Recipient) -> str | None:
        return recipient.email

    def pace_key(self, destination: str) -> str | None:
        return self.pace

    async def send(self, notice: Notice, destination: str) -> None:
        if self.before_send is not None:
            await self.before_send(destination)
        self.sent.append(destination)
        self.out |= {(destination, key) for key in notice.keys}
        if self.after_send is not None:
            await self.after_send(destination)

    async def posted(self, keys: Any, destination: str, since: datetime) -> set[str] | None:
        self.looked.append((destination, since))
        return {k for k in keys if (destination, k) in self.out} if self.sees else None


def _alert(n: int) -> AlertEvent:
    return AlertEvent(
        alert_id=f"acct-{n}:payment_failed:1",
        revision=0,
        account_id=f"acct-{n}",
        rule="payment_failed",
        severity=Severity.critical,
        status="firing",
        title=f"acct-{n}: a payment failed",
        summary="",
        fired_at=T0,
    )


@pytest.fixture
async def engine(engine_factory: EngineFactory) -> AsyncEngine:
    return await engine_factory()


async def _queue(
    engine: AsyncEngine,
    channel: str,
    destination: str,
    n: int,
    due: datetime,
    kind: NoticeKind = NoticeKind.fire,
) -> None:
    notice = Notice(kind, [_alert(n)], f"acct-{n}")
    async with engine.begin() as conn:
        await conn.execute(
            insert(deliveries).values(
                alert_id=f"acct-{n}:payment_failed:1",
                notification="fire" if kind == NoticeKind.fire else f"{kind.value}:1",
                account_id=f"acct-{n}",
                channel=channel,
                destination=destination,
                payload=notice.to_json(),
                status="pending",
                attempts=0,
                next_attempt_at=due,
                created_at=due,
            )
        )


def _sender(
    engine: AsyncEngine,
    settings: Settings,
    channels: list[Channel],
    clock: MovingClock,
    group_wait: str = '"0s"',
) -> OutboxSender:
    return OutboxSender(
        engine,
        channels,  # type: ignore[arg-type]
        settings.model_copy(update={"slack_min_interval_s": 0.0}),
        AlertsMetrics(CollectorRegistry()),
        alerting=AlertingStore(alerting_toml(None, group_wait=group_wait)),
        clock=clock,
    )


def _hanging_until_email(hanging: Channel) -> tuple[Channel, Channel]:
    """``hanging``, whose sends wait until an email has gone, and that email channel."""
    email = Channel("email", pace=None)
    email_sent = asyncio.Event()

    async def hang_until_email(_: str) -> None:
        await email_sent.wait()

    async def mark(_: str) -> None:
        email_sent.set()

    hanging.before_send, email.before_send = hang_until_email, mark
    return hanging, email


async def test_a_hanging_slack_holds_up_no_email(
    engine: AsyncEngine, embedded_settings: Settings
) -> None:
    """The Slack delivery is claimed first and hangs until the email has gone: one
    after the other (as before) the pass never ends."""
    slack, email = _hanging_until_email(Channel("slack", pace="webhook"))
    await _queue(engine, "slack", "webhook", 1, T0 - timedelta(seconds=1))
    await _queue(engine, "email", "anna@example.com", 2, T0)
    sender = _sender(engine, embedded_settings, [slack, email], MovingClock(T0))
    async with asyncio.timeout(10):
        assert await sender.send_due() == 2
    assert (slack.sent, email.sent) == (["webhook"], ["anna@example.com"])


async def test_a_hanging_webhook_with_many_lanes_holds_up_no_email(
    engine: AsyncEngine, embedded_settings: Settings
) -> None:
    """The generic webhook is a lane per account: its 25 older deliveries, hanging until
    their timeout, filled the pass's claim, and the email waited minutes (found from
    outside). Each channel is claimed apart, with room of its own."""
    webhook, email = _hanging_until_email(Channel("webhook", pace=None))
    for n in range(25):
        await _queue(engine, "webhook", "https://hooks.example/x", n, T0 - timedelta(minutes=5))
    await _queue(engine, "email", "anna@example.com", 99, T0)
    sender = _sender(engine, embedded_settings, [webhook, email], MovingClock(T0))
    async with asyncio.timeout(10):
        await sender.send_due()
    assert email.sent == ["anna@example.com"] and len(webhook.sent) >= 5


async def test_a_lane_stops_before_the_lease_could_run_out(
    engine: AsyncEngine, embedded_settings: Settings
) -> None:
    """Two Slack destinations behind one webhook go in turn; the first send takes so
    long that a second, begun now, could outlast the claim's lease: it goes back
    untried, unclaimed, and the next pass sends it."""
    clock = MovingClock(T0)
    slack = Channel("slack", pace="webhook")
    lease = embedded_settings.delivery_claim_lease_s

    async def slow(_: str) -> None:
        clock.now += timedelta(seconds=lease - SEND_TIMEOUT_S + 1)

    slack.before_send = slow
    await _queue(engine, "slack", "C-ONE", 1, T0 - timedelta(seconds=2))
    await _queue(engine, "slack", "C-TWO", 2, T0 - timedelta(seconds=1))
    sender = _sender(engine, embedded_settings, [slack], clock)
    await sender.send_due()
    assert slack.sent == ["C-ONE"]
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(
                    deliveries.c.destination, deliveries.c.status, deliveries.c.claimed_until
                ).order_by(deliveries.c.delivery_id)
            )
        ).all()
    assert [tuple(r) for r in rows] == [("C-ONE", "delivered", None), ("C-TWO", "pending", None)]
    await sender.send_due()
    assert slack.sent == ["C-ONE", "C-TWO"]


async def test_a_failing_webhook_notice_holds_up_no_other_accounts(
    engine: AsyncEngine, embedded_settings: Settings
) -> None:
    """The generic webhook is one destination for every account: its first notice,
    failing again and again, held up every account's notices until it died (about 14
    minutes, found from outside). Order holds per account there."""
    webhook = Channel("webhook", pace=None)

    calls: list[str] = []

    async def fail_first_account(destination: str) -> None:
        calls.append(destination)
        if len(calls) == 1:  # the oldest notice, acct-1's
            raise DeliveryError("webhook answered 500: no")

    webhook.before_send = fail_first_account
    await _queue(engine, "webhook", "webhook", 1, T0 - timedelta(seconds=3))
    await _queue(engine, "webhook", "webhook", 2, T0 - timedelta(seconds=2))
    await _queue(engine, "webhook", "webhook", 3, T0 - timedelta(seconds=1))
    sender = _sender(engine, embedded_settings, [webhook], MovingClock(T0))
    await sender.send_due()
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(deliveries.c.account_id, deliveries.c.status).order_by(
                    deliveries.c.delivery_id
                )
            )
        ).all()
    # acct-1's waits for its retry; the other accounts' went.
    assert [tuple(r) for r in rows] == [
        ("acct-1", "pending"),
        ("acct-2", "delivered"),
        ("acct-3", "delivered"),
    ]


class RefusingSlack(Channel):
    """An incoming webhook (one destination for every account) that answers 500 to any
    message naming an account of ``refusing`` (a set the test may change), and keeps
    the alert ids of each message it takes."""

    def __init__(self, refusing: set[str]):
        super().__init__("slack", pace="slack-webhook")
        self.refusing = refusing
        self.messages: list[list[str]] = []

    async def send(self, notice: Notice, destination: str) -> None:
        ids = [a.alert_id for a in notice.alerts]
        if any(alert_id.split(":")[0] in self.refusing for alert_id in ids):
            raise DeliveryError("Slack webhook answered 500: no")
        self.messages.append(ids)


async def test_a_slack_notice_slack_keeps_refusing_holds_up_no_other_account(
    engine: AsyncEngine, embedded_settings: Settings
) -> None:
    """One incoming webhook is one destination for every account: a notice Slack kept
    answering 500 took the next notice into its message (and its failures) and held
    up every later one for its dozen attempts (found from outside). Order holds per
    account; a retried notice goes alone, the untried ones group without it."""
    slack = RefusingSlack({"acct-1"})
    sent = slack.messages
    clock = MovingClock(T0)
    await _queue(engine, "slack", "webhook", 1, T0 - timedelta(seconds=1))
    sender = _sender(engine, embedded_settings, [slack], clock, '"30s"')  # grouped
    await sender.send_due()  # refused: retried later
    await _queue(engine, "slack", "webhook", 2, T0)
    await _queue(engine, "slack", "webhook", 3, T0)
    clock.now += timedelta(minutes=10)  # every wait over: acct-1's retry is due too
    await sender.send_due()
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(deliveries.c.account_id, deliveries.c.status).order_by(deliveries.c.delivery_id)
        )
        status = [tuple(r) for r in rows]
    assert status == [("acct-1", "pending"), ("acct-2", "delivered"), ("acct-3", "delivered")]
    assert sent == [["acct-2:payment_failed:1", "acct-3:payment_failed:1"]]


async def test_another_accounts_group_takes_no_notice_queued_behind_a_retried_one(
    engine: AsyncEngine, embedded_settings: Settings
) -> None:
    """Slack keeps order per account: acct-2's second notice, queued behind its first
    (being retried), went in acct-1's group before it (its "resolved" before its
    "firing", found in review). It waits for its first."""
    refusing = {"acct-2"}
    slack = RefusingSlack(refusing)
    sent = slack.messages
    clock = MovingClock(T0)
    await _queue(engine, "slack", "webhook", 2, T0 - timedelta(seconds=1))
    sender = _sender(engine, embedded_settings, [slack], clock, '"30s"')  # grouped
    await sender.send_due()  # acct-2's first refused: retried later
    await _queue(engine, "slack", "webhook", 1, T0)
    await _queue(engine, "slack", "webhook", 2, T0, NoticeKind.resolve)
    await sender.send_due()  # acct-2's first is not due yet
    assert sent == [["acct-1:payment_failed:1"]]  # without acct-2's resolve
    refusing.clear()
    clock.now += timedelta(minutes=10)
    await sender.send_due()
    await sender.send_due()
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(deliveries.c.notification, deliveries.c.status, deliveries.c.delivered_at)
            .where(deliveries.c.account_id == "acct-2")
            .order_by(deliveries.c.delivery_id)
        )
        acct2 = [tuple(r) for r in rows]
    assert [(n, st) for n, st, _ in acct2] == [("fire", "delivered"), ("resolve:1", "delivered")]
    assert acct2[0][2] <= acct2[1][2]


async def test_a_grouped_slack_message_refused_as_it_is_sends_each_notice_alone(
    engine: AsyncEngine, embedded_settings: Settings
) -> None:
    """Slack refused a group for one notice's blocks (invalid_blocks): the valid notice
    with it failed too, and waited until the invalid one died 12 attempts later (found
    from outside). Now its first goes alone, and the rest at the next pass."""
    sent: list[list[str]] = []

    class Slack(Channel):
        async def send(self, notice: Notice, destination: str) -> None:
            ids = [a.alert_id for a in notice.alerts]
            if "acct-1:payment_failed:1" in ids:
                raise DeliveryError("Slack API 200: invalid_blocks", permanent=True, content=True)
            sent.append(ids)

    slack = Slack("slack", pace="slack-api")
    await _queue(engine, "slack", "U0ANNA", 1, T0 - timedelta(seconds=2))
    await _queue(engine, "slack", "U0ANNA", 2, T0 - timedelta(seconds=1))
    sender = _sender(engine, embedded_settings, [slack], MovingClock(T0), '"30s"')  # grouped
    await sender.send_due()  # the group refused: its first alone (dead), the rest back
    await sender.send_due()  # the rest, grouped again
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(
                    deliveries.c.account_id, deliveries.c.status, deliveries.c.attempts
                ).order_by(deliveries.c.delivery_id)
            )
        ).all()
    assert [tuple(r) for r in rows] == [("acct-1", "dead", 1), ("acct-2", "delivered", 1)]
    assert sent == [["acct-2:payment_failed:1"]]


async def test_a_notice_acted_on_while_it_waited_to_be_grouped_is_skipped(
    engine: AsyncEngine, embedded_settings: Settings
) -> None:
    """Snoozed at 13:49:27, its fire notice, queued for the grouping window, went out at
    13:49:33 with live Acknowledge and Snooze buttons (found from outside). Email waits
    for the window too now, and is skipped alike."""
    slack = Channel("slack", pace="slack-api")
    async with engine.begin() as conn:
        await conn.execute(
            insert(alerts).values(
                alert_id="acct-1:payment_failed:1",
                account_id="acct-1",
                rule="payment_failed",
                severity="critical",
                status="acknowledged",
                title="acct-1: a payment failed",
                payload=_alert(1).model_dump(mode="json"),
                fired_at=T0,
                stored_at=T0,
            )
        )
        # Acknowledged as a warning, now critical: its update is told (Slack dropped it,
        # found from outside); marked not useful: its first notice is not.
        for n, acted in ((3, {"status": "acknowledged"}), (4, {"not_useful": True})):
            await conn.execute(
                insert(alerts).values(
                    alert_id=f"acct-{n}:payment_failed:1",
                    account_id=f"acct-{n}",
                    rule="payment_failed",
                    severity="critical",
                    status=acted.pop("status", "firing"),
                    title=f"acct-{n}: a payment failed",
                    payload=_alert(n).model_dump(mode="json"),
                    fired_at=T0,
                    stored_at=T0,
                    **acted,
                )
            )
    await _queue(engine, "slack", "U0ANNA", 1, T0 - timedelta(seconds=2))
    await _queue(engine, "slack", "U0ANNA", 2, T0 - timedelta(seconds=1))
    await _queue(engine, "email", "anna@example.com", 1, T0)
    await _queue(engine, "slack", "U0BOB", 3, T0, NoticeKind.update)
    await _queue(engine, "slack", "U0CARL", 4, T0)
    email = Channel("email", pace=None)
    sender = _sender(engine, embedded_settings, [slack, email], MovingClock(T0), '"30s"')
    await sender.send_due()
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(deliveries.c.account_id, deliveries.c.channel, deliveries.c.status).order_by(
                    deliveries.c.delivery_id
                )
            )
        ).all()
    assert [tuple(r) for r in rows] == [
        ("acct-1", "slack", "skipped"),
        ("acct-2", "slack", "delivered"),
        ("acct-1", "email", "skipped"),
        ("acct-3", "slack", "delivered"),
        ("acct-4", "slack", "skipped"),
    ]
    assert sorted(slack.sent) == ["U0ANNA", "U0BOB"] and email.sent == []


async def test_a_lane_stops_when_an_outcome_cannot_be_recorded(
    engine: AsyncEngine, embedded_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database went away mid-pass: the sender went on sending the lane's claimed
    deliveries it could not record, and each was sent again after the outage (found from
    outside). Now only the one whose outcome was lost goes twice."""
    clock = MovingClock(T0)
    hook = Channel("webhook", pace="hook")
    for n, name in enumerate(("A", "B", "C")):
        await _queue(engine, "webhook", name, n, T0 - timedelta(seconds=3 - n))
    sender = _sender(engine, embedded_settings, [hook], clock)
    recorded = OutboxSender._set

    async def down(self: OutboxSender, rows: list[Any], **values: Any) -> None:
        raise OSError("connection refused")

    monkeypatch.setattr(OutboxSender, "_set", down)
    await sender.send_due()
    assert hook.sent == ["A"]  # B and C untried: they could not be recorded either
    monkeypatch.setattr(OutboxSender, "_set", recorded)
    clock.now += timedelta(seconds=embedded_settings.delivery_claim_lease_s + 1)
    await sender.send_due()
    assert hook.sent == ["A", "A", "B", "C"]  # A once more (its outcome was lost), B, C once


async def test_a_notice_whose_sender_died_is_looked_for_before_it_goes_again(
    engine: AsyncEngine, embedded_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sent, then the outcome lost (the sender killed, the database away): a channel that
    can look (Slack's Web API) finds it out and records it delivered, once; one that
    cannot (SMTP, a webhook) sends it again. A notice claimed and never sent is not found
    and goes."""
    clock = MovingClock(T0)
    slack = Channel("slack", pace=None, sees=True)
    hook = Channel("webhook", pace=None)
    await _queue(engine, "slack", "U0A", 1, T0 - timedelta(seconds=2))
    await _queue(engine, "webhook", "webhook", 2, T0 - timedelta(seconds=2))
    await _queue(engine, "slack", "U0B", 3, T0 - timedelta(seconds=2))
    sender = _sender(engine, embedded_settings, [slack, hook], clock)
    recorded = OutboxSender._set

    async def down(self: OutboxSender, rows: list[Any], **values: Any) -> None:
        raise OSError("connection refused")

    async def killed(destination: str) -> None:
        if destination == "U0B":
            raise asyncio.CancelledError  # died before sending: nothing is out

    slack.before_send = killed
    monkeypatch.setattr(OutboxSender, "_set", down)
    with pytest.raises(asyncio.CancelledError):
        await sender.send_due()
    assert sorted(slack.sent + hook.sent) == ["U0A", "webhook"]
    monkeypatch.setattr(OutboxSender, "_set", recorded)
    slack.before_send = None
    lease = timedelta(seconds=embedded_settings.delivery_claim_lease_s)
    clock.now += lease + timedelta(seconds=1)
    await sender.send_due()
    assert slack.sent == ["U0A", "U0B"]  # A found out already; B, never sent, goes
    assert hook.sent == ["webhook", "webhook"]  # cannot look: once more, same key
    # Looked for since the lost attempt's claim, not since now.
    assert {since for _, since in slack.looked} == {T0}
    async with engine.connect() as conn:
        rows = (await conn.execute(select(deliveries.c.status, deliveries.c.doubtful_lease))).all()
    assert rows == [("delivered", None)] * 3


async def test_a_notice_in_doubt_it_cannot_read_fails_alone(
    engine: AsyncEngine, embedded_settings: Settings
) -> None:
    """Its stored notice unreadable, a delivery in doubt could not be looked for: the
    error escaped the attempt, stopped the lane and came back every lease, so the
    destination's later notices never went (found in review). It fails as an attempt."""
    clock = MovingClock(T0)
    slack = Channel("slack", pace=None, sees=True)
    await _queue(engine, "slack", "U0A", 1, T0 - timedelta(seconds=1))
    await _queue(engine, "slack", "U0A", 2, T0)  # behind it, to the same person
    lease = T0 + timedelta(seconds=1)
    async with engine.begin() as conn:
        await conn.execute(
            update(deliveries)
            .where(deliveries.c.account_id == "acct-1")
            .values(payload={"kind": "fire", "key": "broken"}, doubtful_lease=lease)
        )
    sender = _sender(
        engine, embedded_settings.model_copy(update={"delivery_max_attempts": 1}), [slack], clock
    )
    await sender.send_due()
    await sender.send_due()  # the next in line, once the first is settled
    async with engine.connect() as conn:
        rows = dict(
            (await conn.execute(select(deliveries.c.account_id, deliveries.c.status))).all()
        )
    assert rows == {"acct-1": "dead", "acct-2": "delivered"} and slack.sent == ["U0A"]


async def test_a_send_that_timed_out_is_looked_for_before_it_is_retried(
    engine: AsyncEngine, embedded_settings: Settings
) -> None:
    """Slack posted the message but the answer never came (a timeout): retried blindly it
    went twice. The retry looks first. A refusal leaves nothing in doubt."""
    clock = MovingClock(T0)
    slack = Channel("slack", pace=None, sees=True)
    await _queue(engine, "slack", "U0A", 1, T0)
    await _queue(engine, "slack", "U0B", 2, T0)

    async def lost_answer(destination: str) -> None:
        if destination == "U0A":
            raise DeliveryError("Slack API unreachable: TimeoutError()", unsure=True)
        raise DeliveryError("Slack API 429: ratelimited", retry_after_s=1)

    slack.after_send = lost_answer
    sender = _sender(engine, embedded_settings, [slack], clock)
    await sender.send_due()
    async with engine.connect() as conn:
        rows = await conn.execute(select(deliveries.c.destination, deliveries.c.doubtful_lease))
        doubt = {destination: lease for destination, lease in rows}
    assert doubt["U0A"] is not None and doubt["U0B"] is None
    slack.after_send = None
    clock.now += timedelta(hours=1)  # past any backoff
    await sender.send_due()
    assert sorted(slack.sent) == ["U0A", "U0B", "U0B"]  # A not again; B, refused, again
    assert [d for d, _ in slack.looked] == ["U0A"]


async def test_a_notice_is_retried_for_a_day_however_many_attempts_that_takes(
    engine: AsyncEngine, embedded_settings: Settings
) -> None:
    """Twelve attempts, their waits drawn between 2 s and 5 min, spanned about 11
    minutes: an SMTP outage of 12 lost its first notices for good (found from outside).
    A notice now gives up once it has waited ``delivery_give_up_after_h`` (24 h)."""
    email = Channel("email", pace=None)

    async def refuse(_: str) -> None:
        raise DeliveryError("SMTP unreachable: connection refused")

    email.before_send = refuse
    await _queue(engine, "email", "anna@example.com", 1, T0 - timedelta(hours=23))
    await _queue(engine, "email", "bob@example.com", 2, T0 - timedelta(hours=25))
    async with engine.begin() as conn:
        await conn.execute(update(deliveries).values(attempts=40))
    await _sender(engine, embedded_settings, [email], MovingClock(T0)).send_due()
    async with engine.connect() as conn:
        rows = await conn.execute(select(deliveries.c.destination, deliveries.c.status))
        status = dict(rows.all())
    assert status == {"anna@example.com": "pending", "bob@example.com": "dead"}


async def test_a_notice_failing_again_and_again_stops_holding_up_the_ones_behind_it(
    engine: AsyncEngine, embedded_settings: Settings
) -> None:
    """Retried for a day, a notice its receiver keeps refusing held every later notice
    to that destination a day (found in review): after a dozen failures it is retried
    on its own, and a dead one an admin retries gets its dozen attempts again."""
    email = Channel("email", pace=None)

    async def refuse_the_first(_: str) -> None:
        if not email.sent and not refused:
            refused.append(1)
            raise DeliveryError("SMTP 451: try again later")

    refused: list[int] = []
    email.before_send = refuse_the_first
    await _queue(engine, "email", "anna@example.com", 1, T0 - timedelta(hours=30))
    await _queue(engine, "email", "anna@example.com", 2, T0 - timedelta(hours=1))
    async with engine.begin() as conn:  # the first: failed a dozen times, a day old
        await conn.execute(
            update(deliveries).where(deliveries.c.account_id == "acct-1").values(attempts=12)
        )
    await _sender(engine, embedded_settings, [email], MovingClock(T0)).send_due()
    async with engine.connect() as conn:
        rows = await conn.execute(select(deliveries.c.account_id, deliveries.c.status))
        status = dict(rows.all())
    assert status == {"acct-1": "dead", "acct-2": "delivered"}
    # Retried by an admin (attempts back to 0): a day old, yet not given up at once.
    async with engine.begin() as conn:
        await conn.execute(
            update(deliveries)
            .where(deliveries.c.account_id == "acct-1")
            .values(status="pending", attempts=0)
        )
    refused.clear()
    email.sent.clear()
    await _sender(engine, embedded_settings, [email], MovingClock(T0)).send_due()
    async with engine.connect() as conn:
        again = (
            await conn.execute(
                select(deliveries.c.status).where(deliveries.c.account_id == "acct-1")
            )
        ).scalar_one()
    assert again == "pending"


async def test_a_slack_webhook_that_does_not_answer_posts_a_notice_twice_at_most(
    engine: AsyncEngine, embedded_settings: Settings
) -> None:
    """Slack's incoming webhook can be neither asked what it posted nor given a key to
    fold copies by: each retry of a notice it was slow to answer posted it again (six
    copies, found from outside). Unanswered twice, it is taken as out; a webhook that
    refuses the connection is retried as before (nothing reached it)."""
    slack = Channel("slack", pace="webhook")

    async def no_answer(_: str) -> None:
        raise DeliveryError("Slack webhook unreachable: TimeoutError()", unsure=True, unkeyed=True)

    slack.after_send = no_answer
    await _queue(engine, "slack", "webhook", 1, T0)
    # Claimed before by a sender that died (its lease ran out): no send of it is known,
    # and it had been taken for one (found in review).
    async with engine.begin() as conn:
        await conn.execute(update(deliveries).values(doubtful_lease=T0 - timedelta(minutes=1)))
    clock = MovingClock(T0)
    sender = _sender(engine, embedded_settings, [slack], clock)
    for _ in range(4):
        await sender.send_due()
        clock.now += timedelta(hours=1)  # past any backoff
    assert slack.sent == ["webhook", "webhook"]
    async with engine.connect() as conn:
        status, error = (
            await conn.execute(select(deliveries.c.status, deliveries.c.last_error))
        ).one()
    assert status == "delivered" and error.startswith("not confirmed: sent twice")


async def test_emails_to_one_address_within_the_group_window_go_as_one(
    engine: AsyncEngine, embedded_settings: Settings
) -> None:
    """A CSM whose accounts' alerts fired together got an email each (found from
    outside): within ``group_wait`` they go as one, per address; a digest goes alone."""
    email = Channel("email", pace=None)
    seen: list[tuple[str, tuple[str, ...]]] = []

    async def record(destination: str) -> None:
        seen.append((destination, tuple(sorted(email_keys.pop()))))

    email_keys: list[set[str]] = []
    original = email.send

    async def send(notice: Notice, destination: str) -> None:
        email_keys.append(set(notice.keys))
        await original(notice, destination)

    email.send = send  # type: ignore[method-assign]
    email.after_send = record
    for n in (1, 2, 3):
        await _queue(engine, "email", "anna@example.com", n, T0)
    await _queue(engine, "email", "carl@example.com", 4, T0)
    await _queue(engine, "email", "anna@example.com", 5, T0, NoticeKind.digest)
    clock = MovingClock(T0)
    sender = _sender(engine, embedded_settings, [email], clock, '"30s"')
    await sender.send_due()
    await sender.send_due()
    assert sorted(seen) == [
        ("anna@example.com", ("acct-1", "acct-2", "acct-3")),
        ("anna@example.com", ("acct-5",)),
        ("carl@example.com", ("acct-4",)),
    ]
