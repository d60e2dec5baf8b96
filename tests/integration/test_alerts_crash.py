"""SIGKILL a real alerts process between sending a Slack message and recording it:
after a restart nothing is lost. By Slack's Web API the restarted process finds the
message in the conversation and does not post it again; by an incoming webhook, which
cannot read, it is sent once more."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from devservices import free_port
from shared.config import Settings
from shared.storage.tables import deliveries
from tests.support.alerting import alerting_toml, write_alerting
from tests.support.harness import add_account, running, send, ticket, wait_for
from tests.support.standins import Recorded, SlackStandIn

pytestmark = pytest.mark.integration


def start_alerts(settings: Settings) -> subprocess.Popen[bytes]:
    env = {
        "HEALTHWATCH_SLACK_BOT_TOKEN": settings.slack_bot_token.get_secret_value(),
        "HEALTHWATCH_SLACK_API_URL": settings.slack_api_url,
        **{k: v for k, v in os.environ.items() if not k.startswith("HEALTHWATCH_")},
        "HEALTHWATCH_DATABASE_URL": settings.database_url,
        "HEALTHWATCH_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "HEALTHWATCH_TOPIC_PREFIX": settings.topic_prefix,
        "HEALTHWATCH_CONSUMER_GROUP_ALERTS": settings.consumer_group_alerts,
        "HEALTHWATCH_ALERTS_PORT": str(free_port()),
        "HEALTHWATCH_ALERTING_FILE": settings.alerting_file,
        "HEALTHWATCH_SLACK_WEBHOOK_URL": settings.slack_webhook_url,
        "HEALTHWATCH_SLACK_MIN_INTERVAL_S": "0",
        "HEALTHWATCH_DELIVERY_POLL_INTERVAL_S": "0.2",
        # A short lease: the delivery the killed process held is retried soon.
        "HEALTHWATCH_DELIVERY_CLAIM_LEASE_S": "2",
        "HEALTHWATCH_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen([sys.executable, "-m", "services.cli", "alerts"], env=env)


@pytest.mark.parametrize("by", ["web_api", "webhook"])
async def test_alerts_killed_between_send_and_record_lose_nothing(
    kafka_settings: Settings, tmp_path: Path, by: str
) -> None:
    # Holds its answers until released: the kill lands mid-send, however slow the test is
    # to get there (within the alerts service's own 10 s Slack timeout).
    release = asyncio.Event()
    slack = SlackStandIn(hold=release)
    settings = kafka_settings.model_copy(
        update={
            "alerting_file": write_alerting(
                tmp_path / "alerting.toml", alerting_toml(["ticket_backlog"])
            ),
            **(
                {"slack_bot_token": SecretStr("xoxb-test"), "slack_api_url": slack.api_url}
                if by == "web_api"
                else {"slack_webhook_url": slack.webhook_url}
            ),
        }
    )
    async with slack.running(), running(settings, alerts=False) as hw:
        alerts = start_alerts(settings)
        try:
            await add_account(hw, "kill1", seats=10, slack="U0KILL1")
            await add_account(hw, "kill2", seats=10, slack="U0KILL2")
            await send(hw, [ticket("kill1", n, "open", n) for n in range(1, 6)])
            # A subprocess starting and joining the consumer group: give it time.
            await wait_for(
                lambda: _true(len(_posts(slack)) == 1), timeout=120, what="the first send"
            )
            alerts.send_signal(signal.SIGKILL)
            alerts.wait(10)
            release.set()
            # An alert raised while the alerts service is down waits in Kafka.
            await send(hw, [ticket("kill2", n, "open", n) for n in range(1, 6)])
            alerts = start_alerts(settings)

            async def all_delivered() -> bool:
                async with hw.rt.engine.connect() as conn:
                    rows = (await conn.execute(select(deliveries.c.status))).scalars().all()
                return len(rows) == 2 and set(rows) == {"delivered"}

            # The new process joins once the killed member's session has expired, and
            # retries kill1 once the killed process's lease has run out.
            await wait_for(all_delivered, timeout=120, what="both deliveries recorded")
        finally:
            alerts.send_signal(signal.SIGTERM)
            alerts.wait(30)
    sent = [r.body["text"] for r in _posts(slack)]
    if by == "web_api":
        assert sum("kill1 Inc" in t for t in sent) == 1  # found in the DM, not sent again
        assert [m["text"] for m in slack.posts_in("U0KILL1")] == sent[:1]
        assert any(r.path == "/api/conversations.history" for r in slack.requests)
    else:
        assert sum("kill1 Inc" in t for t in sent) == 2  # the one duplicate it cannot see
    assert sum("kill2 Inc" in t for t in sent) == 1
    assert alerts.returncode == 0


def _posts(slack: SlackStandIn) -> list[Recorded]:
    return [r for r in slack.requests if "text" in r.body]


async def _true(value: bool) -> bool:
    return value
