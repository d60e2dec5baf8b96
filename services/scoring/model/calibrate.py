"""A health model learned from a team's own history, in the same TOML format as the
handbook's, so explanations, bands, profiles and the API keep working.

The model is additive and explainable: one shape function per measure — a piecewise-
linear curve through the churn rate of each quantile bin of the measure, made monotone
in the direction the training data shows, rescaled so that 100 is the lowest churn —
and one weight per measure: a logistic regression's on those curves (bounded at zero,
so every weight reads "more of this curve is healthier") blended with the measure's own
strength (``_weights``). The score is the weighted mean of the curves, exactly as
``evaluate`` computes any model. Measures keep the handbook's groups where they have
one; the rest go to a "behaviour" group. Tenure (days since purchase) is an input like
any other, so its curve says how expectations differ by age; its curve goes on past
the oldest account of the training rows (``_age_tail``).

Why not an Explainable Boosting Machine: its per-measure shapes are the same idea, but
``interpret`` pulls in a heavy stack, and its pairwise terms would not fit the TOML
format; binned curves plus a logistic regression fit in seconds with scikit-learn.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from services.scoring.model.labels import generic_label, measured_name
from services.scoring.model.schema import HealthModel, parse_model

KNOTS = 8
MIN_BIN = 30  # observations per bin at least: fewer make a noisy curve
MIN_COVERAGE = 0.05  # a measure with data in fewer training rows is left out
OTHER_GROUP = "behaviour"
Row = Mapping[str, Any]


def shape_function(
    values: Sequence[float], labels: Sequence[bool], *, age: bool = False
) -> list[list[float]] | None:
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
    if age:
        points += _age_tail(points, x, y)
    rates = [rate for _, rate in points]
    if len(points) < 2 or max(rates) - min(rates) < 1e-9:
        return None
    low, high = min(rates), max(rates)
    return [
        [round(value, 6), round(100 * (high - rate) / (high - low), 2)] for value, rate in points
    ]


# Measures that grow with the calendar (an account's age): in a time split every old
# account's test value lies past the largest value seen in training, where a curve of
# bins would be flat and tie them all (docs/model-evaluation.md, seed 606).
AGE_MEASURES = frozenset({"days_since_purchase", "days_since_first_use"})
TAIL = (2.0, 4.0, 8.0)  # tail points at these multiples of the last bin's value


def _age_tail(points: list[tuple[float, float]], x: Any, y: Any) -> list[tuple[float, float]]:
    """Points past the training range for an age measure: the churn rate carried on from
    the last bin along a logistic trend in log(1 + age) fitted on all the training rows,
    when that trend agrees with the curve's own direction (else none: flat, as before)."""
    from sklearn.linear_model import LogisticRegression

    if len(points) < 2 or np.ptp(y) == 0 or points[-1][0] <= 0:
        return []
    feature = np.log1p(np.maximum(x, 0.0)).reshape(-1, 1)
    slope = float(LogisticRegression(C=1.0).fit(feature, y.astype(bool)).coef_[0][0])
    last_value, last_rate = points[-1]
    rising = points[-1][1] - points[0][1]
    if slope * rising <= 0 or not 0 < last_rate < 1:
        return []
    logit = math.log(last_rate / (1 - last_rate))
    return [
        (
            last_value * k,
            1
            / (
                1
                + math.exp(-(logit + slope * (math.log1p(last_value * k) - math.log1p(last_value))))
            ),
        )
        for k in TAIL
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


def _curves(rows: Sequence[Row], labels: Sequence[bool]) -> dict[str, list[list[float]]]:
    keep = set(top_names(rows))
    names = sorted(
        n
        for n in {n for row in rows for n, v in row.items() if _number(v)} - {"score"}
        if measured_name(n) is None or measured_name(n) in keep
    )
    curves = {}
    for name in _distinct_columns(rows, names):
        pairs = [
            (float(row[name]), y)
            for row, y in zip(rows, labels, strict=True)
            if _number(row.get(name))
        ]
        if len(pairs) < max(2 * MIN_BIN, MIN_COVERAGE * len(rows)):
            continue
        curve = shape_function(
            [p[0] for p in pairs], [p[1] for p in pairs], age=name in AGE_MEASURES
        )
        if curve is not None:
            curves[name] = curve
    return curves


def _distinct_columns(rows: Sequence[Row], names: list[str]) -> list[str]:
    """``names`` less those whose values equal, row by row, a name kept before them (a
    product with one event name has ``events_28d[post]`` equal to ``usage_events_28d``):
    two curves of one measure would split its weight and take two of the strongest
    places. The account-wide measure is kept before a per-name one."""
    seen: set[tuple[Any, ...]] = set()
    kept = []
    for name in sorted(names, key=lambda n: (measured_name(n) is not None, n)):
        column = tuple(row.get(name) for row in rows)
        if column not in seen:
            seen.add(column)
            kept.append(name)
    return sorted(kept)


# The weights: a logistic regression's, blended with each measure's own strength. Fitted
# alone on the few training rows a long horizon leaves (the embargo), the regression
# gave its weight to curves that mattered only beside others in those months (trends,
# rare names) and none to the strongest single measures (events over 28 days): out of
# sample it then fell below those measures alone. Chosen on development seeds only
# (docs/model-evaluation.md, "Seed 606"): scikit-learn's C of 0.05 (0.5 before), 70% regression.
STRENGTH = 0.05
FITTED_SHARE = 0.7
STRONGEST = 10  # the measures whose own strength gets the rest of the weight


def _weights(
    rows: Sequence[Row], labels: Sequence[bool], curves: dict[str, list[list[float]]]
) -> dict[str, float]:
    """Per measure: FITTED_SHARE of its weight in a logistic regression on the curves
    (missing: the curve's mean; every weight held at zero or above, so each reads "more
    of this curve is healthier"), the rest by its own strength (its AUC above 0.5 in
    the training rows) among the STRONGEST measures and the account's age (tenure),
    which expectations always depend on. Measures left at zero are not kept."""
    from sklearn.metrics import roc_auc_score

    names = list(curves)
    y = np.asarray(labels, dtype=bool)
    if not names or y.all() or not y.any():
        return {}
    matrix = _matrix(rows, curves, names)
    fitted = nonnegative_logistic(matrix, y, STRENGTH)
    own = np.array([max(0.0, float(roc_auc_score(y, -column)) - 0.5) for column in matrix.T])
    strongest = own >= np.sort(own)[-min(STRONGEST, len(own))]
    ages = np.array([name in AGE_MEASURES for name in names])
    own = np.where(ages, np.maximum(own, own.max() / 2), np.where(strongest, own, 0.0))
    blend = FITTED_SHARE * _share(fitted) + (1 - FITTED_SHARE) * _share(own)
    if not (blend > 0).any():
        return {}
    top = float(blend.max())
    return {
        n: weight
        for n, c in zip(names, blend, strict=True)
        if (weight := round(float(c) / top * 10, 3)) > 0
    }


def _share(weights: Any) -> Any:
    total = float(weights.sum())
    return weights / total if total > 0 else weights


def nonnegative_logistic(matrix: Any, y: Any, strength: float = 0.5) -> Any:
    """The weights w >= 0 of churn log-odds ``b - matrix @ w`` (L2 penalty as scikit-learn's
    ``C = strength``): "no weight below zero" as a bound of one fit, where before the
    measures whose unconstrained weight came out negative were dropped and the rest refit
    until none was (correlated curves — likes over 7, 28 and 90 days — made that a loop)."""
    from scipy.optimize import minimize
    from scipy.special import expit

    x = np.asarray(matrix, dtype=float)
    target = np.asarray(y, dtype=float)

    def loss(params: Any) -> tuple[float, Any]:
        w, b = params[:-1], params[-1]
        z = b - x @ w
        p = expit(z)
        value = float(np.sum(np.logaddexp(0, z) - target * z) + w @ w / (2 * strength))
        residual = p - target
        grad = np.concatenate([-(x.T @ residual) + w / strength, [residual.sum()]])
        return value, grad

    start = np.zeros(x.shape[1] + 1)
    bounds = [(0.0, None)] * x.shape[1] + [(None, None)]
    result = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=bounds)
    return np.asarray(result.x[:-1])


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
    used = sorted({n for name in weights if (n := measured_name(name)) is not None})
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
