"""The plan templates (``default_plans.toml``): milestones per tier and lifecycle stage,
validated like the alerting file (every problem named with its place)."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.scoring.model.labels import is_share
from shared.config import Settings
from shared.contracts.events import LifecycleStage, Tier
from shared.storage.documents import parse_toml

DEFAULT_PLANS = Path(__file__).with_name("default_plans.toml")
# The go-live date the CRM sends: reached once there is one (not a number to compare).
GO_LIVE = "go_live"
# A measure the health score computes (``inputs.py``), or a per-name one
# (``events_28d[report_run]``): any product's event names work.
MEASURE = re.compile(r"^[a-z][a-z0-9_]{0,80}(\[[^\[\]\x00-\x1f]{1,200}\])?$")
KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,59}$")
# Far enough for a multi-year rollout (LC-12: ERP implementations take up to 3 years).
MAX_DUE_DAYS = 5 * 366

Op = Literal[">=", "<="]


class PlanTemplateError(ValueError):
    """The templates file is invalid; the message lists each problem with its place."""


def check_measure(measure: str | None) -> str | None:
    if measure is not None and not MEASURE.match(measure):
        raise ValueError(
            "a measure is a name the health score computes, such as activation_rate, "
            "active_days_7d or events_28d[report_run]"
        )
    return measure


class UnknownMeasure(ValueError):
    """A measure the score does not compute; ``known``: those it does."""

    def __init__(self, message: str, known: list[str]):
        super().__init__(message)
        self.known = known


def check_known(measure: str | None, names: frozenset[str], per_name: frozenset[str]) -> None:
    """``measure`` is one the health score computes: one of ``names``, or one of the
    ``per_name`` measures of an event name (``inputs.measure_names``); else
    ``UnknownMeasure`` naming the nearest (a typo would never progress)."""
    if measure is None or measure == GO_LIVE or measure in names:
        return
    base, bracket, _ = measure.partition("[")
    if bracket and base in per_name and MEASURE.match(measure):
        return
    # No measure's name at all ("集成数量") is as unknown as a misspelt one, and told with
    # the names there are (the dashboard had blamed the title and the due day).
    known = sorted(names | {f"{b}[event]" for b in per_name})
    near = difflib.get_close_matches(measure, known, n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(near)}?" if near else ""
    raise UnknownMeasure(
        f"the health score computes no measure {measure!r}.{hint} 'measures' lists them "
        "(per event name: events_28d[<event name>] and the like).",
        known,
    )


# A target is a value a measure reaches: finite, and within the range money and counts
# are kept in (shared.contracts.events.MAX_MONEY), so every page can print it.
MAX_TARGET = 1e12


# A share's target above this is a percentage written as a number (60 for 60%, stored as
# 6,000% and "on track" for good, found from outside). A share may pass 1 (more users
# activated than seats bought), not ten times over.
MAX_SHARE_TARGET = 10.0
SHARE_TARGET = "{measure!r} is a share (1 is 100%): give 60% as 0.6, not {target:g}."


def share_target_wrong(measure: str | None, target: float | None) -> bool:
    """Whether ``target`` cannot be meant for the share ``measure`` (``is_share``)."""
    if not measure or target is None or not is_share(measure):
        return False
    return not 0 <= target <= MAX_SHARE_TARGET


def check_target(measure: str | None, target: float | None) -> None:
    """A measured milestone needs a target, except go-live; others take none."""
    if share_target_wrong(measure, target):
        raise ValueError(SHARE_TARGET.format(measure=measure, target=target))
    if target is not None and not -MAX_TARGET <= target <= MAX_TARGET:  # NaN fails too
        raise ValueError(f"a target is a number between -{MAX_TARGET:.0e} and {MAX_TARGET:.0e}")
    if measure not in (None, GO_LIVE) and target is None:
        raise ValueError(f"give a target for {measure!r} (the value to reach)")
    if measure in (None, GO_LIVE) and target is not None:
        raise ValueError("a go-live or hand-checked milestone takes no target")


def _unique(names: list[str], what: str) -> None:
    if len(set(names)) != len(names):
        raise ValueError(f"{what} repeat: {sorted(names)}")


class MilestoneTemplate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    key: Annotated[str, Field(pattern=KEY.pattern)]
    title: Annotated[str, Field(min_length=1, max_length=200)]
    measure: str | None = None  # None: checked by hand
    op: Op = ">="
    target: float | None = None
    due_days: Annotated[int, Field(ge=1, le=MAX_DUE_DAYS)]

    @field_validator("measure")
    @classmethod
    def _measure(cls, v: str | None) -> str | None:
        return check_measure(v)

    @model_validator(mode="after")
    def _target(self) -> MilestoneTemplate:
        check_target(self.measure, self.target)
        return self


class PlanTemplate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(pattern=KEY.pattern)]
    title: Annotated[str, Field(min_length=1, max_length=200)]
    tiers: list[Tier] = Field(default_factory=list)  # empty: every tier
    lifecycle_stages: list[LifecycleStage] = Field(default_factory=list)  # empty: every stage
    # Applied to new accounts of its tiers and stages by itself (else by a click only).
    auto: bool = True
    milestone: Annotated[list[MilestoneTemplate], Field(min_length=1)]

    @field_validator("milestone")
    @classmethod
    def _unique_keys(cls, v: list[MilestoneTemplate]) -> list[MilestoneTemplate]:
        _unique([m.key for m in v], "milestone keys")
        return v

    def matches(self, tier: str | None, stage: str | None) -> bool:
        return (not self.tiers or tier in self.tiers) and (
            not self.lifecycle_stages or stage in self.lifecycle_stages
        )

    @property
    def days(self) -> int:
        """How long the whole plan runs: its last milestone's due day."""
        return max(m.due_days for m in self.milestone)


