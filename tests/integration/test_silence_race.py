"""A silence set while the alerts service stores the rule's new alert, on PostgreSQL:
the alert is silenced too, whichever commits first. The intake read no silence (not yet
committed) and the silence's snooze of the open alerts could not see the alert (not yet
committed either), so it escaped and was told (found by a diff review)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from services.alerts.actions import Action, apply_action
from services.alerts.channels.email import EmailChannel
from services.alerts.silences import active_silence, silence
from shared.alerting.store import AlertingStore
from shared.bus.base import Record
from shared.config import Settings
from shared.contracts.alerts import AlertEvent, Severity
from shared.contracts.events import Owner
from shared.contracts.wire import encode_event
from shared.storage.db import create_engine, migrate
from shared.storage.tables import alerts, deliveries
from tests.support.alerts import alerts_parts
from tests.support.clocks import MovingClock

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

T0 = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
# Long enough for the intake's transaction to reach the silence's read while the
# silence is still uncommitted (it then waits for its lock, or, without it, reads none).
INTAKE_HEAD_START_S = 0.5
ACME = AlertEvent(
    alert_id="acme:low_activity:1",
    account_id="acme",
    rule="low_activity",
    severity=Severity.warning,
    title="acme: low activity",
    summary="",
    owner=Owner(email="anna@example.com"),
    fired_at=T0,
)


async def test_an_alert_stored_while_its_rule_is_silenced_is_silenced(
    embedded_settings: Settings, database_url: str
) -> None:
    settings = embedded_settings.model_copy(
        update={"database_url": database_url, "smtp_host": "127.0.0.1"}
    )
    engine = create_engine(database_url)
    try:
        await migrate(engine)
        store = AlertingStore()
        clock = MovingClock(T0)
        parts = alerts_parts(engine, settings, [EmailChannel(settings)], store, clock=clock)
        event = ACME
        record = Record("alerts", 0, 0, b"acme", encode_event(event))
        async with engine.begin() as conn:
            alerting, _ = await store.current(conn)
            await silence(conn, alerting, account_id="acme", rule="low_activity",
                          until=T0 + timedelta(days=30), actor="anna@example.com",
                          reason="known: on holiday", now=T0)  # fmt: skip
            stored = asyncio.create_task(parts.intake.handle([record]))
            await asyncio.sleep(INTAKE_HEAD_START_S)
        await stored
        async with engine.connect() as conn:
            row = (await conn.execute(select(alerts))).one()
            told = (await conn.execute(select(deliveries.c.alert_id))).all()
        assert row.snoozed_until is not None and row.last_notified_at is None
        assert told == []
    finally:
        await engine.dispose()


async def test_a_snooze_beside_a_new_revision_of_its_alert_does_not_deadlock(
    embedded_settings: Settings, database_url: str
) -> None:
    """The intake wrote the alert's row, then took its silence lock; a snooze takes the
    lock, then writes the row: at the same moment, PostgreSQL aborted one of them as a
    deadlock (found in review). The intake takes its locks before it writes."""
    settings = embedded_settings.model_copy(
        update={"database_url": database_url, "smtp_host": "127.0.0.1"}
    )
    engine = create_engine(database_url)
    try:
        await migrate(engine)
        parts = alerts_parts(
            engine, settings, [EmailChannel(settings)], AlertingStore(), clock=MovingClock(T0)
        )
        first = ACME
        await parts.intake.handle([Record("alerts", 0, 0, b"acme", encode_event(first))])
        worse = first.model_copy(update={"revision": 1, "severity": Severity.critical})
        async with engine.begin() as conn:
            row = (await conn.execute(select(alerts))).one()
            assert await active_silence(conn, "acme", "low_activity", T0) is None  # its lock
            revised = asyncio.create_task(
                parts.intake.handle([Record("alerts", 0, 1, b"acme", encode_event(worse))])
            )
            await asyncio.sleep(INTAKE_HEAD_START_S)
            snooze = Action("snooze", "anna@example.com", None, T0 + timedelta(hours=4))
            await apply_action(conn, row, snooze, T0)
        await revised  # neither was aborted as a deadlock
        async with engine.connect() as conn:
            stored = (await conn.execute(select(alerts))).one()
        assert (stored.revision, stored.severity) == (1, "critical")
    finally:
        await engine.dispose()
