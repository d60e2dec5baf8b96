"""The alerts service's bookkeeping on a real SQLite database with a moving clock:
updates, duplicates, inhibition, reminders, escalation and digests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from services.alerts.actions import Action, ActionError, apply_action
from services.alerts.channels.email import EmailChannel
from services.alerts.channels.slack import SlackChannel
from services.alerts.intake import AlertIntake
from services.alerts.metrics import AlertsMetrics
from services.alerts.outbox import Outbox
from services.alerts.silences import SilenceError, silence, unsilence
from services.alerts.timers import AlertTimers
from shared.alerting.schema import Recipient, default_alerting_source, parse_alerting
from shared.alerting.store import AlertingStore
from shared.bus.base import Record
from shared.config import Settings
from shared.contracts.alerts import AlertEvent, Severity
from shared.contracts.events import Owner
from shared.contracts.notices import Notice
from shared.contracts.wire import encode_event
from shared.storage.db import create_engine, migrate
from shared.storage.tables import account_health, alert_activity, alerts, deliveries
from tests.support.alerting import alerting_toml
from tests.support.alerts import alerts_parts
from tests.support.clocks import MovingClock

T0 = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)


@dataclass
class World:
    engine: AsyncEngine
    intake: AlertIntake
    timers: AlertTimers
    clock: MovingClock
    config: AlertingStore
    offset: int = 0

    async def receive(self, *events: AlertEvent) -> None:
        records = []
        for e in events:
            records.append(Record("alerts", 0, self.offset, b"k", encode_event(e)))
            self.offset += 1
        await self.intake.handle(records)
        await _deliver_queued(self.engine, self.clock)

    async def notices(self) -> list[tuple[str, str, str]]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(deliveries.c.alert_id, deliveries.c.notification, deliveries.c.destination)
                .where(deliveries.c.channel == "email")
                .order_by(deliveries.c.delivery_id)
            )
            return [tuple(r) for r in rows]  # type: ignore[misc]

    async def alert(self, alert_id: str) -> object:
        async with self.engine.connect() as conn:
            return (await conn.execute(select(alerts).where(alerts.c.alert_id == alert_id))).one()


async def _deliver_queued(engine: AsyncEngine, clock: MovingClock) -> None:
    """No sender runs here: each notice counts as delivered the moment it is queued
    (an alert is escalated only once its first notice went out)."""
    async with engine.begin() as conn:
        await conn.execute(
            update(deliveries)
            .where(deliveries.c.status == "pending")
            .values(status="delivered", delivered_at=clock.now)
        )


@pytest.fixture
async def world(embedded_settings: Settings) -> AsyncIterator[World]:
    settings = embedded_settings.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "slack_webhook_url": "http://127.0.0.1:9/hook",
            "timezone": "Europe/Berlin",
        }
    )
    engine = create_engine(settings.database_url)
    await migrate(engine)
    routing = """[routing]
