"""HTTP in → Kafka → scoring → PostgreSQL → alerts → SMTP and Slack, all real."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.config import Settings
from tests.support.alerting import alerting_toml, write_alerting
from tests.support.harness import (
    alerts_settled,
    facts,
    low_activity_history,
    processed,
    running,
    usage,
    wait_for,
)
from tests.support.standins import SlackStandIn, smtp_server

pytestmark = pytest.mark.integration


async def test_low_activity_alert_reaches_email_and_slack(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    slack = SlackStandIn()
    # Slack is rate limiting, then failing, before it accepts: delivered once anyway.
    slack.script.extend([(429, {"Retry-After": "1"}), (500, {})])
    with smtp_server() as (inbox, smtp_port):
        inbox.fail_next = 1  # a transient SMTP failure first
        settings = kafka_settings.model_copy(
            update={
                "slack_webhook_url": slack.webhook_url,
                "smtp_host": "127.0.0.1",
                "smtp_port": smtp_port,
                "alerting_file": write_alerting(
                    tmp_path / "low.toml", alerting_toml(["low_activity"])
                ),
            }
        )
        async with slack.running(), running(settings) as hw, hw.client() as client:
            r = await client.post(
                "/v1/accounts",
                json=facts("acme", seats=50, email="csm.anna@example.com", slack="U0ANNA"),
            )
            assert r.status_code == 202, r.text
            # 4 of 50 seats active all week: 8%, under the 20% line.
            r = await client.post(
                "/v1/events", json={"events": low_activity_history("acme", active_users=4)}
            )
            assert r.status_code == 202, r.text
            assert r.json()["accepted"] == 32

            await wait_for(
                lambda: _async(len(inbox.messages) >= 1), timeout=60, what="the alert email"
            )
            await wait_for(
                lambda: _async(len(slack.delivered()) >= 1), timeout=60, what="the Slack post"
            )

            # Scoring publishes the alert before its transaction commits: the alert can be
            # delivered before the score is visible. Wait for every event (the facts and
            # the week's use) to be scored.
            async def all_scored() -> bool:
                return await processed(hw) == 1 + 8 * 4

            await wait_for(all_scored, timeout=60, what="the facts and the week scored")
            health = await hw.health("acme")
            assert health.active_users_7d == 4
            assert health.band == "red"

            mail = inbox.messages[0]
            assert mail["To"] == "csm.anna@example.com"
            assert "acme Inc" in mail["Subject"]
            assert mail.get_body(("plain",)).get_content().count("4 of 50 purchased seats") == 1
            assert "<html" in mail.get_body(("html",)).get_content()

            post = slack.delivered()[0].body
            assert "<@U0ANNA>" in post["text"]
            assert any(b["type"] == "actions" for b in post["blocks"])
            # 429 + 500 + 200: three requests, exactly one delivered post.
            assert len(slack.requests) == 3

            # More low activity: the alert is already open, nothing new is sent.
            r = await client.post("/v1/events", json={"events": [usage("acme", "acme-u0")]})
            assert r.status_code == 202
            await wait_for(
                lambda: hw.has_usage_events("acme", 8 * 4 + 1),
                timeout=60,
                what="the extra event scored",
            )
            # Whatever scoring published about it is taken in and sent: a (wrong) second
            # email or post would have arrived by now.
            await alerts_settled(hw)
    assert len(inbox.messages) == 1
    assert len(slack.delivered()) == 1


async def _async(value: bool) -> bool:
    return value
