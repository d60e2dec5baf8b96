"""The provisional health score and rule: pure functions of an account's measures.

The full, configurable health model replaces this; until then the score is two
explainable components and one rule from the handbook ("activity below 20% is the
edge of churn").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

# 60% of purchased seats active in a week earns full marks for activity: a healthy
# seat-based SaaS account rarely has every seat active every week.
FULL_ACTIVITY_SHARE = 0.6
# Each open ticket costs 20 support points: five open tickets zero the component.
POINTS_PER_OPEN_TICKET = 20
WEIGHTS = {"active_user_share_7d": 0.7, "open_tickets": 0.3}
# Band edges (red < 40 <= yellow < 70 <= green), as the handbook's three colours.
RED_BELOW = 40
GREEN_FROM = 70
LOW_ACTIVITY_RULE = "low_activity"
# The rule needs a full week of history: a new account has not had time to activate.
MIN_HISTORY_DAYS = 7


@dataclass(frozen=True)
class Measures:
    account_id: str
    as_of: date
    first_seen: date | None
    active_users_7d: int
    active_users_30d: int
    events_7d: int
    open_tickets: int
    seats_purchased: int | None


@dataclass(frozen=True)
class Score:
    value: int
    band: str
    components: list[dict[str, Any]]


def band_of(value: int) -> str:
    if value < RED_BELOW:
        return "red"
    return "green" if value >= GREEN_FROM else "yellow"


def score(m: Measures) -> Score:
    """Weighted components; a component without data is dropped and its weight spread
    over the others (Catalyst's missing-data rule)."""
    parts: list[tuple[str, float | None, float]] = []
    if m.seats_purchased:
        share = m.active_users_7d / m.seats_purchased
        parts.append(("active_user_share_7d", share, min(1.0, share / FULL_ACTIVITY_SHARE) * 100))
    parts.append(
        ("open_tickets", m.open_tickets, max(0, 100 - POINTS_PER_OPEN_TICKET * m.open_tickets))
    )
    total_weight = sum(WEIGHTS[name] for name, _, _ in parts)
    components = []
    value = 0.0
    for name, raw, points in parts:
        weight = WEIGHTS[name] / total_weight
        value += weight * points
        components.append(
            {
                "name": name,
                "raw": raw,
                "score": round(points, 1),
                "weight": round(weight, 3),
                "contribution": round(weight * points, 1),
            }
        )
    rounded = round(value)
    return Score(rounded, band_of(rounded), components)


def low_activity(m: Measures, threshold: float) -> bool:
    """7-day active users below ``threshold`` of purchased seats, after a week of history."""
    if not m.seats_purchased or m.first_seen is None:
        return False
    if m.first_seen > m.as_of - timedelta(days=MIN_HISTORY_DAYS - 1):
        return False
    return m.active_users_7d / m.seats_purchased < threshold