escalate_to = ["cs_lead"]
[routing.people.cs_lead]
email = "lead@example.com"
"""
    text = alerting_toml(
        None,
        routing=routing,
        escalate_after='{ critical = "1h" }',
        digest_hour="9",
        group_wait='"30s"',
    )
    store = AlertingStore(text)
    channels = [SlackChannel(settings), EmailChannel(settings)]
    clock = MovingClock(T0)
    parts = alerts_parts(engine, settings, channels, store, clock=clock)
    run_once = parts.timers.run_once

    async def run_once_delivered() -> Any:
        ran = await run_once()
        await _deliver_queued(engine, clock)
        return ran

    parts.timers.run_once = run_once_delivered  # type: ignore[method-assign]
    yield World(engine, parts.intake, parts.timers, clock, store)
    await engine.dispose()


def alert(rule: str, severity: Severity, revision: int = 0, status: str = "firing") -> AlertEvent:
    return AlertEvent(
        alert_id=f"acme:{rule}:1",
        revision=revision,
        account_id="acme",
        rule=rule,
        severity=severity,
        status=status,  # type: ignore[arg-type]
        title=f"acme: {rule}",
        summary="",
        owner=Owner(email="anna@example.com", slack_id="U0ANNA"),
        fired_at=T0,
    )


async def test_updates_duplicates_and_the_resolved_notice(world: World) -> None:
    nps = alert("nps_detractor", Severity.warning)
    await world.receive(nps, nps)  # a replayed message changes nothing
    await world.receive(alert("nps_detractor", Severity.critical, revision=1))
    await world.receive(alert("nps_detractor", Severity.critical, revision=1))
    await world.receive(alert("nps_detractor", Severity.critical, revision=2, status="resolved"))
    assert await world.notices() == [
        ("acme:nps_detractor:1", "fire", "anna@example.com"),
        ("acme:nps_detractor:1", "update:1", "anna@example.com"),
        ("acme:nps_detractor:1", "resolve", "anna@example.com"),
    ]
    row = await world.alert("acme:nps_detractor:1")
    assert row.status == "resolved" and row.severity == "critical"  # type: ignore[attr-defined]


async def test_an_alert_keeps_when_it_fired_and_ends_under_the_name_people_knew(
    world: World,
) -> None:
    """A revision is dated when its step ran, and the step that ends an alert words what
    ended it: the stored alert read "Resolved: … no touchpoint for 0 days", fired the
    moment it resolved (found from outside)."""
    first = alert("relationship", Severity.warning).model_copy(
        update={"title": "acme: no CSM touchpoint for 41 days"}
    )
    later = T0 + timedelta(days=3)
    update = first.model_copy(
        update={"revision": 1, "severity": Severity.critical, "fired_at": later,
                "title": "acme: no CSM touchpoint for 44 days"}
    )  # fmt: skip
    ended = first.model_copy(
        update={"revision": 2, "status": "resolved", "fired_at": later + timedelta(days=1),
                "title": "Resolved: acme: no CSM touchpoint for 0 days"}
    )  # fmt: skip
    await world.receive(first, update, ended)
    row = await world.alert("acme:relationship:1")
    assert (row.status, row.title, row.severity) == (  # type: ignore[attr-defined]
        "resolved",
        "acme: no CSM touchpoint for 44 days",
        "critical",
    )
    assert row.fired_at.replace(tzinfo=UTC) == T0  # type: ignore[attr-defined]
    assert AlertEvent.model_validate(row.payload).fired_at == T0  # type: ignore[attr-defined]
    async with world.engine.connect() as conn:
        told = (
            (
                await conn.execute(
                    select(deliveries.c.payload).where(deliveries.c.notification == "resolve")
                )
            )
            .scalars()
            .all()
        )
    assert told and all(
        Notice.from_json(p).first.title == "Resolved: acme: no CSM touchpoint for 44 days"
        for p in told
    )


async def test_a_critical_alert_mutes_the_accounts_warnings_until_it_resolves(
    world: World,
) -> None:
    await world.receive(alert("low_activity", Severity.critical))
    await world.receive(alert("nps_detractor", Severity.warning))  # muted: not told
    assert [n[1] for n in await world.notices()] == ["fire"]
    world.clock.now += timedelta(minutes=5)
    await world.receive(alert("low_activity", Severity.critical, revision=1, status="resolved"))
    # The critical one ends; the muted warning is told now, once.
    assert [(a.split(":")[1], n) for a, n, _ in await world.notices()] == [
        ("low_activity", "fire"),
        ("low_activity", "resolve"),
        ("nps_detractor", "fire"),
    ]


async def test_a_steps_lesser_alerts_sent_before_its_critical_one_are_muted(
    world: World,
) -> None:
    """One step's alerts come in the alerting file's order: a warning stored and told
    before the critical alert that then muted it (a first run's flood, found from
    outside). The step's critical alert is stored first; a muted warning that turns
    critical at the next step is told then."""
    await world.receive(
        alert("nps_detractor", Severity.warning),
        alert("ticket_backlog", Severity.warning),
        alert("low_activity", Severity.critical),
        # The next step: the backlog turned critical (muted so far, told now).
        alert("ticket_backlog", Severity.critical, revision=1).model_copy(
            update={"fired_at": T0 + timedelta(minutes=1)}
        ),
    )
    told = [(a.split(":")[1], n) for a, n, _ in await world.notices()]
    assert told == [("low_activity", "fire"), ("ticket_backlog", "fire")]
    muted = await world.alert("acme:nps_detractor:1")
    backlog = await world.alert("acme:ticket_backlog:1")
    # A lesser alert of an earlier step in the same batch was true, and told, before the
    # critical one: it is not moved after it (found in review).
    earlier = alert("relationship", Severity.warning).model_copy(
        update={"account_id": "beta", "alert_id": "beta:relationship:1"}
    )
    later = alert("low_activity", Severity.critical).model_copy(
        update={
            "account_id": "beta",
            "alert_id": "beta:low_activity:1",
            "fired_at": T0 + timedelta(hours=1),
        }
    )
    await world.receive(earlier, later)
    told_beta = [(a, n) for a, n, _ in await world.notices() if a.startswith("beta:")]
    assert told_beta == [("beta:relationship:1", "fire"), ("beta:low_activity:1", "fire")]
    assert muted.muted and (backlog.severity, backlog.revision) == ("critical", 1)  # type: ignore[attr-defined]


async def test_a_muted_warning_that_turns_critical_is_told_and_escalates(world: World) -> None:
    """Muted by the account's critical alert, then critical itself: told now (its first
    notice) and escalated like any critical alert, not muted while it lasts."""
    await world.receive(alert("low_activity", Severity.critical))
    await world.receive(alert("nps_detractor", Severity.warning))  # muted
    await world.receive(alert("nps_detractor", Severity.critical, revision=1))
    row = await world.alert("acme:nps_detractor:1")
    assert not row.muted  # type: ignore[attr-defined]
    world.clock.now += timedelta(hours=1, minutes=1)
    await world.timers.run_once()
    told = [(a.split(":")[1], n, to) for a, n, to in await world.notices()]
    assert ("nps_detractor", "fire", "anna@example.com") in told
    assert ("nps_detractor", "escalate", "lead@example.com") in told


async def test_an_alert_first_told_late_has_its_whole_escalation_deadline(world: World) -> None:
    """Muted for two hours, then critical and told: it was escalated in the pass that
    first told its owner, its deadline counted from its storing (found in review)."""
    await world.receive(alert("low_activity", Severity.critical))
    await world.receive(alert("nps_detractor", Severity.warning))  # muted
    world.clock.now += timedelta(hours=2)
    await world.receive(alert("nps_detractor", Severity.critical, revision=1))  # first told
    await world.timers.run_once()
    escalated = [a for a, n, _ in await world.notices() if n == "escalate"]
    assert escalated == ["acme:low_activity:1"]  # the first critical, stored two hours ago
    world.clock.now += timedelta(hours=1, minutes=1)
    await world.timers.run_once()
    escalated = [a for a, n, _ in await world.notices() if n == "escalate"]
    assert escalated == ["acme:low_activity:1", "acme:nps_detractor:1"]


async def test_an_alert_is_escalated_a_deadline_after_its_first_notice_went_out(
    world: World,
) -> None:
    """Slack and email down for two hours: the lead was escalated to while the owner's
    first notices still waited, and heard of it first (found from outside). The deadline
    counts from when the first notice went out."""
    await world.receive(alert("low_activity", Severity.critical))
    async with world.engine.begin() as conn:  # the channels are down: still to go
        await conn.execute(update(deliveries).values(status="pending", delivered_at=None))
    world.clock.now += timedelta(hours=2)
    await world.timers.run_once()  # then they are back: delivered now (``_deliver_queued``)
    escalated = [a for a, n, _ in await world.notices() if n == "escalate"]
    assert escalated == []
    world.clock.now += timedelta(minutes=59)
    await world.timers.run_once()
    assert [n for _, n, _ in await world.notices() if n == "escalate"] == []
    world.clock.now += timedelta(minutes=2)
    await world.timers.run_once()
    assert [n for _, n, _ in await world.notices() if n == "escalate"] == ["escalate"]


async def test_one_recipients_channel_down_holds_no_escalation_up(world: World) -> None:
    """The owner's email went, their Slack is down (retried for up to a day): escalation
    counts from the email (waiting on every first notice held it up, found in review)."""
    await world.receive(alert("low_activity", Severity.critical))
    async with world.engine.begin() as conn:  # Slack down: its first notice waits
        await conn.execute(
            update(deliveries)
            .where(deliveries.c.channel == "slack")
            .values(status="pending", delivered_at=None)
        )
    world.clock.now += timedelta(hours=1, minutes=1)
    await world.timers.run_once()  # Slack's notice still waits during the pass
    assert [n for _, n, _ in await world.notices() if n == "escalate"] == ["escalate"]


async def test_an_alert_whose_snooze_ends_has_its_whole_escalation_deadline(
    world: World,
) -> None:
    """Snoozed past its deadline: when the snooze ended, its CSM was reminded and the
    lead paged in the same second (found from outside). The deadline counts again from
    the snooze's end."""
    await world.receive(alert("low_activity", Severity.critical))
    row = await world.alert("acme:low_activity:1")
    woken = world.clock.now + timedelta(hours=2)
    async with world.engine.begin() as conn:
        await apply_action(conn, row, Action("snooze", "anna", until=woken), world.clock.now)
    world.clock.now = woken + timedelta(minutes=1)
    await world.timers.run_once()
    assert [n for _, n, _ in await world.notices() if n == "escalate"] == []
    world.clock.now = woken + timedelta(hours=1, minutes=1)
    await world.timers.run_once()
    assert [n for _, n, _ in await world.notices() if n == "escalate"] == ["escalate"]


