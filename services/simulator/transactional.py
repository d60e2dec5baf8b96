"""A transactional shop: customers browse and buy, and churn is the retail definition —
no purchase for ``CHURN_AFTER_DAYS`` days, dated the day that silence is reached.

Behind the purchases, a buy-till-you-die process: each customer buys at their own rate
and after each purchase may quietly give up; the chance is higher for customers who
bought little, spent little or had to return an order. Recency, frequency and monetary
value therefore all carry signal. A customer who gave up still browses a little for a
few weeks. The shop sends no seats, no go-live date and no tickets.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

from services.simulator.common import (
    Item,
    poisson,
    run,
    sigmoid,
    signed_up,
    signup_day,
    ts,
)
from services.simulator.common import usage as usage_event

CHURN_AFTER_DAYS = 90
RETURN_CHANCE = 0.08


@dataclass
class _Customer:
    account_id: str
    signup: date
    buy_rate: float  # purchases a day while the customer is still with the shop
    basket: float  # typical order value
    purchases: int = 0
    returns: int = 0
    last_purchase: date | None = None
    gave_up_on: date | None = None


def give_up_chance(purchases: int, value: float, returns: int) -> float:
    """After a purchase: the chance this was the customer's last."""
    log_odds = -1.6 - 0.45 * math.log1p(purchases) - 0.5 * (math.log(value) - 3.6)
    return sigmoid(log_odds + 1.3 * returns)


def _draw(rng: random.Random, number: int, start: date, days: int) -> _Customer:
    return _Customer(
        account_id=f"shop-{number:04d}",
        signup=signup_day(rng, start, days),
        buy_rate=rng.gammavariate(1.2, 1 / 30),
        basket=rng.lognormvariate(3.6, 0.6),
    )


def generate(accounts: int, days: int, *, end: date, seed: int = 7) -> Iterator[Item]:
    """Day by day: first purchases, browsing, orders, returns and churn."""
    return run(
        accounts,
        days,
        end,
        seed,
        "t",
        draw=_draw,
        signed_up=_signed_up,
        day_of=_day_of,
        leaves=_silent,
    )


def _silent(customer: _Customer, day: date, rng: random.Random) -> bool:
    return (day - (customer.last_purchase or customer.signup)).days >= CHURN_AFTER_DAYS


def _signed_up(customer: _Customer, event_id: str) -> dict[str, Any]:
    return signed_up(customer, event_id, f"Customer {customer.account_id}", plan="retail")


def _day_of(
    customer: _Customer, day: date, rng: random.Random, ids: Iterator[str]
) -> Iterator[Item]:
    """Browsing (fading once the customer gave up), then maybe an order."""
    interest = 1.0
    if customer.gave_up_on is not None:
        interest = max(0.0, 1 - (day - customer.gave_up_on).days / 30)
    for _ in range(poisson(rng, 6 * customer.buy_rate * interest + 0.02)):
        yield "event", usage_event(customer.account_id, next(ids), "view", day, rng)
    first = customer.purchases == 0 and day == customer.signup
    if first or (customer.gave_up_on is None and rng.random() < customer.buy_rate):
        yield from _purchase(customer, day, rng, ids)


def _purchase(
    customer: _Customer, day: date, rng: random.Random, ids: Iterator[str]
) -> Iterator[Item]:
    """An order and its payment; sometimes a return; then maybe the customer gives up."""
    value = round(customer.basket * rng.lognormvariate(0, 0.3), 2)
    customer.purchases += 1
    customer.last_purchase = day
    account = customer.account_id
    yield "event", usage_event(account, next(ids), "add_to_cart", day, rng)
    order = {"value": value}
    yield "event", usage_event(account, next(ids), "purchase", day, rng, properties=order)
    yield "event", _payment(account, next(ids), day, value)
    if rng.random() < RETURN_CHANCE:
        customer.returns += 1
        yield "event", usage_event(account, next(ids), "return", day, rng)
    if rng.random() < give_up_chance(customer.purchases, value, customer.returns):
        customer.gave_up_on = day


def _payment(account: str, event_id: str, day: date, value: float) -> dict[str, Any]:
    return {
        "kind": "payment",
        "event_id": event_id,
        "account_id": account,
        "status": "succeeded",
        "amount": value,
        "currency": "USD",
        "occurred_at": ts(day, 23),
    }
