"""Alert rules in event time: conditions over an account's measures, and each
(account, rule) key's state: ok → pending → firing → (cooldown) → ok.

A rule fires only once the account has the usage history the rule needs (its
warm-up). The rules of a family are the symptoms of one account problem: ``group_step``
keeps one alert per (account, family) open while any of them fires, at the worst
symptom's severity (Gainsight's one open CTA per account and reason).

Pure functions; the processor loads the values and stored states, calls ``step`` per
account and rule (and ``group_step`` per family), and writes back what they return.
Alert ids are deterministic (``account:family:n`` for the n-th firing, the family being
the rule itself for a rule alone), so a replay publishes the same ids.
"""

from __future__ import annotations

import operator
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from services.scoring.inputs import days_since
from services.scoring.measures import Measures
from services.scoring.model.schema import Bands
from shared.alerting.schema import Condition, Rule, worse
from shared.contracts.alerts import Severity
from shared.contracts.events import LifecycleStage

# Values the rules read besides the model's inputs.
Values = Mapping[str, Any]
# over_days → that day's stored inputs (the latest on or within a week before it).
Past = Mapping[int, Mapping[str, Any]]


@dataclass(frozen=True)
class RuleState:
    status: str = "ok"  # ok / pending / firing
    since: datetime | None = None  # pending since, or firing since
    cleared_at: datetime | None = None  # firing, but recovered since (cooldown runs)
    severity: str | None = None  # while firing
    fire_count: int = 0
    revision: int = 0  # severity changes of the current firing


@dataclass(frozen=True)
class Transition:
    """What a step publishes: a new alert, an update of the open one, or its end."""

    status: str  # firing / resolved
    revision: int  # 0 for the first notice; severity changes count up
    severity: Severity
    fire_count: int  # which firing of the key this is about: the alert id's n


# The edges a model without its own bands scores with.
DEFAULT_BANDS = Bands()


def rule_values(
    m: Measures,
    shown: Mapping[str, Any],
    band: str,
    danger_level: str | None,
    bands: Bands = DEFAULT_BANDS,
) -> dict[str, Any]:
    """The model's inputs plus the facts rules filter and template on; ``bands``: the
    model's edges, which a summary names (a summary said "under green (70)" whatever
    the model's edge was)."""
    quota = m.quota_use()
    score = shown.get("score")
    return {
        "green_from": _whole(bands.green_from),
        "red_below": _whole(bands.red_below),
        # The score against the model's edges, for a rule's hysteresis: a rule recovering
        # at a fixed score (75, "5 above green" when green began at 70) kept a calibrated
        # model's green accounts (green from 62.5) in "health not green" alerts.
        "above_green": None if score is None else _whole(score - bands.green_from),
        "above_red": None if score is None else _whole(score - bands.red_below),
        **shown,
        "band": band,
        "danger_level": danger_level,
        "tier": m.tier,
        "lifecycle_stage": m.lifecycle_stage,
        "history_days": (m.as_of - m.first_seen).days + 1 if m.first_seen else None,
        "days_since_decision_maker_change": days_since(m, m.decision_maker_changed_at),
        "days_since_champion_change": days_since(m, m.champion_changed_at),
        "quota_name": quota[0] if quota else None,
        "quota_used_share": quota[1] if quota else None,
        "as_of": m.as_of.isoformat(),
    }


def _whole(edge: float) -> float | int:
    """70.0 as 70, for the texts that name it."""
    return int(edge) if float(edge).is_integer() else edge


def holds(c: Condition, values: Values, past: Past) -> bool:
    """Whether the condition holds; a missing value never holds."""
    now = values.get(c.measure)
    if c.change is not None:
        before = _num((past.get(c.over_days) or {}).get(c.measure))
        current = _num(now)
        if current is None or before is None or before < c.min_base:
            return False
        delta = current - before
        if c.change == "fall":
            delta = -delta
        elif c.change == "either":
            delta = abs(delta)
        if c.points is not None:
            return bool(delta >= c.points)
        return bool(before > 0 and delta / before * 100 >= (c.percent or 0))
    target = c.value
    if c.value_by_tier is not None and values.get("tier") in c.value_by_tier:
        target = c.value_by_tier[values["tier"]]
    if now is None or target is None:
        return False
    if c.op in ("in", "not in"):
        return (now in target) == (c.op == "in")  # type: ignore[operator]
    if c.op not in ("==", "!=") and not (_number(now) and _number(target)):
        return False  # orders compare numbers only
    return bool(_COMPARE[c.op](now, target))