async def _resolve_by_hand(world: World, alert_id: str) -> None:
    async with world.engine.begin() as conn:
        row = (await conn.execute(select(alerts).where(alerts.c.alert_id == alert_id))).one()
        await apply_action(conn, row, Action("resolve", "anna@example.com"), world.clock.now)


async def test_an_end_set_by_hand_then_a_reopening_then_scorings_end_are_all_told(
    world: World,
) -> None:
    """The end someone set is told under a key of its own: under ``resolve``, it took the
    key of the end scoring tells once the alert reopened, and that end went untold
    (found in review)."""
    await world.receive(alert("nps_detractor", Severity.warning))
    await _resolve_by_hand(world, "acme:nps_detractor:1")
    await world.timers.run_once()
    await world.receive(alert("nps_detractor", Severity.critical, revision=1))  # reopens
    await world.receive(alert("nps_detractor", Severity.critical, revision=2, status="resolved"))
    await world.timers.run_once()
    assert [n for _, n, _ in await world.notices()] == [
        "fire",
        "resolve:hand:0",
        "update:1",
        "resolve",
    ]


async def test_a_critical_alert_resolved_by_hand_mutes_no_more(world: World) -> None:
    """The next timer pass lets its muted warnings speak (no revision tells of it), and
    tells whoever heard of the critical alert that it ended: nobody heard of an alert's
    end when someone resolved it (found from outside), once however often it runs."""
    await world.receive(alert("low_activity", Severity.critical))
    await world.receive(alert("nps_detractor", Severity.warning))  # muted
    await _resolve_by_hand(world, "acme:low_activity:1")
    await world.timers.run_once()
    await world.timers.run_once()
    assert sorted((a.split(":")[1], n) for a, n, _ in await world.notices()) == [
        ("low_activity", "fire"),
        ("low_activity", "resolve:hand:0"),
        ("nps_detractor", "fire"),
    ]
    assert not (await world.alert("acme:nps_detractor:1")).muted  # type: ignore[attr-defined]


