"""The naive baselines a score must beat, computed from the raw history itself (not from
the scoring code), for each scored account-day: days since the account's last event,
its events over the last 28 days, and its tenure."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, timedelta
from typing import Any

from shared.contracts.events import AccountFacts, Event

WINDOW_DAYS = 28


@dataclass
class _Account:
    first: date
    last: date
    start: date | None = None  # the contract start, when facts name one
    # [day, events] of the last WINDOW_DAYS days with events, oldest first, and their sum
    recent: deque[list[Any]] = field(default_factory=deque)
    events: int = 0

    def forget_before(self, day: date) -> None:
        """Drop the days out of the window ending with ``day``."""
        while self.recent and self.recent[0][0] <= day - timedelta(days=WINDOW_DAYS):
            self.events -= self.recent.popleft()[1]


class Baselines:
    """Fed the events one at a time in time order; answers for an account as of the end
    of a day once every event up to that day was fed (and none later). Memory: one
    small record per account, with at most WINDOW_DAYS entries."""

    def __init__(self) -> None:
        self._accounts: dict[str, _Account] = {}

    def take(self, event: Event) -> None:
        day = event.occurred_at.astimezone(UTC).date()
        account = self._accounts.setdefault(event.account_id, _Account(first=day, last=day))
        if isinstance(event, AccountFacts):
            account.start = event.contract_start or account.start
            return  # facts are the CRM's records, not the customer doing something
        account.last = max(account.last, day)
        # Any later answer is for this day or after, so what it would drop goes now.
        account.forget_before(day)
        if account.recent and account.recent[-1][0] == day:
            account.recent[-1][1] += 1
        else:
            account.recent.append([day, 1])
        account.events += 1

    def as_of(self, account_id: str, day: date) -> dict[str, float]:
        """The baselines at the end of ``day``; empty for an account with no event yet."""
        account = self._accounts.get(account_id)
        if account is None:
            return {}
        account.forget_before(day)
        start = account.start or account.first
        return {
            "days_since_last_event": float((day - account.last).days),
            "events_28d": float(account.events),
            "tenure_days": float((day - start).days),
        }


def history_baselines(
    events: Sequence[Event], scored: Sequence[tuple[str, date]]
) -> list[dict[str, float]]:
    """Per (account, day) in ``scored`` (any order): the baselines as of the end of that
    day. ``events`` must be in time order."""
    order = sorted(range(len(scored)), key=lambda k: scored[k][1])
    out: list[dict[str, float]] = [{} for _ in scored]
    baselines = Baselines()
    fed = 0
    for k in order:
        account_id, day = scored[k]
        while fed < len(events) and events[fed].occurred_at.astimezone(UTC).date() <= day:
            baselines.take(events[fed])
            fed += 1
        out[k] = baselines.as_of(account_id, day)
    return out
