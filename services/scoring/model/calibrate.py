"""A health model learned from a team's own history, in the same TOML format as the
handbook's, so explanations, bands, profiles and the API keep working.

The model is additive and explainable: one shape function per measure — a piecewise-
linear curve through the churn rate of each quantile bin of the measure, made monotone
in the direction the training data shows, rescaled so that 100 is the lowest churn —
and one weight per measure from a logistic regression on
those curves (a measure whose weight would be negative is dropped, so every weight
reads "more of this curve is healthier"). The score is the weighted mean of the curves,
exactly as ``evaluate`` computes any model. Measures keep the handbook's groups where
they have one; the rest go to a "behaviour" group. Tenure (days since purchase) is an
input like any other, so its curve says how expectations differ by age.

Why not an Explainable Boosting Machine: its per-measure shapes are the same idea, but
``interpret`` pulls in a heavy stack, and its pairwise terms would not fit the TOML
format; binned curves plus a logistic regression fit in seconds with scikit-learn.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from services.scoring.model.labels import generic_label
from services.scoring.model.schema import HealthModel, parse_model

KNOTS = 8
MIN_BIN = 30  # observations per bin at least: fewer make a noisy curve
MIN_COVERAGE = 0.05  # a measure with data in fewer training rows is left out
OTHER_GROUP = "behaviour"
Row = Mapping[str, Any]


def shape_function(values: Sequence[float], labels: Sequence[bool]) -> list[list[float]] | None:
    """[value, score] points: per quantile bin, its churn rate (shrunk towards the overall
    rate), rescaled so the lowest-churn bin scores 100 and the highest 0. None when the
    measure has a single value or churn does not differ between its bins."""
    x = np.asarray(values, dtype=float)
    y = np.asarray(labels, dtype=float)
    edges = np.unique(np.quantile(x, np.linspace(0, 1, KNOTS + 1)))
    if len(edges) < 2:
        return None
    bins = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(edges) - 2)
    base = float(y.mean())
    points: list[tuple[float, float]] = []
    for b in range(len(edges) - 1):
        members = bins == b
        if members.sum() == 0:
            continue
        count = float(members.sum())
        rate = (float(y[members].sum()) + MIN_BIN * base) / (count + MIN_BIN)
        points.append((float(np.median(x[members])), rate))
    points = _monotone(_distinct(points), x, y)
    rates = [rate for _, rate in points]
    if len(points) < 2 or max(rates) - min(rates) < 1e-9:
        return None
    low, high = min(rates), max(rates)
    return [
        [round(value, 6), round(100 * (high - rate) / (high - low), 2)] for value, rate in points
    ]


def _monotone(points: list[tuple[float, float]], x: Any, y: Any) -> list[tuple[float, float]]:
    """The bins' churn rates made monotone (pool-adjacent-violators) in the direction the
    measure's rank correlation with churn shows: a bumpy curve from a few noisy bins
    becomes a steady one, which held up better out of sample (docs/model-evaluation.md)."""
    from scipy.stats import spearmanr

    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return points  # no correlation to follow (and scipy would warn)
    rho = float(spearmanr(x, y).statistic)
    if not math.isfinite(rho) or rho == 0:
        return points
    sign = 1.0 if rho > 0 else -1.0  # churn rising with the value: rates must not fall
    blocks: list[list[float]] = []  # [mean rate (signed), points pooled]
    for _, rate in points:
        blocks.append([sign * rate, 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            (r2, n2), (r1, n1) = blocks.pop(), blocks.pop()
            blocks.append([(r1 * n1 + r2 * n2) / (n1 + n2), n1 + n2])
    rates = [sign * rate for rate, n in blocks for _ in range(int(n))]
    return [(value, rate) for (value, _), rate in zip(points, rates, strict=True)]


def _distinct(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Bins whose medians coincide (heavy ties) merge: curve values must increase."""
    out: list[tuple[float, float]] = []
    for value, rate in points:
        if out and math.isclose(out[-1][0], value):
            out[-1] = (value, (out[-1][1] + rate) / 2)
        else:
            out.append((value, rate))
    return out


def _curve_score(points: list[list[float]], value: float) -> float:
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    return float(np.interp(value, xs, ys))


def fit(
    rows: Sequence[Row], labels: Sequence[bool], base: HealthModel, version: str = "calibrated"
) -> tuple[HealthModel, str]:
    """The calibrated model from training rows (measure → value) and their labels, and
    its TOML text."""
    curves = _curves(rows, labels)
    weights = _weights(rows, labels, curves)
    if not weights:
        raise ValueError("no measure ranks churn in this history: nothing to calibrate")
    scores = [_score(row, curves, weights) for row in rows]
    known = [s for s in scores if s is not None]
    red, green = (round(float(np.percentile(known, q)), 1) for q in (10, 50))
    text = to_toml(base, curves, weights, (red, green), version=version)
    return parse_model(text), text


# Per-name measures (``events_28d[like]``) of the most used event names only: a name
# few accounts use makes a noisy curve, and each kept name adds measures to the model.
TOP_NAMES = 10


def top_names(rows: Sequence[Row], limit: int = TOP_NAMES) -> list[str]:
    """The event names with the most events over 90 days across ``rows``, most first."""
    volume: dict[str, float] = {}
    for row in rows:
        for key, value in row.items():
            if key.startswith("events_90d[") and _number(value):
                name = key[len("events_90d[") : -1]
                volume[name] = volume.get(name, 0.0) + float(value)
    return sorted(volume, key=lambda n: (-volume[n], n))[:limit]


