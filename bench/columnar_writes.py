"""The probe's second question (``columnar_probe.py``): what writing a day's score rows
costs, the service's way and by ``COPY``, and what turning columns back into each row's
inputs costs."""

from __future__ import annotations

import time
from typing import Any

import msgspec
import orjson
import sweep_bench
from lib.services import database_url
from sqlalchemy import MetaData, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scoring.sweep import CHUNK
from shared.storage.db import create_engine, upsert
from shared.storage.tables import health_daily

_ABSENT = object()  # a key the row does not have (None is a value: no data)


def output_floor(rows: list[dict[str, Any]]) -> dict[str, float]:
    """µs a row to turn columns back into each row's inputs (a dict per account, keys in
    the stored order) and to encode them as JSON: what remains per account when the
    sums are columnar but the rows stay JSON."""
    keys = list(dict.fromkeys(key for row in rows for key in row))
    columns = {key: [row.get(key, _ABSENT) for row in rows] for key in keys}
    started = time.perf_counter()
    built = [
        {key: value for key, value in zip(keys, values, strict=True) if value is not _ABSENT}
        for values in zip(*columns.values(), strict=True)
    ]
    build = time.perf_counter() - started
    started = time.perf_counter()
    for row in built:
        orjson.dumps(row)
    encode = time.perf_counter() - started
    n = len(rows)
    return {
        "build_dict_us": round(build / n * 1e6, 2),
        "encode_json_us": round(encode / n * 1e6, 2),
        "keys": float(len(keys)),
    }


LIKE = "LIKE health_daily INCLUDING ALL"
COLUMNS = ["account_id", "day", "score", "band", "inputs", "explanation"]
UPSERT = (
    "INSERT INTO probe_daily SELECT * FROM probe_copy ON CONFLICT (account_id, day) DO UPDATE"
    " SET score = excluded.score, band = excluded.band, inputs = excluded.inputs,"
    " explanation = excluded.explanation"
)


def _records(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The rows as COPY takes them, the JSON columns encoded (as the upsert encodes them)."""
    return [
        (
            row["account_id"],
            row["day"],
            row["score"],
            row["band"],
            orjson.dumps(row["inputs"]).decode(),
            orjson.dumps(row["explanation"]).decode(),
        )
        for row in rows
    ]


async def writes(server: str, rows: int) -> dict[str, float]:
    """Writing ``rows`` of the template's daily rows into a scratch table of
    ``health_daily``'s columns, each way into an empty table, then again over the rows
    it wrote (every row a conflict): the service's ``upsert`` (SQLAlchemy, a chunk of
    ``sweep.CHUNK`` rows a statement), and ``COPY`` into a temporary table followed by
    one ``INSERT … ON CONFLICT``. Wall and client CPU seconds."""
    url = database_url(server, sweep_bench.TEMPLATE)
    engine = create_engine(url)
    probe = health_daily.to_metadata(MetaData(), name="probe_daily")
    try:
        async with engine.connect() as conn:
            stored = [
                dict(r._mapping)
                for r in await conn.execute(
                    select(health_daily)
                    .order_by(health_daily.c.account_id, health_daily.c.day)
                    .limit(rows)
                )
            ]
        for row in stored:
            row["account_id"] += "-p"
        out: dict[str, float] = {"rows": float(len(stored))}
        out |= output_floor([row["inputs"] for row in stored])
        for how in ("upsert", "copy"):
            async with engine.begin() as conn:
                await conn.execute(text("DROP TABLE IF EXISTS probe_daily"))
                await conn.execute(
                    text("CREATE TABLE probe_daily (LIKE health_daily INCLUDING ALL)")
                )
            for round_ in ("empty", "again"):
                started, cpu = time.perf_counter(), time.process_time()
                async with engine.begin() as conn:
                    if how == "upsert":
                        for at in range(0, len(stored), CHUNK):
                            await upsert(
                                conn,
                                probe,
                                stored[at : at + CHUNK],
                                keys=["account_id", "day"],
                                update=["score", "band", "inputs", "explanation"],
                            )
                    else:
                        # Through SQLAlchemy first: it opens the transaction.
                        await conn.execute(
                            text("CREATE TEMP TABLE probe_copy (LIKE probe_daily) ON COMMIT DROP")
                        )
                        raw: Any = (await conn.get_raw_connection()).driver_connection
                        await raw.copy_records_to_table(
                            "probe_copy", records=_records(stored), columns=COLUMNS
                        )
                        await raw.execute(UPSERT)
                out[f"{how}_{round_}_s"] = round(time.perf_counter() - started, 2)
                out[f"{how}_{round_}_client_cpu_s"] = round(time.process_time() - cpu, 2)
        async with engine.begin() as conn:
            await conn.execute(text("DROP TABLE probe_daily"))
        out |= await compact(engine, stored)
        return out
    finally:
        await engine.dispose()


COMPACT = (
    "CREATE TABLE probe_compact (account_id text, day date, score integer, band text,"
    " keys integer, inputs bytea, PRIMARY KEY (account_id, day))"
)
COMPACT_UPSERT = (
    "INSERT INTO probe_compact SELECT * FROM probe_compact_copy ON CONFLICT (account_id, day)"
    " DO UPDATE SET score = excluded.score, band = excluded.band, keys = excluded.keys,"
    " inputs = excluded.inputs"
)


async def compact(engine: AsyncEngine, stored: list[dict[str, Any]]) -> dict[str, float]:
    """The same rows as a history in columns would hold them: the inputs' values in the
    order of their names, the names once per set of them (a number a row), no stored
    explanation (worked out when read); by ``COPY`` and one ``INSERT … ON CONFLICT``,
    empty and again. Bytes a row of both forms, wall and client CPU seconds."""
    out: dict[str, float] = {}
    json_bytes = sum(
        len(orjson.dumps(row["inputs"])) + len(orjson.dumps(row["explanation"])) for row in stored
    )
    out["json_bytes_per_row"] = round(json_bytes / len(stored), 1)
    async with engine.begin() as conn:
        await conn.execute(text("DROP TABLE IF EXISTS probe_compact"))
        await conn.execute(text(COMPACT))
    for round_ in ("empty", "again"):
        started, cpu = time.perf_counter(), time.process_time()
        names: dict[tuple[str, ...], int] = {}
        records = [
            (
                row["account_id"],
                row["day"],
                row["score"],
                row["band"],
                names.setdefault(tuple(row["inputs"]), len(names)),
                msgspec.msgpack.encode(list(row["inputs"].values())),
            )
            for row in stored
        ]
        async with engine.begin() as conn:
            await conn.execute(
                text("CREATE TEMP TABLE probe_compact_copy (LIKE probe_compact) ON COMMIT DROP")
            )
            raw: Any = (await conn.get_raw_connection()).driver_connection
            await raw.copy_records_to_table("probe_compact_copy", records=records)
            await raw.execute(COMPACT_UPSERT)
        out[f"compact_{round_}_s"] = round(time.perf_counter() - started, 2)
        out[f"compact_{round_}_client_cpu_s"] = round(time.process_time() - cpu, 2)
    out["compact_bytes_per_row"] = round(sum(len(r[5]) for r in records) / len(records), 1)
    out["compact_name_sets"] = float(len(names))
    async with engine.begin() as conn:
        await conn.execute(text("DROP TABLE probe_compact"))
    return out
