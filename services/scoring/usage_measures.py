"""The usage measures of accounts' usage states as of a day: active users, events, days
and minutes of use, and how much each name was used, by period.

``activity_of`` and ``name_use_of`` say what each measure is, one state at a time.
``measure_usage`` works the same out for a chunk of states at once (a batch's accounts,
a sweep's or an import day's chunk): their columns (``day_columns.py``) concatenated,
the sums a few NumPy passes over every account together, then each account's results
built. It is what the service runs: 30.4 µs an account in chunks of 200, against 60.3
for the two walks over each state's days (``bench/step_bench.py``, docs/benchmarks.md);
of the 30, the passes are a few, the rest building each account's ``NameUse`` values.
The two agree on every state (tests/unit/test_usage_measures.py), the floats too: both
add a week's seconds oldest day first (``seconds_of``; ``np.bincount`` adds in the rows'
order).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from functools import lru_cache
from itertools import chain
from typing import Any, NamedTuple, TypedDict

import numpy as np
import numpy.typing as npt

from services.scoring import day_columns
from services.scoring.day_columns import EMPTY, DayColumns, DayUse
from services.scoring.usage import AccountUsage, name_key

Ints = npt.NDArray[np.int64]

# (dimension, name) → (count over 7 days, count over 28 days); see Measures.names.
Names = dict[tuple[str, str], tuple[int, int]]


class Activity(TypedDict):
    active_users_7d: int
    active_users_30d: int
    active_users_today: int
    users_ever_active: int
    usage_minutes_7d: float
    active_days_7d: int
    active_days_28d: int
    events_7d: int


class NameUse(NamedTuple):
    """One name's daily counts over the kept window (90 days by default), for the
    product-agnostic measures (inputs.py): the newest day first in ``weeks``. A named
    tuple: an account has a few dozen of these per score, and a frozen dataclass took
    twice as long to make."""

    days_7: int
    days_28: int
    previous_28: int  # the 28 days before the last 28
    days_90: int
    weeks: tuple[int, int, int, int]  # the last four weeks, oldest first
    last_day: date | None


NAME_WINDOW_DAYS = 90
# Days back (0 = the day itself) → period: weeks 0-3 (newest first), the 28 days before
# them (4), and the rest of the 90 (5).
_PERIOD_OF_DAYS_BACK = [back // 7 for back in range(28)] + [4] * 28 + [5] * 34
_PERIOD = np.array(_PERIOD_OF_DAYS_BACK, dtype=np.int64)
_PERIODS = 6
# The windows of active users, in days.
_USER_WINDOWS = (1, 7, 30)


class UsageMeasures(NamedTuple):
    """One account's usage measures as of its day."""

    activity: Activity
    name_use: dict[tuple[str, str], NameUse]
    names: Names  # the names used over 28 days: (7 days, 28 days)


def activity_of(state: AccountUsage, day: date) -> Activity:
    """Active users, events, active days and minutes of use, as of ``day``."""
    week = state.span(day, 7)
    return Activity(
        active_users_7d=state.active_users(day, 7),
        active_users_30d=state.active_users(day, 30),
        active_users_today=state.active_users(day, 1),
        users_ever_active=state.users_ever(day),
        usage_minutes_7d=round(seconds_of(week) / 60, 2),
        active_days_7d=len(week),
        active_days_28d=len(state.span(day, 28)),
        events_7d=sum(use.events for use in week),
    )


def seconds_of(days: Sequence[DayUse]) -> float:
    """The days' seconds added one by one, in their order: the sum ``measure_usage``
    makes (Python 3.12's ``sum`` compensates, and could differ in the last bit)."""
    total = 0.0
    for use in days:
        total += use.seconds
    return total


