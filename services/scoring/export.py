"""Data export: accounts, current scores and daily history as CSV or Parquet, streamed.

``GET /v1/export/{accounts|scores|history}?format=csv|parquet`` and ``healthwatch
export`` share ``export_chunks``: rows are read from the database a partition at a time
(``conn.stream``) and written out as they come, so a large portfolio is never held
whole in memory. A CSM key exports its own portfolio, a lead's or an admin's every
account (as ``queries.visible_account`` decides for one).
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Annotated, Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from sqlalchemy import Select, and_, func, select, union_all
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scoring.api import Context
from services.scoring.queries import Day, day_range
from shared.clock import utcnow
from shared.openapi import error_responses
from shared.storage.tables import account_health, accounts, health_daily
from shared.web import CSV_BOM, ReadKey, spreadsheet_cell

Kind = Literal["accounts", "scores", "history"]
Format = Literal["csv", "parquet"]
KINDS: tuple[str, ...] = ("accounts", "scores", "history")
FORMATS: tuple[str, ...] = ("csv", "parquet")
# Rows fetched and written at a time: one Parquet row group, a few hundred KB of CSV.
PARTITION_ROWS = 5000
# History without a range: the last 90 days, as GET /v1/accounts/{id}/health/history.
DEFAULT_HISTORY_DAYS = 90
MEDIA = {"csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet"}

# The facts kept in the JSON column that the export names as columns of their own.
FACT_COLUMNS = (
    "plan",
    "arr",
    "mrr",
    "currency",
    "industry",
    "region",
    "lifecycle_stage",
    "contract_start",
    "contract_end",
    "go_live",
    "timezone",
)
# Facts that are days: typed in Parquet (they were text), as README's dependency list
# promises and BI tools read them.
DAY_FACTS = ("contract_start", "contract_end", "go_live")
STRING, INT, FLOAT = pa.string(), pa.int64(), pa.float64()
DAY, MOMENT = pa.date32(), pa.timestamp("us", tz="UTC")
SCHEMAS: dict[str, pa.Schema] = {
    "accounts": pa.schema(
        [("account_id", STRING), ("name", STRING), ("tier", STRING), ("owner_email", STRING)]
        + [("seats_purchased", INT)]
        + [
            (c, FLOAT if c in ("arr", "mrr") else DAY if c in DAY_FACTS else STRING)
            for c in FACT_COLUMNS
        ]
        + [("updated_at", MOMENT)]
    ),
    "scores": pa.schema(
        [
            ("account_id", STRING),
            ("name", STRING),
            ("owner_email", STRING),
            ("day", DAY),
            ("as_of", MOMENT),
            ("score", INT),
            ("band", STRING),
            ("danger_level", STRING),
            ("active_users_7d", INT),
            ("active_users_30d", INT),
            ("events_7d", INT),
            ("open_tickets", INT),
            ("nps_latest", INT),
            ("last_seen_at", MOMENT),
        ]
    ),
    "history": pa.schema(
        [
            ("account_id", STRING),
            ("day", DAY),
            ("score", INT),
            ("band", STRING),
            ("recorded", pa.bool_()),
        ]
    ),
}


@dataclass(frozen=True)
class Ask:
    """What to export: ``kind``, for whom (``portfolio_of``: a CSM's email, None for
    everyone) and, for history, which days."""

    kind: str
    portfolio_of: str | None = None
    start: date | None = None
    end: date | None = None


def _query(ask: Ask) -> Select[Any]:
    a, h = accounts.c, account_health.c
    if ask.kind == "accounts":
        q = select(
            a.account_id, a.name, a.tier, a.owner_email, a.seats_purchased, a.facts, a.updated_at
        ).order_by(a.account_id)
    elif ask.kind == "scores":
        # The day the figures are as of (a quiet account is scored again each day), as the
        # health API's ``day``: ``as_of`` alone, its newest event's time, read as the
        # figures' date (found from outside).
        d = health_daily.c
        day = select(func.max(d.day)).where(d.account_id == h.account_id).scalar_subquery()
        q = (
            select(
                h.account_id,
                a.name,
                a.owner_email,
                day.label("day"),
                h.as_of,
                h.score,
                h.band,
                h.danger_level,
                h.active_users_7d,
                h.active_users_30d,
                h.events_7d,
                h.open_tickets,
                h.nps_latest,
                h.last_seen_at,
            )
            .select_from(account_health.outerjoin(accounts, a.account_id == h.account_id))
            .order_by(h.account_id)
        )
    else:
        q = _history_rows(ask)
    return q if ask.portfolio_of is None else q.where(a.owner_email == ask.portfolio_of)


def _history_rows(ask: Ask) -> Select[Any]:
    """The stored days from ``start`` to ``end`` and, per account, the newest day before
    ``start`` (the score ``start`` carries), by account and day. A day is stored only
    when the score or its inputs changed (``GET …/health/history``)."""
    d, e, h = health_daily.c, health_daily.alias("e").c, account_health.c
    seed_day = (
        select(func.max(e.day))
        .where(e.account_id == h.account_id, e.day < ask.start)
        .scalar_subquery()
    )
    seeds = select(h.account_id, seed_day.label("day")).subquery()
    days = union_all(
        select(d.account_id, d.day, d.score, d.band).join(
            seeds, and_(seeds.c.account_id == d.account_id, seeds.c.day == d.day)
        ),
        select(d.account_id, d.day, d.score, d.band).where(
            and_(d.day >= ask.start, d.day <= ask.end)
        ),
    ).subquery()
    a, r = accounts.c, days.c
    return (
        select(r.account_id, r.day, r.score, r.band)
        .select_from(days.outerjoin(accounts, a.account_id == r.account_id))
        .order_by(r.account_id, r.day)
    )


class _EveryDay:
    """History rows (by account and day) as one record per account and day from
    ``start`` to ``end``: a day without a stored row carries the score before it,
    ``recorded`` false, as the account's history does. The export had left those days
    out, 55 rows for 33 accounts and 7 days (found from outside). An account's days
    begin with its first score."""

    def __init__(self, start: date, end: date):
        self.start, self.end = start, end
        self.account: str | None = None
        self.last: Any = None
        self.next_day = start

    def take(self, rows: Iterable[Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for row in rows:
            if row.account_id != self.account:
                out += self.finish()
                self.account, self.last, self.next_day = row.account_id, None, self.start
            if row.day >= self.start:
                out += self._carried(row.day - timedelta(days=1))
                out.append(_day_record(row, row.day, recorded=True))
                self.next_day = row.day + timedelta(days=1)
            self.last = row
        return out

    def finish(self) -> list[dict[str, Any]]:
        """The last account's days after its newest stored one, to ``end``."""
        return self._carried(self.end)

    def _carried(self, through: date) -> list[dict[str, Any]]:
        if self.last is None:
            return []
        days = (
            self.next_day + timedelta(days=n) for n in range((through - self.next_day).days + 1)
        )
        out = [_day_record(self.last, day, recorded=False) for day in days]
        self.next_day = max(self.next_day, through + timedelta(days=1))
        return out


