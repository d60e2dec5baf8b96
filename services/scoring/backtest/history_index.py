"""The backtest's first pass: where each event of the history files is, in time order.

Holding a whole history as models took 6.2 GB for 3.9 M events. The first pass keeps
only a compact index per valid line — event time (µs), file, byte offset, length,
account (a number) and event id, about 26 bytes plus the id's length — sorts it by
(occurred_at, event_id) like ``sorted(events, key=...)`` did (stable: equal keys keep
the files' order), and the replay's workers then read each line again by its offset
when they feed it, each the lines of its shard of the accounts
(``HistoryIndex.shards``). Gzip, CSV and
Parquet files cannot be read at an offset: their records (rows as JSON, as
``read_lines`` gives them) are written once to a spill file in the replay's temporary
folder, only the valid ones.
"""

from __future__ import annotations

import heapq
import os
from array import array
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from services.scoring.history_files import BOM, LineNumbers, Unreadable, read_lines
from shared.contracts.events import (
    AccountFacts,
    LifecycleStage,
    NpsResponse,
    PaymentEvent,
    TicketEvent,
    Touchpoint,
    future_times,
)
from shared.contracts.wire import UndecodableRecord, decode_event

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MICROSECOND = timedelta(microseconds=1)
GZIP_MAGIC = b"\x1f\x8b"
# Lines between two progress reports of the first pass: a few a second at its rate.
REPORT_EVERY = 50_000
# Event ids kept as bytes objects before they are packed into a fixed-width array: a
# bytes object costs ~40 bytes beyond its text, so the list stays a few MB.
PACK_EVERY = 65_536
# Rejected lines kept with their reasons for the command to list (the rest counted):
# enough to see what is wrong with a file, few enough to print.
REJECTS_KEPT = 20


def micros(moment: datetime) -> int:
    """An aware time as integer microseconds since the epoch (orders like the time)."""
    return (moment - EPOCH) // ONE_MICROSECOND


def day_of(moment: int) -> date:
    return (EPOCH + moment * ONE_MICROSECOND).date()


@dataclass
class _Pass:
    """What the first pass gathers, in the files' order."""

    reading: Callable[[int], None]
    now: datetime  # when the history is read: a line's receipt if it has none
    skew: timedelta  # how far past its receipt an event's times may lie
    times: array[int] = field(default_factory=lambda: array("q"))
    sources: array[int] = field(default_factory=lambda: array("H"))
    offsets: array[int] = field(default_factory=lambda: array("q"))
    lengths: array[int] = field(default_factory=lambda: array("I"))
    ids: list[bytes] = field(default_factory=list)
    packed: list[NDArray[np.bytes_]] = field(default_factory=list)
    accounts: array[int] = field(default_factory=lambda: array("I"))  # each line's account
    numbers: dict[str, int] = field(default_factory=dict)  # account id -> its number
    # Keys the scoring step stores for all accounts alike (a ticket's id; the event id
    # of a touchpoint, NPS answer or payment): key -> the first account naming it, and
    # the pairs of accounts that named the same key (replayed in one shard).
    tickets: dict[str, int] = field(default_factory=dict)
    records: dict[str, int] = field(default_factory=dict)
    links: list[tuple[int, int]] = field(default_factory=list)
    lines: int = 0
    rejected: int = 0
    rejects: list[tuple[int, int, str]] = field(default_factory=list)  # source, line, why
    # account -> its first churned facts by (time, event id, position), and that day
    churned: dict[str, tuple[tuple[int, bytes, int], date]] = field(default_factory=dict)
    live: set[str] = field(default_factory=set)

    def add(self, source: int, offset: int, line: bytes, number: int) -> bool:
        """Index one line (line ``number`` of its file); False for a blank or rejected
        one."""
        self.lines += 1
        if self.lines % REPORT_EVERY == 0:
            self.reading(self.lines)
        if not line.strip():
            return False
        try:
            # As the scoring step decodes the line when the replay feeds it, so the two
            # take the same lines (and usage events by the fast decoder: 6.7 against
            # 8.6 µs a line of a simulated history).
            event = decode_event(line)
        except UndecodableRecord as exc:
            self._reject(source, number, line.reason if isinstance(line, Unreadable) else exc)
            return False
        received = min(event.received_at or self.now, self.now)  # none lies ahead
        if late := future_times(event, received + self.skew, self.skew):
            # Refused as ingest and an import refuse it; kept, one event in the year
            # 2200 (the contract's bound) would stretch the replay's days to it, every
            # account scored on each.
            self._reject(source, number, "; ".join(f"{t['field']} {t['message']}" for t in late))
            return False
        time, key = micros(event.occurred_at), event.event_id.encode()
        number = self.numbers.setdefault(event.account_id, len(self.numbers))
        if isinstance(event, AccountFacts):
            self._facts(event, (time, key, len(self.times)))
        elif isinstance(event, TicketEvent):
            self._share(self.tickets, event.ticket_id, number)
        elif isinstance(event, Touchpoint | NpsResponse | PaymentEvent):
            self._share(self.records, event.event_id, number)
        self.accounts.append(number)
        self.times.append(time)
        self.sources.append(source)
        self.offsets.append(offset)
        self.lengths.append(len(line))
        self.ids.append(key)
        if len(self.ids) >= PACK_EVERY:
            self.pack()
        return True

    def _reject(self, source: int, number: int, why: object) -> None:
        self.rejected += 1
        if len(self.rejects) < REJECTS_KEPT:
            self.rejects.append((source, number, str(why)))

    def _facts(self, event: AccountFacts, key: tuple[int, bytes, int]) -> None:
        if event.go_live is not None:
            self.live.add(event.account_id)
        if event.lifecycle_stage is LifecycleStage.churned:
            first = self.churned.get(event.account_id)
            if first is None or key < first[0]:
                self.churned[event.account_id] = (key, event.occurred_at.astimezone(UTC).date())

    def _share(self, owners: dict[str, int], key: str, number: int) -> None:
        first = owners.setdefault(key, number)
        if first != number:
            self.links.append((first, number))

    def pack(self) -> None:
        if self.ids:
            # UTF-8 bytes order like the ids' text; ids hold no NUL (no control
            # characters), so numpy's NUL padding orders a prefix first, as str does.
            self.packed.append(np.array(self.ids, dtype=np.bytes_))
            self.ids = []