def name_use_of(state: AccountUsage, day: date) -> dict[tuple[str, str], NameUse]:
    """What was used (events, modules, platforms, values) over the 90 days to ``day``,
    from the daily counts the usage state keeps: each count added to its period (the
    four weeks, the 28 days before them, the rest), and each name's newest day."""
    last = day.toordinal()
    width = len(state.names)
    sums = [0] * (_PERIODS * width)
    newest = [0] * width  # name index → the newest day using it (0: none in the window)
    for ordinal, use in state.uses_between(last - NAME_WINDOW_DAYS + 1, last).items():
        period = _PERIOD_OF_DAYS_BACK[last - ordinal]
        for key, count in use.names.items():
            sums[_PERIODS * key + period] += count
            newest[key] = ordinal  # oldest first: the last one seen is the newest
    uses: dict[tuple[str, str], NameUse] = {}
    for key, ordinal in enumerate(newest):
        if ordinal:
            p0, p1, p2, p3, p4, p5 = sums[_PERIODS * key : _PERIODS * key + _PERIODS]
            days_28 = p0 + p1 + p2 + p3
            uses[name_key(state.names[key])] = NameUse(
                p0, days_28, p4, days_28 + p4 + p5, (p3, p2, p1, p0), date.fromordinal(ordinal)
            )
    return uses


def measure_usage(states: Sequence[AccountUsage], days: Sequence[date]) -> list[UsageMeasures]:
    """``activity_of`` and ``name_use_of`` of each state as of its day (``days``, in the
    same order), worked out for all of them at once. A state with unfolded days other
    than its newest folds them first."""
    if not states:
        return []
    chunk = _Chunk(states, days)
    activities = chunk.activities()
    name_uses, names = chunk.name_uses()
    return [
        UsageMeasures(activity, name_use, used)
        for activity, name_use, used in zip(activities, name_uses, names, strict=True)
    ]


