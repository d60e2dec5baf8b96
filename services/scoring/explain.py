"""Plain-words explanations of what moved between two sets of model inputs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from operator import itemgetter
from typing import Any

from services.scoring.model.labels import generic_label, is_share
from services.scoring.model.schema import HealthModel

# Shown with the model's measures: the counts people think in.
EXTRA_LABELS = {
    "score": "health score",
    "active_users_7d": "active users over 7 days",
    "events_7d": "events over 7 days",
    "seats_purchased": "seats purchased",
    "customisation_uses_28d": "customisation uses over 28 days",
}


def labels(model: HealthModel) -> dict[str, str]:
    out = dict(EXTRA_LABELS)
    for group in model.groups.values():
        for name, measure in group.measures.items():
            out[name] = measure.label or name.replace("_", " ")
    return out


def _number_text(value: float) -> str:
    return f"{value:g}" if value == int(value) else f"{value:.2f}"


# What ``changes`` compares: numbers (bool is an int, and compares as one).
_NUMBER = (int, float)


def numbers(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The inputs ``changes`` can compare, in their order: several comparisons of one
    set of inputs (with the previous score, 7 and 30 days back) skip the rest once."""
    return {name: value for name, value in inputs.items() if isinstance(value, _NUMBER)}


def changes(
    after: Mapping[str, Any],
    before: Mapping[str, Any] | None,
    names: Mapping[str, str],
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """One entry per input that moved, with the numbers and a sentence, largest first;
    the ``limit`` largest only."""
    return worded(moved(after, before, limit), names)


def moved(
    after: Mapping[str, Any], before: Mapping[str, Any] | None, limit: int | None = None
) -> list[list[Any]]:
    """The inputs that moved, as ``[name, before, after]``, largest relative change first
    (one from zero counts as the largest; equal sizes keep the inputs' order); the
    ``limit`` largest only. A score stores these and its reader words them (``worded``):
    with the product-agnostic measures an account has a hundred inputs, every event
    rescores it, and the sentences were a third of the scoring step."""
    if not before:
        return []
    old_of = before.get
    # The cheap test (unchanged) first; the size is worked out inline, not in a key
    # function, because this runs over ~100 inputs three times a score.
    sized = [
        (abs((new - old) / old) if old else _FROM_ZERO, name, old, new)
        for name, new in after.items()
        if (old := old_of(name)) != new and isinstance(new, _NUMBER) and isinstance(old, _NUMBER)
    ]
    sized.sort(key=_first, reverse=True)  # stable: ties keep the inputs' order
    return [[name, old, new] for _, name, old, new in sized[:limit]]


def with_moved_since(
    why: Mapping[str, Any],
    inputs: Mapping[str, Any],
    past: Mapping[int, Mapping[str, Any] | None],
) -> dict[str, Any]:
    """A stored explanation with what moved since each of ``past``'s days back (days
    back → the inputs stored then, or None), beside what moved since the previous score.
    Worked out when read, not when scored: every score of every batch, sweep and
    imported day would compute the lists, and only the newest score's are ever read."""
    now = numbers(inputs)
    moves = dict(why.get(MOVED) or {})
    for back, then in past.items():
        moves[f"since_{back}d"] = moved(now, then, MOVED_KEPT)
    return {**why, MOVED: moves}


def worded(moves: Sequence[Sequence[Any]], names: Mapping[str, str]) -> list[dict[str, Any]]:
    """``moved``'s list as entries with the numbers and a sentence."""
    return [
        _entry(name, old, new, (new - old) / abs(old) if old else None, names)
        for name, old, new in moves
    ]


def worded_changes(why: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    """A stored explanation as people read it: its ``moved`` lists (a score stores only
    the numbers) as ``changes``, in words. An explanation stored before the lists were
    kept as numbers already has its ``changes`` and is returned as it is."""
    if MOVED not in why:
        return dict(why)
    return {
        (CHANGES if key == MOVED else key): (
            {period: worded(moves, names) for period, moves in value.items()}
            if key == MOVED
            else value
        )
        for key, value in why.items()
    }


# Where a score's explanation keeps what moved: as numbers (MOVED, what scoring writes)
# and in words (CHANGES, what readers are given; and what older rows stored).
MOVED = "moved"
CHANGES = "changes"
# The day a score is as of, kept in its explanation: what moved since days back is
# worked out when read, from that day (``with_moved_since``).
DAY = "day"
# What moved, per period: the largest 20 (of up to ~100 inputs), more than any page shows.
MOVED_KEPT = 20
_FROM_ZERO = float("inf")
# Measures on a 0–100 scale, whose move is told in points, not as a percentage of itself.
POINT_MEASURES = frozenset({"score"})
_first = itemgetter(0)


def _entry(
    name: str, old: float, new: float, relative: float | None, names: Mapping[str, str]
) -> dict[str, Any]:
    verb = "rose" if new > old else "fell"
    # The measure's own name, not an event's it is about: "share" is a common event name
    # (days_since_event[share] read "rose from 100% to 600%").
    if is_share(name):
        span = f"from {old:.0%} to {new:.0%}"  # shares, as percentages
    else:
        span = f"from {_number_text(old)} to {_number_text(new)}"
    # Words for every measure: the model's labels, else the product-agnostic ones
    # ("days since last use", "uses over 28 days: export"), not the raw ids.
    text = f"{names.get(name) or generic_label(name)} {verb} {span}"
    if name in POINT_MEASURES:  # a score's move in points: "+129%" of a score read oddly
        text += f", {new - old:+.0f} points".replace("-", "−")
    elif old < 0 or new < 0:
        # A slope below zero: a share of it means nothing ("fell from -0.20 to -2.40,
        # −1100%"), so the difference is told instead.
        text += f", {'+' if new > old else '−'}{_number_text(abs(new - old))}"
    elif relative is not None:
        text += f", {relative:+.0%}".replace("-", "−")
    return {
        "measure": name,
        "before": old,
        "after": new,
        "change": new - old,
        "relative": None if relative is None else round(relative, 4),
        "text": text,
    }