async def test_an_alert_resolved_by_hand_stays_resolved_unless_it_gets_worse(world: World) -> None:
    """Scoring's later end of it tells nobody again and keeps when it was resolved; a
    revision no worse is stored only; a worse one opens it again and is told."""
    await world.receive(alert("nps_detractor", Severity.warning))
    await _resolve_by_hand(world, "acme:nps_detractor:1")
    resolved_at = (await world.alert("acme:nps_detractor:1")).resolved_at  # type: ignore[attr-defined]
    world.clock.now += timedelta(minutes=10)
    await world.receive(alert("nps_detractor", Severity.warning, revision=1))
    await world.receive(alert("nps_detractor", Severity.info, revision=2))
    row = await world.alert("acme:nps_detractor:1")
    assert (row.status, row.resolved_at) == ("resolved", resolved_at)  # type: ignore[attr-defined]
    await world.receive(alert("nps_detractor", Severity.critical, revision=3))
    row = await world.alert("acme:nps_detractor:1")
    assert (row.status, row.resolved_at) == ("firing", None)  # type: ignore[attr-defined]
    await world.receive(alert("nps_detractor", Severity.critical, revision=4, status="resolved"))
    assert [n for _, n, _ in await world.notices()] == ["fire", "update:3", "resolve"]
    # Resolved by hand again, then by scoring: its end is not told twice.
    await world.receive(alert("low_activity", Severity.warning))
    await _resolve_by_hand(world, "acme:low_activity:1")
    await world.receive(alert("low_activity", Severity.warning, revision=1, status="resolved"))
    assert [n for a, n, _ in await world.notices() if "low_activity" in a] == ["fire"]


async def test_an_alert_reopened_under_an_open_critical_alert_is_muted(world: World) -> None:
    await world.receive(alert("renewal_approaching", Severity.info))
    await _resolve_by_hand(world, "acme:renewal_approaching:1")
    await world.receive(alert("low_activity", Severity.critical))
    await world.receive(alert("renewal_approaching", Severity.warning, revision=1))  # reopens
    row = await world.alert("acme:renewal_approaching:1")
    assert (row.status, row.muted) == ("firing", True)  # type: ignore[attr-defined]
    assert [(a.split(":")[1], n) for a, n, _ in await world.notices()] == [
        ("renewal_approaching", "fire"),
        ("low_activity", "fire"),
    ]


async def test_whoever_heard_of_a_muted_alert_hears_of_its_end(world: World) -> None:
    await world.receive(alert("nps_detractor", Severity.warning))  # told
    await world.receive(alert("low_activity", Severity.critical))  # mutes it
    await world.receive(alert("nps_detractor", Severity.warning, revision=1, status="resolved"))
    assert [(a.split(":")[1], n) for a, n, _ in await world.notices()] == [
        ("nps_detractor", "fire"),
        ("low_activity", "fire"),
        ("nps_detractor", "resolve"),
    ]


async def test_reminders_escalation_and_the_daily_digest(world: World) -> None:
    await world.receive(alert("low_activity", Severity.critical))
    await world.receive(alert("renewal_approaching", Severity.info))
    assert await world.timers.run_once() == 0  # 07:00 in Berlin: nothing due
    # 1 h later: the unacknowledged critical alert escalates to the lead, once.
    world.clock.now += timedelta(hours=1, minutes=1)
    await world.timers.run_once()
    await world.timers.run_once()
    escalations = [n for n in await world.notices() if n[1] == "escalate"]
    assert escalations == [("acme:low_activity:1", "escalate", "lead@example.com")]
    # 09:00 Berlin: one digest for Anna with both alerts, however often the pass runs.
    world.clock.now = T0 + timedelta(hours=2)
    await world.timers.run_once()
    await world.timers.run_once()
    digests = [n for n in await world.notices() if n[1] == "digest"]
    assert digests == [("digest:anna@example.com:2026-11-23", "digest", "anna@example.com")]
    # A day later: low_activity is reminded (1 day); the renewal waits for its 30 days.
    world.clock.now = T0 + timedelta(days=1, minutes=1)
    await world.timers.run_once()
    reminders = [n[:2] for n in await world.notices() if n[1].startswith("repeat")]
    assert reminders == [("acme:low_activity:1", "repeat:1")]


async def test_an_alert_that_fires_after_the_digest_hour_waits_for_the_next_digest(
    world: World,
) -> None:
    """A CSM whose first alert of the day fired in the afternoon got a "daily digest" of
    it seconds after its notice (found from outside): the day's digest holds the alerts
    open at its hour, and the next day's holds this one."""
    world.clock.now = T0 + timedelta(hours=6)  # 13:00 in Berlin, after the digest hour
    await world.receive(alert("low_activity", Severity.warning))
    await world.timers.run_once()
    assert [n for n in await world.notices() if n[1] == "digest"] == []
    world.clock.now = T0 + timedelta(days=1, hours=2)  # 09:00 the next day
    await world.timers.run_once()
    digests = [n for n in await world.notices() if n[1] == "digest"]
    assert digests == [("digest:anna@example.com:2026-11-24", "digest", "anna@example.com")]


