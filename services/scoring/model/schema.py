"""The health model file: measures normalised to 0–100, weighted within groups, groups
weighted into the score, per-segment profiles, bands. Written in TOML, validated here."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, NamedTuple, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.storage.documents import parse_toml

DEFAULT_MODEL = Path(__file__).with_name("default_model.toml")


class Strict(BaseModel):
    # No infinity or NaN anywhere: either would turn every score it touches into NaN.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# Bounds that keep a model that validates from failing the scoring of every event:
# durations within date arithmetic's range, weights and curve values within what
# floats add and divide exactly enough.
MAX_WEIGHT = 1e6  # relative weights: a million to one is beyond any sensible ratio
MAX_CURVE_VALUE = 1e12  # measures are counts, minutes, ratios: far below a trillion
MAX_DAYS = 3650  # ten years
MAX_MINUTES = 366 * 24 * 60  # a year
Weight = Annotated[float, Field(gt=0, le=MAX_WEIGHT)]


class Curve(Strict):
    """Piecewise-linear map from a raw value to 0–100 through ``points`` (value, score),
    flat beyond the ends. Rising points reward more; falling points reward less."""

    points: Annotated[list[tuple[float, float]], Field(min_length=2)]

    @field_validator("points")
    @classmethod
    def _ordered(cls, points: list[tuple[float, float]]) -> list[tuple[float, float]]:
        xs = [x for x, _ in points]
        if xs != sorted(xs) or len(set(xs)) != len(xs):
            raise ValueError("point values must be strictly increasing")
        if any(not 0 <= y <= 100 for _, y in points):
            raise ValueError("point scores must be within 0..100")
        if any(abs(x) > MAX_CURVE_VALUE for x in xs):
            raise ValueError(f"point values must be within ±{MAX_CURVE_VALUE:g}")
        return points

    def score(self, value: float) -> float:
        pts = self.points
        if value <= pts[0][0]:
            return pts[0][1]
        for (x0, y0), (x1, y1) in itertools.pairwise(pts):
            if value <= x1:
                return y0 + (y1 - y0) * (value - x0) / (x1 - x0)
        return pts[-1][1]


# Inputs whose data another measure or cap needs; see ``Measure.needs``.
Needs = Annotated[list[str], Field(max_length=50)]


class Measure(Strict):
    weight: Weight
    curve: Curve
    label: str = ""
    unit: str = ""
    # The measure counts only for an account where each of these inputs has data: a
    # product that never sends tickets or modules has "no data" there, not a zero to
    # be penalised (its weight is spread over the measures that have data).
    needs: Needs = Field(default_factory=list)


class Group(Strict):
    weight: Weight
    label: str = ""
    measures: Annotated[dict[str, Measure], Field(min_length=1)]


class Bands(Strict):
    red_below: Annotated[float, Field(ge=0, le=100)] = 40
    green_from: Annotated[float, Field(ge=0, le=100)] = 70

    @model_validator(mode="after")
    def _ordered(self) -> Bands:
        if self.red_below > self.green_from:
            raise ValueError("red_below must not exceed green_from")
        return self

    def band(self, score: float) -> str:
        if score < self.red_below:
            return "red"
        return "green" if score >= self.green_from else "yellow"


class Cap(Strict):
    """If ``group`` scores below ``below``, the whole score is capped at ``cap``."""

    group: str
    below: Annotated[float, Field(ge=0, le=100)]
    cap: Annotated[float, Field(ge=0, le=100)]
    reason: str
    # The cap applies only where these inputs have data (as ``Measure.needs``).
    needs: Needs = Field(default_factory=list)


class DepthLevel(Strict):
    """What shows a depth level: any use (within 28 days) of these modules, events or
    platforms, at least ``min_uses`` times."""

    modules: list[str] = Field(default_factory=list)
    events: list[str] = Field(default_factory=list)
    platforms: list[str] = Field(default_factory=list)
    min_uses: Annotated[int, Field(ge=1, le=10**9)] = 1


class Depth(Strict):
    """HL-03's four levels: 1 record-keeping (any use), 2 workflow, 3 integrated,
    4 customised; an account's level is the highest one its use shows."""

    core_modules: list[str] = Field(default_factory=list)
    workflow: DepthLevel = DepthLevel()
    integrated: DepthLevel = DepthLevel()
    customised: DepthLevel = DepthLevel()


