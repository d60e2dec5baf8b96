"""Reading history files for ``healthwatch import`` and ``backtest``: NDJSON, CSV
(gzip recognised by its magic bytes) and Parquet, each record as one JSON document.

A record that cannot become one (bytes not UTF-8, JSON nested past what can be
written, a Parquet time no calendar holds) is ``Unreadable``: rejected with its reason
like an invalid line, the rest read on. A file that breaks off part way (a gzip stream
cut short, a damaged Parquet file, a CSV quote left open past ``MAX_CSV_FIELD``) raises
``UnreadableFile``: what was read before it stands.
"""

from __future__ import annotations

import bisect
import csv
import gzip
import io
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, Any, get_args

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from shared.contracts.events import MAX_EVENT_BYTES, Event
from shared.worker import describe

# The columns every event has (shared/contracts/events.py: EventBase and its kind).
EVENT_COLUMNS = ("kind", "event_id", "account_id", "occurred_at")
# Every field of any event's kind: a column outside them cannot be part of a row.
FIELDS = frozenset(name for model in get_args(get_args(Event)[0]) for name in model.model_fields)
# CSV cells holding JSON (the fields of objects and lists in the public schema;
# ``sales_owner`` and ``usage_quotas`` were left out, and every row naming them refused:
# found in review).
JSON_COLUMNS = {"properties", "owner", "sales_owner", "contacts", "usage_quotas"}
# The longest CSV field read: as long as a whole event may be, so no valid row is
# refused; reaching it means a quote left open is taking the rest of the file into one
# field, and the file stops there (going on mid-field would read its lines as rows).
MAX_CSV_FIELD = MAX_EVENT_BYTES
TOO_LONG = f"longer than {MAX_EVENT_BYTES // 2**20} MiB, the most an event may be".encode()
# Rows of a Parquet file decoded at a time: a few MB of Python objects.
PARQUET_ROWS = 10_000
# The byte-order mark some editors write first in a UTF-8 file.
BOM = b"\xef\xbb\xbf"
# The byte-order marks a UTF-16 file begins with (little- and big-endian).
UTF16_MARKS = (b"\xff\xfe", b"\xfe\xff")


class LineNumbers:
    """Where a record (its number in the file's order, the import's offset) is in the
    file, as ``sed -n Np`` counts: a JSON-lines record is line number + 1; a CSV record
    comes after its header, and a quoted field with line breaks or a blank line moves
    every record after it down. Kept as the few points where that shift changes."""

    def __init__(self) -> None:
        self._from: list[int] = []  # record numbers where the shift changes
        self._shift: list[int] = []

    def note(self, number: int, line: int) -> None:
        """Record ``number`` starts on ``line``."""
        shift = line - (number + 1)
        if shift != (self._shift[-1] if self._shift else 0):
            self._from.append(number)
            self._shift.append(shift)

    def line(self, number: int) -> int:
        at = bisect.bisect_right(self._from, number) - 1
        return number + 1 + (self._shift[at] if at >= 0 else 0)


class Unreadable(bytes):
    """A record of the file that cannot become a JSON document (bytes not UTF-8, a time
    no calendar holds, JSON nested past what can be written): its bytes are the reason,
    no JSON, so every reader rejects it as it rejects an invalid line, and the import
    reports the reason with its line."""

    @property
    def reason(self) -> str:
        return self.decode()


class UnreadableFile(Exception):
    """The file stops being readable part way (a gzip stream cut short, a damaged
    Parquet file, a CSV quote left open): the rest cannot be found."""


def read_lines(path: Path, lines: LineNumbers | None = None) -> Iterator[bytes]:
    """Each record of the file as one JSON document (CSV rows and Parquet rows
    converted; a record that cannot be one as ``Unreadable``); ``lines`` learns where
    each CSV row starts. Raises ``UnreadableFile`` when the file itself breaks off."""
    read = 0
    try:
        for read, record in enumerate(_records_of(path, lines), start=1):  # noqa: B007
            yield record
    except (OSError, EOFError, zlib.error, pa.ArrowException, csv.Error) as exc:
        raise UnreadableFile(
            f"{path.name} cannot be read past record {read} ({describe(exc)}); "
            "repair or replace the file"
        ) from exc


