"""Alerting on the real stack (Kafka, PostgreSQL, a Slack stand-in, aiosmtpd): flapping,
snooze, escalation, strategic routing, and delivery through Slack and SMTP failures."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from shared.auth import Scope, create_key
from shared.config import Settings
from shared.storage.tables import alerts, deliveries
from tests.support.alerting import alerting_toml, write_alerting
from tests.support.harness import (
    Harness,
    add_account,
    alert_stored,
    alerts_settled,
    low_activity_history,
    running,
    send,
    ticket,
    wait_for,
)
from tests.support.standins import Inbox, Recorded, SlackStandIn, smtp_server

pytestmark = pytest.mark.integration

# The Slack pace set where a test checks it: seconds between requests to one destination.
PACE_S = 0.4
# Request arrivals are stamped by the stand-in, which shares the services' event loop: a
# busy loop can stamp one request late and the next one on time. Without pacing the
# gaps are milliseconds, so half the pace still tells the two apart.
CLOCK_SLACK_S = 0.2


def with_alerting(settings: Settings, tmp_path: Path, text: str, **extra: Any) -> Settings:
    file = write_alerting(tmp_path / "alerting.toml", text)
    return settings.model_copy(update={"alerting_file": file, **extra})


def posts(slack: SlackStandIn, name: str) -> list[Recorded]:
    return [r for r in slack.delivered() if name in r.body["text"]]


def posts_about(slack: SlackStandIn, name: str) -> list[str]:
    return [r.body["text"] for r in posts(slack, name)]


async def test_a_backlog_flapping_around_its_threshold_alerts_once(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    slack = SlackStandIn()
    settings = with_alerting(
        kafka_settings,
        tmp_path,
        alerting_toml(["ticket_backlog"]),
        slack_webhook_url=slack.webhook_url,
    )
    async with slack.running(), running(settings) as hw:
        await add_account(hw, "flap", seats=10, slack="U0ANNA")
        step = 0
        for n in range(1, 6):  # 5 open tickets: fires at >= 5
            step += 1
            await send(hw, [ticket("flap", n, "open", step)])
        # Flapping 4, 5, 4, 5, 4: a naive threshold would fire three times more.
        for n in (5, 6, 7):
            step += 1
            await send(hw, [ticket("flap", n, "solved", step)])
            if n < 7:
                step += 1
                await send(hw, [ticket("flap", n + 1, "open", step)])
        await wait_for(
            lambda: _true(len(slack.delivered()) >= 1), timeout=60, what="the first post"
        )
        # Every alert the flapping produced is taken in and every notice it queued sent:
        # any (wrong) extra post has arrived by now.
        await alerts_settled(hw)
        assert len(posts_about(slack, "flap Inc")) == 1
        # Down to 2 open (recovery is at 3 or fewer): resolved, and told once.
        for n in (1, 2):
            step += 1
            await send(hw, [ticket("flap", n, "solved", step)])
        await wait_for(
            lambda: _true(len(slack.delivered()) >= 2), timeout=60, what="the resolved post"
        )
        await alerts_settled(hw)
        async with hw.rt.engine.connect() as conn:
            rows = (await conn.execute(select(alerts.c.alert_id, alerts.c.status))).all()
    texts = posts_about(slack, "flap Inc")
    assert len(texts) == 2 and "Resolved" in texts[1] and "Resolved" not in texts[0]
    assert [tuple(r) for r in rows] == [("flap:ticket_backlog:1", "resolved")]


async def test_snooze_keeps_an_alert_quiet_until_its_time_and_ack_ends_reminders(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    slack = SlackStandIn()
    settings = with_alerting(
        kafka_settings,
        tmp_path,
        alerting_toml(["ticket_backlog"], repeat_interval='"1s"'),
        slack_webhook_url=slack.webhook_url,
    )
    async with slack.running(), running(settings) as hw, hw.client() as client:
        # snz is snoozed, then acknowledged; ctl, left alone, is reminded every second
        # all along: its reminders show that the timers' passes went on meanwhile.
        for name in ("snz", "ctl"):
            await add_account(hw, name, seats=10, slack=f"U0{name.upper()}")
            await send(hw, [ticket(name, n, "open", n) for n in range(1, 6)])
        await wait_for(
            lambda: _true(len(posts_about(slack, "snz Inc")) >= 2), timeout=60, what="a reminder"
        )
        assert "Reminder" in posts_about(slack, "snz Inc")[1]

        r = await client.post(
            "/v1/alerts/snz:ticket_backlog:1/snooze", json={"for": "3s", "reason": "on leave"}
        )
        assert r.status_code == 200, r.text
        assert r.json()["snooze_reason"] == "on leave"
        snoozed = datetime.now(UTC)  # committed: every timer pass that starts now sees it
        until = datetime.fromisoformat(r.json()["snoozed_until"])
        # The post-snooze ping, queued once the snooze ran out: the timers went past it.
        await wait_for(
            lambda: _notices(hw, "snz", queued_from=until, delivered=True),
            timeout=60,
            what="the post-snooze ping",
        )
        notices = await _notices(hw, "snz")
        assert [n.notification for n in notices if snoozed <= n.created_at < until] == []
        # A reminder already queued or being sent when the snooze began may land; nothing else.
        landed = [p for p in posts(slack, "snz Inc") if snoozed <= p.at < until]
        assert len(landed) <= len(_in_flight(notices, snoozed))
        after = [p for p in posts(slack, "snz Inc") if p.at >= until]
        assert after and "Reminder" in after[0].body["text"]

        r = await client.post("/v1/alerts/snz:ticket_backlog:1/acknowledge")
        assert r.status_code == 200 and r.json()["status"] == "acknowledged"
        acked = datetime.now(UTC)
        # A pass a full repeat interval after the ack reminds ctl; unless the ack ended
        # snz's reminders, the same pass reminds snz too (last told before the ack).
        await wait_for(
            lambda: _notices(hw, "ctl", queued_from=acked + REPEAT, delivered=True),
            timeout=60,
            what="ctl reminded a repeat interval after the ack",
        )
        notices = await _notices(hw, "snz")
        assert [n.notification for n in notices if n.created_at >= acked] == []
        # At most what was already on its way when the ack came.
        landed = [p for p in posts(slack, "snz Inc") if p.at >= acked]
        assert len(landed) <= len(_in_flight(notices, acked))
        r = await client.get("/v1/alerts/snz:ticket_backlog:1")
        actions = [a["action"] for a in r.json()["activity"]]
        assert actions == ["snooze", "acknowledge"]


REPEAT = timedelta(seconds=1)  # the repeat_interval above


async def _notices(
    hw: Harness, account: str, *, queued_from: datetime | None = None, delivered: bool = False
) -> list[Any]:
    """The account's Slack notices as queued in the outbox, oldest first: all, or those
    queued at or after ``queued_from`` (and, with ``delivered``, sent already)."""
    d = deliveries
    q = (
        select(d.c.notification, d.c.created_at, d.c.delivered_at)
        .where(d.c.account_id == account, d.c.channel == "slack")
        .order_by(d.c.delivery_id)
    )
    if queued_from is not None:
        q = q.where(d.c.created_at >= queued_from)
    if delivered:
        q = q.where(d.c.status == "delivered")
    async with hw.rt.engine.connect() as conn:
        return list(await conn.execute(q))


def _in_flight(notices: list[Any], moment: datetime) -> list[Any]:
    """Notices queued before ``moment`` and not sent by then."""
    return [
        n
        for n in notices
        if n.created_at < moment and (n.delivered_at is None or n.delivered_at >= moment)
    ]


async def test_strategic_alerts_reach_csm_lead_and_sales_and_escalate_unacknowledged(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    routing = """[routing]
tiers = { strategic = ["cs_lead", "sales_manager"] }
escalate_to = ["cs_lead"]
[routing.people.cs_lead]
email = "lead@example.com"
[routing.people.sales_manager]
email = "sales-team@example.com"
"""
    with smtp_server() as (inbox, smtp_port):
        settings = with_alerting(
            kafka_settings,
            tmp_path,
            alerting_toml(
                ["low_activity"],
                routing=routing,
                # Long enough to acknowledge calm's alert in time on a loaded machine.
                escalate_after='{ critical = "10s", warning = "1d" }',
            ),
            smtp_host="127.0.0.1",
            smtp_port=smtp_port,
        )
        async with running(settings) as hw, hw.client() as client:
            await add_account(
                hw,
                "big",
                seats=50,
                email="anna@example.com",
                tier="strategic",
                sales_owner={"email": "bob@example.com"},
            )
            await add_account(hw, "calm", seats=50, email="carl@example.com", tier="enterprise")
            await send(hw, low_activity_history("calm", active_users=4))
            # Acknowledged as soon as it is stored, before its deadline.
            await alert_stored(hw, "calm:low_activity:1")
            r = await client.post("/v1/alerts/calm:low_activity:1/acknowledge")
            assert r.status_code == 200, r.text
            assert r.json()["escalated_at"] is None, "calm was acknowledged after its deadline"
            await wait_for(
                lambda: _true(bool(_to(inbox, "carl@example.com"))), timeout=60, what="carl"
            )
            await send(hw, low_activity_history("big", active_users=4))
            await wait_for(
                lambda: _true(bool(_escalations(inbox))), timeout=60, what="the escalation email"
            )
            # calm's deadline came before big's, so the pass that escalated big would have
            # escalated calm too, had its acknowledgement not counted. Once every queued
            # notice is sent, such an email would be in the inbox.
            await alerts_settled(hw)
            r = await client.get("/v1/alerts/big:low_activity:1")
            escalated_at = r.json()["escalated_at"]
            calm = (await client.get("/v1/alerts/calm:low_activity:1")).json()
    fired = {m["To"] for m in inbox.messages if "big Inc" in m["Subject"]}
    assert fired == {"anna@example.com", "lead@example.com", "bob@example.com"}
    escalations = _escalations(inbox)
    assert [(m["To"], "big Inc" in m["Subject"]) for m in escalations] == [
        ("lead@example.com", True)
    ]
    assert escalated_at is not None
    assert calm["status"] == "acknowledged" and calm["escalated_at"] is None
    assert {m["To"] for m in inbox.messages if "calm Inc" in m["Subject"]} == {"carl@example.com"}


def _to(inbox: Inbox, address: str) -> list[Any]:
    return [m for m in inbox.messages if m["To"] == address]


def _escalations(inbox: Inbox) -> list[Any]:
    return [m for m in inbox.messages if "Escalated" in m["Subject"]]


async def test_slack_failing_then_limiting_delivers_each_notice_once_in_order(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    slack = SlackStandIn()
    # Retry-After longer than any backoff (capped at 1 s here), so only honouring it
    # explains the wait after the 429.
    slack.script.extend([(500, {})] * 4 + [(429, {"Retry-After": "2"})] + [(500, {})] * 2)
    settings = with_alerting(
        kafka_settings,
        tmp_path,
        alerting_toml(["ticket_backlog"]),
        slack_webhook_url=slack.webhook_url,
        slack_min_interval_s=PACE_S,
    )
    names = ("ord1", "ord2", "ord3")
    async with slack.running(), running(settings) as hw:
        for name in names:
            await add_account(hw, name, seats=10, slack=f"U0{name.upper()}")
        for name in names:  # fire ...
            await send(hw, [ticket(name, n, "open", n) for n in range(1, 6)])
        for name in names:  # ... and resolve, while Slack is still failing
            await send(hw, [ticket(name, n, "solved", 10 + n) for n in range(1, 4)])
        await wait_for(
            lambda: _true(len(slack.delivered()) >= 6), timeout=60, what="six Slack posts"
        )
        # Every notice recorded as sent (or given up on): no post or retry is on its way.
        await alerts_settled(hw)
        async with hw.rt.engine.connect() as conn:
            states = set((await conn.execute(select(deliveries.c.status))).scalars())
    assert len(slack.delivered()) == 6
    assert len(slack.requests) == 6 + 7  # every scripted failure was retried
    for name in names:
        texts = posts_about(slack, f"{name} Inc")
        assert len(texts) == 2, texts
        assert "Resolved" not in texts[0] and "Resolved" in texts[1]
    assert states == {"delivered"}
    # One webhook is one Slack channel: never two requests within the pace, and nothing
    # at all until Retry-After has passed since the 429.
    arrivals = [r.at for r in slack.requests]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(arrivals)]
    assert min(gaps) >= PACE_S - CLOCK_SLACK_S, gaps
    assert gaps[4] >= 2 - CLOCK_SLACK_S, gaps  # request 5 was answered 429, Retry-After: 2


async def test_a_notice_slack_keeps_refusing_goes_dead_shows_in_api_and_metrics_and_can_be_retried(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    slack = SlackStandIn()
    slack.script.extend([(500, {})] * 3)  # then 200: Slack is back when the admin retries
    settings = with_alerting(
        kafka_settings,
        tmp_path,
        alerting_toml(["ticket_backlog"]),
        slack_webhook_url=slack.webhook_url,
        delivery_max_attempts=3,
    )
    async with slack.running(), running(settings) as hw:
        admin = await create_key(hw.rt.engine, "admin", [Scope.admin])
        scraper = await create_key(hw.rt.engine, "prometheus", [Scope.metrics])
        await add_account(hw, "dead1", seats=10, slack="U0DEAD1")
        await send(hw, [ticket("dead1", n, "open", n) for n in range(1, 6)])
        async with httpx.AsyncClient(base_url=hw.url, headers=bearer(admin), timeout=30) as api:

            async def dead() -> list[dict[str, Any]]:
                r = await api.get("/v1/deliveries", params={"status": "dead"})
                assert r.status_code == 200, r.text
                return r.json()["deliveries"]  # type: ignore[no-any-return]

            (gave_up,) = await wait_for(dead, timeout=60, what="the delivery to give up")
            assert gave_up["channel"] == "slack" and gave_up["attempts"] == 3
            assert "500" in gave_up["last_error"], gave_up
            assert len(slack.requests) == 3 and slack.delivered() == []

            exposition = await api.get("/metrics", headers=bearer(scraper))
            assert exposition.status_code == 200
            counted = {
                s.labels["outcome"]: s.value
                for family in text_string_to_metric_families(exposition.text)
                for s in family.samples
                if s.name == "healthwatch_alert_deliveries_total" and s.labels["channel"] == "slack"
            }
            assert counted == {"retry": 2.0, "dead": 1.0}, counted

            r = await api.post(f"/v1/deliveries/{gave_up['delivery_id']}/retry")
            assert r.status_code == 200, r.text
            await wait_for(lambda: _true(len(slack.delivered()) == 1), timeout=60, what="post")
            await alerts_settled(hw)
            assert await dead() == []
            again = await api.post(f"/v1/deliveries/{gave_up['delivery_id']}/retry")
            assert again.status_code == 404  # only a dead delivery can be retried
    assert len(slack.requests) == 4 and "dead1" in slack.delivered()[0].body["text"]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_smtp_down_for_a_while_then_every_email_arrives_once(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    from devservices import free_port

    smtp_port = free_port()  # nothing listens here yet
    settings = with_alerting(
        kafka_settings,
        tmp_path,
        alerting_toml(["ticket_backlog"]),
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        # Retrying as long as the outage lasts here, however slow the machine: giving up
        # is not what this test is about.
        delivery_max_attempts=1000,
    )
    async with running(settings) as hw:
        for name in ("m1", "m2"):
            await add_account(hw, name, seats=10, email=f"{name}@example.com")
            await send(hw, [ticket(name, n, "open", n) for n in range(1, 6)])

        async def retried() -> bool:
            async with hw.rt.engine.connect() as conn:
                q = select(func.count(), func.min(deliveries.c.attempts)).where(
                    deliveries.c.channel == "email"
                )
                queued, least = (await conn.execute(q)).one()
            return bool(queued == 2 and (least or 0) >= 2)

        await wait_for(retried, timeout=60, what="failed attempts while SMTP is down")
        with smtp_server(port=smtp_port) as (inbox, _):
            await wait_for(lambda: _true(len(inbox.messages) >= 2), timeout=60, what="emails")
            # Both recorded as sent: no retry (a duplicate) is on its way.
            await alerts_settled(hw)
    assert sorted(m["To"] for m in inbox.messages) == ["m1@example.com", "m2@example.com"]


async def _true(value: bool) -> bool:
    return value
