"""`healthwatch import`: NDJSON, CSV, gzip, rejected lines with numbers, resuming."""

from __future__ import annotations

import gzip
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

import services.scoring.processor as processor_module
from services.scoring.backfill import import_files
from services.scoring.history_files import LineNumbers, read_lines
from services.scoring.import_days import NOON, ImportCalendar
from services.scoring.import_files import (
    CopyOfAFileReadBefore,
    NotTheFileReadBefore,
    fingerprint,
)
from services.scoring.measures import Measures
from services.scoring.metrics import ScoringMetrics
from services.scoring.processor import ScoringProcessor
from services.scoring.step import ScoredAccount, score_account
from services.scoring.zones import account_zones
from services.simulate_history import write_history
from shared.bus.base import Record
from shared.contracts.events import MAX_EVENT_BYTES
from shared.storage.tables import (
    account_health,
    activity_daily,
    band_changes,
    health_daily,
    import_calendar,
    import_rejects,
    tickets,
)
from shared.storage.tables import import_files as import_file_digests
from tests.support.factories import EngineFactory, ProcessorFactory


def write_inputs(tmp_path: Path, *, hourly: bool = False) -> list[Path]:
    """40 usage events over 20 days, not in time order (``hourly``: an hour apart, in
    order, all within a batch's 48 hours of event time), with a bad line and a blank one;
    and a CSV of tickets with a bad row."""
    usage = [
        {
            "kind": "usage",
            "event_id": f"e{i}",
            "account_id": "acme",
            "user_id": f"u{i % 3}",
            "event": "login",
            "occurred_at": (
                f"2026-11-{1 + i // 24:02d}T{i % 24:02d}:00:00+00:00"
                if hourly
                else f"2026-11-{1 + i % 20:02d}T10:00:00+00:00"
            ),
        }
        for i in range(40)
    ]
    lines = [orjson.dumps(e) for e in usage]
    lines.insert(10, b"{not json")
    lines.insert(20, b"")
    ndjson = tmp_path / "usage.ndjson.gz"
    ndjson.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    csv = tmp_path / "tickets.csv"
    csv.write_text(
        "kind,event_id,account_id,ticket_id,status,priority,created_at,occurred_at\n"
        "ticket,t1,acme,T1,open,high,2026-11-02T09:00:00+00:00,2026-11-02T09:00:00+00:00\n"
        "ticket,t2,acme,T1,solved,high,2026-11-02T09:00:00+00:00,2026-11-03T09:00:00+00:00\n"
        "ticket,t3,acme,T2,open,bogus,2026-11-02T09:00:00+00:00,2026-11-03T09:00:00+00:00\n"
    )
    return [ndjson, csv]


# (sink, processor class = ScoringProcessor) → a processor on the test database.
ProcessorFor = Callable[..., ScoringProcessor]


def crashing_in_batch(n: int) -> type[ScoringProcessor]:
    """A processor that dies in its ``n``-th batch, as a killed import would: that batch
    never commits."""
    calls = 0

    class Crashing(ScoringProcessor):
        async def handle(self, records: Sequence[Record], also: Any = None, **how: Any) -> int:
            nonlocal calls
            calls += 1
            if calls == n:
                raise RuntimeError("killed")
            return await super().handle(records, also, **how)

    return Crashing


@pytest.fixture
async def db(
    engine_factory: EngineFactory, processor_factory: ProcessorFactory
) -> tuple[AsyncEngine, ProcessorFor]:
    """A migrated database, and the processor factory ``import_files`` takes."""
    engine = await engine_factory()
    metrics = ScoringMetrics(CollectorRegistry())

    def processor(
        sink: object, kind: type[ScoringProcessor] = ScoringProcessor
    ) -> ScoringProcessor:
        return processor_factory(engine, producer=sink, metrics=metrics, kind=kind)  # type: ignore[arg-type]

    return engine, processor


async def test_import_reports_rejects_and_resumes(
    db: tuple[AsyncEngine, ProcessorFor], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine, processor = db
    files = write_inputs(tmp_path)
    with caplog.at_level("DEBUG", logger="services.scoring.processor"):
        first = await import_files(files, processor, sweep=False)
    assert first.imported == 42 and first.lines == 45
    # The log names no rejected line by its record number from 0 ("@10" beside the
    # report's line 11, found from outside): the report names them.
    told = [r for r in caplog.records if r.getMessage().startswith("dead-lettering")]
    assert told and {r.levelname for r in told} == {"DEBUG"}
    # The lines as ``sed -n Np`` shows them: the CSV's bad row is line 4, after its header.
    assert [(f, n) for f, n, _ in first.rejected] == [("usage.ndjson.gz", 11), ("tickets.csv", 4)]
    assert "priority" in first.rejected[1][2]
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.sum(activity_daily.c.events)))).scalar() == 40
        assert (
            await conn.execute(select(tickets.c.status).where(tickets.c.ticket_id == "T1"))
        ).scalar() == "solved"

    again = await import_files(files, processor, sweep=False)
    assert again.imported == 0 and again.skipped_already_imported == 45
    # Restarted unfixed: the two bad records alone are read again, and rejected again.
    restarted = await import_files(files, processor, sweep=False, restart=True)
    assert restarted.imported == 0 and len(restarted.rejected) == 2
    # The CSV's bad row fixed in place: it alone is imported; nothing counts twice.
    csv = files[1]
    csv.write_text(csv.read_text().replace("bogus", "low"))
    fixed = await import_files(files, processor, sweep=False, restart=True)
    assert fixed.imported == 1 and [r[:2] for r in fixed.rejected] == [("usage.ndjson.gz", 11)]
    assert await _rejects(engine) == [("import:usage.ndjson.gz", 10)]  # the fixed one forgotten
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.sum(activity_daily.c.events)))).scalar() == 40
        assert (
            await conn.execute(select(tickets.c.priority).where(tickets.c.ticket_id == "T2"))
        ).scalar() == "low"


async def test_another_file_under_a_name_imported_before_is_refused_not_skipped(
    db: tuple[AsyncEngine, ProcessorFor], tmp_path: Path
) -> None:
    """Known by name alone, another file called usage.ndjson had its lines up to the
    first file's length skipped as "read by an earlier run", with exit 0 (found from
    outside). A file grown at its end still resumes, a short one too."""
    engine, processor = db

    def use(i: int) -> bytes:
        day = f"2026-11-{1 + i % 20:02d}T10:00:00+00:00"
        return orjson.dumps(
            {
                "kind": "usage",
                "event_id": f"e{i}",
                "account_id": "acme",
                "user_id": "u",
                "event": "login",
                "occurred_at": day,
            }
        )

    path = tmp_path / "usage.ndjson"
    path.write_bytes(b"\n".join(use(i) for i in range(3)) + b"\n")  # fewer than a digest's
    assert (await import_files([path], processor, sweep=False)).imported == 3
    path.write_bytes(b"\n".join(use(i) for i in range(30)) + b"\n")  # grown at its end
    grown = await import_files([path], processor, sweep=False)
    assert (grown.skipped_already_imported, grown.imported) == (3, 27)
    other = b"\n".join(use(i).replace(b'"acme"', b'"beta"') for i in range(40)) + b"\n"
    path.write_bytes(other)
    with pytest.raises(NotTheFileReadBefore, match=r"usage\.ndjson is not the file of that name"):
        await import_files([path], processor, sweep=False)
    # --restart reads again what was rejected; it does not make another file this one.
    with pytest.raises(NotTheFileReadBefore):
        await import_files([path], processor, sweep=False, restart=True)
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.sum(activity_daily.c.events)))).scalar() == 30
    path.rename(tmp_path / "beta.ndjson")  # as the message says: a name of its own
    renamed = await import_files([tmp_path / "beta.ndjson"], processor, sweep=False)
    assert (renamed.skipped_already_imported, renamed.imported) == (0, 40)
    # A copy under another name would count again all but its newest 48 hours of events:
    # refused, naming the file it repeats (a later run, or the same one).
    copy = tmp_path / "beta-copy.ndjson"
    copy.write_bytes(other)
    with pytest.raises(CopyOfAFileReadBefore, match=r"begins as beta\.ndjson does"):
        await import_files([copy], processor, sweep=False)
    twins = [tmp_path / "twin.ndjson", tmp_path / "twin2.ndjson"]
    for twin in twins:
        twin.write_bytes(other.replace(b'"beta"', b'"gamma"'))
    with pytest.raises(CopyOfAFileReadBefore, match=r"twin2\.ndjson begins as twin\.ndjson"):
        await import_files(twins, processor, sweep=False)
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.sum(activity_daily.c.events)))).scalar() == 70


async def test_an_import_stopped_before_its_first_batch_binds_no_file_to_its_name(
    db: tuple[AsyncEngine, ProcessorFor], tmp_path: Path
) -> None:
    """Its digests were kept though nothing was read, and the right file was then
    refused as another (found in review)."""
    _, processor = db
    path = write_inputs(tmp_path)[0]
    with pytest.raises(RuntimeError, match="killed"):
        await import_files([path], lambda sink: processor(sink, crashing_in_batch(1)))
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes()).replace(b"e1", b"x1")))
    report = await import_files([path], processor, sweep=False)
    assert report.imported == 40


async def test_a_line_rejected_and_corrected_in_place_is_read_again_with_restart(
    db: tuple[AsyncEngine, ProcessorFor], tmp_path: Path
) -> None:
    """Among the first records: the file's digests differ there, and only there. Without
    --restart it is the same file (it had been refused as another one), its corrected
    line still to read."""
    _, processor = db
    path = tmp_path / "early.ndjson"
    good = [orjson.dumps({**_use(i)}) for i in range(20)]
    path.write_bytes(b"\n".join([good[0], b"{not json", *good[1:]]) + b"\n")
    first = await import_files([path], processor, sweep=False)
    assert (first.imported, len(first.rejected)) == (20, 1)
    path.write_bytes(b"\n".join([good[0], orjson.dumps(_use(99)), *good[1:]]) + b"\n")
    later = await import_files([path], processor, sweep=False)
    assert (later.imported, later.rejected_before) == (0, 1)
    fixed = await import_files([path], processor, sweep=False, restart=True)
    assert (fixed.imported, fixed.rejected) == (1, [])


