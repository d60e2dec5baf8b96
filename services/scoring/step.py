"""The pure per-account step: an account's measures and what its earlier scoring left in,
what to record and what to tell out. No database, no logging: the processor reads the
inputs, writes the result and logs it, so the same step can run over state kept anywhere.

``score_account`` scores one account and steps its alert rules; ``alert_event`` turns a
rule that told something into the alert published, once the account's owners are known
(they are read only for the rare accounts with one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from services.scoring import danger, explain, history, inputs, rules
from services.scoring.history import Previous
from services.scoring.measures import Measures
from services.scoring.model.evaluate import Evaluation, evaluate
from services.scoring.model.labels import measured_name
from services.scoring.model.schema import HealthModel
from services.scoring.rules import RuleState, Transition
from shared.alerting.schema import Rule, RuleType, families
from shared.contracts.alerts import AlertEvent
from shared.contracts.events import Owner

# What moved over the week, in words, for an alert's notice: the largest few.
ALERT_CHANGES_DAYS = 7
ALERT_CHANGES_SHOWN = 5


@dataclass(frozen=True)
class ModelAndRules:
    """What every account of a batch is scored with: the health model and the alert rules."""

    model: HealthModel
    rules: Sequence[Rule]

    @cached_property
    def labels(self) -> dict[str, str]:
        """The inputs' names in words, for "what changed" (built once per batch)."""
        return explain.labels(self.model)

    @cached_property
    def families(self) -> list[list[Rule]]:
        """The rules grouped by family, in the file's order (see ``_step_family``)."""
        return list(families(self.rules).values())

    @cached_property
    def rule_names(self) -> tuple[str, ...]:
        """The event names the rules' per-name measures read (``events_28d[export]``), in
        order (the stored inputs' order)."""
        measures = (c.measure for rule in self.rules for c in rule.conditions())
        return tuple(sorted({name for m in measures if (name := measured_name(m)) is not None}))

    @cached_property
    def rule_lookbacks(self) -> set[int]:
        """Days back whose stored inputs the rules' change conditions compare with (in
        ``when``, ``recover`` and ``escalate``: those of the last two had none to
        compare with unless ``when`` named the same days, and never held)."""
        return {
            condition.over_days
            for rule in self.rules
            for condition in rule.conditions()
            if condition.change is not None
        }

    @property
    def lookbacks(self) -> set[int]:
        """Every day back whose stored inputs a step reads: the rules', and the week an
        alert says what moved over."""
        return {ALERT_CHANGES_DAYS, *self.rule_lookbacks}


@dataclass(frozen=True)
class AccountHistory:
    """What the account's earlier scoring left behind."""

    previous: Previous | None = None  # the score stored now; None before the first
    # days back → the inputs stored for that day (or the latest within a week before it)
    past_inputs: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)
    # rule id → its stored state; a rule without one is RuleState() (ok, never fired)
    rule_states: Mapping[str, RuleState] = field(default_factory=dict)
    # the event names the account's plan milestones measure (``events_28d[export]``)
    plan_names: frozenset[str] = frozenset()
    # The stored card holds a later day's score than ``previous`` (a past day scored
    # again, ``history.rewind``): written even when the score did not change.
    card_behind: bool = False


@dataclass(frozen=True)
class Fired:
    """A rule that told something, with what its alert needs."""

    measures: Measures
    rule: Rule
    told: Transition
    values: dict[str, Any]  # what the rule read, for its templates
    past: dict[int, Any]  # over_days → inputs then, for "fell 40% over 7 days"
    score: Evaluation
    week_changes: list[dict[str, Any]]  # what moved over the week, largest first
    at: datetime  # when the rule stepped (its alert's fired_at)
    # A family's alert: its name and the rules firing in it (worst first); None and ()
    # for a rule alone, whose alert is its own.
    family: str | None = None
    symptoms: tuple[Rule, ...] = ()


@dataclass(frozen=True)
class ScoredAccount:
    """What one step decided. An unchanged score writes no health or daily row."""

    account_id: str
    score: Evaluation
    previous: Previous | None
    health: dict[str, Any] | None  # account_health's new values; None when unchanged
    daily: dict[str, Any] | None  # the day's health_daily row; None when unchanged
    band_change: dict[str, Any] | None  # a band_changes row; None when the band held
    rule_states: dict[str, RuleState]  # rule id → new state, for the rules whose state moved
    fired: list[Fired]


@dataclass(frozen=True)
class AccountContacts:
    """The account facts an alert names: what to call the account and whom to tell."""

    name: str | None = None
    owner: Owner | None = None
    sales_owner: Owner | None = None