class HistoryIndex:
    """Every valid event of the history files, in (occurred_at, event_id) order: the
    counts replay needs up front, and each event's line read back on demand."""

    def __init__(self, gathered: _Pass, readable: Sequence[Path], names: Sequence[str]):
        gathered.pack()
        times = np.frombuffer(gathered.times, dtype=np.int64)
        if gathered.packed:  # a stable sort: equal keys keep the files' order
            order = np.lexsort((np.concatenate(gathered.packed), times))
        else:
            order = np.zeros(0, dtype=np.intp)
        gathered.packed = []
        self._times = times[order]
        self._sources = np.frombuffer(gathered.sources, dtype=np.uint16)[order]
        self._offsets = np.frombuffer(gathered.offsets, dtype=np.int64)[order]
        self._lengths = np.frombuffer(gathered.lengths, dtype=np.uint32)[order]
        self.rejected = gathered.rejected
        # The first rejected lines: file name, line, reason.
        self.rejects = [(names[source], line, why) for source, line, why in gathered.rejects]
        self.go_live_accounts = len(gathered.live)
        self.account_ids = frozenset(gathered.numbers)  # every account an event names
        by_first = sorted(gathered.churned.items(), key=lambda item: item[1][0])
        # Churn days in the order the events name them (dict order, as before).
        self.churned = [(account_id, day) for account_id, (_, day) in by_first]
        self._accounts = np.frombuffer(gathered.accounts, dtype=np.uint32)[order]
        self._account_count = len(gathered.numbers)
        self._links = gathered.links
        self._readable = tuple(readable)

    def __len__(self) -> int:
        return len(self._times)

    @property
    def first_day(self) -> date:
        return day_of(int(self._times[0]))

    @property
    def last_day(self) -> date:
        return day_of(int(self._times[-1]))

    def moment(self, position: int) -> datetime:
        """The event time of the event at ``position`` of the order (to µs)."""
        return EPOCH + int(self._times[position]) * ONE_MICROSECOND

    def before(self, end: datetime) -> int:
        """How many events occurred before ``end``."""
        return int(np.searchsorted(self._times, micros(end), side="left"))

    def shards(self, count: int) -> list[Shard]:
        """The events split into at most ``count`` shards of whole accounts, for replay
        workers: accounts that share a key the scoring step keeps for every account (a
        ticket moved between them, a repeated touchpoint id) in one shard, since what one
        of them does changes what the other's replay stores. The largest groups of
        accounts first, each to the shard with the fewest events so far (by events:
        replaying them is the work). Empty shards are left out."""
        group = _roots(self._account_count, self._links)
        events = np.bincount(self._accounts, minlength=self._account_count)
        sizes = np.bincount(group, weights=events, minlength=self._account_count)
        loads = [(0, k) for k in range(max(1, count))]
        shard_of = np.zeros(self._account_count, dtype=np.intp)
        for root in sorted(set(group.tolist()), key=lambda root: (-sizes[root], root)):
            load, k = heapq.heappop(loads)
            shard_of[root] = k
            heapq.heappush(loads, (load + int(sizes[root]), k))
        shard = shard_of[group][self._accounts]
        chosen = [np.flatnonzero(shard == k) for k in range(max(1, count))]
        return [self._shard(positions) for positions in chosen if len(positions)]

    def _shard(self, positions: NDArray[np.intp]) -> Shard:
        return Shard(
            self._readable,
            positions.astype(np.int64),
            self._sources[positions],
            self._offsets[positions],
            self._lengths[positions],
        )


