"""A single-user subscription app (a social network, as *Fighting Churn With Data*
simulates one): eight event types, a monthly renewal, and churn at renewal driven by
what the user did in the month before — little engagement, many dislikes per like,
many ads per post — and more likely in the first months.

No go-live date, no modules, no tickets, no CSM touchpoints: a product like this sends
none of them, so a model must treat them as missing, not as bad.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from services.simulator.common import (
    Item,
    poisson,
    run,
    sigmoid,
    signed_up,
    signup_day,
    usage,
)

# Events a day for a user of average engagement.
BASE_RATES = {
    "post": 0.2,
    "like": 1.0,
    "dislike": 0.12,
    "newfriend": 0.08,
    "unfriend": 0.02,
    "message": 0.4,
    "reply": 0.3,
    "adview": 1.0,
}
GOOD = ("post", "like", "newfriend", "message", "reply")
RENEWAL_DAYS = 30
PRICE = 9.99


@dataclass
class _User:
    account_id: str
    signup: date
    engagement: float  # multiplies every rate; drifts month by month
    rates: dict[str, float]  # the user's own mix of events
    last_28: deque[dict[str, int]] = field(default_factory=lambda: deque(maxlen=28))


def churn_chance(counts: dict[str, int], tenure_days: int) -> float:
    """Chance of leaving at a renewal, from the last 28 days of behaviour."""
    good = sum(counts.get(name, 0) for name in GOOD)
    sour = (counts.get("dislike", 0) + counts.get("unfriend", 0)) / (counts.get("like", 0) + 3)
    ads = counts.get("adview", 0) / (good + 5)
    log_odds = -1.2 - 0.75 * math.log1p(good / 5) + 2.5 * sour + 0.5 * ads
    if tenure_days <= 2 * RENEWAL_DAYS:
        log_odds += 0.7  # newcomers have not formed a habit yet
    return sigmoid(log_odds)


def _draw_user(rng: random.Random, number: int, start: date, days: int) -> _User:
    sourness = rng.lognormvariate(0, 0.7)  # some users dislike far more than others
    rates = {
        name: rate * rng.lognormvariate(0, 0.4) * (sourness if name == "dislike" else 1.0)
        for name, rate in BASE_RATES.items()
    }
    return _User(
        account_id=f"sub-{number:04d}",
        signup=signup_day(rng, start, days),
        engagement=rng.lognormvariate(-0.1, 0.8),
        rates=rates,
    )


def _signed_up(user: _User, event_id: str) -> dict[str, Any]:
    name = f"Subscriber {user.account_id}"
    # No seats: one person's subscription has none to fill (with one, "seats nearly used"
    # fired for every subscriber, and the activity cap judged one user against it).
    return signed_up(user, event_id, name, plan="monthly", mrr=PRICE)


def generate(accounts: int, days: int, *, end: date, seed: int = 7) -> Iterator[Item]:
    """Day by day: sign-ups, each user's events, and churn at monthly renewals."""
    return run(
        accounts,
        days,
        end,
        seed,
        "s",
        draw=_draw_user,
        signed_up=_signed_up,
        day_of=_day_of,
        leaves=_renewal,
    )


def _renewal(user: _User, day: date, rng: random.Random) -> bool:
    tenure = (day - user.signup).days
    return bool(tenure) and tenure % RENEWAL_DAYS == 0 and _leaves(user, tenure, rng)


def _day_of(user: _User, day: date, rng: random.Random, ids: Iterator[str]) -> Iterator[Item]:
    counts = {name: poisson(rng, rate * user.engagement) for name, rate in user.rates.items()}
    user.last_28.append(counts)
    for name, count in counts.items():
        for _ in range(count):
            yield "event", usage(user.account_id, next(ids), name, day, rng)


def _leaves(user: _User, tenure: int, rng: random.Random) -> bool:
    """The renewal decision; a user who stays drifts in engagement for the next month."""
    counts: dict[str, int] = {}
    for day_counts in user.last_28:
        for name, count in day_counts.items():
            counts[name] = counts.get(name, 0) + count
    if rng.random() < churn_chance(counts, tenure):
        return True
    user.engagement *= rng.lognormvariate(-0.05, 0.3)
    return False