def score_account(
    measures: Measures,
    using: ModelAndRules,
    earlier: AccountHistory,
    *,
    now: datetime,
    swept: bool = False,
) -> ScoredAccount:
    """Score ``measures`` with the model, compare with what was stored, and step every
    rule. ``swept``: scored by the quiet-account sweep as of ``now``'s day rather than as
    of the account's newest event."""
    model = using.model
    also = using.rule_names  # worked out once a batch; an account's milestones add theirs
    if earlier.plan_names:
        also = tuple(sorted(earlier.plan_names.union(also)))
    raw = inputs.model_inputs(measures, model.depth, model.sla, model.behaviour, also)
    score = evaluate(using.model, raw, inputs.segment_of(measures))
    risk = danger.assess(measures, raw, using.model.danger)
    shown = {
        # inputs.STORED_EXTRAS, written out: this runs for every account rescored.
        "score": score.value,
        "active_users_7d": measures.active_users_7d,
        "events_7d": measures.events_7d,
        **raw,
        "danger": [cause["code"] for cause in risk["causes"]],
    }
    before = earlier.previous
    unchanged = (
        not earlier.card_behind
        and before is not None
        and before.inputs == shown
        and before.score == score.value
    )
    health = daily = None
    if not unchanged:
        health, daily = _rows(measures, score, risk, shown, earlier)
    # Rules run in event time; a sweep scores a quiet account as of today, so its clock
    # is now (pending periods and cooldowns go on while nothing arrives). A band change
    # and an alert are dated by the same clock: a sweep's on the day it scored them.
    at = max(measures.as_of_time, now) if swept else measures.as_of_time
    band_change = (
        None
        if unchanged
        else history.band_change(measures.account_id, at, before, score.band, score.value)
    )
    values = rules.rule_values(measures, shown, score.band, risk["level"], model.bands)
    values["danger_text"] = ", ".join(cause["text"] for cause in risk["causes"]) or "no cause"
    # Only a day scored after the fact (an import's, a backtest's) may come before
    # the rules' last step; the stream's late events step as before.
    states, fired = _step_rules(
        measures, using, earlier, values, shown, score, at, forward_only=swept
    )
    return ScoredAccount(
        measures.account_id, score, before, health, daily, band_change, states, fired
    )


