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


def _fmt(name: str, value: float) -> str:
    if "share" in name or name.endswith("_use_28d"):
        return f"{value:.0%}"
    return f"{value:g}" if value == int(value) else f"{value:.2f}"


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
    moved: list[tuple[float, str, float, float, float | None]] = []
    for name, new in after.items():
        old = before.get(name)
        if not isinstance(new, int | float) or not isinstance(old, int | float) or new == old:
            continue
        relative = (new - old) / abs(old) if old else None
        # Relative size; a change from zero counts as the largest.
        size = abs(relative) if relative is not None else float("inf")
        moved.append((size, name, old, new, relative))
    moved.sort(key=lambda entry: entry[0], reverse=True)
    return [
        _entry(name, old, new, relative, names) for _, name, old, new, relative in moved[:limit]
    ]


def _entry(
    name: str, old: float, new: float, relative: float | None, names: Mapping[str, str]
) -> dict[str, Any]:
    verb = "rose" if new > old else "fell"
    text = f"{names.get(name, name)} {verb} from {_fmt(name, old)} to {_fmt(name, new)}"
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
