"""An account's "what changed", readable: which measures pulled the score, by how many
points, biggest pull first.

Compared are two scored states of the same history the charts draw (``health_daily``):
the score now (``account_health``, what the card shows) and the stored day a period
back. Only the model's scored measures are listed, under the model's own labels (one
name per concept), so raw input ids (``dau``, ``app_share_28d``) and inputs the score
does not read ("days since purchase") never reach the page. A move that rounds to
nothing in points or in the shown values is not news and is left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

# Periods compared: (key, days back or None for the previous stored day, title).
PERIODS: tuple[tuple[str, int | None, str], ...] = (
    ("previous", None, "Since the previous day's score"),
    ("7d", 7, "Over 7 days"),
    ("30d", 30, "Over 30 days"),
)
# A pull under half a point shows as "0 points": not news.
MIN_PULL = 0.5
SHOWN = 6


@dataclass(frozen=True)
class Scored:
    """One scored state: its day, score, inputs and each measure's points."""

    day: date
    score: int | None
    inputs: dict[str, Any]
    points: dict[str, float]


def now_state(day: date, health: Any) -> Scored:
    """The current score (``account_health``), dated with its history day."""
    why = health.components or {}
    points = {
        str(c.get("name")): float(c.get("contribution") or 0) for c in why.get("components") or []
    }
    return Scored(day, health.score, health.inputs or {}, points)


def stored_state(row: Any) -> Scored:
    """A ``health_daily`` row; its compact explanation keeps measure → [score, weight,
    points]."""
    comps = (row.explanation or {}).get("components") or {}
    points = {name: float(v[2] or 0) for name, v in comps.items() if isinstance(v, list)}
    return Scored(row.day, row.score, row.inputs or {}, points)


def value_text(name: str, value: Any, digits: int = 0) -> str:
    """A measure's value as the page shows it: shares in %, counts as whole numbers."""
    if value is None:
        return "—"
    number = float(value)
    if "share" in name or name.endswith("_use_28d") or name.endswith("_rate"):
        return f"{number * 100:.{digits}f}%"
    if number.is_integer() and not digits:
        return f"{number:.0f}"
    return f"{number:.{max(digits, 1)}f}"


def _values(name: str, before: Any, after: Any) -> tuple[str, str] | None:
    """Before and after, with one more digit when they would read the same; None when
    even then they do (the move rounds to nothing)."""
    for digits in (0, 1):
        texts = value_text(name, before, digits), value_text(name, after, digits)
        if texts[0] != texts[1]:
            return texts
    return None


def compare(now: Scored, then: Scored | None, labels: dict[str, str]) -> dict[str, Any] | None:
    """The score's move from ``then`` to ``now`` and the measures that pulled it, biggest
    pull first; None without an earlier state."""
    if then is None:
        return None
    moves: list[dict[str, Any]] = []
    for name in set(now.points) | set(then.points):
        pull = now.points.get(name, 0.0) - then.points.get(name, 0.0)
        if abs(pull) < MIN_PULL:
            continue
        values = _values(name, then.inputs.get(name), now.inputs.get(name))
        if values is None:
            continue  # the weights moved (a measure without data), not this measure
        moves.append(
            {
                "measure": name,
                "label": labels.get(name) or name.replace("_", " "),
                "before": values[0],
                "after": values[1],
                "pull": round(pull),
            }
        )
    moves.sort(key=lambda m: (-abs(m["pull"]), m["label"]))
    delta = (now.score - then.score) if now.score is not None and then.score is not None else None
    return {
        "since": then.day,
        "score_before": then.score,
        "score_after": now.score,
        "delta": delta,
        "moves": moves[:SHOWN],
    }


def weakest(components: list[dict[str, Any]], shown: int = 3) -> list[dict[str, Any]]:
    """The measures costing the score the most points (weight × what they miss of 100):
    what holds a low score down, above the fold."""
    lost = []
    for c in components:
        weight, score = c.get("weight"), c.get("score")
        if weight is None or score is None:
            continue
        missing = float(weight) * (100 - float(score))
        if missing >= 1:
            lost.append({**c, "lost": round(missing)})
    lost.sort(key=lambda c: -c["lost"])
    return lost[:shown]
