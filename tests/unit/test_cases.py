"""Risk cases in the alerts service on a real SQLite database with a moving clock: an
alert opens one case however often it comes, a detractor's alert one follow-up, and the
timer pass tells each person once (owner when due, the lead when overdue)."""

from __future__ import annotations

import inspect
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from services.alerts.cases import actions, model
from services.alerts.cases.hooks import NPS_FOLLOWUP_TITLE
from services.alerts.cases.queries import CaseFilter, list_cases, visible_case
from services.alerts.cases.tasks import TaskDone, TaskFilter, complete_task, list_tasks
from services.alerts.channels.email import EmailChannel, subject, text_body
from services.alerts.channels.slack import SlackChannel, fallback_text, message_blocks
from services.scoring import danger
from shared.alerting.store import AlertingStore
from shared.auth import Scope, create_key, revoke_key
from shared.bus.base import Record
from shared.config import Settings
from shared.contracts.alerts import AlertEvent, Severity
from shared.contracts.events import Owner
from shared.contracts.notices import Notice
from shared.contracts.wire import encode_event
from shared.storage.db import create_engine, migrate
from shared.storage.tables import accounts, alert_activity, alerts, deliveries
from tests.support.alerting import alerting_toml
from tests.support.alerts import AlertsParts, alerts_parts
from tests.support.clocks import MovingClock

T0 = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
ROUTING = """[routing]
tiers = { strategic = ["cs_lead", "sales_manager"] }
escalate_to = ["cs_lead"]
[routing.people.cs_lead]
email = "lead@example.com"
"""