@dataclass(frozen=True)
class Shard:
    """Some accounts' events of a ``HistoryIndex``, for a replay worker in another
    process (it pickles): their positions in the whole order, ascending, and where
    their lines are."""

    files: tuple[Path, ...]
    positions: NDArray[np.int64]
    sources: NDArray[np.uint16]
    offsets: NDArray[np.int64]
    lengths: NDArray[np.uint32]

    def __len__(self) -> int:
        return len(self.positions)

    def between(self, start: int, stop: int) -> slice:
        """The shard's events among positions ``start`` to ``stop`` of the whole order."""
        found = np.searchsorted(self.positions, [start, stop], side="left")
        return slice(int(found[0]), int(found[1]))

    @contextmanager
    def reader(self) -> Iterator[Callable[[slice], list[bytes]]]:
        """``read(where)``: the lines of the shard's events ``where``."""
        files = [os.open(path, os.O_RDONLY) for path in self.files]
        try:
            yield lambda where: _read(
                files, self.sources[where], self.offsets[where], self.lengths[where]
            )
        finally:
            for file in files:
                os.close(file)


def _read(
    files: Sequence[int],
    sources: NDArray[np.uint16],
    offsets: NDArray[np.int64],
    lengths: NDArray[np.uint32],
) -> list[bytes]:
    where = zip(sources.tolist(), offsets.tolist(), lengths.tolist(), strict=True)
    return [os.pread(files[source], length, offset) for source, offset, length in where]


def _roots(count: int, links: Sequence[tuple[int, int]]) -> NDArray[np.intp]:
    """Each of ``count`` accounts' group (its smallest linked account), ``links`` joining
    pairs (union-find)."""
    parent = list(range(count))

    def root(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for a, b in links:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.array([root(k) for k in range(count)], dtype=np.intp)


def index_history(
    paths: Sequence[Path],
    spill_dir: Path,
    reading: Callable[[int], None],
    *,
    now: datetime,
    skew: timedelta,
) -> HistoryIndex:
    """Read the files once; ``reading`` hears the lines read so far now and then. A line
    with a time more than ``skew`` past its receipt (``now`` for a line without one, or
    with one after ``now``) is refused, as ingest refuses it."""
    gathered = _Pass(reading, now, skew)
    readable: list[Path] = []
    for path in paths:
        source = len(readable)
        if _plain(path):
            readable.append(path)
            for number, (offset, line) in enumerate(_plain_lines(path), start=1):
                gathered.add(source, offset, line, number)
        else:
            readable.append(spill_dir / f"spill-{source}.ndjson")
            _spill(gathered, source, path, readable[-1])
    reading(gathered.lines)
    return HistoryIndex(gathered, readable, [path.name for path in paths])


def _plain(path: Path) -> bool:
    """NDJSON as is, readable at an offset; not gzip, CSV or Parquet, which
    ``read_lines`` converts (it tells them apart the same way)."""
    with path.open("rb") as raw:
        gzipped = raw.read(2) == GZIP_MAGIC
    return not gzipped and not path.name.lower().removesuffix(".gz").endswith((".csv", ".parquet"))


def _plain_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """Each line with its offset, without its line break (as ``read_lines`` gives it)."""
    offset = 0
    with path.open("rb") as file:
        for raw in file:
            # A byte-order mark first is no part of the JSON (``read_lines`` skips it).
            line = raw.removeprefix(BOM) if offset == 0 else raw
            yield offset + len(raw) - len(line), line.rstrip(b"\r\n")
            offset += len(raw)


def _spill(gathered: _Pass, source: int, path: Path, spill: Path) -> None:
    """Index a gzip, CSV or Parquet file through a plain copy of its valid lines."""
    offset = 0
    lines = LineNumbers()  # where each record is in the file, for its rejection
    with spill.open("wb") as out:
        for record, line in enumerate(read_lines(path, lines)):
            if gathered.add(source, offset, line, lines.line(record)):
                out.write(line + b"\n")
                offset += len(line) + 1