async def test_the_digest_puts_the_most_urgent_first_with_the_health_now(world: World) -> None:
    """A CSM's digest listed the info first and its criticals as items 19 to 28, and it
    said "Health: 12 (red)" of an account green since (found in a CSM's review)."""
    old = alert("renewal_approaching", Severity.info).model_copy(
        update={"score": 12, "band": "red"}
    )
    await world.receive(old)
    world.clock.now += timedelta(minutes=5)
    await world.receive(alert("low_activity", Severity.critical))
    async with world.engine.begin() as conn:
        await conn.execute(
            insert(account_health).values(
                account_id="acme", as_of=T0, score=81, band="green", updated_at=T0
            )
        )
        # An alert stored under an older contract is left out (logged by its id), and
        # the digest goes on: its query lacked the id, and the log line failed the pass.
        unreadable = {"alert_id": "acme:old:1", "account_id": "acme", "rule": "old"}
        await conn.execute(
            insert(alerts).values(
                **unreadable, severity="warning", status="firing", title="old",
                payload={"not": "an alert"}, owner_email="anna@example.com",
                fired_at=T0, stored_at=T0,
            )
        )  # fmt: skip
    world.clock.now = T0 + timedelta(hours=3)
    await world.timers.run_once()
    async with world.engine.connect() as conn:
        q = select(deliveries.c.payload).where(deliveries.c.notification == "digest")
        digest = Notice.from_json((await conn.execute(q)).scalar_one())
    assert [a.rule for a in digest.alerts] == ["low_activity", "renewal_approaching"]
    assert {(a.score, a.band) for a in digest.alerts} == {(81, "green")}


async def test_reminders_and_escalations_tell_the_health_now(world: World) -> None:
    """A renewal's reminder said "Health 30 (red)" of an account at 100 (green) since
    (found in a CS lead's review): a notice told again carries the health of now."""
    await world.receive(
        alert("low_activity", Severity.critical).model_copy(update={"score": 12, "band": "red"})
    )
    async with world.engine.begin() as conn:
        await conn.execute(
            insert(account_health).values(
                account_id="acme", as_of=T0, score=81, band="green", updated_at=T0
            )
        )
    world.clock.now = T0 + timedelta(hours=1, minutes=1)  # escalated (1 h)
    await world.timers.run_once()
    world.clock.now = T0 + timedelta(days=1, minutes=2)  # reminded (1 day)
    await world.timers.run_once()
    async with world.engine.connect() as conn:
        rows = await conn.execute(
            select(deliveries.c.notification, deliveries.c.payload).where(
                deliveries.c.channel == "email"
            )
        )
        told = {kind: Notice.from_json(payload).first for kind, payload in rows}
    assert {"fire", "escalate", "repeat:1"} <= set(told)
    assert (told["fire"].score, told["fire"].band) == (12, "red")  # as it fired
    for kind in ("escalate", "repeat:1"):
        assert (told[kind].score, told[kind].band) == (81, "green"), kind


async def test_an_alert_marked_not_useful_is_reminded_and_escalated_no_more(
    world: World,
) -> None:
    """Marked not useful, the lead still got its escalation three minutes later, and
    daily reminders went on (found from outside)."""
    await world.receive(alert("low_activity", Severity.critical))
    row = await world.alert("acme:low_activity:1")
    async with world.engine.begin() as conn:
        await apply_action(conn, row, Action("not_useful", "anna@example.com", "noise"), T0)
    for hours in (2, 26, 50):
        world.clock.now = T0 + timedelta(hours=hours)
        await world.timers.run_once()
    told = [n[1] for n in await world.notices() if n[0] == "acme:low_activity:1"]
    assert told == ["fire"]
    # Snoozed too: its snooze ends untold (it was read again on every pass, found in
    # review).
    row = await world.alert("acme:low_activity:1")
    async with world.engine.begin() as conn:
        until = world.clock.now + timedelta(hours=1)
        await apply_action(conn, row, Action("snooze", "anna@example.com", "x", until), T0)
    world.clock.now += timedelta(hours=2)
    await world.timers.run_once()
    row = await world.alert("acme:low_activity:1")
    assert row.snoozed_until is None  # type: ignore[attr-defined]
    assert [n[1] for n in await world.notices() if n[0] == "acme:low_activity:1"] == ["fire"]


async def test_a_pass_tells_nobody_about_an_alert_acted_on_after_it_read_it(
    world: World,
) -> None:
    await world.receive(alert("low_activity", Severity.critical))
    stale = await world.alert("acme:low_activity:1")  # what a timer pass read
    async with world.engine.begin() as conn:  # then somebody acknowledged it
        await conn.execute(
            update(alerts)
            .where(alerts.c.alert_id == "acme:low_activity:1")
            .values(status="acknowledged")
        )
    world.clock.now += timedelta(days=2)
    async with world.engine.begin() as conn:
        config, _ = await world.config.current(conn)
        told = await world.timers._remind(conn, stale, config, world.clock.now)
        escalated: list[tuple[str, str]] = []
        told += await world.timers._escalate(conn, config, world.clock.now, escalated)
    assert told == 0 and escalated == []
    assert [n[1] for n in await world.notices()] == ["fire"]


