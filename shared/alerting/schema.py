"""The alerting file: rules (what fires, evaluated by scoring in event time) and
notification policy (who hears about it and how often, applied by the alerts service
on the wall clock). Written in TOML, validated here with an error per problem.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from shared.contracts.alerts import Severity
from shared.contracts.events import LifecycleStage, Tier
from shared.i18n import language_tag
from shared.storage.documents import parse_toml

DEFAULT_ALERTING = Path(__file__).with_name("default_alerting.toml")

# ASCII digits only: \d also takes "１" (full width), which float() reads.
_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(s|m|h|d|w)?\s*$")
# ISO 8601 ("P2D", "PT4H30M"), what the OpenAPI "duration" format names.
_ISO_DURATION: TypeAdapter[timedelta] = TypeAdapter(timedelta)
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


# The longest duration anything waits: a time this far ahead is still a date (a
# reminder "in 10^9 days" would overflow the calendar when added to now).
MAX_DURATION = timedelta(days=3650)


def _duration(value: Any) -> Any:
    """``"30s"``, ``"15m"``, ``"4h"``, ``"2d"``, ``"1w"``, ISO 8601 (``"P2D"``) or a
    number of seconds (``3600``, ``"3600"``), from 0 to MAX_DURATION."""
    unlike = f"{value!r} is not a duration like '30s', '15m', '4h', '2d', '1w' or 'P2D'"
    if isinstance(value, bool):  # pydantic would read true as one second
        raise ValueError(unlike)
    try:
        if isinstance(value, int | float):
            return _bounded(timedelta(seconds=value), value)
        if isinstance(value, str):
            if value.strip()[:1] in ("P", "p") and value.isascii():
                try:
                    return _bounded(_ISO_DURATION.validate_python(value.strip().upper()), value)
                except ValidationError:
                    raise ValueError(unlike) from None
            match = _DURATION.match(value)
            if match is None:
                raise ValueError(unlike)
            return _bounded(timedelta(seconds=float(match[1]) * _UNIT_S[match[2] or "s"]), value)
    except OverflowError as exc:  # 1e20 seconds, infinity: a client error, not a crash
        raise ValueError(f"{value!r} is longer than any duration can be") from exc
    return value


def _bounded(duration: timedelta, value: Any) -> timedelta:
    if not timedelta(0) <= duration <= MAX_DURATION:
        raise ValueError(f"{value!r}: give a duration from 0 to {MAX_DURATION.days} days")
    return duration


Duration = Annotated[timedelta, BeforeValidator(_duration)]


class Strict(BaseModel):
    # No infinity or NaN: a threshold of either never or always fires.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


_TIERS = {t.value for t in Tier}
_STAGES = {s.value for s in LifecycleStage}


def _known(names: Any, allowed: set[str], what: str) -> Any:
    unknown = sorted(set(names or []) - allowed)
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; use {sorted(allowed)}")
    return names


class RuleType(StrEnum):
    """What a rule watches; documents intent and groups rules in reports. Every type
    is evaluated the same way, from its conditions."""

    threshold = "threshold"
    change = "change"
    band = "band"
    danger = "danger"
    silence = "silence"
    milestone = "milestone"
    renewal = "renewal"
    expansion = "expansion"
    people = "people"
    money = "money"
    support = "support"


Op = Literal["<", "<=", ">", ">=", "==", "!=", "in", "not in"]


class Condition(Strict):
    """``measure op value``, or a change of ``measure`` over ``over_days``.

    ``value_by_tier`` overrides ``value`` for an account's tier (a tier missing from
    it, and not covered by ``value``, makes the condition false: the rule does not
    apply). A change condition compares with the stored inputs of ``over_days`` ago:
    ``change = "fall"`` / ``"rise"`` / ``"either"`` by at least ``percent`` % or
    ``points`` (absolute), and only from a base of at least ``min_base``."""

    measure: str
    op: Op | None = None
    value: float | str | list[str] | None = None
    value_by_tier: dict[str, float] | None = None
    change: Literal["fall", "rise", "either"] | None = None
    over_days: Annotated[int, Field(ge=1, le=90)] = 7
    percent: Annotated[float, Field(gt=0)] | None = None
    points: Annotated[float, Field(gt=0)] | None = None
    min_base: float = 0

    @field_validator("value_by_tier")
    @classmethod
    def _tiers(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        return _known(v, _TIERS, "tier")  # type: ignore[no-any-return]

    @model_validator(mode="after")
    def _complete(self) -> Condition:
        if self.change is not None:
            if self.op is not None:
                raise ValueError("a change condition takes percent or points, not op")
            if (self.percent is None) == (self.points is None):
                raise ValueError("a change condition needs exactly one of percent, points")
            return self
        if self.op is None:
            raise ValueError("a condition needs op and value (or change)")
        if self.value is None and self.value_by_tier is None:
            raise ValueError("a condition needs value or value_by_tier")
        if self.op in ("in", "not in") and not isinstance(self.value, list):
            raise ValueError(f"op {self.op!r} needs a list value")
        return self


def _whole_days(value: timedelta) -> timedelta:
    if value % timedelta(days=1):
        raise ValueError("a warm-up counts days of usage history: give it in days, e.g. '7d'")
    return value


# Days of usage history (since the account's first usage event) a rule needs before it
# may fire: the 7-day shares, the score and its band mean little on an account's first
# days. "0d" for rules that read facts (contract dates, seats, payments, tickets).
WarmUp = Annotated[Duration, AfterValidator(_whole_days)]

_ID = r"^[a-z][a-z0-9_]{1,62}$"


class Escalate(Strict):
    """Raise the rule's severity while all of ``when`` hold (e.g. renewal, not green)."""

    when: Annotated[list[Condition], Field(min_length=1)]
    severity: Severity
    # The escalation's own warm-up (default: ``defaults.warm_up``): a renewal alert may
    # fire from the contract's dates alone, but "health not green" needs a score first.
    warm_up: WarmUp = timedelta(0)


