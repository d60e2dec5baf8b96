"""Simulated history for backtests: months of events for many accounts. The default shape,
the handbook's B2B CRM, is built here; ``SHAPES`` names the others. In the CRM, churn
depends on behaviour the handbook names — shallow use, falling activity, unresolved
tickets, a changed decision maker — and not on a clean stop of activity (churning
customers keep logging in a little until their subscription ends).

Writes NDJSON events (the public schema) and a churn CSV (``account_id,churn_date``).
"""

from __future__ import annotations

import gzip
import itertools
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from services.simulator import subscription, transactional

DEPTH_MODULES = {
    1: ["contacts"],
    2: ["contacts", "workflow"],
    3: ["contacts", "workflow"],
    4: ["contacts", "workflow", "custom_objects"],
}
# Monthly churn odds: a base rate and what each risk adds (log-odds), chosen so that
# about a fifth of accounts churn in a year.
BASE_LOG_ODDS = -6.0
RISKS = {"shallow": 1.6, "declining": 2.2, "unresolved": 1.2, "dm_change": 1.8}


@dataclass
class _Account:
    account_id: str
    seats: int
    depth: int
    share: float  # share of seats who are regular users
    decline_from: date | None  # activity falls from this day on
    unresolved_from: date | None  # a bug stays open from this day on
    dm_change_on: date | None


def _odds(account: _Account, day: date) -> float:
    score = BASE_LOG_ODDS
    if account.depth == 1:
        score += RISKS["shallow"]
    if account.decline_from and day >= account.decline_from + timedelta(days=30):
        score += RISKS["declining"]
    if account.unresolved_from and day >= account.unresolved_from + timedelta(days=30):
        score += RISKS["unresolved"]
    if account.dm_change_on and (
        account.dm_change_on <= day <= account.dm_change_on + timedelta(days=120)
    ):
        score += RISKS["dm_change"]
    return 1 / (1 + math.exp(-score))


# Event ids in the order events are made: h1, h2, …
EventIds = Iterator[str]


def generate(accounts: int, days: int, *, end: date, seed: int = 7) -> Iterator[tuple[str, Any]]:
    """Yields ("event", dict) in time order per day, and ("churn", (account, date))."""
    rng = random.Random(seed)
    start = end - timedelta(days=days - 1)
    pool = [_draw_account(rng, number, start, days) for number in range(accounts)]
    event_ids = (f"h{n}" for n in itertools.count(1))
    for account in pool:
        yield "event", _signed_up(account, rng, start, next(event_ids))
    alive = {account.account_id: account for account in pool}
    for offset in range(days):
        day = start + timedelta(days=offset)
        for account in list(alive.values()):
            for kind, item in _day_of(account, day, rng, event_ids):
                if kind == "churn":
                    del alive[account.account_id]
                yield kind, item


def _draw_account(rng: random.Random, number: int, start: date, days: int) -> _Account:
    """An account with its risks: each a day within the simulated span, or none."""

    def maybe(chance: float) -> date | None:
        return start + timedelta(days=rng.randrange(30, days)) if rng.random() < chance else None

    return _Account(
        account_id=f"hist-{number:04d}",
        seats=rng.choice([5, 10, 15, 20, 30]),
        depth=rng.choices([1, 2, 3, 4], [0.3, 0.35, 0.25, 0.1])[0],
        share=rng.uniform(0.35, 0.9),
        decline_from=maybe(0.3),
        unresolved_from=maybe(0.25),
        dm_change_on=maybe(0.15),
    )


def _signed_up(account: _Account, rng: random.Random, start: date, event_id: str) -> dict[str, Any]:
    """The account's first facts: bought some time before the span, live since."""
    contract = start - timedelta(days=rng.randrange(100, 400))
    return {
        "kind": "account",
        "event_id": event_id,
        "account_id": account.account_id,
        "name": f"History {account.account_id}",
        "seats_purchased": account.seats,
        "tier": "enterprise",
        "contract_start": contract.isoformat(),
        "go_live": (contract + timedelta(days=rng.randrange(20, 80))).isoformat(),
        "lifecycle_stage": "stable",
        "contacts": [{"name": "Old Boss", "role": "decision_maker"}],
        "occurred_at": _ts(start, 0),
    }


