"""Success plans: a milestone's state from its measure and the day (pure), the template
file's checks, and scoring's plan step (templates for new accounts, deviation alerts
fired, updated and resolved with deterministic ids)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from services.scoring.inputs import measure_names
from services.scoring.model.schema import Behaviour, Ratio
from services.scoring.plans.hook import alert_text as hook_alert_text
from services.scoring.plans.progress import (
    AlertState,
    Milestone,
    State,
    alert_step,
    evaluate,
)
from services.scoring.plans.queries import Today, create_plan, edit_milestone
from services.scoring.plans.templates import (
    PlanTemplateError,
    check_known,
    default_templates,
    parse_templates,
)
from services.scoring.sweep import QuietAccountSweep
from shared.auth import ApiKey, Scope
from shared.bus.base import Record
from shared.bus.embedded import EmbeddedBus
from shared.config import Settings
from shared.contracts.alerts import AlertEvent
from shared.contracts.events import EVENT_ADAPTER
from shared.contracts.wire import decode_alert, encode_event
from shared.i18n.alert_text import alert_text
from shared.storage.tables import bus_log, plan_milestones, success_plans
from shared.web import ClientError
from tests.support.factories import EngineFactory, ProcessorFactory

START = date(2026, 1, 1)
DUE = START + timedelta(days=100)


def milestone(measure: str | None = "activation_rate", **extra: Any) -> Milestone:
    fields: dict[str, Any] = {
        "key": "k",
        "title": "t",
        "measure": measure,
        "op": ">=",
        "target": 0.6 if measure not in (None, "go_live") else None,
        "baseline": 0.0,
        "start_on": START,
        "due_on": DUE,
    }
    return Milestone(**(fields | extra))


@pytest.mark.parametrize(
    ("m", "values", "day", "state"),
    [
        # Linear: half the time gone, half the way done (0.3 of 0.6): on track.
        (milestone(), {"activation_rate": 0.3}, START + timedelta(days=50), State.on_track),
        # Half the time gone, a third of the way: at risk (more than the slack behind).
        (milestone(), {"activation_rate": 0.2}, START + timedelta(days=50), State.at_risk),
        # The first two weeks are not judged.
        (milestone(), {"activation_rate": 0.0}, START + timedelta(days=13), State.on_track),
        (milestone(), {"activation_rate": 0.6}, START + timedelta(days=5), State.achieved),
        (milestone(), {"activation_rate": 0.5}, DUE + timedelta(days=1), State.missed),
        (milestone(), {}, START + timedelta(days=50), State.at_risk),  # no data: no way done
        # Down to a value: days since the last touchpoint from 60 to 14 or less.
        (
            milestone("days_since_touchpoint", op="<=", target=14, baseline=60),
            {"days_since_touchpoint": 40},
            START + timedelta(days=50),
            State.on_track,
        ),
        # Yes/no milestones: at risk in their last quarter.
        (milestone("go_live"), {"go_live": None}, START + timedelta(days=74), State.on_track),
        (milestone("go_live"), {"go_live": None}, START + timedelta(days=75), State.at_risk),
        (
            milestone("go_live"),
            {"go_live": "2026-02-01", "as_of": "2026-03-01"},
            START + timedelta(days=80),
            State.achieved,
        ),
        (milestone(None), {}, DUE + timedelta(days=1), State.missed),
        (milestone(None, achieved_on=DUE), {}, DUE + timedelta(days=9), State.achieved),
        (
            milestone("events_28d[report_run]", target=100),
            {"events_28d[report_run]": 100},
            START + timedelta(days=30),
            State.achieved,
        ),
    ],
)
def test_a_milestone_state_follows_its_measure_and_the_day(
    m: Milestone, values: dict[str, Any], day: date, state: State
) -> None:
    assert evaluate(m, values, day).state == state


def test_progress_projects_linearly_and_dates_an_achievement() -> None:
    p = evaluate(milestone(), {"activation_rate": 0.2}, START + timedelta(days=50))
    assert p.done_share == pytest.approx(1 / 3) and p.time_share == 0.5
    assert p.projected == pytest.approx(0.4)  # at this pace, 0.4 by the due day
    day = START + timedelta(days=70)
    assert evaluate(milestone(), {"activation_rate": 0.7}, day).achieved_on == day


def test_one_alert_per_milestone_problem_updated_then_resolved() -> None:
    s0 = AlertState()
    s1, told = alert_step(s0, State.at_risk)
    assert told is not None and (told.status, told.fire_count, told.revision) == ("firing", 1, 0)
    assert alert_step(s1, State.at_risk) == (s1, None)  # no news
    s2, told = alert_step(s1, State.missed)
    assert told is not None and (told.status, told.revision, told.severity) == (
        "firing",
        1,
        "warning",
    )
    s3, told = alert_step(s2, State.achieved)
    assert told is not None and (told.status, told.revision, told.was) == (
        "resolved",
        2,
        State.missed,
    )
    assert s3.status == "ok"
    _, told = alert_step(s3, State.at_risk)
    assert told is not None and (told.fire_count, told.revision) == (2, 0)  # a new alert


def test_default_templates_follow_the_handbook() -> None:
    templates = default_templates()
    strategic = templates.matching("strategic", "implementation")
    assert strategic is not None and strategic.id == "strategic-onboarding"
    by_key = {m.key: m for m in strategic.milestone}
    assert by_key["go_live"].due_days == 90
    assert (by_key["seat_activation"].target, by_key["seat_activation"].due_days) == (0.6, 90)
    assert by_key["weekly_active_days"].target == 3
    assert templates.matching("non-focus", "implementation").id == "onboarding"  # type: ignore[union-attr]
    assert templates.matching("enterprise", "churned") is None


def test_a_milestones_measure_must_be_one_the_score_computes() -> None:
    """The shipped templates' measures, any event's per-name measures and the model's
    ratios are known; a typo is refused with the nearest names (it would never move)."""
    known = measure_names(
        Behaviour(ratios=[Ratio(name="likes_per_post", numerator="like", denominator="post")])
    )
    for template in default_templates().template:
        for milestone in template.milestone:
            check_known(milestone.measure, *known)
    stored = ("score", "active_users_7d", "events_7d")  # stored with the inputs: readable
    for measure in ("events_28d[report run]", "days_since_event[login]", "likes_per_post", *stored):
        check_known(measure, *known)
    with pytest.raises(ValueError, match="Did you mean activation_rate"):
        check_known("activation_rat", *known)
    with pytest.raises(ValueError, match="no measure 'event_28d\\[export\\]'"):
        check_known("event_28d[export]", *known)
    # Only the product-agnostic measures are kept per event name: "band[login]" would
    # never progress (words added for band, score, … must not make them per-name).
    for never in ("band[login]", "score[login]", "dau[login]", "quota_used_share[x]"):
        with pytest.raises(ValueError, match="no measure"):
            check_known(never, *known)


def test_a_bad_template_file_is_refused_naming_each_problem() -> None:
    bad = """
