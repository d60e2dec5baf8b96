"""Delivery channels against real servers on loopback (a Slack stand-in, aiosmtpd)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from services.alerts.channels import DeliveryError, EmailChannel, SlackChannel
from shared.config import Settings
from shared.contracts.alerts import AlertEvent, Severity
from shared.contracts.events import Owner
from tests.support.standins import SlackStandIn, smtp_server

ALERT = AlertEvent(
    alert_id="acme:low_activity:1",
    account_id="acme",
    account_name="Acme <Corp>",
    rule="low_activity",
    severity=Severity.critical,
    title="Acme: only 8% of seats active",
    summary="4 of 50 purchased seats were active.",
    score=21,
    band="red",
    owner=Owner(email="anna@example.com", slack_id="U0ANNA"),
    fired_at=datetime(2026, 11, 23, tzinfo=UTC),
)


async def test_slack_web_api_posts_to_the_owner_and_surfaces_rate_limits() -> None:
    slack = SlackStandIn()
    slack.script.append((429, {"Retry-After": "7"}))
    async with slack.running():
        settings = Settings(
            _env_file=None, slack_bot_token=SecretStr("xoxb-test"), slack_api_url=slack.api_url
        )  # type: ignore[call-arg]
        channel = SlackChannel(settings)
        destination = channel.destination(ALERT)
        assert destination == "U0ANNA"
        with pytest.raises(DeliveryError) as err:
            await channel.send(ALERT, destination)
        assert err.value.retry_after_s == 7
        await channel.send(ALERT, destination)
    assert [r.path for r in slack.requests] == ["/api/chat.postMessage"] * 2
    posted = slack.requests[1]
    assert posted.body["channel"] == "U0ANNA"
    assert posted.headers["authorization"] == "Bearer xoxb-test"
    assert posted.body["text"].startswith("[critical]")


async def test_email_is_multipart_with_escaped_html() -> None:
    with smtp_server() as (inbox, port):
        channel = EmailChannel(Settings(_env_file=None, smtp_host="127.0.0.1", smtp_port=port))  # type: ignore[call-arg]
        assert channel.destination(ALERT) == "anna@example.com"
        await channel.send(ALERT, "anna@example.com")
    msg = inbox.messages[0]
    assert msg["Message-ID"] == "<acme.low_activity.1@healthwatch>"
    assert "Acme &lt;Corp&gt;" in msg.get_body(("html",)).get_content()
    assert "Acme <Corp>" in msg.get_body(("plain",)).get_content()


async def test_unreachable_smtp_is_a_retryable_error() -> None:
    from localservices import free_port

    channel = EmailChannel(Settings(_env_file=None, smtp_host="127.0.0.1", smtp_port=free_port()))  # type: ignore[call-arg]
    with pytest.raises(DeliveryError) as err:
        await channel.send(ALERT, "anna@example.com")
    assert not err.value.permanent
