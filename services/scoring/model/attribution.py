"""Which measures moved a score between two days, in points, with the model itself.

A measure's stored points (its weight × its 0–100 score) are no answer: weights are
shared out again whenever a measure gains or loses data (``evaluate``'s missing-data
rule), so when ticket data first arrived, "open tickets 0 → 1" showed +6 points and
"active days 5 → 7" −1 (found from outside, on the account page), each the opposite of
what that measure did. Here the measures that moved (a value, or the data it ``needs``) are
put back from the earlier day's inputs to the later day's under the model in force, in
every order, and each is credited with what it adds on average (its Shapley value): the
pulls add up to the score's move, and what measures did together (sharing weights, a
cap) is shared between them. What is left of the stored scores' move (rounding, another
model than the earlier day's) is told as the rest, never spread over them.

Pure: the model and both days' stored inputs in, points out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from services.scoring.model.evaluate import Evaluation, evaluate_as
from services.scoring.model.schema import HealthModel, Profile


@dataclass(frozen=True)
class Pulls:
    """Points each measure moved the score by (``measures``: only those that moved),
    with the model's label of each, and the scores before and after as the model in
    force gives them, unrounded."""

    before: float | None
    after: float | None
    measures: dict[str, float]
    labels: dict[str, str]


def exact_score(score: Evaluation) -> float | None:
    """The score before rounding (a capped score: its cap)."""
    if score.value is None:
        return None
    if score.capped_by is not None:
        return float(score.value)
    return sum(component.contribution for component in score.components)


def profile_named(model: HealthModel, name: str | None) -> Profile | None:
    """The model's profile of that name (a stored score names the one it was scored
    with); None for none, or one this model no longer has."""
    return next((p for p in model.profiles if p.name == name), None)


# Measures moved at once up to which the pulls are exact Shapley values (every order of
# putting them back, 2^k scores: 1,024 take about 30 ms); above it, each measure's pull
# is the mean of putting it back alone and of taking it alone from the later day (two
# orders of k!), whose sum can differ from the score's move. Measures that move nothing
# either way (days since a touchpoint on a curve already flat, every day) are left out
# first, so the exact way is the usual one.
EXACT_UP_TO = 10
# A pull smaller than this, in points, is none (float noise of the weights' sums).
NO_PULL = 1e-9


def pulls(
    model: HealthModel,
    profile: Profile | None,
    before: Mapping[str, Any],
    after: Mapping[str, Any],
) -> Pulls:
    """Each of the model's measures whose value (or the data it needs) differs between
    ``before`` and ``after`` (two days' stored inputs), with the points it moves the
    score by: its Shapley value among the measures that moved, so the pulls add up to
    the score's move, measures that moved together sharing what they did together."""
    then = _numbers(before)
    now = _numbers(after)
    start = exact_score(evaluate_as(model, then, profile))
    end = exact_score(evaluate_as(model, now, profile))
    moved: list[tuple[str, tuple[str, ...]]] = []
    labels: dict[str, str] = {}
    for group in model.scored(profile):
        for measure in group.measures:
            names = (measure.name, *measure.needs)
            if any(then.get(name) != now.get(name) for name in names):
                moved.append((measure.name, names))
                labels[measure.name] = measure.label
    if start is None or not moved:
        return Pulls(start, end, {}, labels if start is not None else {})

    def score(taken: Iterable[int]) -> float:
        """The score with the measures ``taken`` (indexes in ``moved``) as later."""
        raw = dict(then)
        for index in taken:
            raw.update((name, now.get(name)) for name in moved[index][1])
        value = exact_score(evaluate_as(model, raw, profile))
        return value if value is not None else 0.0

    everything = range(len(moved))
    full = score(everything)
    alone = [score([m]) - start for m in everything]
    taken_out = [full - score(i for i in everything if i != m) for m in everything]
    values = [(a + t) / 2 for a, t in zip(alone, taken_out, strict=True)]
    players = [m for m in everything if abs(alone[m]) > NO_PULL or abs(taken_out[m]) > NO_PULL]
    if len(players) <= EXACT_UP_TO:
        values = [0.0] * len(moved)
        shares = _shapley(len(players), lambda taken: score(players[i] for i in taken))
        for player, share in zip(players, shares, strict=True):
            values[player] = share
    return Pulls(start, end, {name: v for (name, _), v in zip(moved, values, strict=True)}, labels)


def _shapley(k: int, score: Callable[[Iterable[int]], float]) -> list[float]:
    """Each of ``k`` players' Shapley value of ``score`` (a coalition's worth)."""
    worth = [score(i for i in range(k) if mask >> i & 1) for mask in range(1 << k)]
    shares = [math.factorial(n) * math.factorial(k - n - 1) / math.factorial(k) for n in range(k)]
    values = [0.0] * k
    for mask in range(1 << k):
        size = mask.bit_count()
        for player in range(k):
            if not mask >> player & 1:
                values[player] += shares[size] * (worth[mask | 1 << player] - worth[mask])
    return values


def _numbers(inputs: Mapping[str, Any]) -> dict[str, float | None]:
    """The stored inputs as the model read them: numbers (a bool as 0 or 1, as scoring
    took it), anything else as no data."""
    return {
        name: float(value) if isinstance(value, int | float) else None
        for name, value in inputs.items()
    }