def _use(i: int) -> dict[str, object]:
    return {
        "kind": "usage",
        "event_id": f"u{i}",
        "account_id": "acme",
        "user_id": "u",
        "event": "login",
        "occurred_at": f"2026-11-{1 + i % 20:02d}T10:00:00+00:00",
    }


async def test_an_import_interrupted_mid_file_resumes_after_its_last_batch(
    db: tuple[AsyncEngine, ProcessorFor], tmp_path: Path
) -> None:
    engine, processor = db
    # 42 lines: 40 events, a bad line, a blank one; batches of 10 lines (their events
    # within 48 hours: a batch spans less, ``processor.batch_span``).
    files = write_inputs(tmp_path, hourly=True)[:1]
    crashing = crashing_in_batch(3)
    with pytest.raises(RuntimeError, match="killed"):
        await import_files(
            files, lambda sink: processor(sink, crashing), sweep=False, batch_size=10
        )
    async with engine.connect() as conn:
        # Two batches of 10 lines committed (one of them held the bad line).
        assert (await conn.execute(select(func.sum(activity_daily.c.events)))).scalar() == 19
    resumed = await import_files(files, processor, sweep=False, batch_size=10)
    assert resumed.skipped_already_imported == 20 and resumed.imported == 21
    assert resumed.rejected == []  # the bad line was reported by the first run
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.sum(activity_daily.c.events)))).scalar() == 40


async def test_a_sparse_history_counts_what_the_stream_counts(
    db: tuple[AsyncEngine, ProcessorFor], tmp_path: Path
) -> None:
    """A batch holds under 48 hours of event time (``processor.batch_span``), however
    few records a day a history has: an id sent again three days later counts again, as
    beyond the stream's dedup window, and an event weeks before the batch's newest is not
    dropped as too late (the late grace counts from the newest event of a batch)."""
    engine, processor = db
    sent = [("e1", "2026-10-01T10:00:00+00:00"), ("e2", "2026-10-02T10:00:00+00:00")]
    sent += [("e1", "2026-10-05T10:00:00+00:00"), ("e3", "2026-11-20T10:00:00+00:00")]
    path = tmp_path / "sparse.ndjson"
    path.write_bytes(
        b"\n".join(
            orjson.dumps(
                {
                    "kind": "usage",
                    "event_id": event_id,
                    "account_id": "acme",
                    "user_id": "u1",
                    "event": "login",
                    "occurred_at": at,
                }
            )
            for event_id, at in sent
        )
        + b"\n"
    )
    report = await import_files([path], processor, sweep=False)  # one batch's worth of lines
    assert report.imported == 4 and report.rejected == []
    async with engine.connect() as conn:
        days = (
            await conn.execute(
                select(activity_daily.c.day, activity_daily.c.events).order_by(activity_daily.c.day)
            )
        ).all()
    assert [(str(day), events) for day, events in days] == [
        ("2026-10-01", 1),
        ("2026-10-02", 1),
        ("2026-10-05", 1),
        ("2026-11-20", 1),
    ]


def _usage_line(event_id: str, at: str, account_id: str = "acme") -> bytes:
    return orjson.dumps(
        {
            "kind": "usage",
            "event_id": event_id,
            "account_id": account_id,
            "user_id": "u1",
            "event": "login",
            "occurred_at": at,
        }
    )


@pytest.mark.parametrize("batch_size", [3, 1000])
async def test_overlapping_exports_in_one_file_count_each_event_once(
    db: tuple[AsyncEngine, ProcessorFor], tmp_path: Path, batch_size: int
) -> None:
    """Two exports of overlapping days put one after the other: the second's copies of
    the first's events come after events days newer, beyond the dedup window's 48 hours
    as it was read. The stream received both copies together and counted each once; so
    does the import, the window keeping what a later line may repeat (``import_ahead``)."""
    engine, processor = db
    first = [(f"e{day}", f"2026-11-{day:02d}T10:00:00+00:00") for day in range(1, 11)]
    second = [(f"e{day}", f"2026-11-{day:02d}T10:00:00+00:00") for day in range(5, 16)]
    path = tmp_path / "both-exports.ndjson"
    path.write_bytes(b"\n".join(_usage_line(i, at) for i, at in first + second) + b"\n")
    report = await import_files([path], processor, sweep=False, batch_size=batch_size)
    assert (report.imported, report.repeated, report.rejected) == (15, 6, [])
    async with engine.connect() as conn:
        days = (await conn.execute(select(activity_daily.c.day, activity_daily.c.events))).all()
    assert sorted((str(day), events) for day, events in days) == [
        (f"2026-11-{day:02d}", 1) for day in range(1, 16)
    ]


async def test_overlapping_exports_count_once_in_two_files_and_when_resumed(
    db: tuple[AsyncEngine, ProcessorFor], tmp_path: Path
) -> None:
    """The same overlap as two files, the second out of time order (newest first), and
    the import stopped after its second batch and run again: each event counts once."""
    engine, processor = db
    days = [(f"e{day}", f"2026-11-{day:02d}T10:00:00+00:00") for day in range(1, 16)]
    first, second = tmp_path / "first.ndjson", tmp_path / "second.ndjson"
    first.write_bytes(b"\n".join(_usage_line(i, at) for i, at in days[:10]) + b"\n")
    second.write_bytes(b"\n".join(_usage_line(i, at) for i, at in days[4:][::-1]) + b"\n")
    files, crashing = [first, second], crashing_in_batch(3)
    with pytest.raises(RuntimeError, match="killed"):
        await import_files(files, lambda sink: processor(sink, crashing), sweep=False, batch_size=3)
    resumed = await import_files(files, processor, sweep=False, batch_size=3)
    assert resumed.rejected == []
    async with engine.connect() as conn:
        counted = (await conn.execute(select(activity_daily.c.day, activity_daily.c.events))).all()
    assert sorted((str(day), events) for day, events in counted) == [
        (f"2026-11-{day:02d}", 1) for day in range(1, 16)
    ]


def test_csv_rows_are_numbered_by_their_line_in_the_file(tmp_path: Path) -> None:
    """A row's number is the file line it starts on (``sed -n Np``), after the header,
    a quoted cell with line breaks and blank lines."""
    path = tmp_path / "t.csv"
    path.write_text(
        "kind,event_id,notes,account_id,occurred_at\n"
        "ticket,r0,plain,a,t\n"
        'ticket,r1,"two\nlines",a,t\n'
        "\n"
        "ticket,r2,plain,a,t\n"
        'ticket,r3,"three\r\nline\nnote",a,t\n'
        "ticket,r4,plain,a,t\n"
    )
    lines = LineNumbers()
    records = [orjson.loads(r) for r in read_lines(path, lines)]
    file_lines = path.read_text().split("\n")
    for number, record in enumerate(records):
        assert f",{record['event_id']}," in file_lines[lines.line(number) - 1], number
    assert [lines.line(n) for n in range(5)] == [2, 3, 6, 7, 10]
    json_lines = LineNumbers()  # NDJSON: nothing noted, a record is its line
    assert json_lines.line(0) == 1 and json_lines.line(9) == 10


def test_a_carriage_return_alone_in_a_cell_does_not_move_the_line_numbers(
    tmp_path: Path,
) -> None:
    """``sed`` counts lines at line feeds only; the csv module also ends one at a
    carriage return alone (an old Mac editor's line break, pasted into a note)."""
    path = tmp_path / "t.csv"
    path.write_bytes(
        b"kind,event_id,notes,account_id,occurred_at\r\n"
        b'ticket,r0,"first\rsecond\rthird",a,t\r\n'
        b"ticket,r1,plain,a,t\r\n"
        b'ticket,r2,"two\r\nlines\rand a return",a,t\r\n'
        b"\r\n"
        b"ticket,r3,plain,a,t\r\n"
    )
    lines = LineNumbers()
    records = [orjson.loads(r) for r in read_lines(path, lines)]
    assert [r["event_id"] for r in records] == ["r0", "r1", "r2", "r3"]
    assert [lines.line(n) for n in range(4)] == [2, 3, 4, 7]
    file_lines = path.read_bytes().split(b"\n")
    for number, record in enumerate(records):
        assert f",{record['event_id']},".encode() in file_lines[lines.line(number) - 1]


def test_import_command_exits_non_zero_with_line_numbers(tmp_path: Path) -> None:
    files = write_inputs(tmp_path)
    env = {
        "HEALTHWATCH_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}",
        "PATH": "/usr/bin:/bin",
        "HEALTHWATCH_LOG_LEVEL": "INFO",
    }
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "import", *map(str, files)],
        env=env,
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 1
    assert "imported 42 events" in done.stderr
    assert "usage.ndjson.gz:11" in done.stderr and "--restart" in done.stderr
    # Not a terminal: progress comes as log lines, a first one per file at least.
    # The first line is logged before any batch, with each file's records in all.
    assert "import: usage.ndjson.gz: 0 of 42 records read (0%)" in done.stderr
    assert "import: usage.ndjson.gz: 42 of 42 records read (100%)" in done.stderr
    assert "import: tickets.csv: 3 of 3 records read (100%)" in done.stderr


async def _history_rows(engine: AsyncEngine) -> list[tuple[object, ...]]:
    h = health_daily.c
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(h.account_id, h.day, h.score, h.band, h.inputs).order_by(h.account_id, h.day)
        )
        return [tuple(row) for row in rows]


async def test_files_are_merged_by_event_time(
    engine_factory: EngineFactory, processor_factory: ProcessorFactory, tmp_path: Path
) -> None:
    """A usage export and a helpdesk export of the same days are read side by side, in
    event time, as one file holding both would be: the same score history, each day
    scored once (not again when the second file reaches it)."""
    usage, tickets_csv = write_inputs(tmp_path)
    ticket_lines = [
        orjson.dumps(row)
        for row in (orjson.loads(line) for line in read_lines(tickets_csv))
        if row["priority"] != "bogus"
    ]
    used = [line for line in read_lines(usage) if line.strip().startswith(b'{"')]

    def in_time_order(lines: list[bytes], name: str) -> Path:
        path = tmp_path / name
        lines = sorted(lines, key=lambda line: orjson.loads(line)["occurred_at"])
        path.write_bytes(b"\n".join(lines) + b"\n")
        return path

    usage = in_time_order(used, "usage.ndjson")
    tickets_path = in_time_order(ticket_lines, "tickets.ndjson")
    one = in_time_order(used + ticket_lines, "both.ndjson")

    async def run(paths: list[Path]) -> tuple[int, list[tuple[object, ...]]]:
        engine = await engine_factory(f"sqlite+aiosqlite:///{tmp_path}/{len(paths)}.db")
        metrics = ScoringMetrics(CollectorRegistry())
        report = await import_files(
            paths,
            lambda sink: processor_factory(engine, producer=sink, metrics=metrics),
            sweep=False,
            batch_size=7,
        )
        assert report.imported == 42 and report.rejected == []
        return report.days_scored, await _history_rows(engine)

    merged, single = await run([usage, tickets_path]), await run([one])
    assert merged == single
    assert merged[0] == len(merged[1]) and merged[1]  # every day scored once


