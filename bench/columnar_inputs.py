"""The product-agnostic inputs (``services/scoring/inputs.py: generic_inputs``) of every
account at once, from the columnar measures of ``columnar_probe.py``: the sums, the
top names and the arithmetic in NumPy over all accounts' names together (``prepare``);
then each account's dict of inputs in Python (``build``), as the stored rows need one.

Part of the probe, not the engine: ``columnar_probe.py`` times both halves beside
``generic_inputs`` account by account and counts the accounts whose inputs differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from services.scoring.inputs import MAX_NAMES, _count_keys
from services.scoring.model.schema import Behaviour
from services.scoring.usage_measures import NAME_WINDOW_DAYS

Ints = npt.NDArray[np.int64]
EVENT, VALUE = "e", "v"
# A name's sums, as ``NameUse`` holds them (the slope's weighted sum of the four weeks).
PER_NAME = ("days_7", "days_28", "previous_28", "days_90", "slope_sum")


@dataclass
class NameColumns:
    """Per global name (an account's name + that account's offset): its account, its
    dimension's letter, its text, and the rank of its text among every name's (the order
    ``generic_inputs`` breaks ties in). The stored format would hold these."""

    account: Ints
    dimension: npt.NDArray[np.str_]
    text: list[str]
    rank: Ints
    rank_of: dict[str, int]


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
    rank_of = {name: rank for rank, name in enumerate(sorted(set(text)))}
    return NameColumns(
        np.array(account, dtype=np.int64),
        np.array(dimension),
        text,
        np.array([rank_of[name] for name in text], dtype=np.int64),
        rank_of,
    )


@dataclass
class Facts:
    """Per account: the day scored (every account's), the first day of use (0: none),
    and the columnar measures the inputs read."""

    day: int
    first_seen: Ints
    active_days_28d: Ints
    active_users_30d: Ints


@dataclass
class Prepared:
    """What the dicts are built from, as Python lists: per account its totals and
    where its top names start among ``top``; per top name its text and sums."""

    totals: dict[str, list[int]]
    distinct: list[int]
    top_starts: list[int]  # account → its first top name; one more entry: the end
    top: dict[str, list[Any]]  # "text", PER_NAME, "newest"
    # Per name the model declares (its events, its ratios' names): account → its sums.
    named: dict[str, dict[int, tuple[int, ...]]]
    values: dict[tuple[int, str], int]  # (account, name) → its value's days_90


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


def prepare(
    sums: Ints, newest: Ints, names: NameColumns, facts: Facts, behaviour: Behaviour
) -> Prepared:
    """The array half: sums, each account's top names (by uses over 90 days, then by
    name), the declared names' counters, gathered into lists."""
    accounts = len(facts.first_seen)
    per = _periods(sums)
    used = newest > 0
    events = np.flatnonzero(used & (names.dimension == EVENT))
    owner = names.account[events]
    totals = {
        key: np.bincount(owner, weights=values[events], minlength=accounts).astype(np.int64)
        for key, values in per.items()
    }
    distinct = np.bincount(owner[per["days_28"][events] > 0], minlength=accounts)
    order = events[np.lexsort((names.rank[events], -per["days_90"][events], owner))]
    first = np.searchsorted(names.account[order], np.arange(accounts))
    top = order[np.arange(len(order)) - first[names.account[order]] < MAX_NAMES]
    columns = [per[key][top] for key in PER_NAME] + [newest[top]]
    return Prepared(
        totals={key: values.tolist() for key, values in totals.items()},
        distinct=distinct.tolist(),
        top_starts=np.searchsorted(names.account[top], np.arange(accounts + 1)).tolist(),
        top={
            "text": [names.text[g] for g in top.tolist()],
            **{key: c.tolist() for key, c in zip([*PER_NAME, "newest"], columns, strict=True)},
        },
        named={
            name: _named(name, events, names, per, newest)
            for name in [*behaviour.events]
            + [n for r in behaviour.ratios for n in (r.numerator, r.denominator)]
        },
        values=_values(names, used, per["days_90"]),
    )


def _named(
    name: str, events: Ints, names: NameColumns, per: dict[str, Ints], newest: Ints
) -> dict[int, tuple[int, ...]]:
    """Account → the sums and newest day of its event ``name``, for those that used it."""
    rank = names.rank_of.get(name)
    if rank is None:
        return {}
    own = events[names.rank[events] == rank]
    sums = zip(*(per[key][own].tolist() for key in PER_NAME), newest[own].tolist(), strict=True)
    return dict(zip(names.account[own].tolist(), sums, strict=True))


def _values(names: NameColumns, used: npt.NDArray[np.bool_], days_90: Ints) -> dict[Any, int]:
    """(account, name) → the uses over 90 days of its value counter, for those used."""
    value = np.flatnonzero(used & (names.dimension == VALUE))
    return {
        (a, names.text[g]): v
        for a, g, v in zip(
            names.account[value].tolist(), value.tolist(), days_90[value].tolist(), strict=True
        )
    }


NO_USE = (0, 0, 0, 0, 0, 0)


def build(p: Prepared, facts: Facts, behaviour: Behaviour) -> list[dict[str, Any]]:
    """The Python half: each account's dict of inputs, in ``generic_inputs``' order."""
    day, first_seen = facts.day, facts.first_seen.tolist()
    active_days, users = facts.active_days_28d.tolist(), facts.active_users_30d.tolist()
    t, top = p.totals, p.top
    rows: list[dict[str, Any]] = []
    for a in range(len(first_seen)):
        if not first_seen[a]:
            rows.append({})
            continue
        tenure = day - first_seen[a]
        out: dict[str, Any] = {
            "days_since_first_use": float(tenure),
            "active_days_28d": active_days[a],
            "distinct_events_28d": p.distinct[a],
        }
        total = (t["days_7"][a], t["days_28"][a], t["previous_28"][a], t["days_90"][a])
        _counts(out, "usage_events", "", total, t["slope_sum"][a], users[a], tenure)
        chosen = {name: p.named[name].get(a, NO_USE) for name in behaviour.events}
        for i in range(p.top_starts[a], p.top_starts[a + 1]):
            chosen.setdefault(top["text"][i], tuple(top[key][i] for key in (*PER_NAME, "newest")))
        for name, (d7, d28, prev, d90, slope_sum, last) in chosen.items():
            _counts(out, "events", f"[{name}]", (d7, d28, prev, d90), slope_sum, users[a], tenure)
            out[f"days_since_event[{name}]"] = float(
                day - last if last else min(tenure, NAME_WINDOW_DAYS)
            )
            value_90 = p.values.get((a, name))
            if value_90 is not None:
                out[f"value_90d[{name}]"] = value_90
                out[f"value_per_event_90d[{name}]"] = round(value_90 / d90, 2) if d90 else None
        for ratio in behaviour.ratios:
            below = p.named[ratio.denominator].get(a, NO_USE)[1]
            above = p.named[ratio.numerator].get(a, NO_USE)[1]
            out[ratio.name] = round(above / below, 4) if below else None
        rows.append(out)
    return rows


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