class PlanTemplates(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Annotated[str, Field(min_length=1, max_length=100)]
    template: list[PlanTemplate] = Field(default_factory=list)

    @field_validator("template")
    @classmethod
    def _unique_ids(cls, v: list[PlanTemplate]) -> list[PlanTemplate]:
        _unique([t.id for t in v], "template ids")
        return v

    def get(self, template_id: str) -> PlanTemplate | None:
        return next((t for t in self.template if t.id == template_id), None)

    def matching(
        self, tier: str | None, stage: str | None, *, auto: bool = False
    ) -> PlanTemplate | None:
        """The first template for this tier and lifecycle stage (``auto``: of those
        applied by themselves), None without one."""
        found = (t for t in self.template if t.matches(tier, stage) and (t.auto or not auto))
        return next(found, None)


def parse_templates(text: str) -> PlanTemplates:
    return parse_toml(text, PlanTemplates, PlanTemplateError, "plan templates file")


@cache
def default_templates() -> PlanTemplates:
    return parse_templates(DEFAULT_PLANS.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class NewMilestone:
    """A milestone to store: a template's, or one a person adds."""

    key: str
    title: str
    measure: str | None
    op: str
    target: float | None
    due_on: date


def from_template(template: PlanTemplate, start: date) -> list[NewMilestone]:
    """The template's milestones for a plan starting on ``start``."""
    return [
        NewMilestone(m.key, m.title, m.measure, m.op, m.target, start + timedelta(days=m.due_days))
        for m in template.milestone
    ]


def plan_templates(settings: Settings) -> PlanTemplates:
    """The configured templates file (``plan_templates_file``), else the shipped one."""
    if not settings.plan_templates_file:
        return default_templates()
    return _file_templates(settings.plan_templates_file)


@cache
def _file_templates(path: str) -> PlanTemplates:
    # Read once per process: the file is configuration, changed with a restart.
    return parse_templates(Path(path).read_text(encoding="utf-8"))