async def test_parquet_files_are_imported_as_their_json_lines(
    db: tuple[AsyncEngine, ProcessorFor], tmp_path: Path
) -> None:
    """A Parquet export (typed timestamps with a zone or without, JSON properties in a
    text column, empty cells) reads as the same events as its JSON lines."""
    engine, processor = db
    rows = [
        orjson.loads(line)
        for line in read_lines(write_inputs(tmp_path)[0])
        if line.strip().startswith(b'{"')
    ]
    table = pa.table(
        {
            "kind": [r["kind"] for r in rows],
            "event_id": [r["event_id"] for r in rows],
            "account_id": [r["account_id"] for r in rows],
            "user_id": [r["user_id"] for r in rows],
            "event": [r["event"] for r in rows],
            "occurred_at": pa.array(
                [datetime.fromisoformat(r["occurred_at"]).replace(tzinfo=None) for r in rows],
                pa.timestamp("us"),
            ),
            "properties": ['{"plan": "pro"}' if n % 2 else None for n in range(len(rows))],
        }
    )
    path = tmp_path / "usage.parquet"
    pq.write_table(table, path)
    first = orjson.loads(next(read_lines(path)))
    assert first["occurred_at"] == rows[0]["occurred_at"] and "properties" not in first
    assert orjson.loads(list(read_lines(path))[1])["properties"] == {"plan": "pro"}
    report = await import_files([path], processor, sweep=False)
    assert (report.imported, report.rejected) == (40, [])
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.sum(activity_daily.c.events)))).scalar() == 40
    # The same export saved as JSON lines is the same file, not 40 more events (a
    # Parquet re-export had counted every event twice, exit 0: found from outside).
    again = tmp_path / "usage-again.ndjson"
    again.write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n")
    with pytest.raises(CopyOfAFileReadBefore, match=r"begins as usage\.parquet does"):
        await import_files([again], processor, sweep=False)
    # Digests an earlier version kept (of each record's bytes) still tell the file.
    async with engine.begin() as conn:
        await conn.execute(
            update(import_file_digests).values(fingerprint=fingerprint(path, by_ids=False).text)
        )
    resumed = await import_files([path], processor, sweep=False)
    assert (resumed.skipped_already_imported, resumed.imported) == (40, 0)
    async with engine.connect() as conn:
        kept = (await conn.execute(select(import_file_digests.c.fingerprint))).scalar_one()
        assert kept.startswith("ids ")  # kept anew by ids
        assert (await conn.execute(select(func.sum(activity_daily.c.events)))).scalar() == 40


async def test_a_parquet_cell_json_cannot_hold_rejects_its_row_only(
    db: tuple[AsyncEngine, ProcessorFor], tmp_path: Path
) -> None:
    """Binary and decimal cells (types JSON has not) become text the contract judges
    (before, one such cell stopped the whole import with a TypeError)."""
    _, processor = db
    path = tmp_path / "odd.parquet"
    pq.write_table(
        pa.table(
            {
                "kind": ["usage"] * 3,
                "event_id": ["p1", "p2", "p3"],
                "account_id": ["acme"] * 3,
                "user_id": pa.array([b"u1", b"\x00\x01", b"u3"], pa.binary()),
                "event": ["login"] * 3,
                "occurred_at": ["2026-11-01T10:00:00+00:00"] * 3,
                "duration_s": pa.array(
                    [Decimal("1.5"), Decimal("2"), Decimal("3")], pa.decimal128(38, 1)
                ),
            }
        ),
        path,
    )
    assert orjson.loads(list(read_lines(path))[1])["user_id"] == str(b"\x00\x01")
    report = await import_files([path], processor, sweep=False)
    assert (report.imported, report.rejected) == (3, [])


async def test_moments_at_the_ends_of_the_calendar_reject_their_line_only(
    db: tuple[AsyncEngine, ProcessorFor], tmp_path: Path
) -> None:
    """A time near year 1 or 9999 that no zone can hold (before, the import's calendar
    stopped the whole import with an OverflowError) is rejected with its reason; so is
    one from the future (before, the import scored every account every day until it)."""
    _, processor = db
    moments = [
        "2026-11-01T10:00:00+00:00",
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-14:00",
        "2199-12-31T00:00:00+00:00",  # in the contract's range, but not yet: refused
        "0001-01-01T00:00:00+00:00",
    ]
    path = tmp_path / "edges.ndjson"
    path.write_bytes(
        b"\n".join(
            orjson.dumps(
                {
                    "kind": "usage",
                    "event_id": f"e{number}",
                    "account_id": "acme",
                    "user_id": "u1",
                    "event": "login",
                    "occurred_at": moment,
                }
            )
            for number, moment in enumerate(moments)
        )
        + b"\n"
    )
    report = await import_files([path], processor, sweep=False)
    assert report.imported == 1
    assert [(line, "occurred_at" in why) for _, line, why in report.rejected] == [
        (2, True),
        (3, True),
        (4, True),
        (5, True),
    ]
    assert report.days_scored == 1  # 2026-11-01 only: the calendar takes no refused line


