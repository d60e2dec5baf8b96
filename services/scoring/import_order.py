"""A file out of time order, read in time order (``healthwatch import``).

An import hands the processor batches spanning less than 48 hours of event time, so
that late events and repeated ids count as the stream counts them. A file sorted by
account, not by time, closed a batch at nearly every record: a 20,200-event history
sorted by account took 482 s, against 7.6 s sorted by time (found from outside). So
the rest of a file that is out of order (``out_of_order``) is read in time order: its
records are copied once to a temporary file, their event times sorted (stable: records
of one time keep the file's order, as ``heapq.merge`` keeps them), and the records read
back in that order (``TimeOrder``).

Such a stretch of a file (from where earlier imports of it stopped to its end then) is
its *segment*. Offsets: the segment's records taken, counted in time order, are
committed under partition 1 of the file's pseudo-topic (``S + taken``, ``S`` the
segment's first record), with the batch as always; partition 2 holds where the segment
ends; partition 0 stays at ``S`` until the segment is done (``backfill._finish``), and
then moves to its end: the file is then as one read in order up to there. An import
stopped part way resumes the segment: the order is made again from the same records,
and of it the records taken are those rejected (their rows in ``import_rejects``;
corrected in place, their times may have moved) and the first ``taken`` less those of
the others: their lines, and so their order, did not change (a blank line sorts first,
not at the time of the line before it, which may be one of those corrected). So
``--restart`` reads the segment's rejected records again only once the segment is done
(read again before, one would leave the rejected rows and shift that count). A file
holding fewer records than its segment begun is refused until whole (``changed``);
records added after it are read by the next run (``grown``).
"""

from __future__ import annotations

import math
import os
import tempfile
from array import array
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.typing import NDArray

from services.scoring.history_files import LineNumbers, Unreadable, UnreadableFile, read_lines
from services.scoring.import_ahead import receipt_of
from services.scoring.import_lines import Stamp, event_time, stamp_of

# The partitions of an import's pseudo-topic: records in the file's order (0), a
# segment's records taken in time order (1), and where the segment ends (2).
IN_FILE_ORDER, IN_TIME_ORDER, SEGMENT_END = 0, 1, 2
# The kinds of record a segment holds, kept beside its bytes in the copy.
_RECORD, _UNREADABLE, _BLANK = 0, 1, 2


@dataclass
class Segment:
    """Where a segment lies: its first record, the record after its last, and how many
    of its records earlier batches took (in time order)."""

    start: int
    end: int
    taken: int = 0

    @classmethod
    def stored(cls, offsets: Mapping[int, int]) -> Segment | None:
        """The segment an earlier import left unfinished (``offsets``: partition → the
        stored offset), or None."""
        end = offsets.get(SEGMENT_END)
        start = offsets.get(IN_FILE_ORDER, 0)
        if end is None or end <= start:
            return None
        taken = max(0, offsets.get(IN_TIME_ORDER, start) - start)
        return cls(start, end, taken) if taken < end - start else None


@dataclass
class Ordered:
    """A record handed on in time order: its number in the file, its position in the
    segment's order (its offset under partition 1), its bytes, stamp and event time."""

    number: int
    position: int
    line: bytes
    stamp: Stamp
    when: float


