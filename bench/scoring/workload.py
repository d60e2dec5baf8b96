"""The scoring bench's workload: accounts with seats and users, their facts and their usage over
days, as bus messages or NDJSON files.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from rich.progress import Progress

from services.simulate import MODULES, TIERS
from shared.bus.base import OutMessage
from shared.config import Settings
from shared.contracts.events import EVENT_ADAPTER
from shared.contracts.wire import encode_event

EVENT_NAMES = ("login", "view", "create", "run", "use", "export", "search", "comment")


PLATFORMS = ("pc", "app", "api")


PLATFORM_WEIGHTS = (0.7, 0.2, 0.1)


SEATS = (10, 15, 20, 25, 40, 50)


@dataclass(frozen=True)
class Account:
    account_id: str
    users: tuple[str, ...]
    seats: int
    weight: float  # relative share of the usage events


def make_accounts(n: int, users_mean: float, rng: random.Random) -> list[Account]:
    accounts = []
    for i in range(n):
        account_id = f"acct-{i:06d}"
        users = max(1, round(rng.gauss(users_mean, users_mean * 0.3)))
        accounts.append(
            Account(
                account_id=account_id,
                users=tuple(f"{account_id}-u{u}" for u in range(users)),
                seats=max(users, rng.choice(SEATS)),
                weight=rng.lognormvariate(0, 0.5),
            )
        )
    return accounts


def facts_event(a: Account, at: datetime, rng: random.Random) -> dict[str, Any]:
    """Account facts as the CRM sends them (the shape of ``services.simulate.facts``)."""
    csm = rng.randrange(5)
    start = (at - timedelta(days=rng.randint(30, 700))).date()
    return {
        "kind": "account",
        "event_id": f"facts-{a.account_id}",
        "account_id": a.account_id,
        "occurred_at": at.isoformat(),
        "name": f"Customer {a.account_id}",
        "seats_purchased": a.seats,
        "plan": "pro",
        "arr": a.seats * 1200.0,
        "tier": rng.choice(TIERS),
        "industry": rng.choice(["manufacturing", "retail", "software", "finance"]),
        "region": rng.choice(["north", "east", "south", "west"]),
        "owner": {"email": f"csm{csm}@example.com", "slack_id": f"U0CSM{csm}"},
        "contract_start": start.isoformat(),
        "contract_end": (start + timedelta(days=730)).isoformat(),
        "lifecycle_stage": "stable",
    }


def iter_workload(
    accounts: Sequence[Account],
    events: int,
    days: int,
    now: datetime,
    rng: random.Random,
    cohort: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Facts, then ``events`` usage events in event-time order over the ``days`` days
    before ``now``; generated a day at a time (bounded memory).

    With ``cohort``, the accounts are taken ``cohort`` at a time, each group's history
    complete before the next one's (events shared out by account count). A cohort the
    size of the main run gives every import batch one day of one cohort, so each account
    is scored once per active day, as in the streaming run; all accounts' days
    interleaved would score each account several times a day, and a file sorted by
    account would score each account once and keep one day of score history."""
    size = cohort or len(accounts) or 1
    for first in range(0, len(accounts), size):
        group = accounts[first : first + size]
        share = round(events * (first + len(group)) / len(accounts)) - round(
            events * first / len(accounts)
        )
        yield from _cohort(group, share, days, now, rng)


def _cohort(
    accounts: Sequence[Account], events: int, days: int, now: datetime, rng: random.Random
) -> Iterator[dict[str, Any]]:
    start = now - timedelta(days=days)
    for a in accounts:
        yield facts_event(a, start - timedelta(hours=1), rng)
    cum: list[float] = []
    total = 0.0
    for a in accounts:
        total += a.weight
        cum.append(total)
    per_day = [events // days + (1 if d < events % days else 0) for d in range(days)]
    base = start.timestamp()
    for d, count in enumerate(per_day):
        lo = base + d * 86400
        hi = min(lo + 86400, now.timestamp() - 1)
        chosen = rng.choices(accounts, cum_weights=cum, k=count)
        moments = sorted(rng.uniform(lo, hi) for _ in range(count))
        for a, moment in zip(chosen, moments, strict=True):
            yield {
                "kind": "usage",
                "event_id": str(uuid.UUID(int=rng.getrandbits(128))),
                "account_id": a.account_id,
                "user_id": rng.choice(a.users),
                "event": rng.choice(EVENT_NAMES),
                "module": rng.choice(MODULES),
                "platform": rng.choices(PLATFORMS, PLATFORM_WEIGHTS)[0],
                "duration_s": round(rng.uniform(5, 900), 1),
                "occurred_at": datetime.fromtimestamp(moment, UTC).isoformat(
                    timespec="milliseconds"
                ),
            }


def to_messages(raw: Sequence[dict[str, Any]], settings: Settings) -> list[OutMessage]:
    """What the ingest service puts on Kafka: validated, ``received_at`` stamped, encoded."""
    received_at = datetime.now(UTC)
    messages = []
    for item in raw:
        model = EVENT_ADAPTER.validate_python(item)
        model = model.model_copy(update={"received_at": received_at})
        messages.append(
            OutMessage(settings.topic(model.kind), model.account_id.encode(), encode_event(model))
        )
    return messages


def write_ndjson(
    path: Path, items: Iterator[dict[str, Any]], progress: Progress, total: int
) -> int:
    task = progress.add_task(f"write {path.name}", total=total)
    lines = 0
    with path.open("wb") as fh:
        for item in items:
            fh.write(orjson.dumps(item) + b"\n")
            lines += 1
            if lines % 5000 == 0:
                progress.update(task, completed=lines)
    progress.update(task, completed=lines)
    return lines
