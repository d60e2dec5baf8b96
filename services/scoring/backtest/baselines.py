"""The naive baselines a score must beat, computed from the raw history itself (not from
the scoring code), for each scored account-day: days since the account's last event,
its events over the last 28 days, and its tenure."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, timedelta

from shared.contracts.events import AccountFacts, Event

WINDOW_DAYS = 28


@dataclass
class _Account:
    first: date
    last: date
    start: date | None = None  # the contract start, when facts name one
    recent: deque[date] = field(default_factory=deque)  # event days, oldest first


def history_baselines(
    events: Sequence[Event], scored: Sequence[tuple[str, date]]
) -> list[dict[str, float]]:
    """Per (account, day) in ``scored`` (any order): the baselines as of the end of that
    day. ``events`` must be in time order."""
    order = sorted(range(len(scored)), key=lambda k: scored[k][1])
    out: list[dict[str, float]] = [{} for _ in scored]
    accounts: dict[str, _Account] = {}
    fed = 0
    for k in order:
        account_id, day = scored[k]
        while fed < len(events) and events[fed].occurred_at.astimezone(UTC).date() <= day:
            _take(accounts, events[fed])
            fed += 1
        if (account := accounts.get(account_id)) is not None:
            out[k] = _as_of(account, day)
    return out


def _take(accounts: dict[str, _Account], event: Event) -> None:
    day = event.occurred_at.astimezone(UTC).date()
    account = accounts.setdefault(event.account_id, _Account(first=day, last=day))
    if isinstance(event, AccountFacts):
        account.start = event.contract_start or account.start
        return  # facts are the CRM's records, not the customer doing something
    account.last = max(account.last, day)
    account.recent.append(day)


def _as_of(account: _Account, day: date) -> dict[str, float]:
    while account.recent and account.recent[0] <= day - timedelta(days=WINDOW_DAYS):
        account.recent.popleft()
    start = account.start or account.first
    return {
        "days_since_last_event": float((day - account.last).days),
        "events_28d": float(len(account.recent)),
        "tenure_days": float((day - start).days),
    }
