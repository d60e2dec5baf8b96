"""An account's kept days in arrays: how ``usage.py`` holds the days no event changed
since its state was read, and how a state is stored (issue 12's engine, stage 1 in
docs/architecture.md).

A row per day, oldest first: ``days`` (ordinals), ``events``, ``seconds``, how many
users were active (``user_counts``) and how many names it counted (``name_counts``).
Then the days' entries, day after day in the same order: ``user_ids`` (each day's users,
ascending), ``name_ids`` and ``uses`` (each day's names, ascending, and their counts).
A day's entries start after the counts of the days before it.

Why arrays, not the ``DayUse`` dicts events are applied to: a sweep decoded each state
into dicts and walked them for the measures, 39.1 and 60.3 µs an account; held in
arrays, a state decodes in 20.7 µs and a chunk of states is concatenated into one set
of arrays whose measures are a few NumPy passes for every account at once, 30.4 µs an
account with the results it builds (``usage_measures.py``; ``bench/step_bench.py``,
docs/benchmarks.md). Events still change a day as a ``DayUse``: ``usage.py`` takes the
day out of the arrays, changes it, and folds it back in once a newer day begins.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple, cast

import msgspec
import numpy as np
import numpy.typing as npt

Ints = npt.NDArray[np.int64]


class DayUse(msgspec.Struct, array_like=True, omit_defaults=True):
    """One day of an account's usage."""

    events: int = 0
    seconds: float = 0.0
    users: set[int] = msgspec.field(default_factory=set)  # indices into users
    names: dict[int, int] = msgspec.field(default_factory=dict)  # name index → uses


# The arrays' types, little-endian as stored. Counts of uses are held within ±(2^31 - 1)
# (usage.COUNT_MAX), so 32 bits hold them; a day's events are not capped: 64 bits.
DAY, EVENTS, SECONDS, COUNT, ID, USES = "<i4", "<i8", "<f8", "<i4", "<i4", "<i4"


class DayColumns(NamedTuple):
    """The days of one usage state, in arrays (see the module's docstring). A named
    tuple: a state's columns are rebuilt whenever its changed days fold in, and a
    tuple of eight is the cheapest object to build."""

    days: npt.NDArray[np.int32]
    events: npt.NDArray[np.int64]
    seconds: npt.NDArray[np.float64]
    user_counts: npt.NDArray[np.int32]
    user_ids: npt.NDArray[np.int32]
    name_counts: npt.NDArray[np.int32]
    name_ids: npt.NDArray[np.int32]
    uses: npt.NDArray[np.int32]


_TYPES = (DAY, EVENTS, SECONDS, COUNT, ID, COUNT, ID, USES)
EMPTY = DayColumns(*(np.empty(0, dtype=kind) for kind in _TYPES))


def from_bytes(parts: tuple[bytes, ...]) -> DayColumns:
    """Columns stored as ``to_bytes`` wrote them (read-only views of the bytes)."""
    return DayColumns(
        *(np.frombuffer(part, dtype=kind) for part, kind in zip(parts, _TYPES, strict=True))
    )


def to_bytes(columns: DayColumns) -> tuple[bytes, ...]:
    return tuple(column.tobytes() for column in columns)


def from_days(days: Mapping[int, DayUse]) -> DayColumns:
    """``days`` (ordinal → use) as columns."""
    if not days:
        return EMPTY
    ordinals = sorted(days)
    return from_uses(ordinals, [days[ordinal] for ordinal in ordinals])


def from_uses(ordinals: list[int], days: list[DayUse]) -> DayColumns:
    """Rows of ``days``, on the days ``ordinals``, in that order."""
    events: list[int] = []
    seconds: list[float] = []
    user_counts: list[int] = []
    user_ids: list[int] = []
    name_counts: list[int] = []
    name_ids: list[int] = []
    uses: list[int] = []
    for use in days:
        events.append(use.events)
        seconds.append(use.seconds)
        user_counts.append(len(use.users))
        user_ids.extend(sorted(use.users))
        name_counts.append(len(use.names))
        for name in sorted(use.names):
            name_ids.append(name)
            uses.append(use.names[name])
    return DayColumns(
        np.array(ordinals, dtype=DAY),
        np.array(events, dtype=EVENTS),
        np.array(seconds, dtype=SECONDS),
        np.array(user_counts, dtype=COUNT),
        np.array(user_ids, dtype=ID),
        np.array(name_counts, dtype=COUNT),
        np.array(name_ids, dtype=ID),
        np.array(uses, dtype=USES),
    )


def merge(columns: DayColumns, days: Mapping[int, DayUse]) -> DayColumns:
    """``columns`` with ``days`` added (none of them is in ``columns``), in day order."""
    added = from_days(days)
    if not columns.days.size:
        return added
    if not added.days.size:
        return columns
    both = DayColumns(
        *(
            np.concatenate((old, new))
            for old, new in zip(_arrays(columns), _arrays(added), strict=True)
        )
    )
    if added.days[0] > columns.days[-1]:
        return both  # the usual: the days changed are newer than those kept
    return take(both, np.argsort(both.days, kind="stable"))


