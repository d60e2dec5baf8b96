"""An account's "what changed", readable: which measures moved the score, by how many
points, biggest move first.

Compared are two scored states of the same history the charts draw (``health_daily``):
the score now (``account_health``, what the card shows) and the stored day a period
back. Each measure's move is the model's own answer (``scoring.queries.score_pulls``:
its Shapley value, the measures that moved put back from the earlier day's inputs in
every order), not the difference of its stored points: weights are shared out again
when a measure gains or loses data, and that difference credited a new ticket with +6
points and more active days with −1. What the listed moves leave of the stored scores'
move (smaller moves, rounding, another model than the earlier day's) is one line of its
own. Only the model's scored measures are listed, under the model's own labels (one
name per concept), so raw input ids (``dau``, ``app_share_28d``) never reach the page.
A move that rounds to nothing in points is not news and is left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from shared.i18n import N_

# Periods compared: (key, days back or None for the previous stored day, title).
PERIODS: tuple[tuple[str, int | None, str], ...] = (
    # The last day stored before (a day is stored when its score or inputs changed), which
    # may be days back: "the previous day" misled.
    ("previous", None, "Since the previous recorded score"),
    ("7d", 7, "Over 7 days"),
    ("30d", 30, "Over 30 days"),
)
# A pull under half a point shows as "0 points": not news.
MIN_PULL = 0.5
SHOWN = 6
# What the measures' moves leave of the score's: its own line (measure "rest").
REST = "rest"
# A measure without data that day (its weight shared out among the others).
NO_DATA = N_("no data")


@dataclass(frozen=True)
class Scored:
    """One scored state: its day, score, inputs, the model's profile it was scored
    with and the measures it had no data for."""

    day: date
    score: int | None
    inputs: dict[str, Any]
    profile: str | None = None
    missing: frozenset[str] = field(default_factory=frozenset)


def now_state(day: date, health: Any) -> Scored:
    """The current score (``account_health``), dated with its history day."""
    why = health.components or {}
    missing = frozenset(why.get("missing") or ())
    return Scored(day, health.score, health.inputs or {}, why.get("profile"), missing)


def stored_state(row: Any) -> Scored:
    """A ``health_daily`` row (its compact explanation names profile and missing)."""
    why = row.explanation or {}
    missing = frozenset(why.get("missing") or ())
    return Scored(row.day, row.score, row.inputs or {}, why.get("profile"), missing)


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


def _shown(name: str, state: Scored, digits: int) -> str:
    if name in state.missing:
        return NO_DATA
    return value_text(name, state.inputs.get(name), digits)


def _values(name: str, then: Scored, now: Scored) -> tuple[str, str]:
    """Before and after, with one more digit when they would read the same (a measure
    can move the score while its own value reads the same: the data it needs moved)."""
    texts = _shown(name, then, 0), _shown(name, now, 0)
    if texts[0] == texts[1]:
        texts = _shown(name, then, 1), _shown(name, now, 1)
    return texts


def compare(
    now: Scored, then: Scored | None, labels: dict[str, str], pulls: Mapping[str, float]
) -> dict[str, Any] | None:
    """The score's move from ``then`` to ``now`` and the measures that moved it
    (``pulls``: measure → points, from the model), biggest first, then what they leave
    of the score's move; None without an earlier state."""
    if then is None:
        return None
    moves: list[dict[str, Any]] = []
    for name, pull in pulls.items():
        if abs(pull) < MIN_PULL or round(pull) == 0:  # round(±0.5) is 0: "+0 points"
            continue
        before, after = _values(name, then, now)
        moves.append(
            {
                "measure": name,
                "label": labels.get(name) or name.replace("_", " "),
                "before": before,
                "after": after,
                "pull": round(pull),
                "rest": False,
                # NO_DATA, to be worded in the page's language (a value is shown as is).
                "worded": {before, after} & {NO_DATA},
            }
        )
    moves.sort(key=lambda m: (-abs(m["pull"]), m["label"]))
    moves = moves[:SHOWN]
    delta = (now.score - then.score) if now.score is not None and then.score is not None else None
    rest = None if delta is None else delta - sum(m["pull"] for m in moves)
    if rest:
        # Moves too small to list, rounding, another model than the earlier day's.
        moves.append(
            {
                "measure": REST,
                "label": REST,
                "before": "",
                "after": "",
                "pull": rest,
                "rest": True,
                "worded": set(),
            }
        )
    return {
        "since": then.day,
        "score_before": then.score,
        "score_after": now.score,
        "delta": delta,
        "moves": moves,
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
