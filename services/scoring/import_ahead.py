"""The earliest receipt still ahead in an import's files, so that the dedup window keeps
the ids a later line may repeat.

The dedup window (``usage.py``) forgets the ids received more than ``DEDUP_HOURS``
before the newest receipt it has seen, and an import's receipts are its lines' times
(``received_at`` when a line has one, else ``occurred_at``, as
``state.drop_duplicates`` reads them). A file out of time order by more than that (two
overlapping exports one after the other, a shuffled file) had the second copy of an
event read after the window forgot the first: counted twice, where the stream, which
received both within minutes, counted it once. So the import reads each file once
first, for its lines' receipts only, and keeps per record the earliest receipt from it
to the end of the file (8 bytes a record). Before each batch it tells the step the
earliest receipt still ahead in any file, and the window keeps everything within
``DEDUP_HOURS`` of that. Of a file in time order, that is the line being read: the
window is the one the stream keeps.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
from numpy.typing import NDArray

from services.scoring.history_files import Unreadable, UnreadableFile
from services.scoring.import_lines import moment_of
from shared.contracts.events import EARLIEST_TIME

Ahead = NDArray[np.float64]  # [k]: the earliest receipt of records k … end (POSIX time)

# How far behind the newest receipt read the window keeps ids for lines still ahead. One
# old line at the end of a file in time order would otherwise keep every id of the
# import (each batch then reloads whole windows: 9.2 s became 14.7 s for 90,000 events
# over 180 days). Two weeks covers overlapping exports of the usual spans; copies
# further apart in the file's order than that count twice (README).
REACH = timedelta(days=14)


def receipts(lines: Iterable[bytes], skipped: Callable[[int], bool]) -> Ahead:
    """Each record's receipt of ``lines`` (a file's records, as ``read_lines`` gives
    them), and +inf past the last. Records ``skipped`` (imported before) and lines
    without a receipt that reads (the step rejects them) count as +inf. A file that
    breaks off ends where it breaks (the import stops there too)."""
    found = array("d")
    try:
        for number, line in enumerate(lines):
            if skipped(number) or isinstance(line, Unreadable) or not line.strip():
                found.append(math.inf)
            else:
                found.append(receipt_of(line))
    except UnreadableFile:
        pass
    found.append(math.inf)
    return np.frombuffer(found, dtype=np.float64)


def ahead_of(at: Ahead) -> Ahead:
    """For each record k of ``at`` (``receipts``), the earliest receipt among records k
    and after."""
    return np.minimum.accumulate(at[::-1])[::-1]


def out_of_order(at: Ahead, span_s: float) -> int:
    """How many records come after one more than ``span_s`` seconds newer: each closes
    the batch before it, so a file sorted by account, not time, is read in batches of a
    few lines, a hundred times slower or more (found from outside)."""
    readable = at[np.isfinite(at)]
    if not len(readable):
        return 0
    return int(np.count_nonzero(readable < np.maximum.accumulate(readable) - span_s))


def receipt_of(line: bytes) -> float:
    """The line's receipt as the dedup window counts it, as a POSIX time; +inf when it
    does not read (the line is rejected: no receipt reaches the window)."""
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError:
        return math.inf
    if not isinstance(event, dict):
        return math.inf
    raw = event.get("received_at")
    moment = moment_of(raw if raw is not None else event.get("occurred_at"))
    # The contract refuses a naive time and one before EARLIEST_TIME.
    if moment is None or moment.tzinfo is None or moment < EARLIEST_TIME:
        return math.inf
    return moment.timestamp()


def earliest_ahead(ahead: Iterable[tuple[Ahead, int]], newest: float) -> datetime | None:
    """The earliest receipt still ahead, at most REACH before ``newest`` (the newest
    receipt read, POSIX time): ``ahead`` pairs each file's receipts with the number of
    its next record not yet taken. None when nothing is ahead."""
    earliest = min(
        (float(receipts[min(k, len(receipts) - 1)]) for receipts, k in ahead), default=math.inf
    )
    if not math.isfinite(earliest):
        return None
    if math.isfinite(newest):
        earliest = max(earliest, newest - REACH.total_seconds())
    return datetime.fromtimestamp(earliest, UTC)
