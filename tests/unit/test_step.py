"""The pure per-account step: measures and earlier scoring in, what to write and tell out."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from services.scoring import inputs
from services.scoring.history import Previous
from services.scoring.model.schema import load_default_model
from services.scoring.rules import RuleState
from services.scoring.step import (
    AccountContacts,
    AccountHistory,
    ModelAndRules,
    ScoredAccount,
    alert_event,
    score_account,
)
from shared.alerting.schema import (
    Condition,
    Escalate,
    Rule,
    RuleType,
    default_alerting_source,
    parse_alerting,
)
from shared.contracts.alerts import Severity
from shared.contracts.events import Owner
from tests.support.measures import measures

NOW = datetime(2026, 11, 23, 13, tzinfo=UTC)
USING = ModelAndRules(load_default_model(), parse_alerting(default_alerting_source()).rules)
# Two of fifty seats active over the week, in use for a month: far below low_activity's 20%.
QUIET = measures(active_users_7d=2, active_users_30d=3, first_seen=date(2026, 10, 20))


def stored(result: ScoredAccount) -> Previous:
    """What the processor leaves in account_health after writing ``result``."""
    assert result.health is not None
    return Previous(result.score.value, result.score.band, result.health["inputs"])


def test_a_first_score_writes_its_rows_and_a_band_change_from_none() -> None:
    result = score_account(measures(), USING, AccountHistory(), now=NOW)
    assert result.health is not None and result.daily is not None
    assert result.health["score"] == result.score.value == result.daily["score"]
    # The stored inputs hold what milestones may read besides the model's inputs.
    assert set(inputs.STORED_EXTRAS) <= set(result.daily["inputs"])
    assert result.daily["day"] == measures().as_of
    assert result.band_change is not None
    assert result.band_change["from_band"] is None
    assert result.band_change["to_band"] == result.score.band


def test_an_unchanged_score_writes_nothing() -> None:
    first = score_account(measures(), USING, AccountHistory(), now=NOW)
    earlier = AccountHistory(previous=stored(first), rule_states=first.rule_states)
    again = score_account(measures(), USING, earlier, now=NOW)
    assert again.score.value == first.score.value
    assert (again.health, again.daily, again.band_change) == (None, None, None)
    assert again.rule_states == {} and again.fired == []


def test_a_falling_score_changes_band_and_explains_what_moved() -> None:
    healthy = score_account(measures(), USING, AccountHistory(), now=NOW)
    quiet = score_account(QUIET, USING, AccountHistory(previous=stored(healthy)), now=NOW)
    assert quiet.score.band != healthy.score.band
    assert quiet.band_change is not None
    assert (quiet.band_change["from_band"], quiet.band_change["to_band"]) == (
        healthy.score.band,
        quiet.score.band,
    )
    assert quiet.health is not None
    moved = {name for name, _, _ in quiet.health["components"]["moved"]["since_previous"]}
    assert "active_users_7d" in moved


def test_a_rule_fires_once_and_its_alert_names_the_owner() -> None:
    result = score_account(QUIET, USING, AccountHistory(), now=NOW)
    assert result.rule_states["low_activity"].status == "firing"
    fired = {f.rule.id: f for f in result.fired}
    assert "low_activity" in fired
    owner = Owner(email="anna@example.com")
    alert = alert_event(fired["low_activity"], AccountContacts(name="Anna Co", owner=owner))
    # One alert for the account's health problem (issue 15): low activity leads it, the
    # red score and the rest are its symptoms, not alerts of their own.
    assert alert.alert_id == "a:health:1"
    assert [f.family for f in result.fired].count("health") == 1
    symptoms = [s["rule"] for s in alert.details["symptoms"]]
    assert symptoms[0] == "low_activity" and "health_red" in symptoms
    # The red score is a symptom, but not an "Also:" line: every notice shows the health
    # beside the summary, and the line said it twice.
    assert "Also" not in alert.summary and "health 31" not in alert.summary
    # It says what to do: the leading symptom's next step (the handbook's rescue call).
    assert alert.details["next_step"].startswith("Call the account's admin today")
    assert (alert.account_name, alert.owner, alert.status) == ("Anna Co", owner, "firing")
    assert alert.title.startswith("Anna Co")
    # Without the account's facts, the alert is named by the account id.
    assert alert_event(fired["low_activity"], None).account_name == "a"
    # The next step, from the stored state, tells nothing new.
    states = {**result.rule_states}
    again = score_account(QUIET, USING, AccountHistory(rule_states=states), now=NOW)
    assert "low_activity" not in {f.rule.id for f in again.fired}
    assert "low_activity" not in again.rule_states


def test_a_sweep_steps_rules_at_now_not_at_the_last_event() -> None:
    pending = RuleState(status="pending", since=QUIET.as_of_time - timedelta(days=1))
    earlier = AccountHistory(rule_states={"few_active_days": pending})
    # few_active_days waits 7 days: as of the last event it is still pending…
    quiet_days = measures(active_days_7d=1, first_seen=date(2026, 9, 1), lifecycle_stage="stable")
    by_event = score_account(quiet_days, USING, earlier, now=NOW + timedelta(days=10))
    assert "few_active_days" not in symptoms(by_event)
    # …while a sweep ten days later steps it at its own clock, and it fires (a symptom
    # of the account's health alert, issue 15).
    swept = score_account(quiet_days, USING, earlier, now=NOW + timedelta(days=10), swept=True)
    assert "few_active_days" in symptoms(swept)


def symptoms(result: ScoredAccount) -> set[str]:
    return {rule.id for f in result.fired for rule in (f.symptoms or (f.rule,))}


def test_recover_and_escalate_conditions_compare_with_their_own_days_back() -> None:
    """A change condition in ``recover`` or ``escalate`` reads the inputs of its own days
    back, as one in ``when`` does: the processor loads the days ``lookbacks`` names, and
    a step compares with each of them."""
    users = "active_users_7d"
    rule = Rule(
        id="few_users",
        type=RuleType.threshold,
        severity=Severity.warning,
        when=[Condition(measure=users, op="<", value=5)],
        recover=[Condition(measure=users, change="rise", points=1, over_days=14)],
        escalate=Escalate(
            severity=Severity.critical,
            when=[Condition(measure=users, change="fall", points=1, over_days=21)],
        ),
    )
    using = ModelAndRules(load_default_model(), [rule])
    assert {14, 21} <= using.lookbacks
    firing = RuleState(status="firing", since=NOW - timedelta(days=1), severity="warning")
    earlier = AccountHistory(
        past_inputs={21: {"active_users_7d": 4}}, rule_states={"few_users": firing}
    )
    # Three users now, four three weeks ago: the escalation's fall holds.
    three = measures(active_users_7d=3, active_users_30d=3, first_seen=date(2026, 9, 1))
    escalated = score_account(three, using, earlier, now=NOW)
    assert escalated.rule_states["few_users"].severity == "critical"
    # Two two weeks ago: the rise the rule recovers on holds, though ``when`` does too.
    recovered = score_account(
        three,
        using,
        AccountHistory(past_inputs={14: {"active_users_7d": 2}}, rule_states={"few_users": firing}),
        now=NOW,
    )
    assert recovered.rule_states["few_users"].status == "ok"  # no cooldown: resolved


def test_an_alert_says_what_moved_in_measures_people_read() -> None:
    """What moved over the week lists labelled measures only (the model's and the few
    others the dashboard shows): raw input ids such as ``daily_login_ratio`` or
    ``usage_events_7d`` reached the notices as they were."""
    week_ago = measures(active_users_today=30, users_ever_active=40, usage_minutes_7d=900.0)
    before = score_account(week_ago, USING, AccountHistory(), now=NOW)
    assert before.health is not None
    earlier = AccountHistory(past_inputs={7: before.health["inputs"]})
    quiet = score_account(QUIET, USING, earlier, now=NOW)
    (fired,) = [f for f in quiet.fired if f.rule.id == "low_activity"]
    moved = [change["measure"] for change in fired.week_changes]
    assert moved and set(moved) <= set(USING.labels)


def test_a_former_customer_is_warned_about_no_more() -> None:
    """A churned account's renewal and usage alerts stayed open for good (found from
    outside): no rule applies to it unless the rule names the stage, so they resolve."""
    quiet_churned = measures(
        active_users_7d=2,
        active_users_30d=3,
        first_seen=date(2026, 10, 20),
        lifecycle_stage="churned",
    )
    first = score_account(QUIET, USING, AccountHistory(), now=NOW)
    assert "low_activity" in {f.rule.id for f in first.fired}
    states = dict(first.rule_states)
    for days in (1, 30):  # it recovers, then the cooldown passes
        step = score_account(
            quiet_churned,
            USING,
            AccountHistory(rule_states=states),
            now=NOW + timedelta(days=days),
            swept=True,
        )
        states |= step.rule_states
    assert step.fired and all(f.told.status == "resolved" for f in step.fired)
    never = score_account(quiet_churned, USING, AccountHistory(), now=NOW)
    assert never.fired == []
