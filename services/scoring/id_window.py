"""An account's dedup window in memory: the event ids (8-byte hashes) it received, by the
hour of receipt, held compactly. Pure: ``usage.py`` asks it, ``usage_store.py`` stores
it a row per hour (``usage_seen``).

As a set of Python ints per hour, an id cost 109 bytes of memory against the 8 it is
stored in (tracemalloc, 200,000 ids), and a busy account holds 48 hours of ids: at
1,000 events a second, a scoring process grew by 100 MB in its first 25 minutes
(``docs/benchmarks.md``). Here the ids are frozen into two sorted arrays (the hashes
and, beside each, its hour: 12 bytes an id) once enough have arrived since the last
freeze; the ids since then stay in small per-hour sets, where adding is cheap. Asking
for an id looks in those sets, then in the arrays with one binary search.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

# Ids added since the last freeze before the next: at least FREEZE_MIN (a quiet
# account's window stays a few small sets, ~110 KB at most), and a quarter of those
# already frozen, so each freeze, which sorts the whole window again, is paid for by a
# quarter as many new ids (a steady busy account freezes about four times per window).
FREEZE_MIN = 1024
FREEZE_SHARE = 4

Hashes = npt.NDArray[np.uint64]
Hours = npt.NDArray[np.int32]  # hours since 1970 fit an int32 until the year 246,000

_NO_HASHES: Hashes = np.empty(0, dtype=np.uint64)
_NO_HOURS: Hours = np.empty(0, dtype=np.int32)


class IdWindow:
    """The ids received per hour; equal to another window holding the same ids."""

    __slots__ = ("_freeze_at", "_frozen", "_hashes", "_hours", "_open", "_open_count")

    def __init__(self) -> None:
        self._open: dict[int, set[int]] = {}  # hour → ids added since the last freeze
        self._open_count = 0
        self._hashes = _NO_HASHES  # frozen ids, sorted
        self._hours = _NO_HOURS  # the hour of each frozen id
        self._frozen: dict[int, int] = {}  # hour → how many frozen ids it has
        self._freeze_at = FREEZE_MIN  # open ids that make the next freeze

    def __len__(self) -> int:
        return self._open_count + len(self._hashes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IdWindow):
            return NotImplemented
        return self.by_hour() == other.by_hour()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"IdWindow({len(self)} ids over {len(self.hours())} hours)"

    def holds(self, digest: int, hour: int, within: int) -> bool:
        """Whether ``digest`` was received within ``within`` hours of ``hour``."""
        # A loop, not any() over a generator: this runs for every event.
        for seen_hour, ids in self._open.items():
            if digest in ids and abs(seen_hour - hour) <= within:
                return True
        if not self._frozen:
            return False
        hashes = self._hashes
        key = np.uint64(digest)
        at, end = int(hashes.searchsorted(key)), len(hashes)
        while at < end and hashes[at] == key:
            if abs(int(self._hours[at]) - hour) <= within:
                return True
            at += 1
        return False

    def add(self, digest: int, hour: int) -> None:
        """Remember ``digest`` as received in ``hour`` (the caller asked ``holds`` first)."""
        ids = self._open.get(hour)
        if ids is None:
            ids = self._open[hour] = set()
        if digest not in ids:
            ids.add(digest)
            self._open_count += 1
            if self._open_count >= self._freeze_at:
                self.freeze()

    def freeze(self) -> None:
        """Move the ids of the per-hour sets into the sorted arrays."""
        if not self._open:
            return
        hashes, hours = [self._hashes], [self._hours]
        for hour, ids in self._open.items():
            hashes.append(np.fromiter(ids, dtype=np.uint64, count=len(ids)))
            hours.append(np.full(len(ids), hour, dtype=np.int32))
            self._frozen[hour] = self._frozen.get(hour, 0) + len(ids)
        self._set_frozen(np.concatenate(hashes), np.concatenate(hours))
        self._open.clear()
        self._open_count = 0

    def load(self, stored: Iterable[tuple[int, bytes]]) -> None:
        """Add the ids stored for each hour (``pack``'s bytes), as read back."""
        hashes, hours = [self._hashes], [self._hours]
        for hour, packed in stored:
            ids = np.frombuffer(packed, dtype="<u8").astype(np.uint64)
            hashes.append(ids)
            hours.append(np.full(len(ids), hour, dtype=np.int32))
            self._frozen[hour] = self._frozen.get(hour, 0) + len(ids)
        if len(hashes) > 1:
            self._set_frozen(np.concatenate(hashes), np.concatenate(hours))

    def _set_frozen(self, hashes: Hashes, hours: Hours) -> None:
        order = np.argsort(hashes, kind="stable")
        self._hashes, self._hours = hashes[order], hours[order]
        self._freeze_at = max(FREEZE_MIN, len(hashes) // FREEZE_SHARE)

    def drop_before(self, oldest: int) -> set[int]:
        """Forget the hours before ``oldest``; returns those that held ids."""
        dropped = {hour for hour in self._open if hour < oldest}
        for hour in dropped:
            self._open_count -= len(self._open.pop(hour))
        frozen = {hour for hour in self._frozen if hour < oldest}
        if frozen:
            kept = self._hours >= oldest
            self._hashes, self._hours = self._hashes[kept], self._hours[kept]
            for hour in frozen:
                del self._frozen[hour]
        return dropped | frozen

    def hours(self) -> set[int]:
        """The hours holding ids."""
        return self._open.keys() | self._frozen.keys()

    def ids_of(self, hour: int) -> Hashes:
        """The ids received in ``hour``."""
        parts = []
        if hour in self._frozen:
            parts.append(self._hashes[self._hours == hour])
        if hour in self._open:
            ids = self._open[hour]
            parts.append(np.fromiter(ids, dtype=np.uint64, count=len(ids)))
        return np.concatenate(parts) if parts else _NO_HASHES

    def pack(self, hour: int) -> bytes:
        """The ids of ``hour`` as stored in ``usage_seen``: 8 bytes each, little-endian,
        in no particular order."""
        return self.ids_of(hour).astype("<u8").tobytes()

    def by_hour(self) -> dict[int, set[int]]:
        """Every hour's ids as Python ints (for tests and checks: the memory it saves)."""
        return {hour: set(self.ids_of(hour).tolist()) for hour in self.hours()}

    @classmethod
    def of(cls, by_hour: dict[int, set[int]]) -> IdWindow:
        """A window holding ``by_hour``'s ids (a value written before the window moved to
        its own table held them so)."""
        window = cls()
        for hour, ids in by_hour.items():
            for digest in ids:
                window.add(digest, hour)
        return window
