"""``healthwatch import``: historical events from files, through the same scoring code.

Each file is read as NDJSON, CSV (gzip recognised by its magic bytes) or Parquet
(``history_files``), as records of a pseudo-topic ``import:<name>`` whose offset is the
record's number in the file. The files are read side by side, merged by event time (each
in its own order: a usage export, a CRM export and a helpdesk export of the same months
interleave as the live stream would have), in batches handed to
``ScoringProcessor.handle``. The offsets commit with the state, so an interrupted import
resumes where it stopped and a finished one imports nothing twice. Files are known by
name and its first records (``import_files``): another file under a name imported
before is refused, and so is a copy under another name, of which the dedup window
(event ids for 48 hours, ``usage.py``) would recognise only the most recent events.
Within a run, copies of an event within 48 hours of each other count once in whatever
order they come: each file is read once first for its lines' times, and the window
keeps what a later line may repeat (``import_ahead``). ``--restart`` reads again just
the records rejected before (``import_rejects``).

The score history gets a row per account per day, from the account's first day in the
import to the last day of the history, quiet days included (``ImportCalendar``): after
each batch, the days every event of which has been read (those before the newest day
read, the files being in time order; a line older than a day already scored opens
that day again) are scored day by day as of that day, as the
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

import heapq
import logging
import math
import tempfile
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.scoring.history_files import LineNumbers, Unreadable, UnreadableFile, read_lines
from services.scoring.import_ahead import Ahead, ahead_of, earliest_ahead, out_of_order, receipts
from services.scoring.import_days import ImportCalendar
from services.scoring.import_files import ReadBefore, check_files
from services.scoring.import_lines import Stamp, event_time, stamp_of
from services.scoring.import_lock import StillHeld, import_lock
from services.scoring.import_order import (
    IN_FILE_ORDER,
    IN_TIME_ORDER,
    SEGMENT_END,
    Segment,
    TimeOrder,
)
from services.scoring.import_overlap import EarlierImports
from services.scoring.processor import IMPORT_TOPIC, ScoringProcessor, batch_span
from services.scoring.state import late_grace_days
from services.scoring.sweep import QuietAccountSweep
from shared.bus.base import DiscardingProducer, OutMessage, Producer, Record
from shared.bus.offsets import offset_loader, save_offsets
from shared.contracts.alerts import OPEN_ALERT_STATUSES, AlertEvent
from shared.contracts.wire import decode_alert, encode_event
from shared.storage.db import among, insert_ignore, upsert
from shared.storage.tables import (
    account_health,
    alerts,
    consumer_offsets,
    import_alerts,
    import_rejects,
)

log = logging.getLogger(__name__)

# Records per transaction at most; a batch also spans less event time than
# ``processor.batch_span`` (48 hours by default), so it counts what the stream counts.
# A batch is applied unscored (the calendar scores the days), so what it amortises is
# saving each account it touched, about once per account and batch (encoding the state,
# its rows, the health row): 36 µs an imported event at 5,000 records a batch, most
# accounts being in every batch (docs/benchmarks.md). The size keeps a transaction to a
# few seconds (on SQLite it holds the write lock ingest waits for, as the stream's
# SQLite batches do), the progress moving every few seconds, and what a crashed import
# reads again small.
BATCH = 20_000
# Records out of time order past which an import reads a file in time order
# (``import_order``; and past a hundredth of the file's): a few late lines cost a few
# small batches, a file sorted by account cost a 4-account, 7,749-event history 7
# minutes (found from outside).
OUT_OF_ORDER_WARNING = 100
# The pseudo-topic of the records an import reads again (import --restart): the file's
# own topic with this after it.
RETRY_SUFFIX = "#retry"


@dataclass
class ImportReport:
    files: int = 0
    lines: int = 0
    skipped_already_imported: int = 0
    imported: int = 0
    repeated: int = 0  # records whose event id was counted already (within the window)
    # Usage events read but not counted: older than the late grace (90 days by default)
    # before their account's newest event applied. They had gone without a word.
    late: int = 0
    # Records older than the dedup window before their account's newest event as it
    # stood when the run began: counted, but the ones an earlier import read too
    # (overlapping exports) count twice (``import_overlap``).
    before_window: int = 0
    rejected_before: int = 0  # lines rejected by an earlier run, not read again (no --restart)
    rejected: list[tuple[str, int, str]] = field(default_factory=list)  # file, line, reason
    alerts_not_sent: int = 0
    swept: int = 0
    # The day of the newest use known (the history's, or the stream's if later), in the
    # service's zone: a sweep scores the days after it, up to today, as quiet.
    last_day: date | None = None
    # Score history rows written for the days of the history (a day scored again, for a
    # later file's events on it, counts again); and the rows of days scored before that
    # this import dropped to work them out again (the summary had said nothing of them,
    # found from outside).
    days_scored: int = 0
    days_rescored: int = 0
    alerts_opened: int = 0  # alerts still true at the end, opened without a notice
    # Why the import stopped before the end of its files (one broke off part way: what
    # was read before it is imported; run it again once the file is whole).
    stopped: str | None = None
    # alert id → its newest message in this run (the import holds them in the
    # database too, ``import_alerts``: what is still firing at the end is opened).
    alerts: dict[str, AlertEvent] = field(default_factory=dict, repr=False)


@dataclass
class _Source:
    """A file being imported: its pseudo-topic, where each record starts, where an
    earlier import stopped, and the records rejected before that it reads again."""

    path: Path
    topic: str
    start: int = 0
    retry: set[int] = field(default_factory=set)
    lines: LineNumbers = field(default_factory=LineNumbers)
    read: int = 0  # records read so far (its progress)
    # record number → why it is no record (``Unreadable``), until its rejection is noted
    unreadable: dict[int, str] = field(default_factory=dict)
    retried: set[int] = field(default_factory=set)  # of ``retry``, those read again
    # The earliest receipt from each record on (``import_ahead``), and the number of the
    # next record the merge has not yet handed to a batch.
    ahead: Ahead = field(default_factory=lambda: np.full(1, math.inf))
    taken: int = 0
    # Read in time order from ``order.segment.start`` on (``import_order``), and whether
    # the merge has taken the last of it.
    order: TimeOrder | None = None
    finished: bool = False

    @property
    def total(self) -> int:
        """The file's records, as its first reading counted them (``ahead``): to where
        it breaks off, when it does; read in time order, to its segment's end."""
        return self.order.segment.end if self.order else len(self.ahead) - 1

    @property
    def begins_at(self) -> int:
        """Its records read before this import (where the progress bar starts)."""
        return self.order.first_position if self.order else min(self.start, self.total)

    def skipped(self, number: int) -> bool:
        """Whether record ``number`` was imported before and is not read again."""
        return number < self.start and number not in self.retry


