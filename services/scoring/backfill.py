"""``healthwatch import``: historical events from files, through the same scoring code.

Each file is read as NDJSON or CSV (gzip recognised by its magic bytes), in batches
handed to ``ScoringProcessor.handle`` as records of a pseudo-topic ``import:<name>``
whose offset is the line number. The offsets commit with the state, so an interrupted
import resumes where it stopped and a finished one imports nothing twice. Files are
known by name: a copy under another name is imported again, and the dedup window
(event ids for 48 hours, ``usage.py``) recognises only its most recent events.
``--restart`` reads again just the records rejected before (``import_rejects``).

The score history gets a row per account per day, from the account's first day in the
import to the last day of the history, quiet days included (``ImportCalendar``): after
each batch, the days every event of which has been read (those before the newest day
seen in the file, each file being in time order; a later file's older events open their
days again) are scored day by day as of that day, as the
daily sweep scores a live service's quiet accounts; a day whose score did not change
gets the previous day's row (the score as of that day). The last days are scored at the
end, then every account is brought to today.

Backfilled history notifies nobody: what it raised and resolved in the past is counted,
not sent. The alerts still open when the import ends (true now) go to the alerts topic
marked ``imported``: the alerts service opens them, shown and followed like any other,
without a first notice for a past it would tell all at once; later changes (worse,
resolved, reminders) are told as usual.
Invalid lines are reported with their line number and reason, never dropped silently.
"""

from __future__ import annotations

import bisect
import csv
import gzip
import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import orjson
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.scoring.import_days import ImportCalendar
from services.scoring.processor import ScoringProcessor
from services.scoring.sweep import QuietAccountSweep
from shared.bus.base import DiscardingProducer, OutMessage, Producer, Record
from shared.bus.offsets import offset_loader
from shared.contracts.alerts import AlertEvent
from shared.contracts.wire import decode_alert, encode_event
from shared.storage.db import insert_ignore, upsert
from shared.storage.tables import import_alerts, import_rejects

# Records per transaction: large batches amortise the rescoring of each account.
BATCH = 5000
# The pseudo-topic of the records an import reads again (import --restart).
RETRY_TOPIC = "{}#retry"
# CSV cells holding JSON (objects and lists in the public schema).
JSON_COLUMNS = {"properties", "owner", "contacts"}


@dataclass
class ImportReport:
    files: int = 0
    lines: int = 0
    skipped_already_imported: int = 0
    imported: int = 0
    rejected: list[tuple[str, int, str]] = field(default_factory=list)  # file, line, reason
    alerts_not_sent: int = 0
    swept: int = 0
    # Score history rows written for the days of the history (a day scored again, for a
    # later file's events on it, counts again).
    days_scored: int = 0
    alerts_opened: int = 0  # alerts still true at the end, opened without a notice
    # alert id → its newest message in this run (the import holds them in the
    # database too, ``import_alerts``: what is still firing at the end is opened).
    alerts: dict[str, AlertEvent] = field(default_factory=dict, repr=False)


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


class _Sink(DiscardingProducer):
    """Stands in for the bus: keeps dead letters as rejections, counts alerts."""

    def __init__(
        self,
        report: ImportReport,
        source: str,
        lines: LineNumbers | None = None,
        topic: str | None = None,
    ):
        self._report = report
        self._source = source
        self._lines = lines or LineNumbers()
        self._topic = topic

    async def send_many(
        self, messages: Sequence[OutMessage], conn: AsyncConnection | None = None
    ) -> None:
        rejected: list[int] = []
        held: dict[str, AlertEvent] = {}
        for message in messages:
            if "reason" in message.headers:
                record = int(message.headers.get("source_offset", "0"))
                rejected.append(record)
                line = self._lines.line(record)
                self._report.rejected.append((self._source, line, message.headers["reason"]))
            else:
                self._report.alerts_not_sent += 1
                alert = decode_alert(message.value)
                self._keep(alert)
                held[alert.alert_id] = _newer_alert(held.get(alert.alert_id), alert)
        if conn is None:
            return
        # In the batch's transaction: remembered exactly when the batch is applied.
        if rejected and self._topic is not None:
            await conn.execute(
                insert_ignore(conn, import_rejects).on_conflict_do_nothing(),
                [{"source": self._topic, "record": record} for record in rejected],
            )
        await _hold(conn, list(held.values()))

    def _keep(self, alert: AlertEvent) -> None:
        self._report.alerts[alert.alert_id] = _newer_alert(
            self._report.alerts.get(alert.alert_id), alert
        )


def _newer_alert(known: AlertEvent | None, alert: AlertEvent) -> AlertEvent:
    """The later of two messages of one alert (its revision counts up)."""
    return alert if known is None or known.revision <= alert.revision else known


async def _hold(conn: AsyncConnection, alerts: list[AlertEvent]) -> None:
    """Keep each alert's newest message in ``import_alerts``, in the caller's transaction:
    what is firing when the import ends is opened then, even by a later run of an import
    stopped halfway (the alerts it held would otherwise be lost with the process)."""
    if not alerts:
        return
    table = import_alerts.c
    ids = [alert.alert_id for alert in alerts]
    found = await conn.execute(
        select(table.alert_id, table.revision).where(table.alert_id.in_(ids))
    )
    stored = {alert_id: revision for alert_id, revision in found}
    rows = [
        {"alert_id": alert.alert_id, "revision": alert.revision, "value": encode_event(alert)}
        for alert in alerts
        if stored.get(alert.alert_id, -1) <= alert.revision
    ]
    await upsert(conn, import_alerts, rows, keys=["alert_id"], update=["revision", "value"])


