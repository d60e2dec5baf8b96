"""The health model (``services/scoring/model/evaluate.py: evaluate``) over every account
at once: the segment's profile, each measure's curve, the missing-data spreading, the
groups, the caps and the band in NumPy, a measure (or group) at a time over all
accounts, in the order ``evaluate`` adds them up, so every float comes out the same;
then each account's ``Evaluation`` in Python, as its explanation needs one.

Part of the probe, not the engine: ``columnar_probe.py`` times the halves beside
``evaluate`` account by account and counts the accounts whose evaluation differs.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from services.scoring.model.evaluate import Component, Evaluation
from services.scoring.model.schema import Curve, HealthModel, Profile, Segment

Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]


def columns(model: HealthModel, raws: Sequence[Mapping[str, Any]]) -> dict[str, Floats]:
    """The inputs the model reads (its measures and what they and its caps need), NaN
    where an account has none. An engine would hold these as columns already."""
    names = {
        name
        for group in model.groups.values()
        for m_name, measure in group.measures.items()
        for name in (m_name, *measure.needs)
    } | {name for cap in model.caps for name in cap.needs}
    return {
        name: np.array([_number(raw.get(name)) for raw in raws], dtype=np.float64)
        for name in sorted(names)
    }


def _number(value: Any) -> float:
    return float("nan") if value is None else float(value)


def profiles(model: HealthModel, segments: list[Segment]) -> npt.NDArray[np.int64]:
    """Each account's profile: its index in ``model.profiles``, or -1 for none (the most
    specific match, the first listed among equals, as ``profile_for``)."""
    n = len(segments)
    tier = np.array([s.tier for s in segments], dtype=object)
    stage = np.array([s.lifecycle_stage for s in segments], dtype=object)
    has_tenure = np.array([s.tenure_days is not None for s in segments])
    tenure = np.array([s.tenure_days or 0 for s in segments], dtype=np.int64)
    best = np.full(n, -1, dtype=np.int64)
    best_specificity = np.full(n, -1, dtype=np.int64)
    for i, profile in enumerate(model.profiles):
        match = profile.match
        ok = np.ones(n, dtype=bool)
        if match.tier is not None:
            ok &= tier == match.tier
        if match.lifecycle_stage is not None:
            ok &= stage == match.lifecycle_stage
        if match.tenure_min_days is not None or match.tenure_max_days is not None:
            ok &= has_tenure
            if match.tenure_min_days is not None:
                ok &= tenure >= match.tenure_min_days
            if match.tenure_max_days is not None:
                ok &= tenure < match.tenure_max_days
        specificity = match.specificity()
        better = ok & (specificity > best_specificity)
        best[better] = i
        best_specificity[better] = specificity
    return best


def _curve(curve: Curve, value: Floats) -> Floats:
    """``Curve.score`` on every value (NaN where none), in its arithmetic."""
    pts = curve.points
    out = np.full(len(value), pts[-1][1])
    left = ~(value > pts[0][0])  # NaN too: masked out by the caller
    out[left] = pts[0][1]
    done = left.copy()
    for (x0, y0), (x1, y1) in itertools.pairwise(pts):
        here = ~done & (value <= x1)
        out[here] = y0 + (y1 - y0) * (value[here] - x0) / (x1 - x0)
        done |= here
    return out


@dataclass
class _Scored:
    """One measure with data in some accounts: where it has data, its values, curve
    scores and weight within its group."""

    name: str
    label: str
    has: Bools
    raw: Floats
    score: Floats
    weight: float


@dataclass
class _Group:
    name: str
    weight: float
    scored: list[_Scored]
    has: Bools  # any measure with data
    total_weight: Floats
    score: Floats


@dataclass
class Evaluated:
    """What ``evaluate`` works out, for the accounts of one profile, as arrays."""

    rows: npt.NDArray[np.int64]  # the accounts (indices into the batch)
    profile: Profile | None
    groups: list[_Group]
    missing: list[tuple[str, Bools]]  # in the order evaluate lists them
    total_group_weight: Floats
    total: Floats
    capped_by: list[str | None]


def evaluate_columns(
    model: HealthModel, raw: Mapping[str, Floats], chosen: npt.NDArray[np.int64]
) -> list[Evaluated]:
    """The array half, one profile's accounts at a time."""
    out = []
    for index in np.unique(chosen).tolist():
        rows = np.flatnonzero(chosen == index)
        profile = model.profiles[index] if index >= 0 else None
        out.append(_evaluate(model, profile, {k: v[rows] for k, v in raw.items()}, rows))
    return out