version = "x"
[[template]]
id = "t"
title = "T"
tiers = ["gold"]
  [[template.milestone]]
  key = "a"
  title = "A"
  measure = "activation_rate"
  due_days = 0
"""
    with pytest.raises(PlanTemplateError) as err:
        parse_templates(bad)
    text = str(err.value)
    assert "template.0.tiers.0" in text and "milestone.0.due_days" in text
    with pytest.raises(PlanTemplateError, match="give a target for 'activation_rate'"):
        parse_templates(bad.replace('"gold"', '"strategic"').replace("= 0", "= 9"))
    # A share's target as a percentage (60 for 60%): refused, as in a plan (it read as
    # 6,000%, "on track" for good); 1.2 (more users than seats) is taken.
    fixed = bad.replace('"gold"', '"strategic"').replace("= 0", "= 9")
    with pytest.raises(PlanTemplateError, match="is a share"):
        parse_templates(fixed.replace("due_days = 9", "target = 60\n  due_days = 9"))
    parse_templates(fixed.replace("due_days = 9", "target = 1.2\n  due_days = 9"))


NOW = datetime(2026, 11, 23, 9, tzinfo=UTC)


def record(settings: Settings, offset: int, raw: dict[str, object]) -> Record:
    event = EVENT_ADAPTER.validate_python(raw)
    return Record(settings.topic(event.kind), 0, offset, b"p", encode_event(event))


def use(user: str, days_ago: int) -> dict[str, object]:
    return {
        "kind": "usage",
        "event_id": f"{user}-{days_ago}",
        "account_id": "p",
        "user_id": user,
        "event": "login",
        "occurred_at": (NOW - timedelta(days=days_ago)).isoformat(),
    }


async def test_scoring_plans_a_new_account_and_alerts_on_its_milestones(
    embedded_settings: Settings,
    engine_factory: EngineFactory,
    processor_factory: ProcessorFactory,
) -> None:
    engine = await engine_factory()
    bus = EmbeddedBus(engine)
    processor = processor_factory(engine, producer=bus, clock=lambda: NOW)
    bought = (NOW - timedelta(days=60)).date()
    raws: list[dict[str, object]] = [
        {
            "kind": "account",
            "event_id": "f",
            "account_id": "p",
            "name": "Plan Co",
            "seats_purchased": 10,
            "tier": "strategic",
            "lifecycle_stage": "implementation",
            "contract_start": bought.isoformat(),
            "owner": {"email": "anna@example.com"},
            "occurred_at": (NOW - timedelta(days=61)).isoformat(),
        },
        *(use("u0", back) for back in range(10, 21)),
    ]
    await processor.handle([record(embedded_settings, i, r) for i, r in enumerate(raws)])

    async def published() -> dict[str, AlertEvent]:
        async with engine.connect() as conn:
            q = select(bus_log.c.value).where(bus_log.c.topic == embedded_settings.topic("alerts"))
            found = [decode_alert(v) for v in (await conn.execute(q)).scalars()]
        return {f"{a.alert_id}@{a.revision}": a for a in found if a.rule == "plan_milestone"}

    async with engine.connect() as conn:
        plan = (await conn.execute(select(success_plans))).one()
        rows = {r.key: r for r in await conn.execute(select(plan_milestones))}
    assert (plan.template, plan.start_on) == ("strategic-onboarding", bought)
    assert rows["go_live"].due_on == bought + timedelta(days=90)
    # As of its newest event (50 days in): 1 of 10 seats activated, a third of the way
    # to 60% with over half the time gone; the hand-checked kickoff was due on day 30.
    assert rows["weekly_active_days"].achieved_on == (NOW - timedelta(days=10)).date()
    alerts = await published()
    assert set(alerts) == {"p:plan.seat_activation:1@0", "p:plan.kickoff:1@0"}
    fired = alerts["p:plan.seat_activation:1@0"]
    assert fired.title == "Plan Co: milestone 60% of seats activated by day 90 is at risk"
    assert fired.owner is not None and fired.owner.email == "anna@example.com"
    assert fired.details["milestone"]["state"] == "at_risk"
    assert alerts["p:plan.kickoff:1@0"].title.endswith("was missed")

    # Seven more users: 80% of the seats activated, the alert resolves.
    more = [use(f"u{n}", 1) for n in range(1, 8)]
    await processor.handle(
        [record(embedded_settings, len(raws) + i, r) for i, r in enumerate(more)]
    )
    resolved = (await published())["p:plan.seat_activation:1@1"]
    assert resolved.status == "resolved" and resolved.summary.startswith("Achieved on")
    assert len(await published()) == 3  # nothing else told

    # The kickoff ticked by hand the next day: the sweep's next pass ends its alert.
    lead = ApiKey("k", "lead", frozenset({Scope.read, Scope.respond}))
    tomorrow = Today(NOW + timedelta(days=1), UTC)
    async with engine.begin() as conn:
        await edit_milestone(conn, lead, "p", "kickoff", tomorrow, achieved=True, checked_by="lead")
    sweep = QuietAccountSweep(engine, bus, processor, clock=lambda: tomorrow.now)
    assert await sweep.run_once() == 1
    kickoff = (await published())["p:plan.kickoff:1@1"]
    assert kickoff.status == "resolved" and kickoff.summary == "Achieved on 2026-11-24."


async def test_a_milestone_on_an_event_outside_the_most_used_reads_its_value(
    embedded_settings: Settings,
    engine_factory: EngineFactory,
    processor_factory: ProcessorFactory,
) -> None:
    """The score keeps per-name measures for the account's most used events only
    (``inputs.MAX_NAMES``); a milestone on a rarer one (or one a rule names) is measured
    too, and a ``<=`` milestone on an event never sent reads 0 and is reached."""
    engine = await engine_factory()
    processor = processor_factory(engine, producer=EmbeddedBus(engine), clock=lambda: NOW)
    facts: dict[str, object] = {
        "kind": "account",
        "event_id": "f",
        "account_id": "p",
        "name": "Plan Co",
        "tier": "strategic",
        "lifecycle_stage": "implementation",
        "contract_start": (NOW - timedelta(days=20)).date().isoformat(),
        "occurred_at": (NOW - timedelta(days=21)).isoformat(),
    }
    busy = [
        {**use("u1", back), "event_id": f"{name}-{back}", "event": name}
        for name in (f"busy{n}" for n in range(14))
        for back in range(1, 4)
    ]
    rare = {**use("u1", 2), "event_id": "rare", "event": "export"}
    raws = [facts, *busy, rare]
    await processor.handle([record(embedded_settings, i, r) for i, r in enumerate(raws)])
    lead = ApiKey("k", "lead", frozenset({Scope.read, Scope.respond}))
    today = Today(NOW, UTC)
    async with engine.begin() as conn:
        await edit_milestone(
            conn, lead, "p", "kickoff", today, measure="events_28d[export]", target=1.0
        )
        await edit_milestone(
            conn, lead, "p", "go_live", today, measure="events_28d[error]", op="<=", target=0.0
        )
    sweep = QuietAccountSweep(engine, EmbeddedBus(engine), processor, clock=lambda: NOW)
    assert await sweep.run_once() == 1
    async with engine.connect() as conn:
        rows = {r.key: r for r in await conn.execute(select(plan_milestones))}
    assert rows["kickoff"].achieved_on == NOW.date()
    assert rows["go_live"].achieved_on == NOW.date()
    # A measure the score does not compute is refused; the milestone keeps its own.
    async with engine.begin() as conn:
        with pytest.raises(ClientError) as refused:
            await edit_milestone(conn, lead, "p", "kickoff", today, measure="events_28[export]")
        await edit_milestone(conn, lead, "p", "kickoff", today, title="Kick-off")
    assert (refused.value.status, refused.value.code) == (422, "unknown_measure")
    # So is a template from a templates file whose measure it does not compute: read,
    # the file is checked for the form of its measures only (the model can change).
    typo = parse_templates(
        """