def read_lines(path: Path, lines: LineNumbers | None = None) -> Iterator[bytes]:
    """Each line of the file as one JSON document (CSV rows converted); ``lines``
    learns where each CSV row starts."""
    with path.open("rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
    opener: Callable[[Path], IO[bytes]] = _gzip_open if gzipped else _plain_open
    name = path.name.removesuffix(".gz")
    with opener(path) as stream:
        if name.endswith(".csv"):
            text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
            reader = csv.DictReader(text)
            for number, row in enumerate(reader):
                if lines is not None:  # line_num is the row's last line
                    breaks = sum(v.count("\n") for v in row.values() if isinstance(v, str))
                    lines.note(number, reader.line_num - breaks)
                yield orjson.dumps(_csv_row(row))
        else:
            yield from (line.rstrip(b"\r\n") for line in stream)


def _gzip_open(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb")  # type: ignore[return-value]  # GzipFile is an IO[bytes]


def _plain_open(path: Path) -> IO[bytes]:
    return path.open("rb")


def _csv_row(row: dict[str, str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in row.items():
        if value == "" or key is None:
            continue
        if key in JSON_COLUMNS:
            try:
                out[key] = orjson.loads(value)
            except orjson.JSONDecodeError:
                out[key] = value  # validation names the field
        else:
            out[key] = value
    return out


async def import_files(
    paths: Sequence[Path],
    processor_for: Callable[[_Sink], ScoringProcessor],
    *,
    progress: Callable[[str, int], None] = lambda name, lines: None,
    sweep: bool = True,
    restart: bool = False,
    batch_size: int = BATCH,
    alerts_to: Producer | None = None,
) -> ImportReport:
    """Import ``paths`` in order, ``batch_size`` lines per transaction, each from where an
    earlier import of it stopped; ``restart`` also reads again the records rejected
    before (fixed in place: a file's records keep their numbers, a blank line too). Records
    already applied are never read again: the dedup window (48 hours) would not know
    them. The alerts open at the end go to ``alerts_to`` (the bus), marked
    imported; without it they are counted only."""
    report = ImportReport()
    calendar: ImportCalendar | None = None
    for path in paths:
        report.files += 1
        topic = f"import:{path.name}"
        lines = LineNumbers()
        sink = _Sink(report, path.name, lines, topic)
        processor = processor_for(sink)
        if calendar is None:
            calendar = await ImportCalendar.load(processor, _Sink(report, "history"))
        calendar.start_file()
        stored = await offset_loader(processor.engine, processor.group_id)([(topic, 0)])
        start = stored.get((topic, 0), 0)
        retry = await _take_rejects(processor.engine, topic) if restart else set()
        batch: list[Record] = []
        number = -1
        for number, line in enumerate(read_lines(path, lines)):
            report.lines += 1
            if number < start and number not in retry:
                report.skipped_already_imported += 1
                continue
            if not line.strip():
                continue  # blank lines keep their number, so resuming stays aligned
            # A record read again goes under a topic of its own: its offset, behind the
            # file's, must not move the file's back.
            batch.append(
                Record(
                    topic if number >= start else RETRY_TOPIC.format(topic), 0, number, None, line
                )
            )
            if len(batch) >= batch_size:
                await _flush(processor, batch, report, calendar)
                progress(path.name, number + 1)
        await _flush(processor, batch, report, calendar)
        progress(path.name, number + 1)
    if calendar is not None:
        report.days_scored += await calendar.close_all()
    if sweep and paths:
        # History ends in the past: bring every account to today, as the service would.
        report.swept = await QuietAccountSweep(
            processor.engine, _Sink(report, "sweep"), processor
        ).run_once()
    if alerts_to is not None and paths:
        report.alerts_opened = await open_alerts(processor, alerts_to)
    return report


async def _take_rejects(engine: AsyncEngine, topic: str) -> set[int]:
    """The records of ``topic`` rejected before, forgotten as they are read again (one
    rejected again is remembered again, in its batch's transaction)."""
    async with engine.begin() as conn:
        table = import_rejects.c
        numbers = set(
            (await conn.execute(select(table.record).where(table.source == topic))).scalars()
        )
        await conn.execute(delete(import_rejects).where(table.source == topic))
    return numbers


async def open_alerts(processor: ScoringProcessor, bus: Producer) -> int:
    """Publish the alerts the import holds that are still firing at its end, marked
    imported (the alerts service opens them without notices), and let go of all it
    holds; returns how many were published. Published before the rows are deleted (and
    outside a transaction: the embedded bus writes the same SQLite file): a failure
    leaves them for the next import, and the alerts service takes an alert's message
    once (alert id and revision)."""
    table = import_alerts.c
    async with processor.engine.connect() as conn:
        rows = (await conn.execute(select(table.alert_id, table.value))).all()
    held = [decode_alert(value) for _, value in sorted(rows)]
    still = [
        alert.model_copy(update={"imported": True}) for alert in held if alert.status == "firing"
    ]
    if still:
        await bus.send_many(processor.alert_messages(still))
    async with processor.engine.begin() as conn:
        await conn.execute(delete(import_alerts).where(table.alert_id.in_([a for a, _ in rows])))
    return len(still)


async def _flush(
    processor: ScoringProcessor,
    batch: list[Record],
    report: ImportReport,
    calendar: ImportCalendar,
) -> None:
    if not batch:
        return
    calendar.note(batch)
    before = len(report.rejected)
    await processor.handle(batch)
    report.imported += len(batch) - (len(report.rejected) - before)
    batch.clear()
    report.days_scored += await calendar.close_read_days()