def _day_of(
    account: _Account, day: date, rng: random.Random, event_ids: EventIds
) -> Iterator[tuple[str, Any]]:
    """One day of an account: its use, a bug filed, a new decision maker, a churn."""
    for event in _usage(account, day, rng, event_ids):
        yield "event", event
    if account.unresolved_from == day:
        yield "event", _ticket(account, day, next(event_ids), "open")
    if account.dm_change_on == day:
        yield "event", _facts(account, day, next(event_ids), 12, contacts=NEW_DECISION_MAKER)
    if day.day == 1 and rng.random() < _odds(account, day) * 3:  # renewal check, monthly
        yield "event", _facts(account, day, next(event_ids), 20, lifecycle_stage="churned")
        yield "churn", (account.account_id, day)


NEW_DECISION_MAKER = [{"name": "New Boss", "role": "decision_maker"}]


def _usage(
    account: _Account, day: date, rng: random.Random, event_ids: EventIds
) -> Iterator[dict[str, Any]]:
    """Each regular user logs in on about half the days; a declining account fades."""
    regulars = account.seats * account.share
    if account.decline_from and day >= account.decline_from:
        fade = min(1.0, (day - account.decline_from).days / 60)
        regulars *= 1 - 0.85 * fade  # people drift away; a few keep logging in
    p_day = 0.55
    for user in range(max(1, round(regulars))):
        if rng.random() < p_day:
            module = rng.choice(DEPTH_MODULES[account.depth])
            platform = "api" if account.depth >= 3 and rng.random() < 0.5 else "pc"
            yield {
                "kind": "usage",
                "event_id": next(event_ids),
                "account_id": account.account_id,
                "user_id": f"{account.account_id}-u{user}",
                "event": "use",
                "module": module,
                "platform": platform,
                "occurred_at": _ts(day, rng.randrange(8, 19)),
            }


def _facts(account: _Account, day: date, event_id: str, hour: int, **fields: Any) -> dict[str, Any]:
    return {
        "kind": "account",
        "event_id": event_id,
        "account_id": account.account_id,
        **fields,
        "occurred_at": _ts(day, hour),
    }


def _ticket(account: _Account, day: date, event_id: str, status: str) -> dict[str, Any]:
    return {
        "kind": "ticket",
        "event_id": event_id,
        "account_id": account.account_id,
        "ticket_id": f"{account.account_id}-bug",
        "status": status,
        "priority": "high",
        "type": "bug",
        "created_at": _ts(day, 9),
        "occurred_at": _ts(day, 9),
    }


def _ts(day: date, hour: int) -> str:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC).isoformat()


# Product shapes (``--shape``): the handbook's B2B CRM above, and the shapes of
# services/simulator, so that a backtest does not flatter one kind of product.
SHAPES: dict[str, Callable[..., Iterator[tuple[str, Any]]]] = {
    "crm": generate,
    "subscription": subscription.generate,
    "transactional": transactional.generate,
}


def write_history(
    events_path: Path,
    churn_path: Path,
    *,
    accounts: int,
    days: int,
    end: date,
    seed: int = 7,
    shape: str = "crm",
    progress: Callable[[int], None] = lambda n: None,
) -> tuple[int, int]:
    """Write the files; returns (events, churned accounts)."""
    opener = gzip.open if events_path.suffix == ".gz" else open
    written = churned = 0
    with opener(events_path, "wb") as out, churn_path.open("w", encoding="utf-8") as churn:
        churn.write("account_id,churn_date\n")
        for kind, item in SHAPES[shape](accounts, days, end=end, seed=seed):
            if kind == "event":
                out.write(orjson.dumps(item) + b"\n")
                written += 1
                if written % 50_000 == 0:
                    progress(written)
            else:
                churn.write(f"{item[0]},{item[1].isoformat()}\n")
                churned += 1
    return written, churned