class Rule(Strict):
    id: Annotated[str, Field(pattern=_ID)]
    type: RuleType
    severity: Severity
    description: str = ""
    # The account problem the rule is a symptom of: the rules of one family open one
    # alert per account (its severity the worst symptom's; later symptoms attach to
    # it). Default: the rule alone.
    family: Annotated[str, Field(pattern=_ID)] | None = None
    # See WarmUp; default ``defaults.warm_up``.
    warm_up: WarmUp = timedelta(0)
    # Fires when all hold ...
    when: Annotated[list[Condition], Field(min_length=1)]
    # ... and resolves when all of these hold (hysteresis); default: ``when`` fails.
    recover: list[Condition] | None = None
    # Segments the rule applies to; empty means all.
    tiers: list[str] = Field(default_factory=list)
    lifecycle_stages: list[str] = Field(default_factory=list)
    # Event time the condition must hold before the alert fires (Prometheus ``for``).
    pending: Duration = timedelta(0)
    # Event time the alert stays open after recovery; a relapse inside it is the same
    # alert (Prometheus ``keep_firing_for``).
    cooldown: Duration = timedelta(0)
    escalate: Escalate | None = None
    # Overrides ``notify.repeat_interval`` (renewals: monthly, CAD-10).
    repeat_interval: Duration | None = None
    # Title and summary templates; ``{name}`` and any measure can be used, as can
    # ``{value}`` (the first condition's measure).
    title: str = ""
    summary: str = ""
    # What the account's owner should do next (the handbook's playbook for the warning),
    # a template like the title; sent with the alert (``details.next_step``) and shown
    # under it on every channel. A family's alert carries its leading symptom's.
    next_step: str = ""

    @field_validator("tiers")
    @classmethod
    def _tiers(cls, v: list[str]) -> list[str]:
        return _known(v, _TIERS, "tier")  # type: ignore[no-any-return]

    @field_validator("lifecycle_stages")
    @classmethod
    def _stages(cls, v: list[str]) -> list[str]:
        return _known(v, _STAGES, "lifecycle stage")  # type: ignore[no-any-return]

    @property
    def group(self) -> str:
        """The family the rule alerts in (its own id when it has none)."""
        return self.family or self.id

    def conditions(self) -> list[Condition]:
        """Every condition the rule tests: when it fires, recovers and escalates."""
        return [
            *self.when,
            *(self.recover or []),
            *(self.escalate.when if self.escalate else []),
        ]

    def measures(self) -> set[str]:
        return {c.measure for c in self.conditions()}


_RANK = {Severity.info: 0, Severity.warning: 1, Severity.critical: 2}


def worse(a: Severity, b: Severity) -> bool:
    """Whether ``a`` is more severe than ``b``."""
    return _RANK[a] > _RANK[b]


class Recipient(Strict):
    email: str | None = None
    slack: str | None = None
    name: str | None = None
    # The language of what this person is sent (``en``, ``zh-CN``); None: the one they
    # chose on the dashboard, else the team's (``HEALTHWATCH_LANGUAGE``).
    language: Literal["en", "zh-CN"] | None = None

    @field_validator("language", mode="before")
    @classmethod
    def _language_tag(cls, value: object) -> object:
        return language_tag(value) if isinstance(value, str) else value