class DangerRules(Strict):
    """Thresholds of the handbook's danger causes (DG-05…DG-07)."""

    # Decision-maker and champion changes count for this long (EW-12).
    people_change_days: Annotated[int, Field(ge=1, le=MAX_DAYS)] = 90
    # "Unclear value": busy (this share of seats active in 7 days) but shallow (at most
    # this depth level) use (DG-05, DG-15).
    busy_active_share: Annotated[float, Field(ge=0, le=1)] = 0.5
    shallow_depth_level: Annotated[int, Field(ge=1, le=4)] = 1
    # "Long-unresolved tickets": the oldest open ticket is older than this (DG-06).
    unresolved_ticket_days: Annotated[int, Field(ge=1, le=MAX_DAYS)] = 30
    # "Unmet requests": an open feature request older than this (DG-07).
    unmet_request_days: Annotated[int, Field(ge=1, le=MAX_DAYS)] = 30


class Sla(Strict):
    """First-reply targets in minutes by tier (CAD-15: VIP 30 minutes, small customers one
    working day; enterprise 4 hours is our default). For the ``working_days_tiers`` the
    clock runs only on ``working_days`` (ISO weekdays, Monday 1, in the service's zone), so
    one working day is 1440 minutes of working days; strategic accounts get round-the-clock
    service (EX-04 sells 7×24 as an upgrade), so their clock never stops."""

    first_reply_minutes: dict[str, Annotated[int, Field(gt=0, le=MAX_MINUTES)]] = Field(
        default_factory=lambda: {"strategic": 30, "enterprise": 240, "non-focus": 1440}
    )
    default_minutes: Annotated[int, Field(gt=0, le=MAX_MINUTES)] = 480
    # Empty unless a model names them: a stored model keeps the meaning it was saved with.
    working_days_tiers: list[str] = Field(default_factory=list)
    working_days: list[Annotated[int, Field(ge=1, le=7)]] = Field(
        default_factory=lambda: [1, 2, 3, 4, 5]
    )

    def target(self, tier: str | None) -> int:
        return self.first_reply_minutes.get(tier or "", self.default_minutes)


class Match(Strict):
    tier: str | None = None
    lifecycle_stage: str | None = None
    # Tenure bands: days since the contract started, [min, max).
    tenure_min_days: Annotated[int, Field(ge=-MAX_DAYS, le=MAX_DAYS)] | None = None
    tenure_max_days: Annotated[int, Field(ge=-MAX_DAYS, le=MAX_DAYS)] | None = None

    def specificity(self) -> int:
        return sum(v is not None for v in self.model_dump().values())

    def matches(self, segment: Segment) -> bool:
        if self.tier is not None and self.tier != segment.tier:
            return False
        if self.lifecycle_stage is not None and self.lifecycle_stage != segment.lifecycle_stage:
            return False
        if self.tenure_min_days is not None or self.tenure_max_days is not None:
            if segment.tenure_days is None:
                return False
            if self.tenure_min_days is not None and segment.tenure_days < self.tenure_min_days:
                return False
            if self.tenure_max_days is not None and segment.tenure_days >= self.tenure_max_days:
                return False
        return True


class Profile(Strict):
    """Overrides for a segment. Precedence: the most specific match wins (most fields
    set); among equally specific ones, the one listed first."""

    name: str
    match: Match
    group_weights: dict[str, Annotated[float, Field(ge=0, le=MAX_WEIGHT)]] = Field(
        default_factory=dict
    )
    measure_weights: dict[str, Annotated[float, Field(ge=0, le=MAX_WEIGHT)]] = Field(
        default_factory=dict
    )
    curves: dict[str, Curve] = Field(default_factory=dict)


class Segment(Strict):
    tier: str | None = None
    lifecycle_stage: str | None = None
    tenure_days: int | None = None


class Ratio(Strict):
    """A declared ratio between two event names over 28 days, e.g. dislikes per like
    (*Fighting Churn With Data*): shown and backtested as ``name``."""

    name: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[a-z0-9_]+$")]
    numerator: Annotated[str, Field(min_length=1, max_length=200)]
    denominator: Annotated[str, Field(min_length=1, max_length=200)]