async def test_an_import_stopped_after_scoring_its_last_days_resumes_to_the_same_cards(
    engine_factory: EngineFactory,
    processor_factory: ProcessorFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Stopped after every line is in and the last days are scored (a crash, Ctrl-C),
    then run again: every account's current score and its newest history row are those
    of an import that never stopped (a review found a held current score lost there)."""
    path = _accounts_of_four_weeks(tmp_path, gamma=False)
    metrics = ScoringMetrics(CollectorRegistry())

    async def run(engine: AsyncEngine) -> None:
        await import_files(
            [path],
            lambda sink: processor_factory(engine, producer=sink, metrics=metrics),
            sweep=False,
            batch_size=60,
        )

    async def cards(engine: AsyncEngine) -> tuple[list[tuple[object, ...]], ...]:
        async with engine.connect() as conn:
            current = await conn.execute(
                select(account_health.c.account_id, account_health.c.score, account_health.c.inputs)
            )
            newest = await conn.execute(
                select(health_daily.c.account_id, func.max(health_daily.c.day)).group_by(
                    health_daily.c.account_id
                )
            )
            return sorted(map(tuple, current)), sorted(map(tuple, newest))

    clean = await engine_factory(f"sqlite+aiosqlite:///{tmp_path / 'clean.db'}")
    await run(clean)
    engine = await engine_factory()
    close_all = ImportCalendar.close_all

    async def stopped(self: ImportCalendar) -> int:
        await close_all(self)
        raise RuntimeError("stopped")

    monkeypatch.setattr(ImportCalendar, "close_all", stopped)
    with pytest.raises(RuntimeError):
        await run(engine)
    monkeypatch.setattr(ImportCalendar, "close_all", close_all)
    await run(engine)
    assert await cards(engine) == await cards(clean)


def _accounts_of_four_weeks(tmp_path: Path, *, gamma: bool = True) -> Path:
    """28 days of logins: acme busy for a week then silent, beta steady, gamma on days 5
    and 6 only (with batches of 20 lines, both in the third batch)."""
    events = [
        {
            "kind": "usage",
            "event_id": f"{account}-{day}-{user}",
            "account_id": account,
            "user_id": f"u{user}",
            "event": "login",
            "occurred_at": f"2026-10-{day:02d}T10:00:00+00:00",
        }
        for day in range(1, 29)
        for account, users in (
            ("acme", 6 if day < 8 else 0),
            ("beta", 3),
            ("gamma", 1 if gamma and day in (5, 6) else 0),
        )
        for user in range(users)
    ]
    path = tmp_path / "usage.ndjson"
    path.write_bytes(b"\n".join(orjson.dumps(event) for event in events) + b"\n")
    return path


@pytest.mark.parametrize("stop", ["before_the_last_days", "mid_file"])
async def test_an_import_stopped_before_its_days_are_scored_scores_them_when_run_again(
    engine_factory: EngineFactory,
    processor_factory: ProcessorFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    stop: str,
) -> None:
    """Stopped after every line is in but before the last days are scored, or halfway
    through the file, then run again: the score history holds every account's every
    day, as an import that never stopped (gamma's first day too, read in a batch
    whose days the stop left unscored); the days scored before the stop are not
    scored again."""
    path = _accounts_of_four_weeks(tmp_path)
    metrics = ScoringMetrics(CollectorRegistry())

    async def run(engine: AsyncEngine) -> int:
        report = await import_files(
            [path],
            lambda sink: processor_factory(engine, producer=sink, metrics=metrics),
            sweep=False,
            batch_size=20,
        )
        return report.days_scored

    clean = await engine_factory(f"sqlite+aiosqlite:///{tmp_path / 'clean.db'}")
    scored_clean = await run(clean)
    engine = await engine_factory()
    name = "close_all" if stop == "before_the_last_days" else "close_read_days"
    original = getattr(ImportCalendar, name)
    calls = 0

    async def stopped(self: ImportCalendar) -> int:
        nonlocal calls
        calls += 1
        if name == "close_all" or calls == 3:
            raise RuntimeError("stopped")
        return int(await original(self))

    monkeypatch.setattr(ImportCalendar, name, stopped)
    with pytest.raises(RuntimeError):
        await run(engine)
    monkeypatch.setattr(ImportCalendar, name, original)
    async with engine.connect() as conn:
        closed = await conn.scalar(select(import_calendar.c.closed))
    assert closed is not None and closed.day < 28
    scored_after = await run(engine)
    assert await _history_rows(engine) == await _history_rows(clean)
    rows = await _history_rows(engine)
    assert len(rows) == scored_clean == 28 + 28 + 24  # each account, every day from its first
    # The days closed before the stop are not scored again.
    assert scored_after == sum(1 for row in rows if row[1] > closed)


@pytest.mark.parametrize("odd", ["rejected_line", "spaces_around_the_id"])
async def test_a_finished_import_run_again_scores_nothing_and_keeps_later_rows(
    engine_factory: EngineFactory, processor_factory: ProcessorFactory, tmp_path: Path, odd: str
) -> None:
    """Run again after it ended (and the sweep brought every account to today), an
    import reads nothing new and scores no day: a line the contract rejected for an
    account seen nowhere else, or an id the contract strips, leaves no account waiting
    for its days (a review found each run scoring the whole history again, and dropping
    the rows after it)."""
    events = [
        {
            "kind": "usage",
            "event_id": f"e{day}",
            "account_id": " acme" if odd == "spaces_around_the_id" and day == 1 else "acme",
            "user_id": "u1",
            "event": "login",
            "occurred_at": f"2026-10-{day:02d}T10:00:00+00:00",
        }
        for day in range(1, 29)
    ]
    lines = [orjson.dumps(event) for event in events]
    if odd == "rejected_line":  # no "event" name: rejected with its reason
        typo = {"kind": "usage", "event_id": "x", "account_id": "typo", "user_id": "u1"}
        lines.insert(3, orjson.dumps({**typo, "occurred_at": "2026-10-02T10:00:00+00:00"}))
    path = tmp_path / "usage.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    engine = await engine_factory()
    metrics = ScoringMetrics(CollectorRegistry())

    async def run(sweep: bool) -> int:
        report = await import_files(
            [path],
            lambda sink: processor_factory(engine, producer=sink, metrics=metrics),
            sweep=sweep,
        )
        return report.days_scored

    assert await run(sweep=True) == 28
    rows = await _history_rows(engine)
    assert len(rows) == 29 and rows[-1][1] > rows[-2][1]  # the 28 days, and today
    assert await run(sweep=False) == 0
    assert await run(sweep=False) == 0
    assert await _history_rows(engine) == rows


async def test_an_account_whose_times_are_unix_seconds_gets_its_days(
    db: tuple[AsyncEngine, ProcessorFor], tmp_path: Path
) -> None:
    """The contract reads a number as Unix seconds; the import's calendar reads it the
    same way (it read ISO text only, and such an account got no past days)."""
    engine, processor = db
    start = datetime(2026, 10, 1, 10, tzinfo=UTC).timestamp()
    path = tmp_path / "seconds.ndjson"
    path.write_bytes(
        b"\n".join(
            orjson.dumps(
                {
                    "kind": "usage",
                    "event_id": f"e{day}",
                    "account_id": "acme",
                    "user_id": "u1",
                    "event": "login",
                    "occurred_at": start + day * 86400,
                }
            )
            for day in range(5)
        )
        + b"\n"
    )
    report = await import_files([path], processor, sweep=False)
    assert (report.imported, report.rejected, report.days_scored) == (5, [], 5)
    assert [row[1].day for row in await _history_rows(engine)] == [1, 2, 3, 4, 5]


async def test_rows_no_record_can_be_made_of_are_rejected_with_their_reason(
    db: tuple[AsyncEngine, ProcessorFor], tmp_path: Path
) -> None:
    """Bytes that are not UTF-8, a field past the csv module's default limit, JSON nested
    deeper than can be written, Parquet times outside years 1–9999: each rejects its
    row, with its line and reason (each stopped the whole import before); a byte-order
    mark and nanosecond times are read. Fixed in place, the rows import with
    ``restart``."""
    engine, processor = db
    head = "kind,event_id,account_id,user_id,event,occurred_at,properties\n"

    def row(n: int, user: str = "u1", properties: str = "") -> str:
        return f"usage,c{n},acme,{user},login,2026-11-0{n}T10:00:00+00:00,{properties}\n"

    deep = '"{""a"": ' + "[" * 300 + "]" * 300 + '}"'
    csv_path = tmp_path / "usage.csv"
    csv_path.write_bytes(
        b"\xef\xbb\xbf"
        + (head + row(1)).encode()
        + row(2, user="u\udcff").encode(errors="surrogateescape")
        + row(3, user="x" * 200_000).encode()
        + (row(4, properties=deep) + row(5)).encode()
    )
    us = pa.timestamp("us", tz="+14:00")
    parquet_path = tmp_path / "more.parquet"
    pq.write_table(
        pa.table(
            {
                "kind": ["usage", "usage", "account"],
                "event_id": ["p1", "p2", "p3"],
                "account_id": ["acme"] * 3,
                "user_id": ["u1", "u1", None],
                "event": ["login", "login", None],
                "occurred_at": pa.array([1_793_000_000 * 10**6, 3 * 10**17, 10**15], us),
                "contract_end": pa.array([None, None, 2**31 - 1], pa.date32()),
            }
        ),
        parquet_path,
    )
    report = await import_files([csv_path, parquet_path], processor, sweep=False)
    assert report.imported == 3  # c1, c5 and p1
    assert sorted(report.rejected) == [
        ("more.parquet", 2, "occurred_at: a time outside years 1 to 9999"),
        ("more.parquet", 3, "contract_end: a date outside years 1 to 9999"),
        ("usage.csv", 3, "user_id: not UTF-8 text (save the file as UTF-8)"),
        ("usage.csv", 4, "schema: user_id: String should have at most 200 characters"),
        ("usage.csv", 5, "properties: cannot be written as JSON (Recursion limit reached)"),
    ]
    nanos = tmp_path / "nanos.parquet"  # pandas' default unit: cut to microseconds
    pq.write_table(
        pa.table({"t": pa.array([1_793_000_000_123_456_789], pa.timestamp("ns"))}), nanos
    )
    assert orjson.loads(next(read_lines(nanos))) == {"t": "2026-10-26T07:33:20.123456+00:00"}

    csv_path.write_text(head + "".join(row(n) for n in range(1, 6)))  # fixed in place
    again = await import_files([csv_path], processor, sweep=False, restart=True)
    assert (again.imported, again.rejected) == (3, [])
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.sum(activity_daily.c.events)))).scalar() == 6


async def test_a_file_cut_short_stops_the_import_saying_so_and_resumes_once_whole(
    db: tuple[AsyncEngine, ProcessorFor], tmp_path: Path
) -> None:
    engine, processor = db
    path = tmp_path / "usage.ndjson.gz"
    whole = gzip.compress(
        b"".join(
            orjson.dumps(
                {
                    "kind": "usage",
                    "event_id": f"e{i}",
                    "account_id": "acme",
                    "user_id": "u1",
                    "event": "login",
                    "occurred_at": f"2026-11-{1 + i // 50:02d}T10:00:00+00:00",
                }
            )
            + b"\n"
            for i in range(500)
        )
    )
    path.write_bytes(whole[: len(whole) * 2 // 3])
    cut = await import_files([path], processor, sweep=False, batch_size=50)
    assert cut.stopped and re.match(r"usage.ndjson.gz cannot be read past record \d+", cut.stopped)
    async with engine.connect() as conn:  # every record read before the break is imported
        events = (await conn.execute(select(func.sum(activity_daily.c.events)))).scalar()
    assert cut.imported == events and 300 < events < 500
    path.write_bytes(whole)
    report = await import_files([path], processor, sweep=False, batch_size=50)
    assert report.skipped_already_imported > 0 and report.rejected == []
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.sum(activity_daily.c.events)))).scalar() == 500


def test_the_import_command_names_a_file_cut_short_without_a_traceback(tmp_path: Path) -> None:
    whole = gzip.compress(b"".join(orjson.dumps({"n": i}) + b"\n" for i in range(2000)))
    path = tmp_path / "cut.ndjson.gz"
    path.write_bytes(whole[: len(whole) // 2])
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "import", str(path)],
        env={
            "HEALTHWATCH_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'c.db'}",
            "PATH": "/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 1, done.stderr
    assert "cut.ndjson.gz cannot be read past record" in done.stdout + done.stderr
    assert "run the import again once the file is whole" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


async def test_a_restart_stopped_part_way_keeps_the_rejections_it_did_not_read_again(
    db: tuple[AsyncEngine, ProcessorFor], tmp_path: Path
) -> None:
    """``--restart`` forgets a rejection in the batch that reads its record again: one
    stopped after the first of two such batches still reads the second record when run
    again (before, every rejection was forgotten when the restart began)."""
    _, processor = db
    files = write_inputs(tmp_path)
    first = await import_files(files, processor, sweep=False)
    assert len(first.rejected) == 2

    def stops_at_second_batch(sink: Any) -> ScoringProcessor:
        made = processor(sink)
        handle, calls = made.handle, []

        async def stopping(records: Sequence[Record], also: Any = None, **how: bool) -> int:
            calls.append(records)
            if len(calls) == 2:
                raise RuntimeError("stopped")
            return await handle(records, also, **how)

        made.handle = stopping  # type: ignore[method-assign]
        return made

    with pytest.raises(RuntimeError, match="stopped"):
        await import_files(files, stops_at_second_batch, sweep=False, restart=True, batch_size=1)
    again = await import_files(files, processor, sweep=False, restart=True)
    assert sorted(r[:2] for r in again.rejected) == [("tickets.csv", 4), ("usage.ndjson.gz", 11)]
    assert again.imported == 0


async def test_a_csv_quote_left_open_stops_the_import_at_its_row(
    db: tuple[AsyncEngine, ProcessorFor], tmp_path: Path
) -> None:
    """A field longer than an event may be is a quote left open taking the file into
    one field: the import stops there, naming the line (going on mid-field read its
    lines as rows); the rows before are imported."""
    _, processor = db
    path = tmp_path / "open.csv"
    rows = "".join(f"usage,c{n},acme,u1,login,2026-11-0{n}T10:00:00+00:00\n" for n in range(1, 4))
    open_quote = 'usage,c9,acme,"u1,login\n' + "y\n" * (MAX_EVENT_BYTES // 2 + 10)
    path.write_text("kind,event_id,account_id,user_id,event,occurred_at\n" + rows + open_quote)
    report = await import_files([path], processor, sweep=False)
    assert report.imported == 3 and report.stopped is not None
    assert "in the row after line 4; a quote left open?" in report.stopped


async def test_a_csv_separated_by_semicolons_stops_at_its_header_saying_so(
    db: tuple[AsyncEngine, ProcessorFor], tmp_path: Path
) -> None:
    """Each row was rejected alone with "Unable to extract tag using discriminator
    'kind'", 49 times, and no hint at the separator (found from outside)."""
    _, processor = db
    path = tmp_path / "semi.csv"
    path.write_text(
        "kind;event_id;account_id;user_id;event;occurred_at\n"
        "usage;c1;acme;u1;login;2026-11-01T10:00:00+00:00\n"
    )
    report = await import_files([path], processor, sweep=False)
    assert report.imported == 0 and report.rejected == [] and report.stopped is not None
    assert "separated by ';', not commas" in report.stopped
    # Saved as UTF-16 ("Unicode text"): said so, not as a garbled header.
    wide = tmp_path / "wide.csv"
    wide.write_text("kind,event_id,account_id,user_id,event,occurred_at\n", encoding="utf-16")
    report = await import_files([wide], processor, sweep=False)
    assert report.stopped is not None and "UTF-16 text" in report.stopped, report.stopped


async def test_a_file_of_another_shape_stops_at_its_header_and_its_lines_say_why(
    db: tuple[AsyncEngine, ProcessorFor], tmp_path: Path
) -> None:
    """Found from outside: a CSV with the header "user,when,what" had every row rejected
    with "schema: : Unable to extract tag using discriminator 'kind'"; a JSON array on a
    line, bytes that are not UTF-8, with pydantic's and orjson's words."""
    _, processor = db
    other = tmp_path / "wrong.csv"
    other.write_text("user,when,what\nu1,2026-11-01,login\n")
    report = await import_files([other], processor, sweep=False)
    assert report.imported == 0 and report.stopped is not None
    assert "names the columns 'user', 'when', 'what', not kind, event_id" in report.stopped
    # A column no event has: stopped at the header naming it, where every row had been
    # rejected alone, "Extra inputs are not permitted" (found from outside).
    extra = tmp_path / "orders.csv"
    extra.write_text(
        "kind,event_id,account_id,occurred_at,user_id,event,order_note\n"
        "usage,o1,shop,2026-11-01T10:00:00+00:00,u1,purchase,gift wrap\n"
    )
    report = await import_files([extra], processor, sweep=False)
    assert report.imported == 0 and report.rejected == [] and report.stopped is not None
    assert "column(s) 'order_note' are no field of any event" in report.stopped
    # Columns of objects and lists hold JSON (a sales owner's row had been refused, "an
    # object", found in review).
    facts = tmp_path / "facts.csv"
    facts.write_text(
        "kind,event_id,account_id,occurred_at,sales_owner,usage_quotas\n"
        'account,f1,shop,2026-11-01T10:00:00+00:00,"{""email"": ""sam@example.com""}",'
        '"[{""name"": ""export"", ""limit"": 100}]"\n'
    )
    report = await import_files([facts], processor, sweep=False)
    assert (report.imported, report.rejected) == (1, [])
    lines = tmp_path / "lines.ndjson"
    good = _usage_line("acme", "ok", "2026-11-01T10:00:00+00:00")
    lines.write_bytes(
        b"["
        + good
        + b"]\n"
        + b'{"event_id": "x1", "account_id": "acme"}\n'
        + good.replace(b"acme", b"acm\xe9")
        + b"\n"
    )
    report = await import_files([lines], processor, sweep=False)
    reasons = [reason for _, _, reason in report.rejected]
    assert reasons[0].startswith("not an event: a JSON list where an object is expected")
    assert reasons[1].startswith("kind: missing: an event names its kind, one of usage")
    assert reasons[2].startswith("not UTF-8 text (byte ")


async def _rejects(engine: AsyncEngine) -> list[tuple[str, int]]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(import_rejects.c.source, import_rejects.c.record))
        return sorted((source, record) for source, record in rows)


