"""Scoring an account's measures with a health model, keeping every step explainable."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.scoring.model.schema import HealthModel, Segment


@dataclass(frozen=True)
class Component:
    group: str
    measure: str
    label: str
    raw: float
    score: float  # normalised, 0–100
    weight: float  # effective share of the total score, after missing-data spreading
    contribution: float  # weight × score

    def as_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "name": self.measure,
            "label": self.label,
            "raw": self.raw,
            "score": round(self.score, 1),
            "weight": round(self.weight, 4),
            "contribution": round(self.contribution, 2),
        }


@dataclass(frozen=True)
class Evaluation:
    value: int | None  # None when no measure has data
    band: str  # red / yellow / green, or "unknown"
    components: list[Component]
    groups: dict[str, float]  # group score 0–100, for groups with data
    missing: list[str]  # measures without data, whose weight was spread
    capped_by: str | None = None
    profile: str | None = None
    model_version: str = ""


def evaluate(model: HealthModel, raw: Mapping[str, float | None], segment: Segment) -> Evaluation:
    """Missing data (Catalyst's rule): a measure without a value is dropped and its weight
    spread over the rest of its group; a group without any is dropped and its weight
    spread across the other groups."""
    profile = model.profile_for(segment)
    present: list[tuple[str, float, list[tuple[str, str, float, float, float]]]] = []
    missing: list[str] = []
    for gname, group in model.groups.items():
        gweight = profile.group_weights.get(gname, group.weight) if profile else group.weight
        if gweight == 0:
            continue
        rows = []
        for mname, measure in group.measures.items():
            mweight = (
                profile.measure_weights.get(mname, measure.weight) if profile else measure.weight
            )
            if mweight == 0:
                continue
            value = raw.get(mname)
            if value is None:
                missing.append(mname)
                continue
            curve = profile.curves.get(mname, measure.curve) if profile else measure.curve
            rows.append((mname, measure.label or mname, float(value), curve.score(value), mweight))
        if rows:
            present.append((gname, gweight, rows))
    total_gweight = sum(g for _, g, _ in present)
    components: list[Component] = []
    groups: dict[str, float] = {}
    for gname, gweight, rows in present:
        total_mweight = sum(r[4] for r in rows)
        groups[gname] = sum(r[3] * r[4] for r in rows) / total_mweight
        for mname, label, value, score, mweight in rows:
            weight = (gweight / total_gweight) * (mweight / total_mweight)
            components.append(Component(gname, mname, label, value, score, weight, weight * score))
    name = profile.name if profile else None
    if not components:
        return Evaluation(
            None, "unknown", [], {}, missing, profile=name, model_version=model.version
        )
    total = sum(c.contribution for c in components)
    capped_by = None
    for cap in model.caps:
        if cap.group in groups and groups[cap.group] < cap.below and total > cap.cap:
            total, capped_by = cap.cap, cap.reason
    value = round(total)
    return Evaluation(
        value, model.bands.band(value), components, groups, missing, capped_by, name, model.version
    )