def _day_record(row: Any, day: date, *, recorded: bool) -> dict[str, Any]:
    return {
        "account_id": row.account_id,
        "day": day,
        "score": row.score,
        "band": row.band,
        "recorded": recorded,
    }


def _record(kind: str, row: Any) -> dict[str, Any]:
    values = dict(row._mapping)
    if kind == "accounts":
        # The stored facts: {"fields": {name: value}, "stamps": {name: [time, event]}}.
        facts = (values.pop("facts") or {}).get("fields", {})
        values.update({c: facts.get(c) for c in FACT_COLUMNS})
        for c in ("arr", "mrr"):
            values[c] = float(values[c]) if values[c] is not None else None
        for c in DAY_FACTS:
            values[c] = _day(values[c])
    return values


def _day(value: Any) -> date | None:
    """A stored day (ISO text; facts are checked as days where they enter)."""
    if isinstance(value, str):
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            return None
    return value if isinstance(value, date) else None


class _Drain(io.RawIOBase):
    """A write-only file whose bytes are taken out as they come (Parquet's sink)."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.written = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.chunks.append(chunk)
        self.written += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self.written

    def take(self) -> bytes:
        out, self.chunks = b"".join(self.chunks), []
        return out


async def export_chunks(
    engine: AsyncEngine, ask: Ask, fmt: str, *, bom: bool = False
) -> AsyncIterator[bytes]:
    """The export as bytes, a partition of rows at a time; ``bom``: a CSV made for a
    person's spreadsheet begins with one (``CSV_BOM``), an API's does not."""
    schema = SCHEMAS[ask.kind]
    async with engine.connect() as conn:
        result = await conn.stream(_query(ask))
        records = _records(ask, result.partitions(PARTITION_ROWS))
        if fmt == "csv":
            async for chunk in _csv(records, schema, CSV_BOM if bom else ""):
                yield chunk
            return
        sink = _Drain()
        with pq.ParquetWriter(sink, schema, compression="zstd") as writer:
            async for part in records:
                writer.write_table(pa.Table.from_pylist(part, schema=schema))
                yield sink.take()
        yield sink.take()


async def _records(ask: Ask, partitions: Any) -> AsyncIterator[list[dict[str, Any]]]:
    """The export's records, a partition of rows at a time."""
    if ask.kind != "history":
        async for rows in partitions:
            yield [_record(ask.kind, r) for r in rows]
        return
    assert ask.start is not None and ask.end is not None  # set by ``download``
    every_day = _EveryDay(ask.start, ask.end)
    async for rows in partitions:
        yield every_day.take(rows)
    yield every_day.finish()