async def test_a_rejected_line_made_blank_is_forgotten_by_a_finished_restart(
    db: tuple[AsyncEngine, ProcessorFor], tmp_path: Path
) -> None:
    engine, processor = db
    files = write_inputs(tmp_path)
    await import_files(files, processor, sweep=False)
    csv = files[1]
    csv.write_text(csv.read_text().replace(csv.read_text().splitlines()[3], ""))
    again = await import_files(files, processor, sweep=False, restart=True)
    assert [r[:2] for r in again.rejected] == [("usage.ndjson.gz", 11)]
    assert await _rejects(engine) == [("import:usage.ndjson.gz", 10)]


async def test_each_account_day_is_scored_once_on_its_day(
    db: tuple[AsyncEngine, ProcessorFor], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batches are applied, not scored: each account's days are scored by the
    calendar, once each, in day order and on the day's clock (noon UTC), never at a
    batch's newest event (which then scored the same day twice)."""
    _, processor = db
    steps: list[tuple[str, date, datetime]] = []

    def counted(measures: Measures, *args: Any, **how: Any) -> ScoredAccount:
        steps.append((measures.account_id, measures.as_of, how["now"]))
        return score_account(measures, *args, **how)

    monkeypatch.setattr(processor_module, "score_account", counted)
    usage = [
        {
            "kind": "usage",
            "event_id": f"{account}-{day}-{hour}",
            "account_id": account,
            "user_id": f"u{hour}",
            "event": "login",
            "occurred_at": f"2026-11-{day:02d}T{hour:02d}:30:00+00:00",
        }
        for day in range(1, 11)
        for hour in (9, 17)
        for account in ("a", "b")
        if not (account == "b" and day < 4)  # b's first day is the 4th
    ]
    path = tmp_path / "usage.ndjson"
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in usage) + b"\n")
    report = await import_files([path], processor, sweep=False, batch_size=7)
    assert report.imported == len(usage)
    days = [date(2026, 11, d) for d in range(1, 11)]
    expected = [("a", d) for d in days] + [("b", d) for d in days[3:]]
    assert sorted((account, day) for account, day, _ in steps) == sorted(expected)
    assert all(now == datetime.combine(day, NOON, UTC) for _, day, now in steps)
    for account in ("a", "b"):  # in day order
        mine = [day for a, day, _ in steps if a == account]
        assert mine == sorted(mine)


async def test_band_changes_are_dated_on_the_days_the_daily_scores_change(
    db: tuple[AsyncEngine, ProcessorFor], tmp_path: Path
) -> None:
    """After an import, the band-change log tells the same story as the score history:
    each change between two days' rows is logged on the later day, and none else (they
    were dated at the newest event read, days later, and one dated alike was lost)."""
    engine, processor = db
    path = tmp_path / "history.ndjson"
    write_history(path, tmp_path / "churn.csv", accounts=8, days=75, end=date(2026, 11, 1))
    report = await import_files([path], processor, sweep=False, batch_size=500)
    assert report.rejected == []
    async with engine.connect() as conn:
        daily = (
            await conn.execute(
                select(health_daily.c.account_id, health_daily.c.day, health_daily.c.band).order_by(
                    health_daily.c.account_id, health_daily.c.day
                )
            )
        ).all()
        logged = (await conn.execute(select(band_changes))).all()
        zones = await account_zones(conn, {row.account_id for row in daily}, UTC)
    seen: dict[str, str] = {}
    changes = set()
    for account_id, day, band in daily:
        if seen.get(account_id) != band:
            changes.add((account_id, str(day), seen.get(account_id), band))
        seen[account_id] = band
    assert len(changes) > len(seen)  # some account changed band on the way
    assert {
        (
            c.account_id,
            str(c.changed_at.astimezone(zones[c.account_id]).date()),
            c.from_band,
            c.to_band,
        )
        for c in logged
    } == changes


async def test_a_line_received_in_the_future_is_rejected_and_forgets_nothing(
    db: tuple[AsyncEngine, ProcessorFor], tmp_path: Path
) -> None:
    """A line's own received_at far ahead let its times be too, and made the account's
    dedup window forget every id before it: resent events counted twice."""
    _, processor = db
    now = datetime.now(UTC)
    sent = [_usage_line(f"e{n}", (now - timedelta(hours=n + 1)).isoformat()) for n in range(3)]
    future = orjson.loads(_usage_line("f", now.isoformat()))
    future["received_at"] = "2199-01-01T00:00:00+00:00"
    first, again = tmp_path / "first.ndjson", tmp_path / "again.ndjson"
    first.write_bytes(b"\n".join([*sent, orjson.dumps(future)]) + b"\n")
    again.write_bytes(b"\n".join(sent) + b"\n")
    report = await import_files([first], processor, sweep=False)
    assert report.imported == 3
    ((name, line, reason),) = report.rejected
    assert (name, line) == ("first.ndjson", 4) and "received_at" in reason
    assert (await import_files([again], processor, sweep=False)).imported == 0


async def test_a_later_import_of_an_earlier_period_opens_no_alert_again(
    db: tuple[AsyncEngine, ProcessorFor], tmp_path: Path
) -> None:
    """Each import scores again every day from its first, for every account; its rules,
    stepped back in time, recovered and fired again on their own day as another alert:
    an account untouched by the later files had six open alerts of one rule (found
    from outside). Rules never step back in time (``rules.step``)."""
    _, processor = db
    whole, churn = tmp_path / "whole.ndjson", tmp_path / "churn.csv"
    write_history(whole, churn, accounts=8, days=60, end=date(2026, 11, 1))
    first = await import_files([whole], processor, sweep=False)
    firing = {a for a, alert in first.alerts.items() if alert.status == "firing"}
    assert firing
    earlier = tmp_path / "earlier.ndjson"
    earlier.write_bytes(_usage_line("x1", "2026-10-01T10:00:00+00:00", "new-co") + b"\n")
    second = await import_files([earlier], processor, sweep=False)
    assert second.imported == 1
    fired_again = {
        a for a, alert in second.alerts.items() if alert.status == "firing" and a not in firing
    }
    assert not {a for a in fired_again if not a.startswith("new-co:")}, fired_again


