"""The product-agnostic inputs (``services/scoring/inputs.py: generic_inputs``) of every
account at once, from the columnar measures of ``columnar_probe.py``: the sums, the
top names and the arithmetic in NumPy over all accounts' names together; only each
account's dict of inputs is built in Python, as the stored rows need one.

Part of the probe, not the engine: ``columnar_probe.py`` times it beside
``generic_inputs`` account by account and counts the accounts whose inputs differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from services.scoring.inputs import MAX_NAMES, _count_keys
from services.scoring.measures import NAME_WINDOW_DAYS
from services.scoring.model.schema import Behaviour

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]
EVENT, VALUE = "e", "v"


@dataclass
class NameColumns:
    """Per global name (an account's name + that account's offset): its account, its
    dimension's letter and its text, and the rank of its text among every name's (the
    order ``generic_inputs`` breaks ties in)."""

    account: Ints
    dimension: list[str]
    text: list[str]
    rank: Ints


def name_columns(names_by_account: list[list[str]]) -> NameColumns:
    account: list[int] = []
    dimension: list[str] = []
    text: list[str] = []
    for a, names in enumerate(names_by_account):
        for key in names:
            code, _, name = key.partition(":")
            account.append(a)
            dimension.append(code)
            text.append(name)
    order = {name: rank for rank, name in enumerate(sorted(set(text)))}
    return NameColumns(
        np.array(account, dtype=np.int64),
        dimension,
        text,
        np.array([order[name] for name in text], dtype=np.int64),
    )


@dataclass
class Facts:
    """Per account: the day scored, the first day of use (0: none), and the measures of
    the columnar pass the inputs read."""

    day: int  # ordinal, every account's
    first_seen: Ints
    active_days_28d: Ints
    active_users_30d: Ints


def _periods(sums: Ints) -> dict[str, Ints]:
    p = sums.reshape(-1, 6)
    days_28 = p[:, 0] + p[:, 1] + p[:, 2] + p[:, 3]
    return {
        "days_7": p[:, 0],
        "days_28": days_28,
        "previous_28": p[:, 4],
        "days_90": days_28 + p[:, 4] + p[:, 5],
        "slope_sum": 3 * (p[:, 0] - p[:, 3]) + p[:, 1] - p[:, 2],  # weeks oldest first
    }


def _total(per: dict[str, Ints], account: Ints, events: Ints, accounts: int) -> dict[str, Ints]:
    """Every event name of an account summed (``inputs._sum``)."""
    return {
        key: np.bincount(account[events], weights=values[events], minlength=accounts).astype(
            np.int64
        )
        for key, values in per.items()
    }


def generic_columns(
    sums: Ints, newest: Ints, names: NameColumns, facts: Facts, behaviour: Behaviour
) -> list[dict[str, Any]]:
    """``generic_inputs`` for every account, in account order."""
    accounts = len(facts.first_seen)
    per = _periods(sums)
    used = newest > 0
    is_event = used & (np.array(names.dimension) == EVENT)
    events = np.flatnonzero(is_event)
    total = _total(per, names.account, events, accounts)
    distinct = np.bincount(names.account[events[per["days_28"][events] > 0]], minlength=accounts)
    # The top names of each account: by uses over 90 days, then by name.
    order = events[np.lexsort((names.rank[events], -per["days_90"][events], names.account[events]))]
    owner = names.account[order]
    starts = np.searchsorted(owner, np.arange(accounts))
    place = np.arange(len(order)) - starts[owner]
    top = order[place < MAX_NAMES]
    top_starts = np.searchsorted(names.account[top], np.arange(accounts + 1))
    rows = _Rows(per, newest, names, facts, total, distinct)
    values = _value_names(names, used)
    return [
        rows.build(a, top[top_starts[a] : top_starts[a + 1]].tolist(), values, behaviour)
        for a in range(accounts)
    ]


def _value_names(names: NameColumns, used: npt.NDArray[np.bool_]) -> dict[tuple[int, str], int]:
    """(account, name) → the global index of its value counter, for those used."""
    return {
        (int(names.account[g]), names.text[g]): int(g)
        for g in np.flatnonzero(used & (np.array(names.dimension) == VALUE))
    }


class _Rows:
    """Each account's dict of inputs, from the columns turned into Python lists once."""

    def __init__(
        self,
        per: dict[str, Ints],
        newest: Ints,
        names: NameColumns,
        facts: Facts,
        total: dict[str, Ints],
        distinct: Ints,
    ):
        self.per = {key: values.tolist() for key, values in per.items()}
        self.newest = newest.tolist()
        self.names = names
        self.day = facts.day
        self.first_seen = facts.first_seen.tolist()
        self.active_days_28d = facts.active_days_28d.tolist()
        self.users = facts.active_users_30d.tolist()
        self.total = {key: values.tolist() for key, values in total.items()}
        self.distinct = distinct.tolist()
        self.event_index: dict[tuple[int, str], int] = {}

    def build(
        self,
        a: int,
        top: list[int],
        values: dict[tuple[int, str], int],
        behaviour: Behaviour,
    ) -> dict[str, Any]:
        first = self.first_seen[a]
        if not first:
            return {}
        tenure = self.day - first
        t = self.total
        out: dict[str, Any] = {
            "days_since_first_use": float(tenure),
            "active_days_28d": self.active_days_28d[a],
            "distinct_events_28d": self.distinct[a],
        }
        self._counts(
            out,
            "usage_events",
            "",
            (t["days_7"][a], t["days_28"][a], t["previous_28"][a], t["days_90"][a]),
            t["slope_sum"][a],
            self.users[a],
            tenure,
        )
        chosen = {self.names.text[g]: g for g in top}
        if behaviour.events:
            chosen = {name: self._event(a, name) for name in behaviour.events} | chosen
        p = self.per
        for name, g in chosen.items():
            if g < 0:
                uses = (0, 0, 0, 0)
                slope_sum = 0
                last = 0
            else:
                uses = (p["days_7"][g], p["days_28"][g], p["previous_28"][g], p["days_90"][g])
                slope_sum = p["slope_sum"][g]
                last = self.newest[g]
            self._counts(out, "events", f"[{name}]", uses, slope_sum, self.users[a], tenure)
            out[f"days_since_event[{name}]"] = float(
                self.day - last if last else min(tenure, NAME_WINDOW_DAYS)
            )
            value = values.get((a, name))
            if value is not None:
                value_90 = p["days_90"][value]
                out[f"value_90d[{name}]"] = value_90
                out[f"value_per_event_90d[{name}]"] = (
                    round(value_90 / uses[3], 2) if uses[3] else None
                )
        for ratio in behaviour.ratios:
            below = self._days_28(a, ratio.denominator)
            above = self._days_28(a, ratio.numerator)
            out[ratio.name] = round(above / below, 4) if below else None
        return out

    def _event(self, a: int, name: str) -> int:
        """The global index of the account's event counter ``name`` used within the
        window, or -1."""
        if not self.event_index:
            names = self.names
            for g, account in enumerate(names.account.tolist()):
                if names.dimension[g] == EVENT and self.newest[g]:
                    self.event_index[(account, names.text[g])] = g
        return self.event_index.get((a, name), -1)

    def _days_28(self, a: int, name: str) -> int:
        g = self._event(a, name)
        return int(self.per["days_28"][g]) if g >= 0 else 0

    @staticmethod
    def _counts(
        out: dict[str, Any],
        prefix: str,
        suffix: str,
        uses: tuple[int, int, int, int],
        slope_sum: int,
        users: int,
        tenure: int,
    ) -> None:
        """``inputs._counts``, written into ``out``."""
        days_7, days_28, previous_28, days_90 = uses
        k7, k28, k90, per_user, trend, slope = _count_keys(prefix, suffix)
        out[k7] = days_7
        out[k28] = days_28
        out[k90] = days_90
        out[per_user] = round(days_28 / users, 4) if users else None
        out[trend] = round((days_28 + 1) / (previous_28 + 1), 4) if tenure >= 55 else None
        out[slope] = slope_sum / 10 if tenure >= 27 else None
