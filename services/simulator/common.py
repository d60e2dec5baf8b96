"""What every simulated shape needs: timestamps, ids, Poisson draws, signup days."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol, TypeVar

# An item a shape yields: ("event", event dict) or ("churn", (account_id, day)).
Item = tuple[str, Any]


def ts(day: date, hour: int, minute: int = 0) -> str:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC).isoformat()


def event_ids(prefix: str) -> Iterator[str]:
    """Ids in the order events are made (p1, p2, …): the same seed, the same ids."""
    return (f"{prefix}{n}" for n in itertools.count(1))


def poisson(rng: random.Random, rate: float) -> int:
    """A Poisson draw (Knuth's method: the rates here are a few a day at most)."""
    limit, product, count = math.exp(-min(rate, 30.0)), rng.random(), 0
    while product > limit:
        product *= rng.random()
        count += 1
    return count


def signup_day(rng: random.Random, start: date, days: int) -> date:
    """A first cohort in the first two weeks, the rest joining until a month before the
    end, so tenure varies from days to the whole span."""
    if rng.random() < 0.4:
        return start + timedelta(days=rng.randrange(14))
    return start + timedelta(days=rng.randrange(max(1, days - 30)))


def sigmoid(log_odds: float) -> float:
    return 1 / (1 + math.exp(-log_odds))


def usage(
    account_id: str, event_id: str, name: str, day: date, rng: random.Random, **extra: Any
) -> dict[str, Any]:
    """A single-user product's usage event: the account is its one user."""
    return {
        "kind": "usage",
        "event_id": event_id,
        "account_id": account_id,
        "user_id": account_id,
        "event": name,
        "platform": "app",
        "occurred_at": ts(day, rng.randrange(7, 23), rng.randrange(60)),
        **extra,
    }


def churned(account_id: str, event_id: str, day: date) -> list[Item]:
    """The facts update that says the account left, and the churn outcome."""
    facts = {
        "kind": "account",
        "event_id": event_id,
        "account_id": account_id,
        "lifecycle_stage": "churned",
        "occurred_at": ts(day, 23, 30),
    }
    return [("event", facts), ("churn", (account_id, day))]


class Member(Protocol):
    """An account of a shape: its id and the day it signed up."""

    account_id: str
    signup: date


M = TypeVar("M", bound=Member)


def run(
    accounts: int,
    days: int,
    end: date,
    seed: int,
    prefix: str,
    *,
    draw: Callable[[random.Random, int, date, int], M],
    signed_up: Callable[[M, str], dict[str, Any]],
    day_of: Callable[[M, date, random.Random, Iterator[str]], Iterator[Item]],
    leaves: Callable[[M, date, random.Random], bool],
) -> Iterator[Item]:
    """The loop every shape runs, deterministic by ``seed``: draw the accounts, then each
    day the day's sign-ups, each member's day, and a churn for each member that
    ``leaves`` that day (it sends nothing after)."""
    rng = random.Random(seed)
    start = end - timedelta(days=days - 1)
    pool = [draw(rng, number, start, days) for number in range(accounts)]
    ids = event_ids(prefix)
    alive: list[M] = []
    for offset in range(days):
        day = start + timedelta(days=offset)
        for member in pool:
            if member.signup == day:
                alive.append(member)
                yield "event", signed_up(member, next(ids))
        for member in list(alive):
            yield from day_of(member, day, rng, ids)
            if leaves(member, day, rng):
                alive.remove(member)
                yield from churned(member.account_id, next(ids), day)


def signed_up(member: Member, event_id: str, name: str, **fields: Any) -> dict[str, Any]:
    """The facts a shape sends when an account signs up: no go-live date, no modules,
    no contacts — only what such a product knows."""
    return {
        "kind": "account",
        "event_id": event_id,
        "account_id": member.account_id,
        "name": name,
        **fields,
        "contract_start": member.signup.isoformat(),
        "lifecycle_stage": "stable",
        "occurred_at": ts(member.signup, 6),
    }