async def _csv(
    records: AsyncIterator[list[dict[str, Any]]], schema: pa.Schema, first: str
) -> AsyncIterator[bytes]:
    buffer = io.StringIO()
    buffer.write(first)
    writer = csv.DictWriter(buffer, fieldnames=schema.names, lineterminator="\n")
    writer.writeheader()
    async for part in records:
        for record in part:
            writer.writerow({k: _cell(v) for k, v in record.items()})
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue().encode()


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, bool):  # as JSON and Parquet readers write them, not "True"
        return "true" if value else "false"
    return "" if value is None else spreadsheet_cell(value)


def history_days(
    start: date | None, end: date | None, today: Callable[[], date]
) -> tuple[date, date]:
    """The history's days (default: the last DEFAULT_HISTORY_DAYS up to today)."""
    return day_range(start, end or today(), DEFAULT_HISTORY_DAYS)


router = APIRouter(prefix="/v1", tags=["export"])


@router.get(
    "/export/{kind}",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The file, streamed",
            "content": {MEDIA["csv"]: {}, MEDIA["parquet"]: {}},
        },
        **error_responses(422),
    },
)
async def export(
    ctx: Context,
    kind: Kind,
    key: ReadKey,
    format: Format = "csv",
    start: Annotated[Day | None, Query(alias="from")] = None,
    end: Annotated[Day | None, Query(alias="to")] = None,
) -> StreamingResponse:
    """Every account the key may see: ``accounts`` (facts), ``scores`` (current health)
    or ``history`` (daily health, ``from``..``to``, default the last 90 days), as CSV or
    Parquet. Streamed: a large portfolio is never held whole."""
    return download(ctx.engine, Ask(kind, key.portfolio_of, start, end), format, ctx.zone)


def download(
    engine: AsyncEngine, ask: Ask, fmt: str, zone: tzinfo, *, bom: bool = False
) -> StreamingResponse:
    """The export as a streamed file download, history's days defaulted in ``zone``
    (the API's route and the dashboard's, /ui/export/{kind}, answer the same)."""
    today = utcnow().astimezone(zone).date()
    first, last = history_days(ask.start, ask.end, lambda: today)
    if first <= today < last:
        last = today  # days to come carry no score yet
    name = f"healthwatch-{ask.kind}.{fmt}"
    return StreamingResponse(
        export_chunks(engine, replace(ask, start=first, end=last), fmt, bom=bom),
        media_type=MEDIA[fmt],
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