class _Chunk:
    """The states' columns concatenated: a row per account's day, per user entry and per
    name entry, each with its account (its position in the chunk)."""

    def __init__(self, states: Sequence[AccountUsage], days: Sequence[date]):
        for state in states:
            # Folds what a late event, or a newer day begun since the last save, left
            # unfolded (nothing otherwise): each account's rows below must be in day
            # order, and unfolded days cost a Python pass each.
            state.fold_older()
        self.states = states
        accounts = len(states)
        self.accounts = accounts
        self.as_of: Ints = np.fromiter((day.toordinal() for day in days), np.int64, accounts)
        # Every account's days in its columns, then every account's unfolded days, all
        # newer than its columns': each account's rows in day order.
        columns = [state.columns for state in states]
        unfolded, unfolded_account = _unfolded(states)
        columns.append(unfolded)
        day_counts = np.fromiter((c.days.size for c in columns[:-1]), np.int64, accounts)
        self.day_account: Ints = np.concatenate(
            (np.repeat(np.arange(accounts, dtype=np.int64), day_counts), unfolded_account)
        )
        self.day: Ints = np.concatenate([c.days for c in columns]).astype(np.int64)
        self.events = np.concatenate([c.events for c in columns])
        self.seconds = np.concatenate([c.seconds for c in columns])
        user_counts = np.concatenate([c.user_counts for c in columns])
        self.user_account: Ints = np.repeat(self.day_account, user_counts)
        self.user_day: Ints = np.repeat(self.day, user_counts)
        self.user_id = np.concatenate([c.user_ids for c in columns])
        name_counts = np.concatenate([c.name_counts for c in columns])
        self.name_account: Ints = np.repeat(self.day_account, name_counts)
        self.name_day: Ints = np.repeat(self.day, name_counts)
        self.name_id = np.concatenate([c.name_ids for c in columns])
        self.uses = np.concatenate([c.uses for c in columns])
        self.users_of = np.fromiter((len(s.users) for s in states), np.int64, accounts)
        self.names_of = np.fromiter((len(s.names) for s in states), np.int64, accounts)
        self.first_active: Ints = np.fromiter(
            chain.from_iterable(s.first_active for s in states),
            np.int64,
            int(self.users_of.sum()),
        )

    def _count(
        self, accounts: Ints, weights: npt.NDArray[np.float64] | None = None
    ) -> npt.NDArray[Any]:
        return np.bincount(accounts, weights=weights, minlength=self.accounts)

    def activities(self) -> list[Activity]:
        back = self.as_of[self.day_account] - self.day
        week = (back >= 0) & (back < 7)
        active_28 = (back >= 0) & (back < 28)
        accounts = self.day_account[week]
        # Weighted bincounts add in the rows' order: each account's days oldest first.
        seconds = self._count(accounts, self.seconds[week]).tolist()
        events = self._count(accounts, self.events[week].astype(np.float64)).tolist()
        days_7 = self._count(accounts).tolist()
        days_28 = self._count(self.day_account[active_28]).tolist()
        users = self._active_users()
        return [
            Activity(
                active_users_7d=users[7][a],
                active_users_30d=users[30][a],
                active_users_today=users[1][a],
                users_ever_active=users[0][a],
                usage_minutes_7d=round(seconds[a] / 60, 2),
                active_days_7d=days_7[a],
                active_days_28d=days_28[a],
                events_7d=int(events[a]),
            )
            for a in range(self.accounts)
        ]

    def _active_users(self) -> dict[int, list[int]]:
        """Window days → distinct users active over them, per account (0: users ever
        active by the day). A user is active over the last n days when their newest
        active day up to the day is one of them: one pass for every window."""
        base = np.cumsum(self.users_of) - self.users_of  # each account's first user
        owner = np.repeat(np.arange(self.accounts, dtype=np.int64), self.users_of)
        until = self.user_day <= self.as_of[self.user_account]
        user = base[self.user_account[until]] + self.user_id[until]
        newest = np.zeros(owner.size, dtype=np.int64)
        np.maximum.at(newest, user, self.user_day[until])
        gap = self.as_of[owner] - newest  # a user never active by then: the day itself
        counts = {days: self._count(owner[gap < days]).tolist() for days in _USER_WINDOWS}
        counts[0] = self._count(owner[self.first_active <= self.as_of[owner]]).tolist()
        return counts

    def name_uses(self) -> tuple[list[dict[tuple[str, str], NameUse]], list[Names]]:
        """Each account's ``name_use_of``, and of those the names used over 28 days."""
        back = self.as_of[self.name_account] - self.name_day
        inside = (back >= 0) & (back < NAME_WINDOW_DAYS)
        base = np.cumsum(self.names_of) - self.names_of  # each account's first name
        name = base[self.name_account[inside]] + self.name_id[inside]
        width = int(self.names_of.sum())
        sums = np.bincount(
            name * _PERIODS + _PERIOD[back[inside]],
            weights=self.uses[inside].astype(np.float64),  # exact: far below 2^53
            minlength=width * _PERIODS,
        ).reshape(width, _PERIODS)
        newest = np.zeros(width, dtype=np.int64)
        np.maximum.at(newest, name, self.name_day[inside])
        used = np.flatnonzero(newest)  # by account, then name index: name_use_of's order
        owner = np.repeat(np.arange(self.accounts, dtype=np.int64), self.names_of)[used]
        counts = sums[used].astype(np.int64)
        keys = list(chain.from_iterable(s.names for s in self.states))
        name_uses: list[dict[tuple[str, str], NameUse]] = [{} for _ in self.states]
        names: list[Names] = [{} for _ in self.states]
        for index, account, p0, p1, p2, p3, p4, p5, last in zip(
            used.tolist(),
            owner.tolist(),
            *(counts[:, period].tolist() for period in range(_PERIODS)),
            newest[used].tolist(),
            strict=True,
        ):
            key = _name_key(keys[index])
            days_28 = p0 + p1 + p2 + p3
            name_uses[account][key] = _new(
                NameUse, (p0, days_28, p4, days_28 + p4 + p5, (p3, p2, p1, p0), _day(last))
            )
            if days_28:
                names[account][key] = (p0, days_28)
        return name_uses, names


def _unfolded(states: Sequence[AccountUsage]) -> tuple[DayColumns, Ints]:
    """The states' unfolded days (each state's oldest first) as columns, and the
    position of each day's state: one pass over the chunk, not array calls per state."""
    if not any(state.unfolded for state in states):
        return EMPTY, np.empty(0, dtype=np.int64)
    accounts: list[int] = []
    ordinals: list[int] = []
    uses: list[DayUse] = []
    for account, state in enumerate(states):
        for ordinal in sorted(state.unfolded):
            accounts.append(account)
            ordinals.append(ordinal)
            uses.append(state.unfolded[ordinal])
    return day_columns.from_uses(ordinals, uses), np.array(accounts, dtype=np.int64)


# Names and days repeat across the accounts of a chunk and across chunks.
_name_key = lru_cache(maxsize=4096)(name_key)
_day = lru_cache(maxsize=1024)(date.fromordinal)
# A named tuple built as a tuple: its generated ``__new__`` is a Python function, and a
# chunk builds one per account and name used (0.30 against 0.16 µs, timeit).
_new = tuple.__new__
