"""Each person is sent notices in their own language: the one the alerting file's
routing names for them, else the one they chose on the dashboard, else the team's; a
channel many read (Slack's incoming webhook) keeps the team's. On a real SQLite
database."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import CollectorRegistry
from sqlalchemy import select

from services.alerts.channels.email import EmailChannel
from services.alerts.channels.slack import SlackChannel
from services.alerts.metrics import AlertsMetrics
from services.alerts.outbox import Outbox, _notice, _one_notice
from shared.alerting.schema import Recipient
from shared.config import Settings
from shared.contracts.alerts import AlertEvent, Severity
from shared.contracts.notices import Notice, NoticeKind
from shared.people import remember_language
from shared.storage.db import create_engine, migrate
from shared.storage.tables import deliveries
from tests.support.standins import smtp_server

T0 = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
ALERT = AlertEvent(
    alert_id="acme:low_activity:1",
    account_id="acme",
    rule="low_activity",
    severity=Severity.critical,
    title="Acme: only 8% of seats active",
    summary="",
    fired_at=T0,
)


async def test_each_reader_gets_their_language_and_a_shared_channel_the_teams(
    embedded_settings: Settings,
) -> None:
    settings = embedded_settings.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "slack_webhook_url": "https://hooks.slack.com/services/T/B/x",
            "language": "en",
        }
    )
    engine = create_engine(settings.database_url)
    await migrate(engine)
    async with engine.begin() as conn:
        await remember_language(conn, "Anna@Example.com", "zh-CN", T0)
    channels = [SlackChannel(settings), EmailChannel(settings)]
    outbox = Outbox(channels, settings, AlertsMetrics(CollectorRegistry()))
    people = [
        Recipient(email="anna@example.com", slack="U0ANNA"),  # chose Chinese
        Recipient(email="carl@example.com"),  # chose nothing: the team's
        Recipient(email="lead@example.com", language="zh_CN"),  # the routing's word
    ]
    async with outbox.transaction(engine) as conn:
        notice = Notice(NoticeKind.fire, [ALERT], f"{ALERT.alert_id}/fire")
        await outbox.put(conn, notice, people, notification="fire", now=T0)
    async with engine.connect() as conn:
        rows = (await conn.execute(select(deliveries).order_by(deliveries.c.delivery_id))).all()
    await engine.dispose()
    told = {(r.channel, r.destination): _notice(r) for r in rows}
    assert {where: n.language for where, n in told.items()} == {
        ("slack", "U0ANNA"): None,  # one post in the webhook's channel, everyone mentioned
        ("email", "anna@example.com"): "zh-CN",
        ("email", "carl@example.com"): None,
        ("email", "lead@example.com"): "zh-CN",
    }
    anna, carl = told[("email", "anna@example.com")], told[("email", "carl@example.com")]
    with smtp_server() as (inbox, port):
        email = EmailChannel(
            settings.model_copy(update={"smtp_port": port, "smtp_starttls": False})
        )
        await email.send(anna, "anna@example.com")
        await email.send(carl, "carl@example.com")
    subjects = {str(m["To"]): str(m["Subject"]) for m in inbox.messages}
    assert subjects["anna@example.com"].startswith("[healthwatch 严重]")
    assert subjects["carl@example.com"].startswith("[healthwatch critical]")
    # Grouped, the copy keeps its reader's language.
    assert _one_notice([anna, anna]).language == "zh-CN"