async def test_an_import_ending_today_stamps_nothing_after_now(
    db: tuple[AsyncEngine, ProcessorFor], tmp_path: Path
) -> None:
    """A day's changes are stamped at its noon: imported at 00:37, an alert opened on
    today was stamped fired at 12:00, hours ahead of its storing (found from outside).
    Today's are stamped now."""
    engine, processor = db
    now = datetime.now(UTC)
    at = (now - timedelta(minutes=5)).isoformat()
    facts = {"kind": "account", "event_id": "f1", "account_id": "fresh", "seats_purchased": 50,
             "occurred_at": at}  # fmt: skip
    path = tmp_path / "today.ndjson"
    path.write_bytes(orjson.dumps(facts) + b"\n" + _usage_line("u1", at, "fresh") + b"\n")
    report = await import_files([path], processor, sweep=False)
    done = datetime.now(UTC)
    assert report.imported == 2
    async with engine.connect() as conn:
        changed = (await conn.execute(select(band_changes.c.changed_at))).scalars().all()
    assert changed and all(when <= done for when in changed), (changed, done)
    assert all(alert.fired_at <= done for alert in report.alerts.values()), report.alerts


def test_events_too_late_to_count_are_reported_and_fail_the_command(tmp_path: Path) -> None:
    """Events more than the late grace (90 days) older than the account's newest (a
    history written newest first, an older export after a newer one) were left out
    while the summary said "imported" and the command exited 0 (found from outside)."""
    start = datetime(2026, 11, 27, 10, tzinfo=UTC)
    days = [start - timedelta(days=n) for n in (*range(29, -1, -1), 120, 121, 122)]
    lines = [_usage_line(f"d{n}", at.isoformat()) for n, at in enumerate(days)]
    path = tmp_path / "newest-first.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    env = {
        "HEALTHWATCH_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'late.db'}",
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "import", str(path)],
        env=env,
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    said = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 1, said
    late = re.search(r"(\d+) usage event\(s\) were not counted", said)
    assert late and int(late.group(1)) == 3, said
    assert "oldest first" in said
    # It ends days ago: today's scores count the days since as quiet, and it says so (a
    # week-old export turned most accounts red without a word, found from outside).
    assert "the history ends 2026-11-27" in said and "days before today" in said, said


async def test_an_export_overlapping_one_imported_before_says_what_may_count_twice(
    db: tuple[AsyncEngine, ProcessorFor], tmp_path: Path
) -> None:
    """In one run both copies of an overlap count once; in a later run the dedup window
    (48 hours) has forgotten the first copies, and they counted twice while the summary
    said repeats were counted once (found from outside). The run now says how many of
    its events are older than the window before their account's newest event imported
    before; the same days imported in one run say nothing."""
    _, processor = db
    days = [(f"e{day}", f"2026-11-{day:02d}T10:00:00+00:00") for day in range(1, 21)]
    first, second = tmp_path / "nov-a.ndjson", tmp_path / "nov-b.ndjson"
    first.write_bytes(b"\n".join(_usage_line(i, at) for i, at in days[:15]) + b"\n")
    second.write_bytes(b"\n".join(_usage_line(i, at) for i, at in days[5:]) + b"\n")
    alone = await import_files([first], processor, sweep=False)
    assert alone.before_window == 0
    later = await import_files([second], processor, sweep=False)
    # Nov 6-12 lie more than 48 hours before Nov 15 10:00; Nov 13-20 do not.
    assert later.before_window == 7
    # Nov 6-20 recorded, of which Nov 6-15 had been scored before: the summary says so
    # (it had said 15 daily scores recorded and nothing more, found from outside).
    assert (later.days_scored, later.days_rescored) == (15, 10)
    # A ticket's update counts by its own id, never twice; a time without a zone is the
    # step's to reject (it stopped the import with a TypeError, found in review).
    other = tmp_path / "nov-c.ndjson"
    ticket = {"kind": "ticket", "event_id": "t1", "account_id": "acme", "ticket_id": "T1",
              "status": "open", "priority": "high", "created_at": "2026-11-02T09:00:00+00:00",
              "occurred_at": "2026-11-02T09:00:00+00:00"}  # fmt: skip
    naive = _usage_line("n1", "2026-11-03T10:00:00")
    other.write_bytes(orjson.dumps(ticket) + b"\n" + naive + b"\n")
    mixed = await import_files([other], processor, sweep=False)
    assert (mixed.before_window, mixed.imported, len(mixed.rejected)) == (0, 1, 1)
    # Too late to count at all (90 days before the account's newest): said so, not
    # also said to count twice (the summary said both of the same events, found from
    # outside).
    old = tmp_path / "jul.ndjson"
    old.write_bytes(_usage_line("j1", "2026-07-01T10:00:00+00:00") + b"\n")
    gone = await import_files([old], processor, sweep=False)
    assert (gone.late, gone.before_window) == (1, 0)


def _by_account(tmp_path: Path, name: str, bad_at: int | None = None) -> tuple[Path, list[bytes]]:
    """5 accounts × 30 days of usage, sorted by account (an export ``ORDER BY
    account_id``); a line that is no JSON at ``bad_at``. Returns the file and its
    events in time order."""
    start = datetime(2026, 10, 1, 10, tzinfo=UTC)
    lines = [
        _usage_line(f"{account}-{day}", (start + timedelta(days=day)).isoformat(), account)
        for account in ("a", "b", "c", "d", "e")
        for day in range(30)
    ]
    written = list(lines)
    if bad_at is not None:
        written.insert(bad_at, b"{not json")
    path = tmp_path / name
    path.write_bytes(b"\n".join(written) + b"\n")
    return path, sorted(lines, key=lambda line: orjson.loads(line)["occurred_at"])


def counting_batches() -> tuple[type[ScoringProcessor], list[int]]:
    """A processor that counts the batches handed to it (their sizes)."""
    sizes: list[int] = []

    class Counting(ScoringProcessor):
        async def handle(self, records: Sequence[Record], also: Any = None, **how: Any) -> int:
            sizes.append(len(records))
            return await super().handle(records, also, **how)

    return Counting, sizes


async def test_a_file_out_of_time_order_is_read_in_time_order(
    engine_factory: EngineFactory,
    processor_factory: ProcessorFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Sorted by account, not time, every record closed a batch of 48 hours: a 20,200-
    event history took 482 s against 7.6 s sorted (found from outside). It is read in
    time order: batches as full as the sorted file's, and the same history."""
    path, in_order = _by_account(tmp_path, "by-account.ndjson")
    sorted_path = tmp_path / "sorted.ndjson"
    sorted_path.write_bytes(b"\n".join(in_order) + b"\n")

    async def run(file: Path) -> tuple[list[int], list[tuple[object, ...]]]:
        engine = await engine_factory(f"sqlite+aiosqlite:///{tmp_path}/{file.stem}.db")
        metrics = ScoringMetrics(CollectorRegistry())
        counting, sizes = counting_batches()
        report = await import_files(
            [file],
            lambda sink: processor_factory(engine, producer=sink, metrics=metrics, kind=counting),
            sweep=False,
        )
        assert report.imported == 150 and report.rejected == [] and report.lines == 150
        return sizes, await _history_rows(engine)

    with caplog.at_level("INFO", logger="services.scoring.backfill"):
        (by_account, history), (by_time, sorted_history) = await run(path), await run(sorted_path)
    assert history == sorted_history and history
    assert len(by_account) == len(by_time) < 30  # one a record or two, read as it was
    assert "by-account.ndjson is not in time order: 108 of its records" in caplog.text
    assert "reading them in time order" in caplog.text
    assert "sorted.ndjson is not in time order" not in caplog.text


async def test_a_line_rejected_in_time_order_is_named_by_its_line_in_the_file(
    db: tuple[AsyncEngine, ProcessorFor], tmp_path: Path
) -> None:
    """Its offset is its place in time order (partition 1); the summary names its line."""
    _, processor = db
    path, _ = _by_account(tmp_path, "by-account.ndjson", bad_at=33)  # b's 4th day
    report = await import_files([path], processor, sweep=False, batch_size=20)
    assert [(name, line) for name, line, _ in report.rejected] == [("by-account.ndjson", 34)]
    assert report.imported == 150 and report.lines == 151


async def test_a_file_read_in_time_order_resumes_where_it_stopped(
    db: tuple[AsyncEngine, ProcessorFor], tmp_path: Path
) -> None:
    """Killed part way, it goes on from its last batch in the same order: nothing
    counted twice or left out, a line rejected in a batch taken reported once (it is
    taken, and the count of the records taken holds around it)."""
    engine, processor = db
    path, _ = _by_account(tmp_path, "by-account.ndjson", bad_at=3)  # a's 4th day
    with pytest.raises(RuntimeError, match="killed"):
        await import_files(
            [path], lambda sink: processor(sink, crashing_in_batch(3)), sweep=False, batch_size=20
        )
    async with engine.connect() as conn:
        taken = (await conn.execute(select(func.sum(activity_daily.c.events)))).scalar()
        assert (await conn.execute(select(func.count()).select_from(import_rejects))).scalar()
    assert 0 < taken < 150
    resumed = await import_files([path], processor, sweep=False, batch_size=20)
    assert resumed.rejected == [] and resumed.imported == 150 - taken
    assert resumed.skipped_already_imported == taken + 1  # and the rejected line
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.sum(activity_daily.c.events)))).scalar() == 150
    again = await import_files([path], processor, sweep=False)
    assert again.imported == 0 and again.skipped_already_imported == 151