async def test_a_pass_does_not_remind_of_an_alert_snoozed_after_it_read_it(
    world: World,
) -> None:
    await world.receive(alert("low_activity", Severity.critical))
    stale = await world.alert("acme:low_activity:1")  # read by a pass: not snoozed
    world.clock.now += timedelta(days=2)
    async with world.engine.begin() as conn:  # then somebody snoozed it for a week
        await conn.execute(
            update(alerts)
            .where(alerts.c.alert_id == "acme:low_activity:1")
            .values(snoozed_until=world.clock.now + timedelta(days=7))
        )
    async with world.engine.begin() as conn:
        config, _ = await world.config.current(conn)
        told = await world.timers._remind(conn, stale, config, world.clock.now)
    assert told == 0
    assert [n[1] for n in await world.notices()] == ["fire"]


async def test_slack_and_email_notices_wait_for_the_group_window(world: World) -> None:
    await world.receive(alert("low_activity", Severity.critical))
    async with world.engine.connect() as conn:
        rows = (
            await conn.execute(select(deliveries.c.channel, deliveries.c.next_attempt_at))
        ).all()
    due = {channel: at for channel, at in rows}
    assert due["email"] == due["slack"] == T0 + timedelta(seconds=30)


async def _outbox_on(
    settings: Settings, channel: Any
) -> tuple[AsyncEngine, CollectorRegistry, Outbox]:
    """A migrated database and an outbox writing to it through ``channel`` alone."""
    engine = create_engine(settings.database_url)
    await migrate(engine)
    registry = CollectorRegistry()
    return engine, registry, Outbox([channel], settings, AlertsMetrics(registry))


async def test_notices_are_acted_on_only_once_their_transaction_commits(
    embedded_settings: Settings,
) -> None:
    settings = embedded_settings.model_copy(update={"smtp_host": "127.0.0.1"})
    engine, registry, outbox = await _outbox_on(settings, EmailChannel(settings))
    fire = Notice("fire", [alert("nps_detractor", Severity.warning)], "acme:nps_detractor:1/fire")
    anna = [Recipient(email="anna@example.com")]

    def unroutable() -> float:
        labels = {"rule": "nps_detractor", "channel": "none", "outcome": "unroutable"}
        return registry.get_sample_value("healthwatch_alert_deliveries_total", labels) or 0.0

    try:
        # A transaction that fails (and will be retried) counts and wakes nothing.
        with pytest.raises(RuntimeError, match="rolled back"):
            async with outbox.transaction(engine) as conn:
                await outbox.put(conn, fire, [], notification="fire", now=T0)
                assert await outbox.put(conn, fire, anna, notification="fire", now=T0) == 1
                raise RuntimeError("rolled back")
        assert unroutable() == 0 and not outbox.queued.is_set()

        async with outbox.transaction(engine) as conn:
            await outbox.put(conn, fire, [], notification="fire", now=T0)
        assert unroutable() == 1 and not outbox.queued.is_set()  # nothing was queued

        async with outbox.transaction(engine) as conn:
            assert await outbox.put(conn, fire, anna, notification="fire", now=T0) == 1
        assert outbox.queued.is_set()
        with pytest.raises(RuntimeError, match="outside"):
            async with engine.begin() as conn:
                await outbox.put(conn, fire, anna, notification="fire", now=T0)
    finally:
        await engine.dispose()


async def test_a_digest_without_email_set_up_is_no_unroutable_notice(
    embedded_settings: Settings,
) -> None:
    """With Slack but no SMTP, every CSM's daily digest counted as "nobody to tell" on
    every timer pass: a warning each, and the shipped unroutable alert firing for good."""
    settings = embedded_settings.model_copy(update={"slack_webhook_url": "http://127.0.0.1:9/h"})
    engine, registry, outbox = await _outbox_on(settings, SlackChannel(settings))
    digest = Notice("digest", [alert("low_activity", Severity.critical)], "digest:anna:d")
    async with outbox.transaction(engine) as conn:
        put = await outbox.put(
            conn,
            digest,
            [Recipient(email="anna@example.com")],
            notification="digest",
            now=T0,
            only="email",
        )
    assert put == 0
    unroutable = registry.get_sample_value(
        "healthwatch_alert_deliveries_total",
        {"rule": "digest", "channel": "none", "outcome": "unroutable"},
    )
    assert unroutable is None
    await engine.dispose()