def name_of(measure: str) -> str | None:
    """The event name of a per-name measure (``events_28d[like]`` → like), else None."""
    return (
        measure[measure.index("[") + 1 : -1] if measure.endswith("]") and "[" in measure else None
    )


def _curves(rows: Sequence[Row], labels: Sequence[bool]) -> dict[str, list[list[float]]]:
    keep = set(top_names(rows))
    names = sorted(
        n
        for n in {n for row in rows for n, v in row.items() if _number(v)} - {"score"}
        if name_of(n) is None or name_of(n) in keep
    )
    curves = {}
    for name in names:
        pairs = [
            (float(row[name]), y)
            for row, y in zip(rows, labels, strict=True)
            if _number(row.get(name))
        ]
        if len(pairs) < max(2 * MIN_BIN, MIN_COVERAGE * len(rows)):
            continue
        curve = shape_function([p[0] for p in pairs], [p[1] for p in pairs])
        if curve is not None:
            curves[name] = curve
    return curves


def _weights(
    rows: Sequence[Row], labels: Sequence[bool], curves: dict[str, list[list[float]]]
) -> dict[str, float]:
    """Logistic regression on the curves (missing: the curve's mean); measures with a
    weight that would say "healthier curve, more churn" are dropped and the rest refit."""
    from sklearn.linear_model import LogisticRegression

    names = list(curves)
    y = np.asarray(labels, dtype=bool)
    for _ in range(len(names) + 1):
        if not names or y.all() or not y.any():
            return {}
        matrix = _matrix(rows, curves, names)
        model = LogisticRegression(C=0.5, max_iter=2000).fit(matrix, y)
        coefs = -model.coef_[0]  # a healthier curve should lower churn
        if (coefs > 0).all():
            top = float(coefs.max())
            return {n: round(float(c) / top * 10, 3) for n, c in zip(names, coefs, strict=True)}
        names = [n for n, c in zip(names, coefs, strict=True) if c > 0]
    return {}


def _matrix(rows: Sequence[Row], curves: dict[str, list[list[float]]], names: list[str]) -> Any:
    matrix = np.full((len(rows), len(names)), np.nan)
    for r, row in enumerate(rows):
        for c, name in enumerate(names):
            if (value := _float(row.get(name))) is not None:
                matrix[r, c] = _curve_score(curves[name], value) / 100
    means = np.nanmean(matrix, axis=0)
    return np.where(np.isnan(matrix), means, matrix)


def _score(
    row: Row, curves: dict[str, list[list[float]]], weights: dict[str, float]
) -> float | None:
    present = {n: w for n, w in weights.items() if _number(row.get(n))}
    if not present:
        return None
    total = sum(present.values())
    return sum(w * _curve_score(curves[n], float(row[n])) for n, w in present.items()) / total


def _float(value: Any) -> float | None:
    return float(value) if _number(value) else None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def to_toml(
    base: HealthModel,
    curves: dict[str, list[list[float]]],
    weights: dict[str, float],
    bands: tuple[float, float],
    version: str = "calibrated",
) -> str:
    """The model file: bands, groups of weighted curves, and the base model's depth,
    SLA and danger settings (the calibration learns the score, not those)."""
    home = {m: g for g, group in base.groups.items() for m in group.measures}
    lines = [
        "# Calibrated from this team's own history by `healthwatch calibrate` (issue 13):",
        "# one curve per measure (100 = the lowest churn seen), weights from a logistic",
        "# regression on the curves; red = the riskiest tenth of the training scores.",
        f"version = {_value(version)}",
        'description = "Calibrated: curves and weights learned from churn history"',
        "",
        "[bands]",
        f"red_below = {bands[0]}",
        f"green_from = {max(bands)}",
    ]
    groups: dict[str, list[str]] = {}
    for name in sorted(weights, key=lambda n: -weights[n]):
        groups.setdefault(home.get(name, OTHER_GROUP), []).append(name)
    for group, names in groups.items():
        label = base.groups[group].label if group in base.groups else "Behaviour"
        weight = round(sum(weights[n] for n in names), 3)
        lines += ["", f"[groups.{group}]", f"weight = {weight}", f"label = {_value(label)}"]
        for name in names:
            measure = base.groups[group].measures.get(name) if group in base.groups else None
            lines += [
                "",
                f"[groups.{group}.measures.{_key(name)}]",
                f"label = {_value(measure.label if measure else generic_label(name))}",
                f"weight = {weights[name]}",
                f"curve.points = {_value(curves[name])}",
            ]
    for section in ("depth", "sla", "danger"):
        lines += ["", *_table(section, getattr(base, section).model_dump())]
    # The names the curves read are measured for every account (0 when unused).
    used = sorted({n for name in weights if (n := name_of(name)) is not None})
    behaviour = base.behaviour.model_copy(update={"events": used})
    lines += ["", *_table("behaviour", behaviour.model_dump())]
    return "\n".join(lines) + "\n"


def _key(name: str) -> str:
    """A TOML key: bare when it can be, quoted otherwise (``"events_28d[like]"``)."""
    return (
        name
        if name.replace("_", "").replace("-", "").isalnum() and name.isascii()
        else _value(name)
    )


def _table(name: str, values: dict[str, Any]) -> list[str]:
    lines = [f"[{name}]"]
    nested = []
    for key, value in values.items():
        if (
            isinstance(value, dict)
            and all(isinstance(v, list | int) for v in value.values())
            and key
            in {
                "workflow",
                "integrated",
                "customised",
            }
        ):
            nested += ["", *_table(f"{name}.{key}", value)]
        else:
            lines.append(f"{key} = {_value(value)}")
    return lines + nested


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_value(str(k))} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML for {type(value).__name__}")