def all_hold(conditions: Sequence[Condition], values: Values, past: Past) -> bool:
    """Whether every condition holds (the first that does not ends the test). A loop,
    not ``all()`` over a generator: every rule of every account steps at every score,
    and most rules have one condition."""
    for c in conditions:  # noqa: SIM110 (the loop is the point: see above)
        if not holds(c, values, past):
            return False
    return True


# Keyed by Condition.op (None only for change conditions, handled before).
_COMPARE: dict[str | None, Callable[[Any, Any], Any]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _num(v: Any) -> float | None:
    return float(v) if _number(v) else None


def applies(rule: Rule, values: Values) -> bool:
    if rule.tiers and values.get("tier") not in rule.tiers:
        return False
    stage = values.get("lifecycle_stage")
    if rule.lifecycle_stages:
        return stage in rule.lifecycle_stages
    # A former customer is no one to warn about unless a rule names the stage: their
    # renewal and usage alerts stayed open for good, swelling every count of open ones.
    return stage != LifecycleStage.churned


def warmed_up(warm_up: timedelta, values: Values) -> bool:
    """Whether the account has ``warm_up`` of usage history (``history_days`` counts the
    days since its first usage event, that day included); none is needed for a 0 warm-up."""
    if not warm_up:
        return True
    days = values.get("history_days")
    return days is not None and days >= warm_up.days


def severity_now(rule: Rule, values: Values, past: Past) -> Severity:
    escalation = rule.escalate
    if (
        escalation is not None
        and warmed_up(escalation.warm_up, values)
        and all_hold(escalation.when, values, past)
    ):
        return escalation.severity
    return rule.severity


def step(
    rule: Rule,
    state: RuleState,
    values: Values,
    past: Past,
    at: datetime,
    forward_only: bool = False,
) -> tuple[RuleState, Transition | None]:
    """Advance one (account, rule) key to event time ``at``. ``forward_only`` (a day
    scored after the fact): never back in time, a moment before the key began pending or
    firing, or before it cleared, leaving it as it is. An import of an earlier period
    scores days before the newest ones scored; stepped there, a firing rule recovered,
    then fired again on its own day as another alert (found from outside: an account
    had six open alerts of one rule). The stream steps its late events as before."""
    if forward_only and _before(at, state):
        return (state, None)
    inside = applies(rule, values)
    firing_now = inside and all_hold(rule.when, values, past)
    if state.status != "firing":
        if not firing_now or not warmed_up(rule.warm_up, values):
            # Most rules of most accounts, every step: an ok state stays the same object.
            if state.status == "ok":
                return (state, None)
            return (RuleState(fire_count=state.fire_count), None)
        since = state.since if state.status == "pending" and state.since else at
        if at - since < rule.pending:
            return (RuleState("pending", since, fire_count=state.fire_count), None)
        severity = severity_now(rule, values, past)
        fired = RuleState("firing", at, None, severity.value, state.fire_count + 1)
        return fired, Transition("firing", 0, severity, fired.fire_count)
    # Firing: hysteresis decides recovery, the cooldown when it ends. A measure the rule
    # fires on that is gone (quotas removed, seats unknown) can no longer hold: recovered,
    # rather than open for ever.
    if rule.recover is not None:
        recovered = not inside or _gone(rule.when, values) or all_hold(rule.recover, values, past)
    else:
        recovered = not firing_now
    if not recovered:
        severity = severity_now(rule, values, past)
        # The same state while it stays firing, as most firing rules do at every step
        # (``replace`` would build an equal copy, 2 µs, for the caller to compare).
        kept = state if state.cleared_at is None else replace(state, cleared_at=None)
        if severity.value != state.severity:
            revised = replace(kept, severity=severity.value, revision=state.revision + 1)
            return revised, Transition("firing", revised.revision, severity, state.fire_count)
        return kept, None
    cleared = state.cleared_at or at
    if at - cleared < rule.cooldown:
        return replace(state, cleared_at=cleared), None
    severity = Severity(state.severity or rule.severity)
    ended = Transition("resolved", state.revision + 1, severity, state.fire_count)
    return RuleState(fire_count=state.fire_count), ended


def _before(at: datetime, state: RuleState) -> bool:
    """Whether ``at`` precedes the moment ``state`` last changed (as far as it says)."""
    return (state.since is not None and at < state.since) or (
        state.cleared_at is not None and at < state.cleared_at
    )


def _gone(conditions: Sequence[Condition], values: Values) -> bool:
    """Whether a measure a condition reads has no value (a loop: see ``all_hold``)."""
    for c in conditions:  # noqa: SIM110 (the loop is the point)
        if values.get(c.measure) is None:
            return True
    return False


def lead(symptoms: Sequence[tuple[Rule, RuleState]]) -> tuple[Rule, RuleState]:
    """The symptom an alert is titled after: the most severe, the file's first on a tie."""
    best = symptoms[0]
    for symptom in symptoms[1:]:
        if worse(_severity(symptom), _severity(best)):
            best = symptom
    return best


def _severity(symptom: tuple[Rule, RuleState]) -> Severity:
    rule, state = symptom
    return Severity(state.severity or rule.severity)


def group_step(
    group: RuleState,
    before: Sequence[tuple[Rule, RuleState]],
    after: Sequence[tuple[Rule, RuleState]],
    at: datetime,
    forward_only: bool = False,
) -> tuple[RuleState, Transition | None]:
    """Advance a family's alert, given its rules' states before and after this step.

    Open while any rule of the family fires, at the worst symptom's severity; a symptom
    that joins or leaves, or a severity change, is a new revision of the same alert
    (the alerts service tells people only when the severity rises). ``forward_only``:
    as ``step``."""
    if forward_only and _before(at, group):
        return group, None
    now = [s for s in after if s[1].status == "firing"]
    if group.status != "firing":
        if not now:
            return group, None
        severity = _severity(lead(now))
        opened = RuleState("firing", at, None, severity.value, group.fire_count + 1)
        return opened, Transition("firing", 0, severity, opened.fire_count)
    if not now:
        severity = Severity(group.severity or Severity.info)
        ended = Transition("resolved", group.revision + 1, severity, group.fire_count)
        return RuleState(fire_count=group.fire_count), ended
    severity = _severity(lead(now))
    was = [rule.id for rule, state in before if state.status == "firing"]
    if severity.value == group.severity and was == [rule.id for rule, _ in now]:
        return group, None
    revised = replace(group, severity=severity.value, revision=group.revision + 1)
    return revised, Transition("firing", revised.revision, severity, group.fire_count)


def alert_id(account_id: str, rule_id: str, fire_count: int) -> str:
    return f"{account_id}:{rule_id}:{fire_count}"


class _Lenient(string.Formatter):
    """Formats a template; a missing or None value shows as "n/a" instead of failing."""

    def get_value(self, key: int | str, args: Any, kwargs: Any) -> Any:
        value = kwargs.get(key) if isinstance(key, str) else None
        return _Missing() if value is None else value

    def format_field(self, value: Any, format_spec: str) -> str:
        if isinstance(value, _Missing):
            return "n/a"
        try:
            return str(super().format_field(value, format_spec))
        except (ValueError, TypeError):
            return str(value)


class _Missing:
    pass


def render(template: str, values: Mapping[str, Any]) -> str:
    try:
        return str(_Lenient().vformat(template, (), dict(values)))
    except (KeyError, IndexError, ValueError, AttributeError):
        return template


def change_text(rule: Rule, values: Values, past: Past) -> str:
    """ "from 42 seven days before (−79%)" for the rule's change conditions."""
    parts = []
    for c in rule.when:
        if c.change is None:
            continue
        before = (past.get(c.over_days) or {}).get(c.measure)
        now = values.get(c.measure)
        if _number(before) and _number(now):
            rel = f", {(now - before) / before:+.0%}".replace("-", "−") if before else ""
            parts.append(f"from {before:g} {c.over_days} days before{rel}")
    return "; ".join(parts) or "no earlier value"