class _Sink(DiscardingProducer):
    """Stands in for the bus: keeps dead letters as rejections (by the file of their
    record), keeps alerts (``import_alerts``)."""

    def __init__(self, report: ImportReport, sources: Mapping[str, _Source] | None = None):
        self._report = report
        self._sources = dict(sources or {})

    async def send_many(
        self, messages: Sequence[OutMessage], conn: AsyncConnection | None = None
    ) -> None:
        rejected: list[dict[str, Any]] = []
        held: dict[str, AlertEvent] = {}
        for message in messages:
            if "reason" in message.headers:
                topic = message.headers.get("source_topic", "").removesuffix(RETRY_SUFFIX)
                record = int(message.headers.get("source_offset", "0"))
                source = self._sources.get(topic)
                in_time_order = message.headers.get("source_partition") == str(IN_TIME_ORDER)
                if source is not None and source.order is not None and in_time_order:
                    record = source.order.number_at(record)  # its number in the file
                if source is None:
                    self._report.rejected.append((topic, record + 1, message.headers["reason"]))
                    continue
                rejected.append({"source": topic, "record": record})
                line = source.lines.line(record)
                reason = source.unreadable.pop(record, message.headers["reason"])
                self._report.rejected.append((source.path.name, line, reason))
            else:
                self._report.alerts_not_sent += 1
                alert = decode_alert(message.value)
                self._keep(alert)
                held[alert.alert_id] = _newer_alert(held.get(alert.alert_id), alert)
        if conn is None:
            return
        # In the batch's transaction: remembered exactly when the batch is applied.
        if rejected:
            await conn.execute(
                insert_ignore(conn, import_rejects).on_conflict_do_nothing(), rejected
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


def check_file_names(paths: Sequence[Path]) -> None:
    """ValueError unless every file has a name of its own: an import knows a file by its
    name (so that it can resume it, wherever it lies), and of two files named alike one
    was silently left out (found from outside)."""
    seen: dict[str, Path] = {}
    for path in paths:
        other = seen.setdefault(path.name, path)
        if other != path:
            raise ValueError(
                f"two files named {path.name} ({other} and {path}): an import knows a file "
                "by its name, to resume it; rename one of them"
            )


async def import_files(
    paths: Sequence[Path],
    processor_for: Callable[[_Sink], ScoringProcessor],
    *,
    progress: Callable[[str, int, int], None] = lambda name, read, total: None,
    sweep: bool = True,
    restart: bool = False,
    batch_size: int = BATCH,
    alerts_to: Producer | None = None,
) -> ImportReport:
    """Import ``paths``, merged by event time, ``batch_size`` records per transaction
    at most (spanning less event time than ``processor.batch_span``), each file from
    where an earlier import of it stopped; ``restart`` also reads again the records
    rejected before (fixed in place: a file's records keep their numbers, a blank line
    too). Records already applied are never read again: the dedup window (48
    hours) would not know them. The alerts open at the end go to ``alerts_to`` (the
    bus), marked imported; without it they are counted only. ``progress``: a file's
    name, its records read so far (those of earlier imports included) and its records
    in all, once before the first batch and after each batch."""
    check_file_names(paths)
    report = ImportReport(files=len(paths))
    if not paths:
        return report
    sources = {
        f"{IMPORT_TOPIC}{path.name}": _Source(path, f"{IMPORT_TOPIC}{path.name}") for path in paths
    }
    processor = processor_for(_Sink(report, sources))
    async with import_lock(processor.engine) as still_held:
        rejected = {topic: await _take_rejects(processor.engine, topic) for topic in sources}
        async with processor.engine.begin() as conn:
            by_topic = {topic: source.path for topic, source in sources.items()}
            await check_files(conn, by_topic, _read_before(processor), rejected)
        retry = rejected if restart else {}
        await _read(sources, processor, report, progress, still_held, rejected, retry, batch_size)
        report.late = processor.late_events
        order = {path.name: place for place, path in enumerate(paths)}
        report.rejected.sort(key=lambda reject: (order.get(reject[0], len(order)), reject[1]))
        if report.stopped is not None:
            return report  # not at the end of the history: no sweep, no alerts yet
        if sweep:
            await still_held()
            # History ends in the past: bring every account to today, as the service would.
            report.swept = await QuietAccountSweep(
                processor.engine, _Sink(report), processor, waits_for_import=False
            ).run_once()
        if alerts_to is not None:
            await still_held()
            report.alerts_opened = await open_alerts(processor, alerts_to)
    return report


async def _read(
    sources: dict[str, _Source],
    processor: ScoringProcessor,
    report: ImportReport,
    progress: Callable[[str, int, int], None],
    still_held: StillHeld,
    rejected: Mapping[str, set[int]],
    retry: Mapping[str, set[int]],
    batch_size: int,
) -> None:
    """Apply the files' records still to import, merged by event time, and score their
    days (``ImportCalendar``), each batch once the import lock is seen still held.
    ``rejected``: each file's records rejected before; ``retry``: those read again."""
    span = batch_span(processor.settings)
    stored = await offset_loader(processor.engine, processor.group_id)(
        [(topic, p) for topic in sources for p in (IN_FILE_ORDER, IN_TIME_ORDER, SEGMENT_END)]
    )
    with tempfile.TemporaryDirectory(prefix="healthwatch-import-") as folder:
        for topic, source in sources.items():
            offsets = {p: n for (t, p), n in stored.items() if t == topic}
            source.retry = retry.get(topic, set())
            await _start(processor, source, offsets, report, span.total_seconds(), Path(folder))
            if source.order is not None:
                source.retry = _retry_later(source, source.retry, report)
            if not source.retry:  # still to fix: the summary says so, not "already imported"
                report.rejected_before += len(rejected[topic])
            if source.order is not None:
                source.order.read_records(source.lines, source.retry, rejected[topic])
                source.ahead = ahead_of(np.append(source.order.receipts(), math.inf))
            # Where it resumes, of the records the first reading counted: a bar with a
            # total and an estimate of the time left from the start (an import of
            # millions of events runs for minutes).
            progress(source.path.name, source.begins_at, source.total)
        try:
            await _merged(sources, processor, report, progress, still_held, batch_size)
        finally:
            for source in sources.values():
                if source.order is not None:
                    source.order.close()


async def _start(
    processor: ScoringProcessor,
    source: _Source,
    offsets: dict[int, int],
    report: ImportReport,
    span_s: float,
    folder: Path,
) -> None:
    """Where ``source`` resumes (``offsets``: partition → stored offset), and whether it
    is read in time order: a segment begun before and not finished, or the rest of a
    file out of time order (``import_order``)."""
    source.start = offsets.get(IN_FILE_ORDER, 0)
    segment = Segment.stored(offsets)
    if segment is None and offsets.get(SEGMENT_END, 0) > source.start:
        # Finished, but the import stopped before it said so: said now.
        source.start = offsets[SEGMENT_END]
        await _finish(processor, source.topic, source.start)
    if segment is None:
        received = receipts(read_lines(source.path), source.skipped)
        behind = out_of_order(received, span_s)
        if behind <= max(OUT_OF_ORDER_WARNING, len(received) // 100):
            source.ahead = ahead_of(received)
            return
        segment = Segment(source.start, len(received) - 1)
        log.info(
            "import: %s is not in time order: %d of its records come after records more "
            "than %d hours newer; reading them in time order (a copy of the file in a "
            "temporary folder)",
            source.path.name,
            behind,
            span_s // 3600,
        )
        async with processor.engine.begin() as conn:  # before anything is taken of it
            await save_offsets(conn, processor.group_id, {(source.topic, SEGMENT_END): segment.end})
    source.order = TimeOrder(source.path, segment, folder)


def _retry_later(source: _Source, retry: set[int], report: ImportReport) -> set[int]:
    """Of the records to read again (``--restart``), those before a segment begun and
    not finished: its own are read again once it is (``import_order``)."""
    assert source.order is not None
    segment = source.order.segment
    later = {n for n in retry if segment.start <= n < segment.end}
    if later:
        if retry - later:  # (else the summary counts all rejected before as still to fix)
            report.rejected_before += len(later)
        log.warning(
            "import: %s: %d records rejected before are read again by an import run "
            "once its records in time order are all imported (run it again then)",
            source.path.name,
            len(later),
        )
    return retry - later


async def _finish(processor: ScoringProcessor, topic: str, end: int) -> None:
    """A segment is done: the file reads as one read in order up to its ``end``."""
    async with processor.engine.begin() as conn:
        done = {(topic, partition): end for partition in (IN_FILE_ORDER, IN_TIME_ORDER)}
        await save_offsets(conn, processor.group_id, done | {(topic, SEGMENT_END): end})


async def _merged(
    sources: dict[str, _Source],
    processor: ScoringProcessor,
    report: ImportReport,
    progress: Callable[[str, int, int], None],
    still_held: StillHeld,
    batch_size: int,
) -> None:
    """The files' records merged by event time, in batches; the days scored."""
    calendar = await ImportCalendar.load(processor, _Sink(report), still_held)
    calendar.start_file()
    settings = processor.settings
    grace = late_grace_days(settings.late_grace_days, settings.window_days)
    earlier = EarlierImports(processor.engine, late=timedelta(days=grace))
    batch: list[tuple[Record, Stamp]] = []
    times = _Times(batch_span(processor.settings).total_seconds())
    taking = list(sources.values())
    newest = -math.inf  # the newest event time read (the window's reach counts from it)
    merged = heapq.merge(*(_records(source, index, report) for index, source in enumerate(taking)))

    async def flush() -> None:
        ahead = earliest_ahead(
            ((source.ahead, source.taken) for source in sources.values()), newest
        )
        await _flush(processor, batch, report, calendar, still_held, ahead, earlier)
        times.clear()
        for source in sources.values():
            progress(source.path.name, source.read, source.total)

    try:
        for when, index, _, place, record, stamp in merged:
            if batch and not times.take(when):
                await flush()  # its events would count otherwise than the stream's
            times.add(when)
            newest = max(newest, when)
            batch.append((record, stamp))
            taking[index].taken = place + 1
            if len(batch) >= batch_size:
                await flush()
    except UnreadableFile as exc:
        report.stopped = str(exc)  # what was read before is imported, the days stay open
    await flush()
    for source in taking:
        if source.order is not None and source.finished:
            await _finish(processor, source.topic, source.order.segment.end)
    if report.stopped is None:
        report.days_scored += await calendar.close_all()
        report.last_day = await _newest_use(processor)
        await _forget_unread_rejects(processor.engine, sources.values())
    report.days_rescored = processor.days_rescored


@dataclass
class _Times:
    """The event times of the batch being read, which spans less than ``limit`` seconds
    (``processor.batch_span``). A record without a time that reads takes any batch."""

    limit: float
    earliest: float = math.inf
    latest: float = -math.inf

    def take(self, when: float) -> bool:
        """Whether the batch may take a record of time ``when``."""
        if not math.isfinite(when) or self.earliest > self.latest:
            return True
        return max(self.latest, when) - min(self.earliest, when) < self.limit

    def add(self, when: float) -> None:
        if math.isfinite(when):
            self.earliest, self.latest = min(self.earliest, when), max(self.latest, when)

    def clear(self) -> None:
        self.earliest, self.latest = math.inf, -math.inf


# A record as the merge takes it: its event time, its file's place among the files and
# its number (the merge's key), where it is in its file's reading (``_Source.ahead``),
# the record, and its stamp for the calendar.
Merged = tuple[float, int, int, int, Record, Stamp]


def _records(source: _Source, index: int, report: ImportReport) -> Iterator[Merged]:
    """The file's records still to import, each with its event time (the merge's key;
    a record without a readable one keeps the time before it, its place in the file),
    then the file's place among the files and the record's number (ties keep the order
    of the files, and each file's own), the record, and its stamp for the calendar (the
    line parsed once for both)."""
    if source.order is not None:
        yield from _in_time_order(source, index, report)
        return
    when = float("-inf")
    for number, line in enumerate(read_lines(source.path, source.lines)):
        report.lines += 1
        source.read = number + 1
        if source.skipped(number):
            report.skipped_already_imported += 1
            continue
        if not line.strip():
            continue  # blank lines keep their number, so resuming stays aligned
        if isinstance(line, Unreadable):  # no JSON: the step rejects it, with this reason
            source.unreadable[number] = line.reason
            line = bytes(line)  # the decoders take bytes, not a subclass
        stamp = stamp_of(line)
        when = event_time(stamp, when)
        # A record read again goes under a topic of its own: its offset, behind the
        # file's, must not move the file's back.
        topic = source.topic if number >= source.start else source.topic + RETRY_SUFFIX
        if number < source.start:
            source.retried.add(number)
        yield when, index, number, number, Record(topic, 0, number, None, line), stamp


def _in_time_order(source: _Source, index: int, report: ImportReport) -> Iterator[Merged]:
    """``_records`` of a file read in time order (``import_order``): the records before
    its segment read again (``--restart``) first, then the segment's still to read,
    their offsets their places in its order (partition 1)."""
    order = source.order
    assert order is not None
    if order.changed is not None:
        raise UnreadableFile(order.changed)  # nothing taken: its offsets stay
    report.lines += order.lines_read
    report.skipped_already_imported += order.segment.start - len(order.again) + order.segment.taken
    place = 0
    for number, line in order.again:
        place += 1
        if not line.strip():
            continue
        if isinstance(line, Unreadable):
            source.unreadable[number] = line.reason
            line = bytes(line)
        stamp = stamp_of(line)
        source.retried.add(number)
        record = Record(source.topic + RETRY_SUFFIX, IN_FILE_ORDER, number, None, line)
        yield event_time(stamp, -math.inf), index, number, place - 1, record, stamp
    for taken in order.records():
        place += 1
        source.read = taken.position + 1
        line = taken.line
        if isinstance(line, Unreadable):
            source.unreadable[taken.number] = line.reason
            line = bytes(line)
        elif not line.strip():
            continue  # a blank line: its place taken, nothing to apply
        record = Record(source.topic, IN_TIME_ORDER, taken.position, None, line)
        yield taken.when, index, taken.number, place - 1, record, taken.stamp
    source.finished = True
    if (stop := order.broken or order.grown) is not None:
        raise UnreadableFile(stop)


def _read_before(processor: ScoringProcessor) -> ReadBefore:
    """Which of an import's pseudo-topics it read something of: a stored offset past
    their first record, or records rejected (in the caller's transaction: SQLite's
    write lock would refuse a second connection)."""

    async def read(conn: AsyncConnection, topics: list[str]) -> set[str]:
        o, r = consumer_offsets.c, import_rejects.c
        offsets = await conn.execute(
            select(o.topic).where(
                o.group_id == processor.group_id,
                among(conn, o.topic, topics),
                o.next_offset > 0,
                # A segment's end is written before anything of it is taken.
                o.partition != SEGMENT_END,
            )
        )
        rejects = await conn.execute(select(r.source).where(among(conn, r.source, topics)))
        return set(offsets.scalars()) | set(rejects.scalars())

    return read


async def _take_rejects(engine: AsyncEngine, topic: str) -> set[int]:
    """The records of ``topic`` rejected before. Each is forgotten in the transaction of
    the batch that reads it again (``_forget_rejects``; one rejected again is
    remembered again there): an import stopped part way leaves the rest to read."""
    async with engine.connect() as conn:
        table = import_rejects.c
        return set(
            (await conn.execute(select(table.record).where(table.source == topic))).scalars()
        )


async def _forget_unread_rejects(engine: AsyncEngine, sources: Iterable[_Source]) -> None:
    """Forget the rejections whose records a finished ``--restart`` found no more (a
    line made blank, a file cut shorter): none will read them again."""
    async with engine.begin() as conn:
        for source in sources:
            await _forget(conn, source.topic, source.retry - source.retried)


def _forget_rejects(records: Sequence[Record]) -> Callable[[AsyncConnection], Awaitable[None]]:
    """Forget the rejections of the records of ``records`` read again (``--restart``)."""
    again: dict[str, list[int]] = {}
    for record in records:
        if record.topic.endswith(RETRY_SUFFIX):
            again.setdefault(record.topic.removesuffix(RETRY_SUFFIX), []).append(record.offset)

    async def forget(conn: AsyncConnection) -> None:
        for topic, numbers in again.items():
            await _forget(conn, topic, numbers)

    return forget


async def _forget(conn: AsyncConnection, topic: str, numbers: Iterable[int]) -> None:
    """Delete the rejections of records ``numbers`` of ``topic``."""
    numbers = list(numbers)
    if numbers:
        table = import_rejects.c
        await conn.execute(
            delete(import_rejects).where(table.source == topic, among(conn, table.record, numbers))
        )


async def _newest_use(processor: ScoringProcessor) -> date | None:
    """The day of the newest use known of any account, the import's or the stream's:
    the import's own last day made an import of an older period into a live service
    say its history ended days ago (found in review)."""
    async with processor.engine.connect() as conn:
        newest = await conn.scalar(select(func.max(account_health.c.last_seen_at)))
    return newest.astimezone(processor.zone).date() if newest is not None else None


async def _open_of(conn: AsyncConnection, alert_ids: list[str]) -> set[str]:
    """Of ``alert_ids``, those the alerts service holds open (in the same database)."""
    if not alert_ids:
        return set()
    a = alerts.c
    query = select(a.alert_id).where(
        among(conn, a.alert_id, alert_ids), a.status.in_(OPEN_ALERT_STATUSES)
    )
    return set((await conn.execute(query)).scalars())


async def open_alerts(processor: ScoringProcessor, bus: Producer) -> int:
    """Publish the alerts the import holds, marked imported: those still firing at its
    end (the alerts service opens them without notices), and those that ended which the
    alerts service holds open (it closes them: dropped, a later import that found an
    account churned, or better, had left what the first import opened open for good,
    found from outside); let go of all it holds; returns how many are firing.
    Published before the rows are deleted (and outside a transaction: the embedded bus
    writes the same SQLite file): a failure leaves them for the next import, and the
    alerts service takes an alert's message once (alert id and revision)."""
    table = import_alerts.c
    async with processor.engine.connect() as conn:
        rows = (await conn.execute(select(table.alert_id, table.value))).all()
        held = [
            decode_alert(value).model_copy(update={"imported": True}) for _, value in sorted(rows)
        ]
        # Of those that ended, the ones open in the alerts service: every episode of
        # the history's past had gone out, for the service to look up and drop.
        open_ones = await _open_of(conn, [a.alert_id for a in held if a.status == "resolved"])
    sent = [a for a in held if a.status == "firing" or a.alert_id in open_ones]
    if sent:
        await bus.send_many(processor.alert_messages(sent))
    still = [alert for alert in held if alert.status == "firing"]
    async with processor.engine.begin() as conn:
        await conn.execute(delete(import_alerts).where(table.alert_id.in_([a for a, _ in rows])))
    return len(still)


async def _flush(
    processor: ScoringProcessor,
    batch: list[tuple[Record, Stamp]],
    report: ImportReport,
    calendar: ImportCalendar,
    still_held: StillHeld,
    ahead: datetime | None,
    earlier: EarlierImports,
) -> None:
    """Apply ``batch``; ``ahead``: the earliest receipt a later batch may hold;
    ``earlier``: what earlier imports left (``import_overlap``)."""
    if not batch:
        return
    await still_held()
    report.before_window += await earlier.before_window((r.value or b"", s) for r, s in batch)
    calendar.note([stamp for _, stamp in batch])
    await calendar.note_tickets([record.value or b"" for record, _ in batch])
    await calendar.remember()
    before = len(report.rejected)
    records = [record for record, _ in batch]
    # Applied, not scored: the calendar scores each account's days below, in day order
    # with each day's noon as the rules' clock. Scoring the batch as of its newest event
    # as well was the same day's score done twice (a third of the import's time) and
    # stepped the rules at event times between the days' noons, back and forth in time.
    fresh = await processor.handle(
        records, _forget_rejects(records), score=False, receipts_from=ahead
    )
    report.imported += fresh
    report.repeated += len(batch) - (len(report.rejected) - before) - fresh
    batch.clear()
    report.days_scored += await calendar.close_read_days()