async def test_roles_without_an_address_are_named_once_per_alerting_version(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """The shipped file leaves the CS lead without an address: escalations reached
    nobody, and nothing said so until one was due (found from outside)."""
    shipped = parse_alerting(default_alerting_source())
    assert shipped.routing.unaddressed() == ["cs_lead", "sales_manager"]
    world.timers._check_routing(shipped)
    world.timers._check_routing(shipped)  # the same version: said once
    said = [r.getMessage() for r in caplog.records if "routing:" in r.getMessage()]
    assert len(said) == 1 and "cs_lead, sales_manager have no email or Slack id" in said[0]


async def test_a_rule_silenced_on_an_account_is_told_to_nobody_until_it_ends(
    world: World,
) -> None:
    """A snooze quiets one alert for at most 90 days: the rule's next episode on the same
    account came back to the lists and to the CSM for a situation the team knew (found
    from outside). A silence keeps every alert of the rule there snoozed until it ends:
    told to nobody, reminded and escalated to nobody, off the to-do list; other rules
    and other accounts are told as ever; ended early, its alert is told again."""
    first = alert("low_activity", Severity.critical)
    await world.receive(first)
    until = T0 + timedelta(days=90)
    async with world.engine.begin() as conn:
        alerting, _ = await world.config.current(conn)
        with pytest.raises(SilenceError):  # a rule the file does not have
            await silence(conn, alerting, account_id="acme", rule="no_such_rule", until=until,
                          actor="anna@example.com", reason=None, now=T0)  # fmt: skip
        with pytest.raises(SilenceError):  # longer than a year
            await silence(conn, alerting, account_id="acme", rule="low_activity",
                          until=T0 + timedelta(days=400), actor="anna@example.com",
                          reason=None, now=T0)  # fmt: skip
        await silence(conn, alerting, account_id="acme", rule="low_activity", until=until,
                      actor="anna@example.com", reason="seasonal: school holidays", now=T0)  # fmt: skip
    row = await world.alert("acme:low_activity:1")
    assert row.snoozed_until.replace(tzinfo=UTC) == until  # type: ignore[attr-defined]
    # Its next episode: stored snoozed, nobody told, no escalation after an hour.
    ended = first.model_copy(update={"revision": 1, "status": "resolved"})
    again = first.model_copy(update={"alert_id": "acme:low_activity:2"})
    await world.receive(ended, again)
    second = await world.alert("acme:low_activity:2")
    assert second.snoozed_until.replace(tzinfo=UTC) == until  # type: ignore[attr-defined]
    assert second.last_notified_at is None  # type: ignore[attr-defined]
    await world.receive(alert("nps_detractor", Severity.warning))  # another rule: told
    world.clock.now += timedelta(hours=2)
    await world.timers.run_once()
    told = [(a, n) for a, n, _ in await world.notices()]
    assert not [n for a, n in told if a == "acme:low_activity:2"]
    assert ("acme:nps_detractor:1", "fire") in told
    # Ended early: the next pass tells its people again; a second end finds none.
    async with world.engine.begin() as conn:
        assert await unsilence(conn, account_id="acme", rule="low_activity",
                               actor="anna@example.com", now=world.clock.now)  # fmt: skip
        assert not await unsilence(conn, account_id="acme", rule="low_activity",
                                   actor="anna@example.com", now=world.clock.now)  # fmt: skip
    world.clock.now += timedelta(minutes=1)
    await world.timers.run_once()
    told = [(a, n) for a, n, _ in await world.notices()]
    # Told for the first time (stored while silenced); escalated only when nobody took
    # it on within the critical's hour from then (it was escalated in the same pass).
    assert [n for a, n in told if a == "acme:low_activity:2"] == ["fire"]
    world.clock.now += timedelta(minutes=59)
    await world.timers.run_once()
    assert [a for a, n, _ in await world.notices() if n == "escalate"] == []
    world.clock.now += timedelta(minutes=2)
    await world.timers.run_once()
    told = [(a, n) for a, n, _ in await world.notices()]
    assert [n for a, n in told if a == "acme:low_activity:2"] == ["fire", "escalate"]
    async with world.engine.connect() as conn:
        logged = (
            await conn.execute(
                select(alert_activity.c.alert_id, alert_activity.c.action).where(
                    alert_activity.c.action.in_(["silence", "unsilence"])
                )
            )
        ).all()
    assert sorted(logged) == [
        ("acme:low_activity:1", "silence"),
        ("acme:low_activity:2", "silence"),
        ("acme:low_activity:2", "unsilence"),
    ]


async def _silence(world: World, rule: str, days: int) -> None:
    async with world.engine.begin() as conn:
        alerting, _ = await world.config.current(conn)
        await silence(conn, alerting, account_id="acme", rule=rule,
                      until=world.clock.now + timedelta(days=days),
                      actor="anna@example.com", reason=None, now=world.clock.now)  # fmt: skip


async def test_a_silenced_alert_stays_untold_by_every_path(world: World) -> None:
    """Found in review: a silenced warning muted by a critical was told "fire" when the
    critical ended; a silence moved sooner left its alerts snoozed to the old end; the
    daily digest listed silenced alerts; a person's snooze replaced the silence's end;
    a family's alert kept its old rule's silence, or was told under its new one."""
    await _silence(world, "nps_detractor", 90)
    await world.receive(alert("low_activity", Severity.critical))
    await world.receive(alert("nps_detractor", Severity.warning))  # silenced (and muted)
    await world.receive(alert("low_activity", Severity.critical, revision=1, status="resolved"))
    world.clock.now += timedelta(hours=3)  # 10:00 Berlin: past the digest hour
    await world.timers.run_once()
    told = await world.notices()
    assert not [n for n in told if n[0] == "acme:nps_detractor:1"], told
    digests = [n for n in told if n[1] == "digest"]
    assert digests == []  # the only open alert is silenced: nothing to digest
    # A person's snooze does not replace the silence's end.
    async with world.engine.begin() as conn:
        row = (
            await conn.execute(select(alerts).where(alerts.c.alert_id == "acme:nps_detractor:1"))
        ).one()
        with pytest.raises(ActionError, match="silenced"):
            await apply_action(conn, row, Action("snooze", "anna@example.com", None,
                                                 world.clock.now + timedelta(days=1)), world.clock.now)  # fmt: skip
    # Moved sooner: its alert follows; at the new end it is told, for the first time.
    await _silence(world, "nps_detractor", 2)
    row = await world.alert("acme:nps_detractor:1")
    assert row.snoozed_until.replace(tzinfo=UTC) == world.clock.now + timedelta(days=2)  # type: ignore[attr-defined]
    world.clock.now += timedelta(days=2, minutes=1)
    await world.timers.run_once()
    assert ("acme:nps_detractor:1", "fire") in [n[:2] for n in await world.notices()]


async def test_a_familys_alert_follows_the_silence_of_the_rule_it_is_stored_under(
    world: World,
) -> None:
    await _silence(world, "nps_detractor", 90)
    family = alert("nps_detractor", Severity.warning).model_copy(
        update={"alert_id": "acme:relationship:1"}
    )
    await world.receive(family)  # led by the silenced rule: snoozed, untold
    assert (await world.alert("acme:relationship:1")).last_notified_at is None  # type: ignore[attr-defined]
    worse = family.model_copy(
        update={"revision": 1, "rule": "decision_maker_changed", "severity": Severity.critical}
    )
    await world.receive(worse)  # led by a rule not silenced: woken, told at the next pass
    world.clock.now += timedelta(minutes=1)
    await world.timers.run_once()
    assert [n[:2] for n in await world.notices() if n[0] == "acme:relationship:1"] == [
        ("acme:relationship:1", "fire")
    ]
    await _silence(world, "touchpoint_overdue", 90)
    moved = worse.model_copy(update={"revision": 2, "rule": "touchpoint_overdue"})
    await world.receive(moved)  # led by a silenced rule again: snoozed
    row = await world.alert("acme:relationship:1")
    assert row.snoozed_until is not None  # type: ignore[attr-defined]


async def test_unsnoozing_an_alert_that_is_not_snoozed_is_refused(world: World) -> None:
    """A 200 and an activity line for an alert resolved and never snoozed said something
    was done (found from outside), where acknowledge and resolve answer 409."""
    await world.receive(alert("low_activity", Severity.warning))
    unsnooze = Action("unsnooze", "anna@example.com")
    for state in ("open, never snoozed", "snoozed", "unsnoozed", "resolved"):
        if state == "snoozed":
            row = await world.alert("acme:low_activity:1")
            later = world.clock.now + timedelta(hours=4)
            async with world.engine.begin() as conn:
                await apply_action(
                    conn, row, Action("snooze", "anna", until=later), world.clock.now
                )
        if state == "resolved":
            await _resolve_by_hand(world, "acme:low_activity:1")
        row = await world.alert("acme:low_activity:1")
        async with world.engine.begin() as conn:
            if state in ("snoozed",):
                await apply_action(conn, row, unsnooze, world.clock.now)
                continue
            with pytest.raises(ActionError, match=r"not snoozed|nothing to unsnooze"):
                await apply_action(conn, row, unsnooze, world.clock.now)
    async with world.engine.connect() as conn:
        done = (await conn.execute(select(alert_activity.c.action))).scalars().all()
    assert done.count("unsnooze") == 1


async def test_an_import_closes_the_alert_it_opened_and_stores_no_past_one(world: World) -> None:
    """A later import ends an alert an earlier one opened (the account churned): its
    resolution closes it, told to nobody (nobody heard of it). An alert that began and
    ended in an imported past is not stored: no news, and no "fired, never
    acknowledged" in the rules' quality figures."""
    opened = alert("low_activity", Severity.critical).model_copy(update={"imported": True})
    await world.receive(opened)
    # A revision from the stream (not imported, no rise) tells nobody; the alert stays
    # one nobody heard of (its payload no longer says imported: found in review).
    await world.receive(opened.model_copy(update={"revision": 1, "imported": False}))
    ended = opened.model_copy(update={"revision": 2, "status": "resolved"})
    past = alert("nps_detractor", Severity.warning).model_copy(
        update={"imported": True, "status": "resolved"}
    )
    await world.receive(ended, past)
    row = await world.alert("acme:low_activity:1")
    assert row.status == "resolved"  # type: ignore[attr-defined]
    async with world.engine.connect() as conn:
        ids = (await conn.execute(select(alerts.c.alert_id))).scalars().all()
    assert ids == ["acme:low_activity:1"]
    assert await world.notices() == []