class Routing(Strict):
    """Who hears about an alert: the account's owner CSM, plus ``tiers.<tier>`` extra
    roles (``cs_lead``, ``sales_manager``: the account's ``sales_owner`` if the CRM
    sends one, else ``people.sales_manager``), else ``team`` when there is no owner."""

    team: Recipient = Recipient()
    people: dict[str, Recipient] = Field(default_factory=dict)
    tiers: dict[str, list[str]] = Field(default_factory=dict)
    escalate_to: list[str] = Field(default_factory=lambda: ["cs_lead"])

    @field_validator("tiers")
    @classmethod
    def _tiers(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        return _known(v, _TIERS, "tier")  # type: ignore[no-any-return]

    def unaddressed(self) -> list[str]:
        """The roles escalations or tiers name that have no email and no Slack id (the
        shipped file leaves them to fill in): what they would hear reaches nobody."""
        named = dict.fromkeys([*self.escalate_to, *(r for rs in self.tiers.values() for r in rs)])
        missing = []
        for role in named:
            person = self.people.get(role, Recipient())
            if not (person.email or person.slack):
                missing.append(role)
        return missing


class Notify(Strict):
    # Re-notify an unchanged open, unacknowledged alert this often (Alertmanager
    # ``repeat_interval``; a day suits CSM work better than its 4 h default).
    repeat_interval: Duration = timedelta(days=1)
    # A firing alert nobody acknowledged within this, per severity, goes to
    # ``routing.escalate_to``.
    escalate_after: dict[Severity, Duration] = Field(
        default_factory=lambda: {
            Severity.critical: timedelta(hours=4),
            Severity.warning: timedelta(days=2),
        }
    )
    # Slack and email notices to one destination within this window are sent as one
    # message (Alertmanager ``group_wait``); 0 sends each alert at once.
    group_wait: Duration = timedelta(seconds=30)
    # Hour (in the service's time zone) of the daily per-CSM digest email; -1 is off.
    digest_hour: Annotated[int, Field(ge=-1, le=23)] = 8
    # Send a notification when an alert resolves.
    send_resolved: bool = True


class Defaults(Strict):
    """What a rule (and its escalation) has unless it says otherwise."""

    # None: no warm-up (a file without ``[defaults]`` behaves as before warm-ups).
    warm_up: WarmUp | None = None


class Alerting(Strict):
    version: Annotated[str, Field(min_length=1, max_length=100)]
    description: str = ""
    defaults: Defaults = Defaults()
    rules: Annotated[list[Rule], Field(alias="rule")] = Field(default_factory=list)
    routing: Routing = Routing()
    notify: Notify = Notify()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _default_warm_up(cls, data: Any) -> Any:
        """``defaults.warm_up`` into every rule and escalation that gives none."""
        if not isinstance(data, dict) or not isinstance(data.get("defaults"), dict):
            return data
        warm_up = data["defaults"].get("warm_up")
        key = "rule" if "rule" in data else "rules"
        if warm_up is None or not isinstance(data.get(key), list):
            return data
        rules = []
        for rule in data[key]:
            if isinstance(rule, dict):
                rule = {"warm_up": warm_up, **rule}
                if isinstance(rule.get("escalate"), dict):
                    rule["escalate"] = {"warm_up": warm_up, **rule["escalate"]}
            rules.append(rule)
        return {**data, key: rules}

    @model_validator(mode="after")
    def _unique(self) -> Alerting:
        seen: set[str] = set()
        for r in self.rules:
            if r.id in seen:
                raise ValueError(f"rule id {r.id!r} is used twice")
            seen.add(r.id)
        for r in self.rules:
            # An alert id is account:family:n, so a family named like a rule would
            # share that rule's alert ids.
            if r.family is not None and r.family != r.id and r.family in seen:
                raise ValueError(
                    f"rule {r.id!r}: family {r.family!r} is another rule's id; name it apart"
                )
        return self

    def rule(self, rule_id: str) -> Rule | None:
        return next((r for r in self.rules if r.id == rule_id), None)

    def families(self) -> dict[str, list[Rule]]:
        return families(self.rules)


def families(rules: Sequence[Rule]) -> dict[str, list[Rule]]:
    """Family → its rules, in the file's order."""
    found: dict[str, list[Rule]] = {}
    for r in rules:
        found.setdefault(r.group, []).append(r)
    return found


class AlertingError(ValueError):
    """The alerting file is invalid; the message lists each problem with its location."""


def parse_alerting(text: str) -> Alerting:
    return parse_toml(text, Alerting, AlertingError, "alerting file")


def default_alerting_source() -> str:
    return DEFAULT_ALERTING.read_text(encoding="utf-8")
