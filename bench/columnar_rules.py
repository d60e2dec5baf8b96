"""The alert rules' step (``services/scoring/rules.py: step``) for every account at once,
one rule at a time: the conditions as masks over the accounts' values, the states
(ok / pending / firing, since, cleared, severity, firing count, revision) as arrays, and
the transitions as arrays, with ``step``'s branches as masks. Only the accounts whose
state moved or that tell something are turned back into ``RuleState`` and
``Transition`` objects.

Part of the probe, not the engine: ``columnar_probe.py`` compares every (account, rule)
with ``step`` and times both. Families (``group_step``) stay per account here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from services.scoring.rules import RuleState, Transition
from shared.alerting.schema import Condition, Rule
from shared.contracts.alerts import Severity

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]
Objects = npt.NDArray[np.object_]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
OK, PENDING, FIRING = 0, 1, 2
STATUS = {"ok": OK, "pending": PENDING, "firing": FIRING}
NAMES = {code: name for name, code in STATUS.items()}
# Severities as small integers (0: none), so the states are numbers only.
SEVERITIES: list[str | None] = [None, *(severity.value for severity in Severity)]
SEVERITY = {name: code for code, name in enumerate(SEVERITIES)}


def _micros(moment: datetime) -> int:
    return (moment - EPOCH) // MICROSECOND


def _moment(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _float(v: Any) -> float:
    """``rules._num``: a number (not a bool) as a float; NaN for anything else."""
    return float(v) if _is_number(v) else np.nan


class Values:
    """The accounts' rule values and past inputs as columns, read from their dicts once
    per name (an engine would hold them as columns already)."""

    def __init__(self, values: Sequence[Mapping[str, Any]], past: Sequence[Mapping[int, Any]]):
        self._values, self._past = values, past
        self._objects: dict[str, Objects] = {}
        self._numbers: dict[tuple[int | None, str], Floats] = {}
        self._present: dict[str, Bools] = {}
        self._codes: dict[str, tuple[Ints, dict[Any, int]]] = {}

    def __len__(self) -> int:
        return len(self._values)

    def objects(self, name: str) -> Objects:
        """The values as they are (None where missing)."""
        if name not in self._objects:
            column = np.empty(len(self._values), dtype=object)
            column[:] = [v.get(name) for v in self._values]
            self._objects[name] = column
        return self._objects[name]

    def present(self, name: str) -> Bools:
        """Where the value is not None."""
        if name not in self._present:
            self._present[name] = np.array([x is not None for x in self.objects(name)])
        return self._present[name]

    def codes(self, name: str) -> tuple[Ints, dict[Any, int]]:
        """Each account's value as a code, and the code of each value (Python's
        equality and hashing decide which values share one)."""
        if name not in self._codes:
            code_of: dict[Any, int] = {}
            codes = [code_of.setdefault(x, len(code_of)) for x in self.objects(name)]
            self._codes[name] = (np.array(codes, dtype=np.int64), code_of)
        return self._codes[name]

    def numbers(self, name: str, back: int | None = None) -> Floats:
        """The values that are numbers (not bools) as floats, NaN elsewhere; ``back``:
        those of the inputs stored that many days back."""
        key = (back, name)
        if key not in self._numbers:
            if back is None:
                raw = [v.get(name) for v in self._values]
            else:
                raw = [(p.get(back) or {}).get(name) for p in self._past]
            self._numbers[key] = np.array([_float(v) for v in raw], dtype=np.float64)
        return self._numbers[key]


def holds(c: Condition, v: Values) -> Bools:
    """``rules.holds`` for every account."""
    n = len(v)
    if c.change is not None:
        current, before = v.numbers(c.measure), v.numbers(c.measure, c.over_days)
        ok = ~np.isnan(current) & ~np.isnan(before) & (before >= c.min_base)
        delta = current - before
        if c.change == "fall":
            delta = -delta
        elif c.change == "either":
            delta = np.abs(delta)
        if c.points is not None:
            return ok & (delta >= c.points)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = delta / before * 100
        return ok & (before > 0) & (share >= (c.percent or 0))
    if c.value_by_tier is None and c.op in ("in", "not in", "==", "!="):
        return _matches(c, v)
    if c.value_by_tier is None and c.op in _ORDER:
        if not _is_number(c.value):
            return np.zeros(n, dtype=bool)
        numbers = v.numbers(c.measure)  # NaN where none, or not a number: never holds
        with np.errstate(invalid="ignore"):
            constant: Bools = _ORDER[c.op](numbers, float(c.value))  # type: ignore[arg-type]
        return constant
    now = v.objects(c.measure)
    present = v.present(c.measure)
    target: Objects = np.empty(n, dtype=object)
    target[:] = [c.value] * n
    if c.value_by_tier is not None:
        tiers = v.objects("tier")
        for tier, value in c.value_by_tier.items():
            target[tiers == tier] = value
    present = present & np.array([t is not None for t in target], dtype=bool)
    if c.op not in _ORDER:  # (in) equality against per-tier values: element by element
        rows = zip(now, target, present, strict=True)
        membership = c.op in ("in", "not in")
        equal = np.array([bool(p and (x in t if membership else x == t)) for x, t, p in rows])
        return present & (equal if c.op in ("in", "==") else ~equal)  # type: ignore[no-any-return]
    numbers = v.numbers(c.measure)
    targets = np.array([_float(t) for t in target], dtype=np.float64)
    with np.errstate(invalid="ignore"):
        ordered: Bools = _ORDER[c.op](numbers, targets)
    result: Bools = present & ~np.isnan(numbers) & ~np.isnan(targets) & ordered
    return result


def _matches(c: Condition, v: Values) -> Bools:
    """``in`` / ``not in`` / ``==`` / ``!=`` against one value for every account: on
    the column's codes (equal values, by Python's ``==``, share a code)."""
    codes, code_of = v.codes(c.measure)
    present = v.present(c.measure)
    if c.value is None:
        return np.zeros(len(v), dtype=bool)
    wanted = c.value if c.op in ("in", "not in") else [c.value]
    known = [code_of[x] for x in wanted if x in code_of]  # type: ignore[union-attr]
    inside = np.isin(codes, np.array(known, dtype=np.int64))
    result: Bools = present & (inside if c.op in ("in", "==") else ~inside)
    return result


_ORDER = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal}


def all_hold(conditions: Sequence[Condition], v: Values) -> Bools:
    out = np.ones(len(v), dtype=bool)
    for c in conditions:
        out &= holds(c, v)
    return out


def applies(rule: Rule, v: Values) -> Bools:
    out = np.ones(len(v), dtype=bool)
    for name, allowed in (("tier", rule.tiers), ("lifecycle_stage", rule.lifecycle_stages)):
        if allowed:
            out &= np.array([x in allowed for x in v.objects(name)], dtype=bool)
    return out


def warmed_up(warm_up: timedelta, v: Values) -> Bools:
    if not warm_up:
        return np.ones(len(v), dtype=bool)
    days = v.numbers("history_days")
    with np.errstate(invalid="ignore"):
        return ~np.isnan(days) & (days >= warm_up.days)


@dataclass
class States:
    """One rule's state for every account, as arrays (``since`` / ``cleared`` in µs
    since 1970, -1 for none)."""

    status: Ints
    since: Ints
    cleared: Ints
    severity: Ints  # SEVERITY's codes
    fire_count: Ints
    revision: Ints

    @classmethod
    def of(cls, states: Sequence[RuleState]) -> States:
        return cls(
            np.array([STATUS[s.status] for s in states], dtype=np.int64),
            np.array([_micros(s.since) if s.since else -1 for s in states], dtype=np.int64),
            np.array(
                [_micros(s.cleared_at) if s.cleared_at else -1 for s in states], dtype=np.int64
            ),
            np.array([SEVERITY[s.severity] for s in states], dtype=np.int64),
            np.array([s.fire_count for s in states], dtype=np.int64),
            np.array([s.revision for s in states], dtype=np.int64),
        )

    def state(self, i: int) -> RuleState:
        return RuleState(
            NAMES[int(self.status[i])],
            _moment(int(self.since[i])) if self.since[i] >= 0 else None,
            _moment(int(self.cleared[i])) if self.cleared[i] >= 0 else None,
            SEVERITIES[int(self.severity[i])],
            int(self.fire_count[i]),
            int(self.revision[i]),
        )


@dataclass
class Told:
    """Transitions: where ``told``, their status (firing / resolved), revision,
    severity and firing count."""

    told: Bools
    resolved: Bools
    revision: Ints
    severity: Ints
    fire_count: Ints

    def transition(self, i: int) -> Transition:
        return Transition(
            "resolved" if self.resolved[i] else "firing",
            int(self.revision[i]),
            Severity(SEVERITIES[int(self.severity[i])] or ""),
            int(self.fire_count[i]),
        )


def _severity_now(rule: Rule, v: Values) -> Ints:
    out = np.full(len(v), SEVERITY[rule.severity.value], dtype=np.int64)
    escalation = rule.escalate
    if escalation is not None:
        up = warmed_up(escalation.warm_up, v) & all_hold(escalation.when, v)
        out[up] = SEVERITY[escalation.severity.value]
    return out


def _to_ok(
    where: Bools, status: Ints, since: Ints, cleared: Ints, severity: Ints, revision: Ints
) -> None:
    """``RuleState(fire_count=...)`` where ``where``: ok, nothing since, no revision."""
    status[where], since[where], cleared[where], severity[where], revision[where] = OK, -1, -1, 0, 0


def step(rule: Rule, s: States, v: Values, at: Ints) -> tuple[States, Told, Bools]:
    """``rules.step`` for every account: the new states, what they tell, and where the
    state changed (``step`` returns another object)."""
    n = len(v)
    inside = applies(rule, v)
    firing_now = inside & all_hold(rule.when, v)
    severity_now = _severity_now(rule, v)
    firing = s.status == FIRING
    status, since, cleared = s.status.copy(), s.since.copy(), s.cleared.copy()
    severity, fire_count, revision = s.severity.copy(), s.fire_count.copy(), s.revision.copy()
    told = np.zeros(n, dtype=bool)
    resolved = np.zeros(n, dtype=bool)
    t_revision = np.zeros(n, dtype=np.int64)
    t_severity = np.zeros(n, dtype=np.int64)
    t_count = fire_count.copy()
    # Not firing: stays / falls back to ok, pends, or fires.
    idle = ~firing & ~(firing_now & warmed_up(rule.warm_up, v))
    reset = idle & (s.status != OK)
    _to_ok(reset, status, since, cleared, severity, revision)
    starting = ~firing & ~idle
    begun = np.where((s.status == PENDING) & (s.since >= 0), s.since, at)
    pending = starting & (at - begun < rule.pending // MICROSECOND)
    _to_ok(pending, status, since, cleared, severity, revision)
    status[pending], since[pending] = PENDING, begun[pending]
    fires = starting & ~pending
    status[fires], since[fires], cleared[fires] = FIRING, at[fires], -1
    severity[fires], fire_count[fires], revision[fires] = (
        severity_now[fires],
        s.fire_count[fires] + 1,
        0,
    )
    told |= fires
    t_severity[fires], t_count[fires] = severity_now[fires], s.fire_count[fires] + 1
    # Firing: hysteresis, then the cooldown.
    if rule.recover is not None:
        gone = np.zeros(n, dtype=bool)
        for c in rule.when:
            gone |= ~v.present(c.measure)
        recovered = ~inside | gone | all_hold(rule.recover, v)
    else:
        recovered = ~firing_now
    stays = firing & ~recovered
    cleared[stays] = -1
    revised = stays & (severity_now != s.severity)
    severity[revised], revision[revised] = severity_now[revised], s.revision[revised] + 1
    told |= revised
    t_revision[revised], t_severity[revised] = s.revision[revised] + 1, severity_now[revised]
    ending = firing & recovered
    clear_at = np.where(s.cleared >= 0, s.cleared, at)
    cooling = ending & (at - clear_at < rule.cooldown // MICROSECOND)
    cleared[cooling] = clear_at[cooling]
    ended = ending & ~cooling
    told |= ended
    resolved |= ended
    t_revision[ended] = s.revision[ended] + 1
    t_severity[ended] = np.where(
        s.severity[ended] > 0, s.severity[ended], SEVERITY[rule.severity.value]
    )
    _to_ok(ended, status, since, cleared, severity, revision)
    after = States(status, since, cleared, severity, fire_count, revision)
    moved = (
        (status != s.status)
        | (since != s.since)
        | (cleared != s.cleared)
        | (severity != s.severity)
        | (fire_count != s.fire_count)
        | (revision != s.revision)
    )
    return after, Told(told, resolved, t_revision, t_severity, t_count), moved