async def test_a_segments_rejected_lines_are_read_again_once_it_is_done(
    db: tuple[AsyncEngine, ProcessorFor], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Read again while the rest of a stopped import in time order waits, a corrected
    line would leave its rejection and shift the count of records taken: it waits until
    the rest is in (said so), and is read again by the next ``--restart``."""
    engine, processor = db
    path, _ = _by_account(tmp_path, "by-account.ndjson", bad_at=3)
    with pytest.raises(RuntimeError, match="killed"):
        await import_files(
            [path], lambda sink: processor(sink, crashing_in_batch(3)), sweep=False, batch_size=20
        )
    fixed = path.read_bytes().replace(
        b"{not json", _usage_line("fixed", "2026-10-02T12:00:00+00:00", "a")
    )
    path.write_bytes(fixed)
    with caplog.at_level("WARNING", logger="services.scoring.backfill"):
        rest = await import_files([path], processor, sweep=False, batch_size=20, restart=True)
    assert "1 records rejected before are read again by an import run once" in caplog.text
    assert rest.rejected == [] and rest.rejected_before == 1
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.sum(activity_daily.c.events)))).scalar() == 150
    last = await import_files([path], processor, sweep=False, restart=True)
    assert last.imported == 1 and last.rejected == []
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.sum(activity_daily.c.events)))).scalar() == 151
        assert (await conn.execute(select(func.count()).select_from(import_rejects))).scalar() == 0


async def _per_account(engine: AsyncEngine) -> dict[str, int]:
    a = activity_daily.c
    async with engine.connect() as conn:
        rows = await conn.execute(select(a.account_id, func.sum(a.events)).group_by(a.account_id))
        return {account: int(events) for account, events in rows}


async def _killed_in_third_batch(processor: ProcessorFor, path: Path) -> None:
    with pytest.raises(RuntimeError, match="killed"):
        await import_files(
            [path], lambda sink: processor(sink, crashing_in_batch(3)), sweep=False, batch_size=20
        )


async def test_a_blank_line_after_a_corrected_line_keeps_its_place_in_time_order(
    db: tuple[AsyncEngine, ProcessorFor], tmp_path: Path
) -> None:
    """A blank line took the time of the line before it: that line rejected, corrected
    in place and read again, moved the blank in the order, and a record was left out
    of those counted taken (found in review)."""
    engine, processor = db
    path, _ = _by_account(tmp_path, "by-account.ndjson", bad_at=3)
    path.write_bytes(path.read_bytes().replace(b"{not json\n", b"{not json\n\n"))
    await _killed_in_third_batch(processor, path)
    fixed = _usage_line("fixed", "2026-10-30T10:00:00+00:00", "a")
    path.write_bytes(path.read_bytes().replace(b"{not json", fixed))
    await import_files([path], processor, sweep=False, batch_size=20)
    assert await _per_account(engine) == dict.fromkeys("abcde", 30)


@pytest.mark.parametrize("compressed", [False, True])
async def test_a_file_shorter_when_resumed_in_time_order_is_refused_until_whole(
    db: tuple[AsyncEngine, ProcessorFor], tmp_path: Path, compressed: bool
) -> None:
    """Cut short (a gzip stream broken) while its reading in time order was stopped, the
    order was made again of fewer records: records were left out, and others counted
    twice once the file was whole (found in review). It stops, taking nothing."""
    engine, processor = db
    path, _ = _by_account(tmp_path, "by-account.ndjson")
    whole = path.read_bytes()
    if compressed:
        path = tmp_path / "by-account.ndjson.gz"
        whole = gzip.compress(whole)
        path.write_bytes(whole)
    await _killed_in_third_batch(processor, path)
    before = await _per_account(engine)
    path.write_bytes(whole[: len(whole) // 2])
    cut = await import_files([path], processor, sweep=False, batch_size=20)
    assert cut.stopped is not None and cut.imported == 0
    assert compressed or "changed while the import reading it in time order" in cut.stopped
    assert await _per_account(engine) == before
    path.write_bytes(whole)
    await import_files([path], processor, sweep=False, batch_size=20)
    assert await _per_account(engine) == dict.fromkeys("abcde", 30)


async def test_records_added_while_a_reading_in_time_order_was_stopped_come_next(
    db: tuple[AsyncEngine, ProcessorFor], tmp_path: Path
) -> None:
    """They had been left out without a word (found in review): the part begun is
    finished, the import says the file grew, and the next run reads the rest."""
    engine, processor = db
    path, _ = _by_account(tmp_path, "by-account.ndjson")
    await _killed_in_third_batch(processor, path)
    start = datetime(2026, 10, 1, 10, tzinfo=UTC)
    added = [_usage_line(f"z-{d}", (start + timedelta(days=d)).isoformat(), "z") for d in range(10)]
    path.write_bytes(path.read_bytes() + b"\n".join(added) + b"\n")
    first = await import_files([path], processor, sweep=False, batch_size=20)
    assert first.stopped is not None and "grew by 10 records" in first.stopped
    assert await _per_account(engine) == dict.fromkeys("abcde", 30)
    rest = await import_files([path], processor, sweep=False, batch_size=20)
    assert rest.stopped is None and rest.imported == 10
    assert await _per_account(engine) == {**dict.fromkeys("abcde", 30), "z": 10}


async def test_more_rejections_than_records_taken_stop_the_reading_in_time_order(
    db: tuple[AsyncEngine, ProcessorFor], tmp_path: Path
) -> None:
    """Rejections and offsets that do not belong together (rows left by another file of
    the name) stop the import with what to do, not with a count gone negative."""
    engine, processor = db
    path, _ = _by_account(tmp_path, "by-account.ndjson")
    await _killed_in_third_batch(processor, path)
    async with engine.begin() as conn:
        await conn.execute(
            import_rejects.insert(),
            [{"source": "import:by-account.ndjson", "record": n} for n in range(100, 145)],
        )
    before = await _per_account(engine)
    report = await import_files([path], processor, sweep=False, batch_size=20)
    assert (
        report.stopped is not None and "more of its lines are recorded rejected" in report.stopped
    )
    assert report.imported == 0 and await _per_account(engine) == before


async def test_a_reading_in_time_order_stopped_before_its_first_batch_binds_no_file(
    db: tuple[AsyncEngine, ProcessorFor], tmp_path: Path
) -> None:
    """Its segment's end is stored before anything is taken: it bound the file's name,
    and another file under it was refused (found in review)."""
    engine, processor = db
    path, _ = _by_account(tmp_path, "f.ndjson")
    with pytest.raises(RuntimeError, match="killed"):
        await import_files(
            [path], lambda sink: processor(sink, crashing_in_batch(1)), sweep=False, batch_size=20
        )
    other = [
        line.replace(b'"account_id":"', b'"account_id":"o') for line in path.read_bytes().split()
    ]
    path.write_bytes(b"\n".join(other) + b"\n")
    report = await import_files([path], processor, sweep=False, batch_size=20)
    assert report.imported == 150 and set(await _per_account(engine)) == {
        "oa",
        "ob",
        "oc",
        "od",
        "oe",
    }


async def test_an_export_read_while_its_last_line_was_written_goes_on_once_whole(
    db: tuple[AsyncEngine, ProcessorFor], tmp_path: Path
) -> None:
    """Read with its last line half written (rejected), the grown file was refused as
    another file once that line was whole: it is among the file's first records
    (found from outside). Records rejected before may differ."""
    engine, processor = db
    lines = [_usage_line(f"g{n}", f"2026-11-{n + 1:02d}T10:00:00+00:00") for n in range(10)]
    path = tmp_path / "grow.ndjson"
    path.write_bytes(b"\n".join(lines[:5]) + b"\n" + lines[5][:30])
    first = await import_files([path], processor, sweep=False)
    assert first.imported == 5 and len(first.rejected) == 1
    path.write_bytes(b"\n".join(lines) + b"\n")
    grown = await import_files([path], processor, sweep=False)
    assert grown.stopped is None and grown.imported == 4  # the rejected line waits for --restart
    again = await import_files([path], processor, sweep=False, restart=True)
    assert again.imported == 1 and again.rejected == []
    async with engine.connect() as conn:
        events = (await conn.execute(select(func.sum(activity_daily.c.events)))).scalar()
    assert events == 10


async def test_a_later_file_scores_again_only_the_accounts_it_touches_as_one_import_would(
    engine_factory: EngineFactory,
    processor_factory: ProcessorFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A later import whose events fall on days already scored scored every account
    again from its first day (a three-line file cost a whole import's days). Only the
    accounts it touches are scored again, from their day on; every history and band
    change log ends as one import of both files leaves it (the first day scored again
    was compared with the newest day's score, logging a band change that never was,
    and kept the old one), also when the later import stops after some of the days it
    opened again are scored, and is run again."""
    whole, churn = tmp_path / "whole.ndjson", tmp_path / "churn.csv"
    write_history(whole, churn, accounts=6, days=40, end=date(2026, 11, 1))
    touched = "hist-0001"
    later = tmp_path / "later.ndjson"
    days = (2, 5, 9)
    later.write_bytes(
        b"\n".join(
            _usage_line(f"late-{day}", f"2026-10-{day:02d}T10:00:00+00:00", touched) for day in days
        )
        + b"\n"
    )
    metrics = ScoringMetrics(CollectorRegistry())

    async def run(engine: AsyncEngine, files: list[Path], kind: Any = ScoringProcessor) -> None:
        def processor(sink: object) -> ScoringProcessor:
            return processor_factory(engine, producer=sink, metrics=metrics, kind=kind)  # type: ignore[arg-type]

        # The later file a line a batch, so that its days are scored between its lines.
        await import_files(files, processor, sweep=False, batch_size=1 if files == [later] else 500)

    async def history(engine: AsyncEngine) -> list[tuple[Any, ...]]:
        h = health_daily.c
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(h.account_id, h.day, h.score, h.band, h.inputs).order_by(h.account_id, h.day)
            )
            b = band_changes.c
            changes = await conn.execute(
                select(b.account_id, b.changed_at, b.from_band, b.to_band).order_by(
                    b.account_id, b.changed_at
                )
            )
            return [tuple(row) for row in rows] + [("band change", *c) for c in changes]

    steps: list[tuple[str, date]] = []

    def counted(measures: Measures, *args: Any, **how: Any) -> ScoredAccount:
        steps.append((measures.account_id, measures.as_of))
        return score_account(measures, *args, **how)

    at_once, in_turn, stopped = [
        await engine_factory(f"sqlite+aiosqlite:///{tmp_path / name}.db")
        for name in ("at_once", "in_turn", "stopped")
    ]
    await run(at_once, [whole, later])
    await run(in_turn, [whole])
    before = await history(in_turn)
    monkeypatch.setattr(processor_module, "score_account", counted)
    await run(in_turn, [later])
    monkeypatch.undo()
    once = await history(at_once)
    assert before != once and len({row[0] for row in once}) == 6 + 1  # "band change"
    assert await history(in_turn) == once
    scored = sorted({day for _, day in steps})
    assert {account for account, _ in steps} == {touched}
    assert scored[0] == date(2026, 10, days[0]) and len(steps) == len(scored)
    # Stopped in the batch of the last line: days 2–4 are scored again by then.
    await run(stopped, [whole])
    with pytest.raises(RuntimeError, match="killed"):
        await run(stopped, [later], crashing_in_batch(3))
    await run(stopped, [later])
    assert await history(stopped) == once