def _records_of(path: Path, lines: LineNumbers | None) -> Iterator[bytes]:
    # Extensions in any case: "EXPORT.CSV" was read as NDJSON, every row refused.
    if path.name.lower().endswith(".parquet"):
        yield from _parquet_rows(path)
        return
    with path.open("rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
    opener: Callable[[Path], IO[bytes]] = _gzip_open if gzipped else _plain_open
    name = path.name.lower().removesuffix(".gz")
    with opener(path) as stream:
        if stream.peek(2)[:2] in UTF16_MARKS:  # type: ignore[attr-defined]  # buffered
            # Its header had been refused as "'\udcff\udcfek\x00i\x00n…'", without a
            # word of the encoding (a spreadsheet's "Unicode text" export, found from outside).
            raise csv.Error("it is UTF-16 text (its first bytes say so): save it as UTF-8")
        if name.endswith(".csv"):
            yield from _csv_records(stream, lines)
        else:
            for number, line in enumerate(stream):
                if len(line) > MAX_EVENT_BYTES + 2:  # its line end aside
                    # Ingest refuses such an event (413); an import refuses its line.
                    yield Unreadable(TOO_LONG)
                    continue
                # A byte-order mark some editors put first is no part of the JSON
                # (backtest's index of plain files skips it too).
                yield (line.removeprefix(BOM) if number == 0 else line).rstrip(b"\r\n")


def _csv_records(stream: IO[bytes], lines: LineNumbers | None) -> Iterator[bytes]:
    """The rows of a CSV file as JSON documents. Text that is not UTF-8 is kept as it
    is (surrogate escapes) so that only its row is rejected. A field past
    ``MAX_CSV_FIELD`` raises ``csv.Error`` naming the line it came after."""
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
    # The limit is the csv module's, for the whole process: set here, as the connectors
    # set theirs, so that a row's fate does not depend on what read a CSV before.
    csv.field_size_limit(MAX_CSV_FIELD)
    source = _FileLines(text)
    reader = csv.DictReader(source)
    try:
        if reader.fieldnames is None:  # read the header: its lines are not a row's
            return
    except csv.Error as exc:
        raise csv.Error(f"{exc} in the header; a quote left open?") from exc
    (first, *others) = reader.fieldnames or [""]
    if not others and (mark := next((m for m in ";\t|" if m in first), None)):
        # Each row then failed alone with "Unable to extract tag using discriminator".
        raise csv.Error(
            f"its header reads as one column ({first[:60]!r}): the file is separated by "
            f"{mark!r}, not commas; save it as CSV (comma-separated)"
        )
    names = reader.fieldnames or []
    if missing := [column for column in EVENT_COLUMNS if column not in names]:
        # Each row was rejected alone: "schema: : Unable to extract tag using
        # discriminator 'kind'" (a usage export of another tool's shape; found from outside).
        shown = ", ".join(repr(name) for name in names[:8]) + (", …" if len(names) > 8 else "")
        raise csv.Error(
            f"its first line names the columns {shown}, not {', '.join(missing)}: every row "
            f"of an event file has {', '.join(EVENT_COLUMNS)} and its kind's fields (usage: "
            "user_id, event; see the README, 'Backfill and backtest')"
        )
    if unknown := [name for name in names if name and name not in FIELDS]:
        # Each row was rejected alone, "Extra inputs are not permitted", and the fix the
        # summary asks for (each row in place) meant rewriting the file (found from outside).
        shown = ", ".join(repr(name[:60]) for name in unknown[:5])
        raise csv.Error(
            f"its column(s) {shown} are no field of any event: remove them, or rename them "
            "to the field they hold (see the README, 'Backfill and backtest')"
        )
    number = 0  # the row's number
    while True:
        source.starts.clear()
        ended = source.newlines  # the line the row before ended on
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise csv.Error(f"{exc} in the row after line {ended}; a quote left open?") from exc
        if lines is not None:
            lines.note(number, source.starts[0] if source.starts else ended + 1)
        number += 1
        yield _json_record(_csv_row(row))


class _FileLines:
    """A text's lines as the csv module reads them (ended by a line feed, a carriage
    return and line feed, or a carriage return alone), noting where the non-blank ones
    start as ``sed -n Np`` counts lines: at line feeds only. The csv module's own
    ``line_num`` also counts a carriage return alone, inside a quoted field too, which
    moved the numbers of every later row."""

    def __init__(self, text: IO[str]):
        self._text = text
        self.newlines = 0  # line feeds read so far
        self.starts: list[int] = []  # where the non-blank lines read since cleared start

    def __iter__(self) -> Iterator[str]:
        for line in self._text:
            if line.strip("\r\n"):  # blank lines between rows are skipped, not rows
                self.starts.append(self.newlines + 1)
            self.newlines += line.count("\n")
            yield line


def _json_record(row: dict[str, Any]) -> bytes:
    """``row`` as JSON, or ``Unreadable`` with the reason it cannot be written."""
    try:
        return orjson.dumps(row, default=_as_text, option=orjson.OPT_NAIVE_UTC)
    except TypeError:
        pass  # find the cell that cannot be written, for the reason
    for key, value in row.items():
        if isinstance(key, str) and _not_utf8(key):
            return Unreadable(b"a column name is not UTF-8 text: save the file as UTF-8")
        if isinstance(value, str) and _not_utf8(value):
            return Unreadable(f"{key}: not UTF-8 text (save the file as UTF-8)".encode())
        if isinstance(value, _OutOfRange):
            return Unreadable(f"{key}: {value.what} outside years 1 to 9999".encode())
        try:
            orjson.dumps(value, default=_as_text)
        except TypeError as exc:  # JSON nested deeper than orjson writes (254 levels)
            return Unreadable(f"{key}: cannot be written as JSON ({exc})".encode())
    return Unreadable(b"cannot be written as JSON")


def _as_text(value: object) -> str:
    """Bytes, decimals, …: as text, which validation then judges; a time out of range
    stops the writing (its row is rejected with the reason)."""
    if isinstance(value, _OutOfRange):
        raise TypeError(value.what)
    return str(value)


def _not_utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return False


def _parquet_rows(path: Path) -> Iterator[bytes]:
    """A Parquet file's rows as JSON documents, a batch at a time: empty cells left out
    (as in CSV), timestamps written in UTC (a column without a zone read as UTC; finer
    than microseconds cut to them), JSON held in a text column (properties, owner,
    contacts) read as JSON. A time outside the calendar's years rejects its row."""
    for batch in pq.ParquetFile(path).iter_batches(batch_size=PARQUET_ROWS):
        names = batch.schema.names
        columns = [_parquet_column(batch.column(i)) for i in range(len(names))]
        for values in zip(*columns, strict=True):
            yield _json_record(
                {
                    key: _parquet_cell(key, value)
                    for key, value in zip(names, values, strict=True)
                    if value is not None
                }
            )


class _OutOfRange:
    """A Parquet time or date no Python calendar holds (its row is rejected). Not a
    dataclass: orjson would write one as an object."""

    def __init__(self, what: str) -> None:
        self.what = what


# Units of a Parquet timestamp column → its integers per microsecond (a divisor) or
# microseconds per integer (a multiplier).
_PER_MICRO = {"s": (1, 1_000_000), "ms": (1, 1_000), "us": (1, 1), "ns": (1_000, 1)}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _parquet_column(column: pa.Array) -> list[Any]:
    """A column's cells as Python values; times and dates read from their integers, so
    that one out of range (or with nanoseconds) is one cell, not a failed batch."""
    kind = column.type
    if pa.types.is_timestamp(kind):
        per, times = _PER_MICRO[kind.unit]
        ticks = column.cast(pa.int64()).to_pylist()
        return [None if v is None else _time(v // per * times) for v in ticks]
    if pa.types.is_date64(kind):
        column = column.cast(pa.date32())
    if pa.types.is_date32(kind) or pa.types.is_date64(kind):
        return [None if v is None else _day(v) for v in column.cast(pa.int32()).to_pylist()]
    cells: list[Any] = column.to_pylist()
    return cells


def _time(micros: int) -> datetime | _OutOfRange:
    try:
        return _EPOCH + timedelta(microseconds=micros)
    except OverflowError:
        return _OutOfRange("a time")


def _day(days: int) -> date | _OutOfRange:
    try:
        return _EPOCH.date() + timedelta(days=days)
    except OverflowError:
        return _OutOfRange("a date")


def _parquet_cell(key: str, value: Any) -> Any:
    if key in JSON_COLUMNS and isinstance(value, str):
        return _csv_row({key: value}).get(key, value)
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    return value


def _gzip_open(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb")  # type: ignore[return-value]  # GzipFile is an IO[bytes]


def _plain_open(path: Path) -> IO[bytes]:
    return path.open("rb")


def _csv_row(row: dict[str, str | None]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in row.items():
        # A row that leaves its trailing empty cells out gives None for them: empty too
        # (each was sent as a JSON null, and the whole row refused for it).
        if value is None or value == "" or key is None:
            continue
        if key in JSON_COLUMNS:
            try:
                out[key] = orjson.loads(value)
            except orjson.JSONDecodeError:
                out[key] = value  # validation names the field
        else:
            out[key] = value
    return out
