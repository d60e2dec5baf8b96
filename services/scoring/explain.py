"""Plain-words explanations of what moved between two sets of model inputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
    the ``limit`` largest only. With the product-agnostic measures an account has a
    hundred inputs, so the sentences are written for the entries kept."""
    if not before:
        return []
    old_of = before.get
    # The import scores every account every day, three lists a score: this runs over
    # ~100 inputs 300 times a score, so the cheap test (unchanged) comes first.
    moved = [
        (name, old, new)
        for name, new in after.items()
        if (old := old_of(name)) != new and isinstance(new, _NUMBER) and isinstance(old, _NUMBER)
    ]
    # Largest relative change first; one from zero counts as the largest. Stable: equal
    # sizes keep the inputs' order.
    moved.sort(key=_size, reverse=True)
    return [
        _entry(name, old, new, (new - old) / abs(old) if old else None, names)
        for name, old, new in moved[:limit]
    ]


def _size(change: tuple[str, float, float]) -> float:
    _, old, new = change
    return abs((new - old) / abs(old)) if old else float("inf")


def _entry(
    name: str, old: float, new: float, relative: float | None, names: Mapping[str, str]
) -> dict[str, Any]:
    verb = "rose" if new > old else "fell"
    if "share" in name or name.endswith("_use_28d"):
        span = f"from {old:.0%} to {new:.0%}"  # shares, as percentages
    else:
        span = f"from {_number_text(old)} to {_number_text(new)}"
    text = f"{names.get(name, name)} {verb} {span}"
    if relative is not None:
        text += f", {relative:+.0%}".replace("-", "−")
    return {
        "measure": name,
        "before": old,
        "after": new,
        "change": new - old,
        "relative": None if relative is None else round(relative, 4),
        "text": text,
    }
