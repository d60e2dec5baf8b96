"""Simulated history for backtests: months of events for many accounts, in which churn
depends on behaviour the handbook names — shallow use, falling activity, unresolved
tickets, a changed decision maker — and not on a clean stop of activity (churning
customers keep logging in a little until their subscription ends).

Writes NDJSON events (the public schema) and a churn CSV (``account_id,churn_date``).
"""

from __future__ import annotations

import gzip
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

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


def _odds(a: _Account, day: date) -> float:
    score = BASE_LOG_ODDS
    if a.depth == 1:
        score += RISKS["shallow"]
    if a.decline_from and day >= a.decline_from + timedelta(days=30):
        score += RISKS["declining"]
    if a.unresolved_from and day >= a.unresolved_from + timedelta(days=30):
        score += RISKS["unresolved"]
    if a.dm_change_on and a.dm_change_on <= day <= a.dm_change_on + timedelta(days=120):
        score += RISKS["dm_change"]
    return 1 / (1 + math.exp(-score))


def generate(accounts: int, days: int, *, end: date, seed: int = 7) -> Iterator[tuple[str, Any]]:
    """Yields ("event", dict) in time order per day, and ("churn", (account, date))."""
    rng = random.Random(seed)
    start = end - timedelta(days=days - 1)
    pool = []
    for i in range(accounts):

        def maybe(p: float) -> date | None:
            return start + timedelta(days=rng.randrange(30, days)) if rng.random() < p else None

        pool.append(
            _Account(
                account_id=f"hist-{i:04d}",
                seats=rng.choice([5, 10, 15, 20, 30]),
                depth=rng.choices([1, 2, 3, 4], [0.3, 0.35, 0.25, 0.1])[0],
                share=rng.uniform(0.35, 0.9),
                decline_from=maybe(0.3),
                unresolved_from=maybe(0.25),
                dm_change_on=maybe(0.15),
            )
        )
    alive = {a.account_id: a for a in pool}
    seq = 0
    for a in pool:
        seq += 1
        yield (
            "event",
            {
                "kind": "account",
                "event_id": f"h{seq}",
                "account_id": a.account_id,
                "name": f"History {a.account_id}",
                "seats_purchased": a.seats,
                "tier": "enterprise",
                "contract_start": (
                    contract := start - timedelta(days=rng.randrange(100, 400))
                ).isoformat(),
                "go_live": (contract + timedelta(days=rng.randrange(20, 80))).isoformat(),
                "lifecycle_stage": "stable",
                "contacts": [{"name": "Old Boss", "role": "decision_maker"}],
                "occurred_at": _ts(start, 0),
            },
        )
    for d in range(days):
        day = start + timedelta(days=d)
        for a in list(alive.values()):
            regulars = a.seats * a.share
            if a.decline_from and day >= a.decline_from:
                fade = min(1.0, (day - a.decline_from).days / 60)
                regulars *= 1 - 0.85 * fade  # people drift away; a few keep logging in
            regulars = max(1, round(regulars))
            p_day = 0.55
            for u in range(regulars):
                if rng.random() < p_day:
                    seq += 1
                    module = rng.choice(DEPTH_MODULES[a.depth])
                    platform = "api" if a.depth >= 3 and rng.random() < 0.5 else "pc"
                    yield (
                        "event",
                        {
                            "kind": "usage",
                            "event_id": f"h{seq}",
                            "account_id": a.account_id,
                            "user_id": f"{a.account_id}-u{u}",
                            "event": "use",
                            "module": module,
                            "platform": platform,
                            "occurred_at": _ts(day, rng.randrange(8, 19)),
                        },
                    )
            if a.unresolved_from == day:
                seq += 1
                yield "event", _ticket(a, day, seq, "open")
            if a.dm_change_on == day:
                seq += 1
                yield (
                    "event",
                    {
                        "kind": "account",
                        "event_id": f"h{seq}",
                        "account_id": a.account_id,
                        "contacts": [{"name": "New Boss", "role": "decision_maker"}],
                        "occurred_at": _ts(day, 12),
                    },
                )
            if day.day == 1 and rng.random() < _odds(a, day) * 3:  # renewal check, monthly
                del alive[a.account_id]
                seq += 1
                yield (
                    "event",
                    {
                        "kind": "account",
                        "event_id": f"h{seq}",
                        "account_id": a.account_id,
                        "lifecycle_stage": "churned",
                        "occurred_at": _ts(day, 20),
                    },
                )
                yield "churn", (a.account_id, day)


def _ticket(a: _Account, day: date, seq: int, status: str) -> dict[str, Any]:
    return {
        "kind": "ticket",
        "event_id": f"h{seq}",
        "account_id": a.account_id,
        "ticket_id": f"{a.account_id}-bug",
        "status": status,
        "priority": "high",
        "type": "bug",
        "created_at": _ts(day, 9),
        "occurred_at": _ts(day, 9),
    }


def _ts(day: date, hour: int) -> str:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC).isoformat()


def write_history(
    events_path: Path,
    churn_path: Path,
    *,
    accounts: int,
    days: int,
    end: date,
    seed: int = 7,
    progress: Callable[[int], None] = lambda n: None,
) -> tuple[int, int]:
    """Write the files; returns (events, churned accounts)."""
    opener = gzip.open if events_path.suffix == ".gz" else open
    n = churned = 0
    with opener(events_path, "wb") as out, churn_path.open("w", encoding="utf-8") as churn:
        churn.write("account_id,churn_date\n")
        for kind, item in generate(accounts, days, end=end, seed=seed):
            if kind == "event":
                out.write(orjson.dumps(item) + b"\n")
                n += 1
                if n % 50_000 == 0:
                    progress(n)
            else:
                churn.write(f"{item[0]},{item[1].isoformat()}\n")
                churned += 1
    return n, churned