version = "x"
[[template]]
id = "t"
title = "T"
tiers = ["strategic"]
  [[template.milestone]]
  key = "a"
  title = "A"
  measure = "events_28[export]"
  target = 1
  due_days = 9
"""
    )
    async with engine.begin() as conn:
        with pytest.raises(ClientError) as wrong:
            await create_plan(
                conn, lead, "p", typo, template_id="t", start_on=None, author="a", when=today
            )
    assert (wrong.value.status, wrong.value.code) == (422, "unknown_measure")
    assert wrong.value.message.startswith("template 't', milestone 'a': ")
    async with engine.connect() as conn:  # the plan it had is kept
        assert {r.key for r in await conn.execute(select(plan_milestones))} >= {"kickoff"}


def test_a_milestones_alert_reads_in_chinese_with_the_measures_words_and_days() -> None:
    """The stored English names the measure by the plan form's words (by its id where
    the form names none) and the due day in ISO; a Chinese reader gets those words in
    Chinese and a Chinese date."""
    day = START + timedelta(days=50)
    _, told = alert_step(AlertState(), State.at_risk)
    assert told is not None
    for measure, words, now in (
        ("activation_rate", "累计激活用户 ÷ 购买席位数", "20%"),  # a share: a percentage
        ("events_28d[report_run]", "events_28d[report_run]", "0.2"),
    ):
        m = milestone(measure)
        title, summary = hook_alert_text("Acme", m, evaluate(m, {measure: 0.2}, day), told)
        # Stored in English, the measure by the plan form's words where it has them.
        english = (
            "Users activated so far ÷ seats purchased" if measure == "activation_rate" else measure
        )
        assert english in summary and DUE.isoformat() in summary
        chinese = alert_text("zh-CN", summary)
        assert chinese.startswith(f"截止日期 2026年4月11日：{words} 当前为 {now}"), chinese
        assert "≥" in chinese and ">=" not in chinese
        assert alert_text("zh-CN", title) == "Acme：里程碑「t」有延误风险"