def _evaluate(
    model: HealthModel, profile: Profile | None, raw: Mapping[str, Floats], rows: Any
) -> Evaluated:
    n = len(rows)
    present = {name: ~np.isnan(values) for name, values in raw.items()}
    groups: list[_Group] = []
    missing: list[tuple[str, Bools]] = []
    for group in model.scored(profile):
        scored = []
        for measure in group.measures:
            name = measure.name
            has = present[name].copy()
            for need in measure.needs:
                has &= present[need]
            missing.append((name, ~has))
            curve_scores = _curve(measure.curve, raw[name])
            scored.append(
                _Scored(name, measure.label, has, raw[name], curve_scores, measure.weight)
            )
        total_weight = np.zeros(n)
        weighted = np.zeros(n)
        for s in scored:
            total_weight += np.where(s.has, s.weight, 0.0)
            weighted += np.where(s.has, s.score * s.weight, 0.0)
        has_any = total_weight > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            score = weighted / total_weight
        groups.append(_Group(group.name, group.weight, scored, has_any, total_weight, score))
    total_group_weight = np.zeros(n)
    for g in groups:
        total_group_weight += np.where(g.has, g.weight, 0.0)
    total = np.zeros(n)
    for g in groups:
        for s in g.scored:
            with np.errstate(invalid="ignore", divide="ignore"):
                share = (g.weight / total_group_weight) * (s.weight / g.total_weight)
            total += np.where(s.has, share * s.score, 0.0)
    capped_by: list[str | None] = [None] * n
    with_data = {g.name: g for g in groups}
    for cap in model.caps:
        capped = with_data.get(cap.group)
        if capped is None:
            continue
        applies = capped.has.copy()
        for need in cap.needs:
            applies &= present[need]
        hit = applies & (capped.score < cap.below) & (total > cap.cap)
        total = np.where(hit, cap.cap, total)
        for i in np.flatnonzero(hit).tolist():
            capped_by[i] = cap.reason
    return Evaluated(rows, profile, groups, missing, total_group_weight, total, capped_by)


def build(model: HealthModel, parts: list[Evaluated], n: int) -> list[Evaluation]:
    """The Python half: each account's ``Evaluation``, in batch order."""
    out: list[Evaluation | None] = [None] * n
    for part in parts:
        name = part.profile.name if part.profile else None
        missing = [(m, has.tolist()) for m, has in part.missing]
        groups = [
            (
                g,
                g.has.tolist(),
                g.score.tolist(),
                g.total_weight.tolist(),
                [(s, s.has.tolist(), s.raw.tolist(), s.score.tolist()) for s in g.scored],
            )
            for g in part.groups
        ]
        tgw = part.total_group_weight.tolist()
        totals = part.total.tolist()
        for i, row in enumerate(part.rows.tolist()):
            lacking = [m for m, lacks in missing if lacks[i]]
            components: list[Component] = []
            scores: dict[str, float] = {}
            for g, has, score, total_weight, scored in groups:
                if not has[i]:
                    continue
                scores[g.name] = score[i]
                for s, s_has, s_raw, s_score in scored:
                    if s_has[i]:
                        weight = (g.weight / tgw[i]) * (s.weight / total_weight[i])
                        components.append(
                            Component(
                                g.name,
                                s.name,
                                s.label,
                                s_raw[i],
                                s_score[i],
                                weight,
                                weight * s_score[i],
                            )
                        )
            if not components:
                out[row] = Evaluation(
                    None, "unknown", [], {}, lacking, profile=name, model_version=model.version
                )
                continue
            value = round(totals[i])
            out[row] = Evaluation(
                value,
                model.bands.band(value),
                components,
                scores,
                lacking,
                part.capped_by[i],
                name,
                model.version,
            )
    return [e for e in out if e is not None]