def _arrays(columns: DayColumns) -> tuple[npt.NDArray[Any], ...]:
    return cast(tuple[npt.NDArray[Any], ...], columns)


def take(columns: DayColumns, rows: Ints) -> DayColumns:
    """The days at positions ``rows``, in that order, with their entries."""
    users = _entries(columns.user_counts, rows)
    names = _entries(columns.name_counts, rows)
    return DayColumns(
        columns.days[rows],
        columns.events[rows],
        columns.seconds[rows],
        columns.user_counts[rows],
        columns.user_ids[users],
        columns.name_counts[rows],
        columns.name_ids[names],
        columns.uses[names],
    )


def _entries(counts: npt.NDArray[np.int32], rows: Ints) -> Ints:
    """The positions of the entries of the days at ``rows`` (in that order), given each
    day's count of entries."""
    starts = np.cumsum(counts, dtype=np.int64) - counts
    lengths = counts[rows].astype(np.int64)
    placed = np.cumsum(lengths) - lengths  # where each day's entries start in the result
    total = int(lengths.sum())
    return np.repeat(starts[rows] - placed, lengths) + np.arange(total, dtype=np.int64)


def position(columns: DayColumns, ordinal: int) -> int | None:
    """The row of day ``ordinal``, or None."""
    days = columns.days
    at = int(np.searchsorted(days, ordinal))
    return at if at < days.size and int(days[at]) == ordinal else None


def without(columns: DayColumns, at: int) -> DayColumns:
    """``columns`` without the day in row ``at``."""
    if at == columns.days.size - 1:  # the newest day, as usual: slices, nothing copied
        users = columns.user_ids.size - int(columns.user_counts[-1])
        names = columns.name_ids.size - int(columns.name_counts[-1])
        return DayColumns(
            columns.days[:-1],
            columns.events[:-1],
            columns.seconds[:-1],
            columns.user_counts[:-1],
            columns.user_ids[:users],
            columns.name_counts[:-1],
            columns.name_ids[:names],
            columns.uses[:names],
        )
    rows = np.delete(np.arange(columns.days.size, dtype=np.int64), at)
    return take(columns, rows)


def from_day(columns: DayColumns, cutoff: int) -> DayColumns:
    """The days on or after ordinal ``cutoff``."""
    at = int(np.searchsorted(columns.days, cutoff))
    if not at:
        return columns
    users = int(columns.user_counts[:at].sum())
    names = int(columns.name_counts[:at].sum())
    return DayColumns(
        columns.days[at:],
        columns.events[at:],
        columns.seconds[at:],
        columns.user_counts[at:],
        columns.user_ids[users:],
        columns.name_counts[at:],
        columns.name_ids[names:],
        columns.uses[names:],
    )


def day_uses(columns: DayColumns, first: int = 0, last: int | None = None) -> dict[int, DayUse]:
    """The days from ordinal ``first`` to ``last`` (all by default) as ``DayUse``, oldest
    first: new objects, which may be changed."""
    days = columns.days
    start = int(np.searchsorted(days, first)) if first else 0
    end = days.size if last is None else int(np.searchsorted(days, last, side="right"))
    if start >= end:
        return {}
    user_at = int(columns.user_counts[:start].sum())
    name_at = int(columns.name_counts[:start].sum())
    user_counts = columns.user_counts[start:end].tolist()
    name_counts = columns.name_counts[start:end].tolist()
    user_ids = columns.user_ids[user_at : user_at + sum(user_counts)].tolist()
    name_ids = columns.name_ids[name_at : name_at + sum(name_counts)].tolist()
    uses = columns.uses[name_at : name_at + sum(name_counts)].tolist()
    out: dict[int, DayUse] = {}
    users = names = 0
    for ordinal, events, seconds, user_count, name_count in zip(
        days[start:end].tolist(),
        columns.events[start:end].tolist(),
        columns.seconds[start:end].tolist(),
        user_counts,
        name_counts,
        strict=True,
    ):
        out[ordinal] = DayUse(
            events,
            seconds,
            set(user_ids[users : users + user_count]),
            dict(
                zip(
                    name_ids[names : names + name_count],
                    uses[names : names + name_count],
                    strict=True,
                )
            ),
        )
        users += user_count
        names += name_count
    return out


def day_use(columns: DayColumns, at: int) -> DayUse:
    """The day in row ``at`` as a new ``DayUse``."""
    ordinal = int(columns.days[at])
    return day_uses(columns, ordinal, ordinal)[ordinal]


def renumber_names(columns: DayColumns, kept: int) -> tuple[DayColumns, list[int]] | None:
    """The columns with the names no day counts dropped (``kept``: how many names the
    state knows), and the old index of each name left; None when every name is used."""
    used = np.unique(columns.name_ids)
    if used.size == kept:
        return None
    new = np.full(kept, -1, dtype=ID)
    new[used] = np.arange(used.size, dtype=ID)
    return columns._replace(name_ids=new[columns.name_ids]), used.tolist()