class Behaviour(Strict):
    """The product-agnostic measures' settings (inputs.py): event names whose per-name
    measures are computed for every account (0 when unused, rather than missing), and
    ratios between names. Any other name an account used is measured too."""

    events: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=200)]], Field(max_length=50)
    ] = Field(default_factory=list)
    ratios: Annotated[list[Ratio], Field(max_length=50)] = Field(default_factory=list)


class HealthModel(Strict):
    version: Annotated[str, Field(min_length=1)]
    description: str = ""
    bands: Bands = Bands()
    groups: Annotated[dict[str, Group], Field(min_length=1)]
    caps: list[Cap] = Field(default_factory=list)
    profiles: list[Profile] = Field(default_factory=list)
    depth: Depth = Depth()
    danger: DangerRules = DangerRules()
    sla: Sla = Sla()
    behaviour: Behaviour = Behaviour()

    @model_validator(mode="after")
    def _references(self) -> HealthModel:
        measures = {m for g in self.groups.values() for m in g.measures}
        for cap in self.caps:
            if cap.group not in self.groups:
                raise ValueError(f"cap names unknown group {cap.group!r}")
        for p in self.profiles:
            unknown = (set(p.measure_weights) | set(p.curves)) - measures
            unknown_groups = set(p.group_weights) - set(self.groups)
            if unknown or unknown_groups:
                names = ", ".join(sorted(unknown | unknown_groups))
                raise ValueError(f"profile {p.name!r} names unknown measures or groups: {names}")
        return self

    def profile_for(self, segment: Segment) -> Profile | None:
        best: Profile | None = None
        for p in self.profiles:
            if p.match.matches(segment) and (
                best is None or p.match.specificity() > best.match.specificity()
            ):
                best = p
        return best

    def scored(self, profile: Profile | None) -> tuple[ScoredGroup, ...]:
        """The groups and measures a score with ``profile`` (None: none) weighs, with
        the profile's weights and curves; a group or measure it weighs 0 is left out.
        Worked out once per profile of this model: every score reads it."""
        if profile is None:
            return self._scored[0]
        for at, candidate in enumerate(self.profiles, 1):
            if candidate is profile:
                return self._scored[at]
        return _scored_groups(self, profile)  # a profile of another model

    @cached_property
    def _scored(self) -> tuple[tuple[ScoredGroup, ...], ...]:
        """``scored`` of no profile, then of each profile in order."""
        return tuple(_scored_groups(self, p) for p in (None, *self.profiles))

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy (with ``update``'s fields) that works ``scored`` out again: pydantic
        copies the instance's ``__dict__``, where the plan of the original is kept."""
        copy = super().model_copy(update=update, deep=deep)
        copy.__dict__.pop("_scored", None)
        return copy


class ScoredMeasure(NamedTuple):
    """A measure as a profile weighs it."""

    name: str
    label: str
    needs: list[str]
    weight: float
    curve: Curve


class ScoredGroup(NamedTuple):
    name: str
    weight: float
    measures: tuple[ScoredMeasure, ...]


def _scored_groups(model: HealthModel, profile: Profile | None) -> tuple[ScoredGroup, ...]:
    """``HealthModel.scored``, worked out."""
    groups = []
    for group_name, group in model.groups.items():
        group_weight = group.weight
        measure_weights: dict[str, float] = {}
        curves: dict[str, Curve] = {}
        if profile:
            group_weight = profile.group_weights.get(group_name, group.weight)
            measure_weights, curves = profile.measure_weights, profile.curves
        if group_weight == 0:
            continue
        measures = []
        for name, measure in group.measures.items():
            weight = measure_weights.get(name, measure.weight)
            if weight != 0:
                curve = curves.get(name, measure.curve)
                measures.append(
                    ScoredMeasure(name, measure.label or name, measure.needs, weight, curve)
                )
        groups.append(ScoredGroup(group_name, group_weight, tuple(measures)))
    return tuple(groups)


class ModelError(ValueError):
    """The model file is invalid; the message lists each problem with its location."""


def parse_model(text: str) -> HealthModel:
    return parse_toml(text, HealthModel, ModelError, "health model")


def load_default_model() -> HealthModel:
    return parse_model(DEFAULT_MODEL.read_text(encoding="utf-8"))