@dataclass
class World:
    engine: AsyncEngine
    parts: AlertsParts
    clock: MovingClock
    settings: Settings
    offset: int = 0

    async def receive(self, *events: AlertEvent) -> None:
        records = []
        for e in events:
            records.append(Record("alerts", 0, self.offset, b"k", encode_event(e)))
            self.offset += 1
        await self.parts.intake.handle(records)

    async def told(self) -> list[tuple[str, str, str]]:
        """(case or task, which notice, to whom) of every case email queued."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(deliveries.c.alert_id, deliveries.c.notification, deliveries.c.destination)
                .where(deliveries.c.channel == "email", deliveries.c.notification.like("case.%"))
                .order_by(deliveries.c.delivery_id)
            )
            return [(r[0], r[1].split(":")[0], r[2]) for r in rows]


@pytest.fixture
async def world(embedded_settings: Settings) -> AsyncIterator[World]:
    settings = embedded_settings.model_copy(
        update={"smtp_host": "127.0.0.1", "slack_webhook_url": "http://127.0.0.1:9/hook"}
    )
    engine = create_engine(settings.database_url)
    await migrate(engine)
    async with engine.begin() as conn:
        await conn.execute(
            accounts.insert().values(
                account_id="acme",
                name="Acme",
                tier="strategic",
                owner_email="anna@example.com",
                owner_slack_id="U0ANNA",
                facts={"fields": {"sales_owner": {"email": "bob@example.com"}}},
                facts_occurred_at=T0,
                updated_at=T0,
            )
        )
    store = AlertingStore(alerting_toml(None, routing=ROUTING))
    channels = [SlackChannel(settings), EmailChannel(settings)]
    clock = MovingClock(T0)
    yield World(
        engine, alerts_parts(engine, settings, channels, store, clock=clock), clock, settings
    )
    await engine.dispose()


def alert(family: str, severity: Severity, revision: int = 0, *rules: str) -> AlertEvent:
    return AlertEvent(
        alert_id=f"acme:{family}:1",
        revision=revision,
        account_id="acme",
        account_name="Acme",
        rule=rules[0] if rules else "low_activity",
        severity=severity,
        title="Acme: only 10% of seats active this week — edge of churn",
        summary="",
        owner=Owner(email="anna@example.com"),
        tier="strategic",
        fired_at=T0,
        details={
            "family": family,
            "symptoms": [{"rule": r} for r in rules],
            "next_step": STEP,
        },
    )


STEP = "Hold an endangered-customer review now."


def test_cause_codes_include_every_code_scoring_measures() -> None:
    measured = set(re.findall(r'codes\.append\(\s*"(\w+)"', inspect.getsource(danger)))
    assert measured == set(danger.CAUSE_LEVELS) and measured <= set(model.CAUSES)
    assert set(model.LEVELS) == set(danger.LEVELS)


async def test_an_alert_opens_one_case_and_a_detractor_one_follow_up(world: World) -> None:
    warning = alert("health", Severity.warning)
    await world.receive(warning, warning)  # a warning opens no case
    async with world.engine.connect() as conn:
        assert (await list_cases(conn, None, CaseFilter()))[1] == 0
    critical = alert("health", Severity.critical, 1)
    await world.receive(critical, critical)  # rose to critical; then a replay
    await world.receive(alert("health", Severity.critical, 2))  # re-sent, still critical
    async with world.engine.connect() as conn:
        cases, total = await list_cases(conn, None, CaseFilter())
    assert total == 1 and cases[0]["danger_level"] == "high"
    assert cases[0]["alert_id"] == "acme:health:1" and cases[0]["opened_by"] == "healthwatch"
    # Its first task is the alert's next step ("No task yet"), due within a day: a high
    # danger is acted on at once (DG-11), and the steps say "today" (not the first review
    # a week on).
    async with world.engine.connect() as conn:
        first, _ = await list_tasks(conn, None, TaskFilter(kind="case_action"))
    assert [(t["title"], t["case_id"]) for t in first] == [(STEP, cases[0]["case_id"])]
    assert first[0]["due"] == T0 + timedelta(days=1)  # not case_review_days_high's 7
    # Closed by people: a newer revision of the same alert does not reopen it.
    async with world.engine.begin() as conn:
        row = await visible_case(conn, cases[0]["case_id"], None)
        await actions.close_case(conn, row, outcome="saved", lesson="x", actor="a", now=T0)
    async with world.engine.connect() as conn:  # its open step closed with it
        left, _ = await list_tasks(conn, None, TaskFilter(kind="case_action"))
        done = TaskFilter(kind="case_action", open_only=False, done_only=True)
        closed, _ = await list_tasks(conn, None, done)
    assert left == [] and [(t["done_at"], t["done_by"]) for t in closed] == [(T0, "a")]
    await world.receive(alert("health", Severity.critical, 3))
    nps = alert("relationship", Severity.warning, 0, "touchpoint_overdue", "nps_detractor")
    await world.receive(nps, nps, alert("relationship", Severity.warning, 1, "nps_detractor"))
    async with world.engine.connect() as conn:
        assert (await list_cases(conn, None, CaseFilter(state=None)))[1] == 1
        follow_ups, total = await list_tasks(conn, None, TaskFilter(kind="nps_followup"))
    assert total == 1 and follow_ups[0]["owner_email"] == "anna@example.com"
    assert follow_ups[0]["due"] == T0 + timedelta(days=7)
    # A rule without a title still opens its case (named by the rule), never fails intake.
    untitled = alert("payment", Severity.critical, 0, "payment_failed").model_copy(
        update={"title": "", "rule": "payment_failed"}
    )
    await world.receive(untitled)
    async with world.engine.connect() as conn:
        (opened,), _ = await list_cases(conn, None, CaseFilter())
    assert opened["summary"] == "payment_failed"


async def test_a_task_done_acknowledges_the_alert_that_opened_it(world: World) -> None:
    nps = alert("relationship", Severity.warning, 0, "nps_detractor")
    critical = alert("health", Severity.critical, 0)
    await world.receive(nps, critical)
    async with world.engine.begin() as conn:
        # The health alert was resolved meanwhile: its case's first step done leaves it so.
        await conn.execute(
            update(alerts).where(alerts.c.alert_id == critical.alert_id).values(status="resolved")
        )
        opened, _ = await list_tasks(conn, None, TaskFilter())
        for task in opened:
            await complete_task(conn, task["task_id"], "anna@example.com", T0 + timedelta(hours=2))
        with pytest.raises(TaskDone):  # done once
            await complete_task(conn, opened[0]["task_id"], "anna@example.com", T0)
    async with world.engine.connect() as conn:
        rows = {r.alert_id: r for r in await conn.execute(select(alerts))}
        activity = (await conn.execute(select(alert_activity))).all()
    # The detractor was called: the alert leaves the alerts to do, open until NPS clears.
    assert rows[nps.alert_id].status == "acknowledged"
    assert rows[nps.alert_id].acknowledged_by == "anna@example.com"
    assert rows[critical.alert_id].status == "resolved"
    assert [(a.alert_id, a.action, a.text) for a in activity] == [
        (nps.alert_id, "acknowledge", NPS_FOLLOWUP_TITLE)
    ]


async def test_the_timer_pass_tells_each_notice_once(world: World) -> None:
    async with world.engine.begin() as conn:
        new = actions.NewCase("acme", "high", "New CIO re-evaluating vendors", "anna@example.com")
        case_id, opened = await actions.open_case(conn, new, world.settings, T0)
        assert opened and (await actions.open_case(conn, new, world.settings, T0)) == (
            case_id,
            False,
        )
        row = await visible_case(conn, case_id, None)
        await actions.add_task(
            conn,
            row,
            title="Meet the CIO",
            due=T0 + timedelta(days=2),
            owner_email=None,
            actor="anna@example.com",
            now=T0,
            alerting=AlertingStore(),
        )
    await world.parts.timers.run_once()
    await world.parts.timers.run_once()  # a second pass tells nobody again
    everyone = {"anna@example.com", "lead@example.com", "bob@example.com"}
    opened_to = {to for ref, what, to in await world.told() if what == "case.case_opened"}
    # Strategic: the lead and the sales owner too (DG-10); not Anna, who opened it (she
    # had her own case's notice seconds after opening it, found from outside).
    assert opened_to == everyone - {"anna@example.com"}
    world.clock.now = T0 + timedelta(days=2, hours=1)  # the task is due
    await world.parts.timers.run_once()
    world.clock.now = T0 + timedelta(days=3, hours=2)  # overdue by a day
    await world.parts.timers.run_once()
    world.clock.now = T0 + timedelta(days=8, hours=3)  # the weekly review is overdue
    await world.parts.timers.run_once()
    await world.parts.timers.run_once()
    told = [(what, to) for _, what, to in await world.told() if what != "case.case_opened"]
    assert told == [
        ("case.task_due", "anna@example.com"),
        ("case.task_overdue", "lead@example.com"),
        *[
            ("case.review_due", to)
            for to in ("anna@example.com", "lead@example.com", "bob@example.com")
        ],
        ("case.review_overdue", "lead@example.com"),
    ]
    # The account handed to Carl: its case follows him.
    async with world.engine.begin() as conn:
        await conn.execute(update(accounts).values(owner_email="carl@example.com"))
        assert (await list_cases(conn, None, CaseFilter(owner="carl@example.com")))[1] == 1
        assert (await list_cases(conn, None, CaseFilter(owner="anna@example.com")))[1] == 0


async def test_a_named_csm_hands_the_task_over_with_the_account(world: World) -> None:
    """Found from outside: a CSM named on a task kept it when the account went to
    another CSM, so it left the new owner's lists and its reminder told the old owner
    about an account no longer theirs. The lead named on a task (no CSM key) keeps it."""
    anna = await create_key(world.engine, "anna", [Scope.read, Scope.respond], "anna@example.com")
    await create_key(world.engine, "carl", [Scope.read, Scope.respond], "carl@example.com")
    async with world.engine.begin() as conn:
        new = actions.NewCase("acme", "high", "Champion left", "anna@example.com")
        case_id, _ = await actions.open_case(conn, new, world.settings, T0)
        row = await visible_case(conn, case_id, None)
        for title, owner in (("Call the sponsor", "anna@example.com"), ("Plan QBR", None)):
            await actions.add_task(
                conn,
                row,
                title=title,
                due=T0 + timedelta(days=2),
                owner_email=owner,
                actor="lead@example.com",
                now=T0,
                alerting=AlertingStore(alerting_toml(None, routing=ROUTING)),
            )
        await actions.add_task(
            conn,
            row,
            title="Talk to their CFO",
            due=T0 + timedelta(days=2),
            owner_email="lead@example.com",
            actor="lead@example.com",
            now=T0,
            alerting=AlertingStore(alerting_toml(None, routing=ROUTING)),
        )
    # Anna leaves: her key is revoked (a person without a key may see everything).
    await revoke_key(world.engine, anna.split("_")[1])
    async with world.engine.begin() as conn:
        await conn.execute(update(accounts).values(owner_email="carl@example.com"))
        carls, _ = await list_tasks(conn, None, TaskFilter(owner="carl@example.com"))
        assert sorted(t["title"] for t in carls) == ["Call the sponsor", "Plan QBR"]
        assert (await list_tasks(conn, None, TaskFilter(owner="anna@example.com")))[1] == 0
        leads, _ = await list_tasks(conn, None, TaskFilter(owner="lead@example.com"))
        assert [t["title"] for t in leads] == ["Talk to their CFO"]
    world.clock.now = T0 + timedelta(days=2, hours=1)  # the tasks are due
    await world.parts.timers.run_once()
    due_to = sorted(to for _, what, to in await world.told() if what == "case.task_due")
    assert due_to == ["carl@example.com", "carl@example.com", "lead@example.com"]


async def test_case_notices_read_in_both_languages(world: World) -> None:
    async with world.engine.begin() as conn:
        causes = ["competitor", "unclear_value"]
        new = actions.NewCase("acme", "high", "New CIO", "lead@example.com", causes)
        await actions.open_case(conn, new, world.settings, T0)
    await world.parts.timers.run_once()
    async with world.engine.connect() as conn:
        payload = (await conn.execute(select(deliveries.c.payload).limit(1))).scalar_one()
    notice = Notice.from_json(payload)
    assert subject(notice, "en") == "[healthwatch] Risk case opened: New CIO"
    # Causes in words, the review's time on the team's clock, the language's colon: they
    # read "原因 competitor, unclear_value" and "2026-11-30 06:00 UTC" (found from outside).
    shanghai = ZoneInfo("Asia/Shanghai")
    zh = text_body(notice, "http://x", "zh-CN", shanghai)
    assert "原因：竞争对手和价值不清晰：使用频繁但功能用得浅" in zh
    assert "截止时间：2026年11月30日 14:00" in zh and "UTC" not in zh
    en = text_body(notice, "http://x", "en", shanghai)
    assert "Causes: A competitor and Value unclear: busy but shallow use" in en
    assert "Due: Nov 30, 2026 14:00" in en
    assert "濒危" in subject(notice, "zh-CN") or "风险" in subject(notice, "zh-CN")
    assert "http://127.0.0.1:8000/ui/cases/1" in text_body(notice, "http://127.0.0.1:8000", "en")
    assert "New CIO" in fallback_text(notice, "U0ANNA")
    blocks = message_blocks(notice, "http://x", "U0ANNA", lang="zh-CN")
    assert blocks[-1]["elements"][0]["url"] == "http://x/ui/cases/1"