async def test_an_import_on_days_the_live_service_scored_leaves_the_others_be(
    db: tuple[AsyncEngine, ProcessorFor],
    embedded_settings: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first import on a database the live service had scored rescored every
    account with history from its first day and dropped its later rows; and an account
    whose days an import opened again was left with a card days old, the import's
    closing sweep taking it for swept today (found in review). Only the file's account
    is scored again, through the live service's newest day, then brought up to today."""
    from shared.bus.base import Record as BusRecord
    from shared.contracts.events import EVENT_ADAPTER
    from shared.contracts.wire import encode_event

    engine, processor = db
    live = processor(None)
    today = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    for back in range(10, 0, -1):  # a batch a day, as the stream scores them
        batch = []
        for account in ("live-a", "live-b"):
            raw = orjson.loads(
                _usage_line(
                    f"{account}-{back}", (today - timedelta(days=back)).isoformat(), account
                )
            )
            event = EVENT_ADAPTER.validate_python(raw)
            topic = embedded_settings.topic("usage")
            batch.append(BusRecord(topic, 0, len(batch) + 2 * back, b"k", encode_event(event)))
        await live.handle(batch)
    from services.scoring.sweep import QuietAccountSweep
    from shared.bus.base import DiscardingProducer

    assert await QuietAccountSweep(engine, DiscardingProducer(), live).run_once() == 2
    before = await _history_rows(engine)
    later = tmp_path / "later.ndjson"
    at = (today - timedelta(days=5, hours=3)).isoformat()
    later.write_bytes(_usage_line("late-a", at, "live-a") + b"\n")
    steps: list[tuple[str, date]] = []

    def counted(measures: Measures, *args: Any, **how: Any) -> ScoredAccount:
        steps.append((measures.account_id, measures.as_of))
        return score_account(measures, *args, **how)

    monkeypatch.setattr(processor_module, "score_account", counted)
    report = await import_files([later], processor, sweep=True)
    past = {account for account, day in steps if day < today.date()}  # not the sweep's
    assert report.imported == 1 and past == {"live-a"}
    after = await _history_rows(engine)
    assert [r for r in after if r[0] == "live-b"] == [r for r in before if r[0] == "live-b"]
    async with engine.connect() as conn:
        swept = (
            await conn.execute(
                select(account_health.c.swept_on).where(account_health.c.account_id == "live-a")
            )
        ).scalar_one()
    now = datetime.now(UTC).date()
    assert swept == now and [r for r in after if r[0] == "live-a"][-1][1] == now  # up to today


async def test_an_account_an_import_opens_again_is_brought_up_to_today(
    db: tuple[AsyncEngine, ProcessorFor], tmp_path: Path
) -> None:
    """An import's closing sweep had skipped an account whose days it opened again, as
    swept today already: its rows after the file's days were dropped and its card left
    as of the history's last day (found in review)."""
    engine, processor = db
    today = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    first, later = tmp_path / "first.ndjson", tmp_path / "later.ndjson"
    lines = [
        _usage_line(f"{account}-{back}", (today - timedelta(days=back)).isoformat(), account)
        for back in range(30, 9, -1)
        for account in ("acme", "beta")
    ]
    first.write_bytes(b"\n".join(lines) + b"\n")
    assert (await import_files([first], processor, sweep=True)).swept == 2
    late = (today - timedelta(days=15, hours=2)).isoformat()
    later.write_bytes(_usage_line("late", late, "acme") + b"\n")
    assert (await import_files([later], processor, sweep=True)).swept == 1
    rows = await _history_rows(engine)
    assert {r[0]: r[1] for r in rows} == {"acme": today.date(), "beta": today.date()}


async def test_a_later_tickets_file_scores_again_the_days_its_tickets_were_open(
    db: tuple[AsyncEngine, ProcessorFor], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A day's backlog counts each ticket from its ``created_at``, as its newest line
    has it. A later tickets file scored its accounts again from each line's own time
    only (a helpdesk export's line is the ticket's last update), and a ticket it moved
    to another account left the account it left as scored, still counting it (found in
    review). Both accounts' days are scored again from the ticket's opening."""
    engine, processor = db
    usage = tmp_path / "usage.ndjson"
    usage.write_bytes(
        b"\n".join(
            _usage_line(f"{account}-{day}", f"2026-10-{day:02d}T10:00:00+00:00", account)
            for day in range(1, 31)
            for account in ("old", "new")
        )
        + b"\n"
    )
    await import_files([usage], processor, sweep=False)

    def ticket(path: Path, account_id: str, at: str) -> Path:
        line = {"kind": "ticket", "event_id": f"T1@{at}", "account_id": account_id,
                "ticket_id": "T1", "status": "open", "created_at": "2026-10-05T09:00:00+00:00",
                "occurred_at": at}  # fmt: skip
        path.write_bytes(orjson.dumps(line) + b"\n")
        return path

    async def open_days(account_id: str) -> list[int]:
        return [
            day.day
            for account, day, _, _, inputs in await _history_rows(engine)
            if account == account_id and inputs["open_tickets"]
        ]

    await import_files(
        [ticket(tmp_path / "a.ndjson", "old", "2026-10-20T09:00:00+00:00")], processor, sweep=False
    )
    assert await open_days("old") == list(range(5, 31))
    assert await open_days("new") == []
    moved = ticket(tmp_path / "b.ndjson", "new", "2026-10-25T09:00:00+00:00")
    await import_files([moved], processor, sweep=False)
    assert await open_days("old") == []
    assert await open_days("new") == list(range(5, 31))
    # An update of a ticket known as it is (same account, same opening) changes the
    # days from its own time only: not weeks of days again for every update.
    steps: list[date] = []

    def counted(measures: Measures, *args: Any, **how: Any) -> ScoredAccount:
        steps.append(measures.as_of)
        return score_account(measures, *args, **how)

    monkeypatch.setattr(processor_module, "score_account", counted)
    update = ticket(tmp_path / "c.ndjson", "new", "2026-10-28T09:00:00+00:00")
    await import_files([update], processor, sweep=False)
    assert steps and min(steps) == date(2026, 10, 28)


async def test_a_later_import_closes_an_alert_an_earlier_one_opened_that_ended(
    db: tuple[AsyncEngine, ProcessorFor], tmp_path: Path
) -> None:
    """The first import opens what is true at its end; a later one whose events end it
    (use on the days it saw none, a churned account) dropped its resolution, and the
    alert stayed open for good (found from outside: six "health is red" alerts on
    churned accounts). The ended alerts go out too, marked imported (the alerts service
    closes the ones it holds and stores no other)."""
    from shared.bus.base import DiscardingProducer, OutMessage
    from shared.contracts.wire import decode_alert
    from shared.storage.db import insert_ignore
    from shared.storage.tables import alerts

    engine, processor = db

    class Bus(DiscardingProducer):
        """The alerts service, as far as the import reads it: the alerts it holds open."""

        def __init__(self) -> None:
            self.alerts: list[Any] = []

        async def send_many(self, messages: Sequence[OutMessage], conn: Any = None) -> None:
            self.alerts += [decode_alert(m.value) for m in messages]
            opened = [
                {
                    "alert_id": a.alert_id,
                    "account_id": a.account_id,
                    "rule": a.rule,
                    "severity": a.severity.value,
                    "status": "firing",
                    "title": a.title,
                    "payload": a.model_dump(mode="json"),
                    "fired_at": a.fired_at,
                    "stored_at": a.fired_at,
                }
                for a in self.alerts
                if a.status == "firing"
            ]
            if opened:
                async with engine.begin() as db_conn:
                    await db_conn.execute(
                        insert_ignore(db_conn, alerts).on_conflict_do_nothing(), opened
                    )

    def days(account: str, first: int, last: int) -> list[bytes]:
        start = datetime(2026, 9, 1, 10, tzinfo=UTC)
        return [
            _usage_line(f"{account}-{n}", (start + timedelta(days=n)).isoformat(), account)
            for n in range(first, last)
        ]

    usage, later = tmp_path / "usage.ndjson", tmp_path / "later.ndjson"
    usage.write_bytes(b"\n".join(sorted(days("acme", 0, 20) + days("other", 0, 40))) + b"\n")
    later.write_bytes(b"\n".join(days("acme", 20, 40)) + b"\n")
    first, second = Bus(), Bus()
    await import_files([usage], processor, sweep=False, alerts_to=first)
    silent = [a for a in first.alerts if a.account_id == "acme" and a.status == "firing"]
    assert silent and all(a.imported for a in silent), first.alerts  # nobody used it 20 days
    await import_files([later], processor, sweep=False, alerts_to=second)
    ended = {a.alert_id for a in second.alerts if a.status == "resolved" and a.imported}
    assert {a.alert_id for a in silent} <= ended, second.alerts
    # Only those: a past episode the alerts service never held is not sent to it.
    assert ended <= {a.alert_id for a in first.alerts if a.status == "firing"}


async def test_an_nps_export_numbered_like_the_usage_export_is_no_copy_of_it(
    db: tuple[AsyncEngine, ProcessorFor], tmp_path: Path
) -> None:
    """Ids are their kind's, streamed: an NPS export whose first records share account
    and id with a usage export imported before was refused as its copy (found in review)."""
    _, processor = db

    def line(kind: str, i: int) -> bytes:
        fields = {"event": "login"} if kind == "usage" else {"score": 9}
        return orjson.dumps(
            {"kind": kind, "event_id": str(1000 + i), "account_id": "acme", "user_id": "u",
             "occurred_at": f"2026-11-{1 + i % 20:02d}T10:00:00+00:00", **fields}
        )  # fmt: skip

    usage, nps = tmp_path / "usage.ndjson", tmp_path / "nps.ndjson"
    usage.write_bytes(b"\n".join(line("usage", i) for i in range(20)) + b"\n")
    nps.write_bytes(b"\n".join(line("nps", i) for i in range(20)) + b"\n")
    assert (await import_files([usage], processor, sweep=False)).imported == 20
    assert (await import_files([nps], processor, sweep=False)).imported == 20