def _rows(
    measures: Measures,
    score: Evaluation,
    risk: dict[str, Any],
    shown: dict[str, Any],
    earlier: AccountHistory,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The account_health values and the health_daily row of a score that changed (the
    explanation is built only for a score that will be written)."""
    why = breakdown(score)
    why["danger"] = risk
    before = earlier.previous
    # As numbers: a reader words them (explain.worded_changes), so the sentences are
    # written for the explanations read, not for every score of every batch. What moved
    # since days back is worked out when read too (explain.with_moved_since).
    why[explain.DAY] = measures.as_of.isoformat()
    why[explain.MOVED] = {
        "since_previous": explain.moved(
            shown, before.inputs if before else None, explain.MOVED_KEPT
        )
    }
    health = {
        "account_id": measures.account_id,
        "active_users_7d": measures.active_users_7d,
        "active_users_30d": measures.active_users_30d,
        "events_7d": measures.events_7d,
        "open_tickets": measures.open_tickets,
        "score": score.value,
        "band": score.band,
        "danger_level": risk["level"],
        "inputs": shown,
        "components": why,
    }
    daily = {
        "account_id": measures.account_id,
        "day": measures.as_of,
        "score": score.value,
        "band": score.band,
        "inputs": shown,
        "explanation": history.compact(why),
    }
    return health, daily


def _step_rules(
    measures: Measures,
    using: ModelAndRules,
    earlier: AccountHistory,
    values: dict[str, Any],
    shown: dict[str, Any],
    score: Evaluation,
    at: datetime,
    *,
    forward_only: bool = False,
) -> tuple[dict[str, RuleState], list[Fired]]:
    """Step every rule at ``at``, then each family of rules: the states that moved, and
    the alerts that tell something."""
    past = earlier.past_inputs
    then = {back: past[back] for back in using.rule_lookbacks if back in past}
    moved: dict[str, RuleState] = {}
    told: dict[str, Transition] = {}
    for rule in using.rules:
        before = earlier.rule_states.get(rule.id, NEVER_FIRED)
        after, transition = rules.step(rule, before, values, then, at, forward_only)
        if after is not before and after != before:
            moved[rule.id] = after
        if transition is not None:
            told[rule.id] = transition
    fired: list[Fired] = []
    week = (
        []
        if not told
        else explain.changes(
            # The measures with a label (the model's and the few others people read, as
            # the dashboard lists them): a notice has no room for raw ids such as "dau".
            {name: value for name, value in shown.items() if name in using.labels},
            past.get(ALERT_CHANGES_DAYS),
            using.labels,
            ALERT_CHANGES_SHOWN,
        )
    )

    def alert(rule: Rule, transition: Transition, **family: Any) -> Fired:
        return Fired(measures, rule, transition, values, then, score, week, at, **family)

    for members in using.families:
        if len(members) == 1:  # a rule alone alerts as itself
            if members[0].id in told:
                fired.append(alert(members[0], told[members[0].id]))
            continue
        family = _step_family(members, earlier.rule_states, moved, at, forward_only)
        if family is not None:
            transition, symptoms = family
            fired.append(alert(symptoms[0], transition, family=members[0].group, symptoms=symptoms))
    return moved, fired


# The state of a rule that has none stored (frozen: shared by every such rule).
NEVER_FIRED = RuleState()

# A family's own state is kept beside its rules' (rule ids cannot start with "@").
GROUP_STATE_PREFIX = "@"


def _step_family(
    members: Sequence[Rule],
    stored: Mapping[str, RuleState],
    moved: dict[str, RuleState],
    at: datetime,
    forward_only: bool = False,
) -> tuple[Transition, tuple[Rule, ...]] | None:
    """Step a family's alert once its rules have stepped (their new states in ``moved``,
    where the family's goes too): what it tells and its symptoms, the lead first."""
    key = GROUP_STATE_PREFIX + members[0].group
    group_before = stored.get(key, NEVER_FIRED)
    if group_before.status != "firing" and not _any_firing(members, stored, moved):
        return None  # most families of most accounts: nothing fires, nothing to step
    before = [(rule, stored.get(rule.id, NEVER_FIRED)) for rule in members]
    after = [(rule, moved.get(rule.id, state)) for rule, state in before]
    group_after, transition = rules.group_step(group_before, before, after, at, forward_only)
    if group_after != group_before:
        moved[key] = group_after
    if transition is None:
        return None
    # Resolved: named after the symptoms it had.
    firing = [s for s in after if s[1].status == "firing"] or [
        s for s in before if s[1].status == "firing"
    ]
    return transition, tuple(_worst_first(firing))


def _any_firing(
    members: Sequence[Rule], stored: Mapping[str, RuleState], moved: Mapping[str, RuleState]
) -> bool:
    """Whether a rule of the family fires after this step (its new state, or its stored
    one if it did not move). A loop that stops at the first, building no lists: every
    family of every account asks, and nearly all answer no."""
    for rule in members:
        state = moved.get(rule.id)
        if state is None:
            state = stored.get(rule.id, NEVER_FIRED)
        if state.status == "firing":
            return True
    return False


def _worst_first(symptoms: Sequence[tuple[Rule, RuleState]]) -> list[Rule]:
    """The symptoms' rules, the lead first, then the others in the file's order."""
    first, _ = rules.lead(symptoms)
    return [first, *(rule for rule, _ in symptoms if rule is not first)]


def alert_event(fired: Fired, contacts: AccountContacts | None) -> AlertEvent:
    """The alert a fired rule publishes; ``contacts`` None when the account has no facts."""
    measures, rule, told, values, score = (
        fired.measures,
        fired.rule,
        fired.told,
        fired.values,
        fired.score,
    )
    contacts = contacts or AccountContacts()
    name = contacts.name or measures.account_id
    context = {**values, "name": name, "change_text": rules.change_text(rule, values, fired.past)}
    title = _title(rule, context)
    summary = rules.render(rule.summary or rule.description, context)
    # The other symptoms, each once (nested rules, red within not green, read alike). A
    # band's is left out: every notice and the alert's page show the health beside the
    # summary ("Health: 31 (red)"), and "Also: health 31 is red." said it twice.
    others = list(
        dict.fromkeys(
            _title(symptom, context)
            for symptom in fired.symptoms[1:]
            if symptom.type is not RuleType.band
        )
    )
    others = [other for other in others if other != title]
    if others:
        also = "; ".join(other.removeprefix(f"{name}: ") for other in others)
        summary = f"{summary}\nAlso: {also}." if summary else f"Also: {also}."
    if told.status == "resolved":
        title = f"Resolved: {title}"
    details: dict[str, Any] = {}
    if rule.next_step and told.status != "resolved":
        details["next_step"] = rules.render(rule.next_step, context)
    read = set().union(*(symptom.measures() for symptom in fired.symptoms or (rule,)))
    if fired.family is not None:
        details["family"] = fired.family
        details["symptoms"] = [
            {"rule": symptom.id, "title": _title(symptom, context)} for symptom in fired.symptoms
        ]
    return AlertEvent(
        alert_id=rules.alert_id(measures.account_id, fired.family or rule.id, told.fire_count),
        revision=told.revision,
        account_id=measures.account_id,
        account_name=name,
        rule=rule.id,
        severity=told.severity,
        status="resolved" if told.status == "resolved" else "firing",
        title=title,
        summary=summary,
        score=score.value,
        band=score.band,
        owner=contacts.owner,
        tier=measures.tier,
        sales_owner=contacts.sales_owner,
        fired_at=fired.at,
        details={
            "rule_type": rule.type.value,
            "as_of": measures.as_of.isoformat(),
            "values": {measure: values.get(measure) for measure in sorted(read)},
            "health": breakdown(score),
            "changes": fired.week_changes,
            **details,
        },
    )


def _title(rule: Rule, context: Mapping[str, Any]) -> str:
    return rules.render(rule.title or "{name}: " + (rule.description or rule.id), context)


def breakdown(score: Evaluation) -> dict[str, Any]:
    """What the score is made of, stored with it and sent with alerts."""
    return {
        "model_version": score.model_version,
        "profile": score.profile,
        "groups": {group: round(value, 1) for group, value in score.groups.items()},
        "capped_by": score.capped_by,
        "missing": score.missing,
        "components": [component.as_dict() for component in score.components],
    }
