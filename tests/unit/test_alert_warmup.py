"""Warm-ups (issue 15): no rule fires on an account before it has the usage history
the rule needs; declared per rule in the alerting file, defaulted, validated."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from pydantic import ValidationError

from services.scoring.model.schema import load_default_model
from services.scoring.rules import RuleState, step
from services.scoring.step import AccountHistory, ModelAndRules, alert_event, score_account
from shared.alerting.schema import AlertingError, default_alerting_source, parse_alerting
from tests.support.measures import measures

T0 = datetime(2026, 11, 1, tzinfo=UTC)
DEFAULT = parse_alerting(default_alerting_source())
USING = ModelAndRules(load_default_model(), DEFAULT.rules)

FILE = """
version = "w"
[defaults]
warm_up = "7d"
[[rule]]
id = "quiet"
type = "threshold"
severity = "warning"
when = [{ measure = "active_user_share_7d", op = "<", value = 0.2 }]
[[rule]]
id = "paid_late"
type = "money"
severity = "warning"
warm_up = "0d"
when = [{ measure = "payment_failed_30d", op = ">=", value = 1 }]
escalate = { when = [{ measure = "band", op = "==", value = "red" }], severity = "critical" }
"""


def test_the_default_warm_up_applies_unless_a_rule_gives_its_own() -> None:
    alerting = parse_alerting(FILE)
    quiet, paid = alerting.rules
    assert quiet.warm_up == timedelta(days=7) and paid.warm_up == timedelta(0)
    assert paid.escalate is not None and paid.escalate.warm_up == timedelta(days=7)
    # A file without [defaults] has no warm-up (files written before warm-ups).
    bare = parse_alerting(FILE.replace('[defaults]\nwarm_up = "7d"\n', ""))
    assert bare.rules[0].warm_up == timedelta(0)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (('warm_up = "7d"', 'warm_up = "12h"'), "give it in days"),
        (('warm_up = "7d"', 'warm_up = "soon"'), "is not a duration"),
        (('id = "paid_late"', 'id = "paid_late"\nfamily = "quiet"'), "another rule's id"),
    ],
)
def test_a_bad_warm_up_or_family_is_named(change: tuple[str, str], problem: str) -> None:
    with pytest.raises(AlertingError, match=problem):
        parse_alerting(FILE.replace(*change, 1))


def test_a_rule_waits_for_its_days_of_usage_history() -> None:
    quiet = parse_alerting(FILE).rules[0]
    low = {"active_user_share_7d": 0.05}
    for days in (None, 1, 6):  # no usage yet, then the first week
        state, told = step(quiet, RuleState(), {**low, "history_days": days}, {}, T0)
        assert told is None and state.status == "ok"
    state, told = step(quiet, RuleState(), {**low, "history_days": 7}, {}, T0)
    assert told is not None and told.status == "firing"


def test_a_facts_rule_fires_at_once_and_escalates_only_once_warm() -> None:
    paid = parse_alerting(FILE).rules[1]
    red = {"payment_failed_30d": 1, "band": "red"}
    state, told = step(paid, RuleState(), {**red, "history_days": None}, {}, T0)
    assert told is not None and told.severity.value == "warning"  # red means nothing yet
    state, told = step(paid, state, {**red, "history_days": 6}, {}, T0 + timedelta(days=6))
    assert told is None
    state, told = step(paid, state, {**red, "history_days": 7}, {}, T0 + timedelta(days=7))
    assert told is not None and (told.revision, told.severity.value) == (1, "critical")


def test_no_renewal_alert_says_health_red_before_any_usage() -> None:
    # Facts only, the contract ending in 60 days: every account scores red before its
    # first usage event (issue 15 saw "(health red)" in the first second).
    facts_only = measures(
        first_seen=None,
        active_users_7d=0,
        active_users_30d=0,
        active_days_7d=0,
        events_7d=0,
        tier="enterprise",
        contract_end=date(2027, 1, 22),
    )
    result = score_account(facts_only, USING, AccountHistory(), now=T0)
    assert result.score.band == "red"
    fired = {f.rule.id: f for f in result.fired}
    assert set(fired) == {"renewal_approaching"}  # no health alert without usage
    renewal = alert_event(fired["renewal_approaching"], None)
    assert renewal.severity.value == "info" and "red" not in renewal.title
    # A week of use later, still red: the renewal escalates (a revision, not a new alert).
    used = measures(
        first_seen=date(2026, 11, 10),
        active_users_7d=1,
        active_users_30d=1,
        tier="enterprise",
        contract_end=date(2027, 1, 22),
    )
    later = score_account(used, USING, AccountHistory(rule_states=result.rule_states), now=T0)
    told = {f.rule.id: f.told for f in later.fired}
    assert (told["renewal_approaching"].revision, told["renewal_approaching"].severity.value) == (
        1,
        "warning",
    )


def test_a_duration_is_written_as_its_schema_says() -> None:
    """The snooze's ``for`` is documented as a duration (ISO 8601) "or seconds": both
    were refused; full-width digits were taken."""
    from services.alerts.api import SnoozeBody

    for written, seconds in (("P2D", 172_800), ("PT4H30M", 16_200), ("3600", 3600), ("4h", 14_400)):
        body = SnoozeBody.model_validate({"for": written})
        assert body.for_ is not None and body.for_.total_seconds() == seconds, written
    for wrong in ("１d", "P", "P2X", "4 hours"):
        with pytest.raises(ValidationError, match="not a duration"):
            SnoozeBody.model_validate({"for": wrong})