@dataclass
class TimeOrder:
    """A segment of the file at ``path`` copied to ``folder`` and read back in time
    order (``read_records`` first); the records before it that ``--restart`` reads
    again come first, in the file's order."""

    path: Path
    segment: Segment
    folder: Path
    again: list[tuple[int, bytes]] = field(default_factory=list)  # (number, record)
    # The file breaks off at the segment's end (``UnreadableFile``'s message).
    broken: str | None = None
    # Why the segment cannot go on (the import stops before it, its offsets kept): the
    # file no longer holds all of the segment begun.
    changed: str | None = None
    added: int = 0  # records after the segment (a file grown since it began): next run
    lines_read: int = 0  # the file's records read (to the segment's end)
    _copy: Path | None = None
    _offsets: array[int] = field(default_factory=lambda: array("q"))
    _lengths: array[int] = field(default_factory=lambda: array("q"))
    _kinds: array[int] = field(default_factory=lambda: array("b"))
    _whens: array[float] = field(default_factory=lambda: array("d"))
    _receipts: array[float] = field(default_factory=lambda: array("d"))
    # The segment's records still to read (numbers), in time order.
    remaining: NDArray[np.int64] = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    def read_records(self, lines: LineNumbers, again: set[int], rejected: set[int]) -> None:
        """Copy the segment's records (up to its end: records added since wait for the
        next import) and order them; ``again``: records before it to read again first;
        ``rejected``: the records rejected before (those in the segment were taken)."""
        segment = self.segment
        handle, name = tempfile.mkstemp(prefix="segment-", dir=self.folder)
        os.close(handle)
        self._copy = Path(name)
        when = -math.inf  # a record without a time keeps the one before it in the file
        with self._copy.open("wb") as out:
            try:
                for number, line in enumerate(read_lines(self.path, lines)):
                    if number >= segment.end:
                        self.added += 1
                        continue
                    self.lines_read = number + 1
                    if number < segment.start:
                        if number in again:
                            self.again.append((number, line))
                        continue
                    when = self._keep(out, line, when)
            except UnreadableFile as exc:
                self.broken = str(exc)
        held = len(self._kinds)
        if segment.taken and held < segment.end - segment.start:
            # Which records were taken is known only of the segment as it was begun.
            self.changed = (
                f"{self.path.name} changed while the import reading it in time order was "
                f"stopped part way: it holds {segment.start + held} readable records where "
                f"that reading covers {segment.end}; put it back as it was and run the "
                "import again"
            )
            return
        segment.end = segment.start + held
        remaining = self._still_to_read(rejected)
        if remaining is None:
            self.changed = (
                f"{self.path.name}: more of its lines are recorded rejected than its "
                "reading in time order took; import it under another name, or start its "
                "import again on a fresh database"
            )
            return
        self.remaining = remaining

    def _keep(self, out: BinaryIO, line: bytes, before: float) -> float:
        """Copy one record of the segment; returns its event time (the merge's key)."""
        kind = _UNREADABLE if isinstance(line, Unreadable) else _RECORD
        if kind == _RECORD and not line.strip():
            kind = _BLANK
        self._offsets.append(out.tell())
        self._lengths.append(len(line))
        self._kinds.append(kind)
        out.write(bytes(line))
        when = event_time(stamp_of(line), before) if kind == _RECORD else before
        # A blank line sorts first: a time it took from the line before it would move
        # when that line is corrected in place, and with it the count of records taken
        # (``_still_to_read``; found in review).
        self._whens.append(-math.inf if kind == _BLANK else when)
        self._receipts.append(receipt_of(line) if kind == _RECORD else math.inf)
        return when

    def _still_to_read(self, rejected: set[int]) -> NDArray[np.int64] | None:
        """The segment's records in time order, without those taken before: the ones
        rejected, and the first ``taken`` less those of the rest. None when more are
        rejected than were taken (every rejected record was taken: the stored offsets
        and rejections do not belong together), rather than a count gone negative."""
        start = self.segment.start
        ordered = start + np.argsort(np.frombuffer(self._whens, dtype=np.float64), kind="stable")
        if not self.segment.taken:
            return ordered
        taken_back = np.fromiter(
            (n for n in rejected if start <= n < self.segment.end), dtype=np.int64
        )
        if len(taken_back) > self.segment.taken:
            return None
        others = ordered[~np.isin(ordered, taken_back)]
        return others[self.segment.taken - len(taken_back) :]

    @property
    def first_position(self) -> int:
        """The position (partition 1's offset) of the first record still to read."""
        return self.segment.start + self.segment.taken

    def receipts(self) -> NDArray[np.float64]:
        """The receipts of what ``records`` hands on, in its order (``import_ahead``):
        the records read again first, then the segment's still to read."""
        again = [receipt_of(line) if not isinstance(line, Unreadable) else math.inf
                 for _, line in self.again]  # fmt: skip
        kept = np.frombuffer(self._receipts, dtype=np.float64)
        rest = kept[self.remaining - self.segment.start]
        return np.concatenate([np.array(again, dtype=np.float64), rest])

    def records(self) -> Iterator[Ordered]:
        """The segment's records still to read, in time order (blank ones included: they
        hold a position; the caller skips them)."""
        assert self._copy is not None
        start = self.segment.start
        fd = os.open(self._copy, os.O_RDONLY)
        try:
            for k, number in enumerate(self.remaining.tolist()):
                at = number - start
                raw = os.pread(fd, self._lengths[at], self._offsets[at])
                kind = self._kinds[at]
                line = Unreadable(raw) if kind == _UNREADABLE else raw
                stamp = stamp_of(line) if kind == _RECORD else None
                yield Ordered(number, self.first_position + k, line, stamp, self._whens[at])
        finally:
            os.close(fd)

    @property
    def grown(self) -> str | None:
        """Why the import stops after the segment: records added to the file since the
        segment began, read by the next run (with the segment's order kept)."""
        if not self.added:
            return None
        return (
            f"{self.path.name} grew by {self.added} records while the import reading it in "
            "time order was stopped part way: what it held then is imported; run the import "
            "again to read the rest"
        )

    def number_at(self, position: int) -> int:
        """The record number of the record handed on at ``position``."""
        return int(self.remaining[position - self.first_position])

    def close(self) -> None:
        if self._copy is not None:
            self._copy.unlink(missing_ok=True)
            self._copy = None
