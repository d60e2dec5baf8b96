"""A milestone's state, pure: from the value of its measure (the health score's own, as
of the account's newest data) and the day.

- **achieved**: the measure reached the target (or the box was ticked), with the day.
- **missed**: the due day passed first.
- **at risk**: projected to miss. A measured milestone is projected linearly: the value
  moved from where it stood at the start (``baseline``) at some pace; carried on at that
  pace to the due day, does it reach the target? Equivalently: is the share of the way
  done at least the share of the time gone (less ``SLACK``)? A go-live or hand-checked
  milestone has no pace to project: it is at risk once ``BINARY_AT_RISK_SHARE`` of its
  time is gone undone.
- **on track**: otherwise.

``alert_step`` keeps one alert per milestone problem (at risk or missed): fired once,
updated when at risk turns into missed, resolved when achieved or back on track. Like
the rules' alerts, its id counts the problems (``account:plan.key:n``), so a replayed
batch publishes the same id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any

from services.scoring.plans.templates import GO_LIVE
from shared.contracts.alerts import Severity

# A week of wobble in weekly use must not flip a milestone: it is at risk only when the
# way done trails the time gone by more than a tenth of the whole way.
SLACK = 0.1
# No pace is judged in a milestone's first two weeks: the weekly measures (active days
# over 7 days, shares over 7 and 30 days) need a fortnight to show one.
MIN_DAYS_JUDGED = 14
# A yes/no milestone (go-live, checked by hand) with a quarter of its time left undone:
# the handbook's go-live in two months, expected not "within a week" (LC-12), so the
# last quarter is when a CSM should push.
BINARY_AT_RISK_SHARE = 0.75


class State(StrEnum):
    on_track = "on_track"
    at_risk = "at_risk"
    missed = "missed"
    achieved = "achieved"


PROBLEMS = (State.at_risk, State.missed)
# An at-risk milestone informs; a missed one warns (the rise is told again). Never
# critical: that would mute the account's other alerts (the alerts' inhibition).
SEVERITY = {State.at_risk: Severity.info, State.missed: Severity.warning}


@dataclass(frozen=True)
class Milestone:
    key: str
    title: str
    measure: str | None  # None: checked by hand
    op: str  # ">=" or "<="
    target: float | None
    baseline: float | None  # the measure's value when the milestone started
    start_on: date
    due_on: date
    achieved_on: date | None = None  # reached (stored once), or ticked by hand


@dataclass(frozen=True)
class Progress:
    state: State
    value: float | None  # the measure now (1/0 for go-live and hand-checked)
    done_share: float  # share of the way from the baseline to the target, 0..1
    time_share: float  # share of the time from the start to the due day gone, 0..1
    projected: float | None  # the value at the due day at the pace so far
    achieved_on: date | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "value": self.value,
            "done_share": round(self.done_share, 4),
            "time_share": round(self.time_share, 4),
            "projected": None if self.projected is None else round(self.projected, 4),
            "achieved_on": self.achieved_on.isoformat() if self.achieved_on else None,
        }


def value_of(m: Milestone, values: Mapping[str, Any]) -> float | None:
    """The measure's value now: a number the health score computed, 1/0 for go-live
    (``values["go_live"]``: the go-live day or None) and for a hand-checked box."""
    if m.measure is None:
        return 1.0 if m.achieved_on else 0.0
    if m.measure == GO_LIVE:
        live = values.get(GO_LIVE)
        today = values.get("as_of")
        return 1.0 if live is not None and (today is None or str(live) <= str(today)) else 0.0
    v = values.get(m.measure)
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def reached(m: Milestone, value: float | None) -> bool:
    if value is None:
        return False
    if m.measure is None or m.measure == GO_LIVE:
        return value >= 1
    target = m.target if m.target is not None else 0.0
    return value >= target if m.op == ">=" else value <= target


def evaluate(m: Milestone, values: Mapping[str, Any], today: date) -> Progress:
    """The milestone's state on ``today`` with the measures ``values``."""
    value = value_of(m, values)
    span = max(1, (m.due_on - m.start_on).days)
    gone = min(1.0, max(0.0, (today - m.start_on).days / span))
    if m.achieved_on is not None or reached(m, value):
        achieved = m.achieved_on or today
        return Progress(State.achieved, value, 1.0, gone, None, achieved)
    done, projected = _pace(m, value, gone)
    if today > m.due_on:
        state = State.missed
    elif m.measure is None or m.measure == GO_LIVE:
        state = State.at_risk if gone >= BINARY_AT_RISK_SHARE else State.on_track
    elif (today - m.start_on).days < MIN_DAYS_JUDGED:
        state = State.on_track
    else:
        state = State.at_risk if done < gone - SLACK else State.on_track
    return Progress(state, value, done, gone, projected, None)


def _pace(m: Milestone, value: float | None, gone: float) -> tuple[float, float | None]:
    """The share of the way done, and the value projected to the due day (linear from
    the baseline through today's value); a yes/no milestone has no projection."""
    if m.measure is None or m.measure == GO_LIVE or m.target is None:
        return 0.0, None
    if value is None:
        return 0.0, None
    base = m.baseline if m.baseline is not None else 0.0
    way = m.target - base if m.op == ">=" else base - m.target
    moved = value - base if m.op == ">=" else base - value
    done = min(1.0, max(0.0, moved / way)) if way > 0 else 0.0
    projected = base + (value - base) / gone if gone > 0 else None
    return done, projected


@dataclass(frozen=True)
class AlertState:
    """What the last published alert of a milestone said (``ok``: none open)."""

    status: str = "ok"  # ok / at_risk / missed
    fire_count: int = 0
    revision: int = 0


@dataclass(frozen=True)
class Told:
    status: str  # firing / resolved
    severity: Severity
    fire_count: int
    revision: int
    state: State  # the milestone's state now
    was: State  # the problem its alert had (the new one when it fires first)


def alert_step(before: AlertState, state: State) -> tuple[AlertState, Told | None]:
    """The milestone's alert state after ``state``, and what to publish (None: nothing)."""
    problem = state in PROBLEMS
    if before.status == "ok":
        if not problem:
            return before, None
        after = AlertState(state.value, before.fire_count + 1, 0)
        return after, Told("firing", SEVERITY[state], after.fire_count, 0, state, state)
    was = State(before.status)
    if problem and state == was:
        return before, None
    revision = before.revision + 1
    if problem:
        after = AlertState(state.value, before.fire_count, revision)
        return after, Told("firing", SEVERITY[state], before.fire_count, revision, state, was)
    after = AlertState("ok", before.fire_count, revision)
    return after, Told("resolved", SEVERITY[was], before.fire_count, revision, state, was)
