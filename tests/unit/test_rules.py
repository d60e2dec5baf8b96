"""Alert rules in event time: conditions, hysteresis, pending, cooldown, escalation."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.scoring.model.schema import Bands
from services.scoring.rules import RuleState, holds, render, rule_values, step
from shared.alerting.schema import (
    AlertingError,
    Condition,
    default_alerting_source,
    parse_alerting,
)
from shared.contracts.alerts import Severity
from tests.support.measures import measures

T0 = datetime(2026, 11, 1, tzinfo=UTC)
WARM = 365  # days of usage history: past every default warm-up
DEFAULT = parse_alerting(default_alerting_source())


def rule(rule_id: str) -> Any:
    found = DEFAULT.rule(rule_id)
    assert found is not None
    return found


def run(r: Any, series: list[dict[str, Any]], past: dict[int, Any] | None = None) -> list[str]:
    """Feed one value set per day; return what was published, as "day status". The
    account is past every warm-up unless a value set gives its ``history_days``."""
    state, told = RuleState(), []
    for day, values in enumerate(series):
        values = {"history_days": WARM, **values}
        state, t = step(r, state, values, past or {}, T0 + timedelta(days=day))
        if t is not None:
            told.append(f"{day} {t.status} {t.severity.value}")
    return told


def share(v: float, history: int = 30) -> dict[str, Any]:
    return {"active_user_share_7d": v, "history_days": history}


def test_a_share_flapping_around_20_percent_fires_once() -> None:
    # Below 20% fires; it resolves only at 25% and after a 2-day cooldown.
    flapping = [share(v) for v in (0.30, 0.19, 0.21, 0.18, 0.22, 0.19, 0.21)]
    assert run(rule("low_activity"), flapping) == ["1 firing critical"]


def test_recovery_needs_the_recovery_threshold_for_the_whole_cooldown() -> None:
    series = [share(v) for v in (0.1, 0.3, 0.1, 0.3, 0.3, 0.3, 0.3)]
    # Recovered on day 3; the 2-day cooldown ends on day 5.
    assert run(rule("low_activity"), series) == ["0 firing critical", "5 resolved critical"]


def test_a_new_account_is_not_on_the_edge_of_churn() -> None:
    assert run(rule("low_activity"), [share(0.0, history=3)]) == []
    assert run(rule("low_activity"), [share(0.0, history=7)]) == ["0 firing critical"]


def test_pending_period_must_pass_in_event_time() -> None:
    r = rule("few_active_days")  # pending 7d, stable or rollout accounts only
    quiet = {"active_days_7d": 1, "history_days": 60, "lifecycle_stage": "stable"}
    assert run(r, [quiet] * 7) == []
    assert run(r, [quiet] * 8) == ["7 firing info"]
    # A good day in between restarts the wait.
    busy = {**quiet, "active_days_7d": 5}
    assert run(r, [quiet] * 4 + [busy] + [quiet] * 6) == []
    # Outside its segment the rule does not apply.
    assert run(r, [{**quiet, "lifecycle_stage": "implementation"}] * 9) == []


def test_a_small_account_with_every_seat_in_use_is_no_expansion_signal() -> None:
    """One to four seats each in use is saturation by size (a product sold per user)."""
    full = {"lifecycle_stage": "stable", "band": "green", "activation_rate": 1.0}
    assert run(rule("seats_nearly_used"), [{**full, "seats_purchased": 4}]) == []
    assert run(rule("seats_nearly_used"), [{**full, "seats_purchased": 5}]) == ["0 firing info"]


def test_renewal_escalates_when_health_is_not_green_and_resolves_after() -> None:
    r = rule("renewal_approaching")
    base = {"tier": "non-focus", "band": "green"}
    series = [
        {**base, "days_to_contract_end": 40},  # not yet: 30 days for non-focus
        {**base, "days_to_contract_end": 30},
        {**base, "days_to_contract_end": 29, "band": "yellow"},
        {**base, "days_to_contract_end": -1},
    ]
    assert run(r, series) == ["1 firing info", "2 firing warning", "3 resolved warning"]
    strategic = {"tier": "strategic", "band": "green", "days_to_contract_end": 90}
    assert run(r, [strategic]) == ["0 firing info"]


def test_change_rules_warn_on_falls_and_on_rises() -> None:
    falling = rule("active_users_falling")
    assert run(falling, [{"active_users_7d": 9}], {7: {"active_users_7d": 42}}) == [
        "0 firing warning"
    ]
    assert run(falling, [{"active_users_7d": 30}], {7: {"active_users_7d": 42}}) == []
    # Too small a base to mean anything.
    assert run(falling, [{"active_users_7d": 0}], {7: {"active_users_7d": 3}}) == []
    # EW-03: 10 seats growing to 50 is news.
    growing = rule("seats_growing")
    assert run(growing, [{"seats_purchased": 50}], {30: {"seats_purchased": 10}}) == [
        "0 firing info"
    ]
    assert run(growing, [{"seats_purchased": 50}], {}) == []  # no history: no change


def test_conditions_by_tier_and_missing_values() -> None:
    c = Condition(measure="days_since_touchpoint", op=">", value_by_tier={"strategic": 31})
    assert holds(c, {"tier": "strategic", "days_since_touchpoint": 40}, {})
    assert not holds(c, {"tier": "strategic", "days_since_touchpoint": 20}, {})
    assert not holds(c, {"tier": "non-focus", "days_since_touchpoint": 400}, {})
    assert not holds(c, {"tier": "strategic", "days_since_touchpoint": None}, {})
    band = Condition(measure="band", op="in", value=["yellow", "red"])
    assert holds(band, {"band": "red"}, {}) and not holds(band, {"band": "green"}, {})


def test_templates_format_values_and_survive_missing_ones() -> None:
    text = render("{name}: {share:.0%} of {seats}", {"name": "Acme", "share": 0.08, "seats": None})
    assert text == "Acme: 8% of n/a"


def test_invalid_files_name_every_problem() -> None:
    bad = """
version = "x"
[[rule]]
id = "Bad Id"
type = "threshold"
severity = "loud"
when = [{ measure = "score" }]
cooldown = "soon"
"""
    with pytest.raises(AlertingError) as exc:
        parse_alerting(bad)
    message = str(exc.value)
    for where in ("rule.0.id", "rule.0.severity", "rule.0.when.0", "rule.0.cooldown"):
        assert where in message, message


def test_a_nearly_used_quota_is_an_add_on_signal_only_in_stable_green_use() -> None:
    m = measures(
        lifecycle_stage="stable",
        names={("module", "sms"): (40, 920)},
        usage_quotas=(("module", "sms", 1000),),
    )
    values = rule_values(m, {}, "green", None)
    assert (values["quota_name"], values["quota_used_share"]) == ("module sms", 0.92)
    quota = rule("quota_nearly_used")
    assert run(quota, [values]) == ["0 firing info"]
    # 89.96 % is not 90 %; and quotas taken off the contract end the alert.
    assert run(quota, [{**values, "quota_used_share": 0.8996}]) == []
    gone = {**values, "quota_used_share": None, "quota_name": None}
    assert run(quota, [values, gone]) == ["0 firing info", "1 resolved info"]
    assert run(quota, [{**values, "band": "yellow"}]) == []
    assert run(quota, [{**values, "lifecycle_stage": "rollout"}]) == []
    assert rule_values(replace(m, usage_quotas=()), {}, "green", None)["quota_used_share"] is None
    title = render(quota.title, {**values, "name": "Acme"})
    assert title.startswith("Acme: 92% of the module sms allowance used in 28 days")


def test_the_default_file_covers_every_rule_type() -> None:
    assert {r.type.value for r in DEFAULT.rules} == {
        "threshold",
        "change",
        "band",
        "danger",
        "silence",
        "milestone",
        "renewal",
        "expansion",
        "people",
        "money",
        "support",
    }
    assert rule("decision_maker_changed").severity == Severity.critical
    assert rule("champion_changed").severity == Severity.info


# Every default rule at the edge of its number: the values that fire it (after its pending
# period) with the severity it fires at, and the nearest values that do not. Rules with a
# dedicated test above pin their history, here only their edge.
STRATEGIC = {"tier": "strategic"}
STABLE_GREEN = {"lifecycle_stage": "stable", "band": "green"}
EDGES: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    ("low_activity", share(0.19), share(0.20), "critical"),
    ("usage_silence", {"days_since_last_use": 14}, {"days_since_last_use": 13}, "warning"),
    (
        "health_not_green",
        {"band": "yellow", "history_days": 7},
        {"band": "yellow", "history_days": 6},
        "warning",
    ),
    (
        "health_red",
        {"band": "red", "history_days": 7},
        {"band": "yellow", "history_days": 7},
        "critical",
    ),
    ("danger_high", {"danger_level": "high"}, {"danger_level": "normal"}, "critical"),
    ("danger_normal", {"danger_level": "normal"}, {"danger_level": "mild"}, "warning"),
    # Cadence (CAD): strategic monthly, enterprise every two months; not for non-focus.
    (
        "touchpoint_overdue",
        {**STRATEGIC, "days_since_touchpoint": 32},
        {**STRATEGIC, "days_since_touchpoint": 31},
        "warning",
    ),
    (
        "touchpoint_overdue",
        {"tier": "enterprise", "days_since_touchpoint": 63},
        {"tier": "non-focus", "days_since_touchpoint": 400},
        "warning",
    ),
    (
        "decision_maker_unreachable",
        {**STRATEGIC, "days_since_decision_maker_contact": 63},
        {**STRATEGIC, "days_since_decision_maker_contact": 62},
        "warning",
    ),
    (
        "ticket_silence",
        {"days_since_last_ticket": 60, "history_days": 60},
        {"days_since_last_ticket": 59, "history_days": 60},
        "info",
    ),
    (
        "not_activated_90d",
        {"days_since_purchase": 90, "history_days": 30, "activation_rate": 0.49},
        {"days_since_purchase": 89, "history_days": 30, "activation_rate": 0.49},
        "warning",
    ),
    ("not_live_90d", {"not_live_after_90d": 1}, {"not_live_after_90d": 0}, "warning"),
    (
        "few_active_days",
        {"active_days_7d": 2, "history_days": 30, "lifecycle_stage": "rollout"},
        {"active_days_7d": 3, "history_days": 30, "lifecycle_stage": "rollout"},
        "info",
    ),
    # Renewal lead times: strategic and enterprise 90 days, non-focus 30.
    (
        "renewal_approaching",
        {**STRATEGIC, "band": "green", "days_to_contract_end": 90},
        {**STRATEGIC, "band": "green", "days_to_contract_end": 91},
        "info",
    ),
    (
        "renewal_approaching",
        {"tier": "enterprise", "band": "red", "days_to_contract_end": 90},
        {"tier": "enterprise", "band": "red", "days_to_contract_end": -1},
        "warning",
    ),
    (
        "seats_nearly_used",
        {**STABLE_GREEN, "activation_rate": 0.9, "seats_purchased": 5},
        {**STABLE_GREEN, "activation_rate": 0.89, "seats_purchased": 5},
        "info",
    ),
    (
        "quota_nearly_used",
        {**STABLE_GREEN, "quota_used_share": 0.9},
        {**STABLE_GREEN, "band": "yellow", "quota_used_share": 0.95},
        "info",
    ),
    (
        "tier_review",
        {"tier": "non-focus", "seats_purchased": 50},
        {"tier": "non-focus", "seats_purchased": 49},
        "info",
    ),
    (
        "decision_maker_changed",
        {"days_since_decision_maker_change": 30},
        {"days_since_decision_maker_change": 31},
        "critical",
    ),
    (
        "champion_changed",
        {"days_since_champion_change": 0},
        {"days_since_champion_change": 31},
        "info",
    ),
    ("nps_detractor", {"nps_latest": 6}, {"nps_latest": 7}, "warning"),
    ("payment_failed", {"payment_failed_30d": 1}, {"payment_failed_30d": 0}, "critical"),
    ("ticket_backlog", {"open_tickets": 5}, {"open_tickets": 4}, "warning"),
    (
        "ticket_unresolved_long",
        {"oldest_open_ticket_days": 15},
        {"oldest_open_ticket_days": 14},
        "warning",
    ),
    # Tuned (issue 15): a pattern of late replies on an account with a VIP SLA.
    (
        "sla_breach",
        {**STRATEGIC, "sla_breaches_28d": 3},
        {**STRATEGIC, "sla_breaches_28d": 2},
        "warning",
    ),
    (
        "sla_breach",
        {"tier": "enterprise", "sla_breaches_28d": 3},
        {"sla_breaches_28d": 9},
        "warning",
    ),
]
# Change rules need the values of days before: pinned in test_change_rules_warn_on_falls_and_on_rises.
CHANGE_RULES = {"active_users_falling", "active_users_rising", "seats_growing"}


@pytest.mark.parametrize(("rule_id", "fires", "quiet", "severity"), EDGES)
def test_each_default_rule_fires_at_its_edge_and_not_short_of_it(
    rule_id: str, fires: dict[str, Any], quiet: dict[str, Any], severity: str
) -> None:
    r = rule(rule_id)
    days = 1 + int(r.pending.total_seconds() // 86400)  # the pending period in daily steps
    assert run(r, [fires] * days) == [f"{days - 1} firing {severity}"]
    assert run(r, [quiet] * days) == []


def test_the_edge_table_covers_every_default_rule() -> None:
    assert {r.id for r in DEFAULT.rules} == {e[0] for e in EDGES} | CHANGE_RULES


def test_the_health_rules_summaries_name_the_models_band_edges() -> None:
    """They said "under green (70)" and "under 40 (red)" whatever the model's edges."""
    values = {
        **rule_values(measures(), {"score": 55}, "red", None, Bands(red_below=50, green_from=62.5)),
        "name": "A",
    }
    assert render(rule("health_not_green").summary, values).startswith(
        "Health score 55 (red) on 2026-"
    )
    assert "under green (62.5)" in render(rule("health_not_green").summary, values)
    assert "under 50 (red)" in render(rule("health_red").summary, values)
    assert "under green (70)" in render(
        rule("health_not_green").summary,
        rule_values(measures(), {"score": 55}, "yellow", None) | {"name": "A"},
    )


def test_the_health_rules_recover_above_the_models_own_edges() -> None:
    """They recovered at 75 and 45, five above the default edges: with a calibrated
    model's green from 62.5, a green account at 70 kept its "health not green" alert
    (found from outside). They recover five above the model's edges."""
    calibrated = Bands(red_below=41, green_from=62.5)

    def day(score: int, band: str, bands: Bands = calibrated) -> dict[str, Any]:
        return rule_values(measures(), {"score": score}, band, None, bands)

    cooldown = 2  # a day of recovery, then the day the cooldown has run
    told = run(rule("health_not_green"), [day(55, "yellow")] + [day(68, "green")] * cooldown)
    assert told == ["0 firing warning", f"{cooldown} resolved warning"]
    assert run(rule("health_not_green"), [day(55, "yellow")] + [day(67, "green")] * 3) == [
        "0 firing warning"
    ]
    assert run(rule("health_red"), [day(35, "red")] + [day(46, "yellow")] * cooldown) == [
        "0 firing critical",
        f"{cooldown} resolved critical",
    ]
    # The default model's edges: at 75 and 45, as before.
    assert day(75, "green", Bands())["above_green"] == 5
    assert day(45, "yellow", Bands())["above_red"] == 5
