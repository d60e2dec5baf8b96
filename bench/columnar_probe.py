"""A feasibility probe for issue 12's vectorised scorer: the usage measures of many
accounts worked out at once, from the states held as columns, beside the per-account
functions the scoring step calls today, on the same states; and the floor of writing a
day's score rows, one ``COPY`` against the service's batched upserts.

Not the engine: it answers two questions the engine's design depends on, with numbers.

1. **Measures.** ``name_use_of`` and ``activity_of`` (services/scoring/measures.py)
   walk each account's days in Python, some 55 µs an account, and decoding the state
   costs some 36 µs more. Held as columns (account, day, name, count; account, day,
   user), the same sums are a few NumPy passes over every account together. The probe
   decodes the sweep bench template's states, turns them into columns (untimed: the
   stored format would be columns already), times both ways as of the day after the
   workload's last, and checks that they agree on every account and name.
2. **Writes.** Each score writes its ~100 inputs as JSON to ``health_daily``. The probe
   copies the template's stored daily rows, ``--rows`` of them, into a scratch table
   of the same columns with asyncpg's ``COPY``, and with the ``executemany`` upsert
   the service runs (``shared.storage.db.upsert``), and times both.

Needs the sweep bench's template (``python bench/sweep_bench.py --database-url …``
builds it; ``--total`` sets how many accounts it holds)::

    python bench/columnar_probe.py --database-url postgresql+asyncpg://…/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import numpy as np
import numpy.typing as npt
import orjson
import sweep_bench
from lib.measure import result_header
from lib.services import database_url, plain_dsn
from sqlalchemy import MetaData, select, text

from services.cli import SERVICE_COLLECTIONS
from services.scoring import usage
from services.scoring.measures import NAME_WINDOW_DAYS, activity_of, name_use_of
from services.scoring.sweep import CHUNK
from services.scoring.usage import AccountUsage
from shared.storage.db import create_engine, upsert
from shared.storage.tables import health_daily

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]

# Days back (0 = the day itself) → period, as services/scoring/measures.py counts them:
# the four weeks (0-3, newest first), the 28 days before them (4), the rest of the 90 (5).
PERIOD = np.array([back // 7 for back in range(28)] + [4] * 28 + [5] * 34, dtype=np.int64)
PERIODS = 6


@dataclass
class Columns:
    """Every account's usage state as columns: a row per account and day, per account,
    day and name, per account, day and user, and per user. Names and users are numbered
    across all accounts (an account's own index + its offset)."""

    accounts: int
    names: int
    users: int
    day_account: Ints
    day_ordinal: Ints
    day_events: Ints
    day_seconds: Floats
    name_ordinal: Ints
    name_index: Ints
    name_count: Ints
    user_ordinal: Ints
    user_index: Ints
    first_active: Ints  # by user: the first active day
    user_account: Ints  # by user: its account


def columns_of(states: list[AccountUsage]) -> Columns:
    """The states as columns (a Python pass: the stored format would be these)."""
    days: dict[str, list[Any]] = {"account": [], "ordinal": [], "events": [], "seconds": []}
    names: dict[str, list[int]] = {"ordinal": [], "index": [], "count": []}
    users: dict[str, list[int]] = {"ordinal": [], "index": []}
    first: list[int] = []
    owner: list[int] = []
    name_base = user_base = 0
    for a, state in enumerate(states):
        for ordinal, use in state.days.items():
            days["account"].append(a)
            days["ordinal"].append(ordinal)
            days["events"].append(use.events)
            days["seconds"].append(use.seconds)
            for index, count in use.names.items():
                names["ordinal"].append(ordinal)
                names["index"].append(name_base + index)
                names["count"].append(count)
            for user in use.users:
                users["ordinal"].append(ordinal)
                users["index"].append(user_base + user)
        first.extend(state.first_active)
        owner.extend([a] * len(state.users))
        name_base += len(state.names)
        user_base += len(state.users)

    def ints(values: list[int]) -> Ints:
        return np.array(values, dtype=np.int64)

    return Columns(
        accounts=len(states),
        names=name_base,
        users=user_base,
        day_account=ints(days["account"]),
        day_ordinal=ints(days["ordinal"]),
        day_events=ints(days["events"]),
        day_seconds=np.array(days["seconds"], dtype=np.float64),
        name_ordinal=ints(names["ordinal"]),
        name_index=ints(names["index"]),
        name_count=ints(names["count"]),
        user_ordinal=ints(users["ordinal"]),
        user_index=ints(users["index"]),
        first_active=ints(first),
        user_account=ints(owner),
    )


@dataclass
class Measured:
    sums: Ints  # global name × period → count
    newest: Ints  # global name → newest ordinal with use within the 90 days (0: none)
    active_users: dict[int, Ints]  # window days → per account
    users_ever: Ints
    events_7d: Ints
    seconds_7d: Floats
    active_days: dict[int, Ints]


def measure(c: Columns, day: int) -> Measured:
    """Every account's usage measures as of ordinal ``day``, in NumPy passes."""
    back = day - c.name_ordinal
    inside = (back >= 0) & (back < NAME_WINDOW_DAYS)
    keys = c.name_index[inside] * PERIODS + PERIOD[back[inside]]
    sums = np.bincount(keys, weights=c.name_count[inside], minlength=c.names * PERIODS)
    newest = np.zeros(c.names, dtype=np.int64)
    np.maximum.at(newest, c.name_index[inside], c.name_ordinal[inside])
    # A user is active within the last n days when their newest active day up to
    # ``day`` is; one pass for the three windows (three np.unique sorts took 13×).
    until = c.user_ordinal <= day
    last = np.zeros(c.users, dtype=np.int64)
    np.maximum.at(last, c.user_index[until], c.user_ordinal[until])
    active_users = {
        days: np.bincount(c.user_account[day - last < days], minlength=c.accounts)
        for days in (1, 7, 30)
    }
    users_ever = np.bincount(c.user_account[c.first_active <= day], minlength=c.accounts)
    day_back = day - c.day_ordinal
    active_days = {}
    for days in (7, 28):
        within = (day_back >= 0) & (day_back < days)
        active_days[days] = np.bincount(c.day_account[within], minlength=c.accounts)
    week = (day_back >= 0) & (day_back < 7)
    events_7d = np.bincount(c.day_account[week], weights=c.day_events[week], minlength=c.accounts)
    seconds = np.bincount(c.day_account[week], weights=c.day_seconds[week], minlength=c.accounts)
    seconds_7d: Floats = seconds.astype(np.float64)
    return Measured(
        sums.astype(np.int64),
        newest,
        active_users,
        users_ever,
        events_7d.astype(np.int64),
        seconds_7d,
        active_days,
    )


def disagreements(states: list[AccountUsage], c: Columns, m: Measured, day: date) -> dict[str, int]:
    """Accounts whose columnar measures differ from the per-account functions'."""
    out = {"names": 0, "activity": 0, "minutes": 0}
    name_base = 0
    for a, state in enumerate(states):
        uses = name_use_of(state, day)
        for index, key in enumerate(state.names):
            g = name_base + index
            p = [int(x) for x in m.sums[g * PERIODS : g * PERIODS + PERIODS]]
            days_28 = p[0] + p[1] + p[2] + p[3]
            got = (p[0], days_28, p[4], days_28 + p[4] + p[5], (p[3], p[2], p[1], p[0]))
            newest = int(m.newest[g])
            use = uses.get(usage.name_key(key))
            if (use is None) != (newest == 0) or (
                use is not None
                and (tuple(use[:5]) != got or use.last_day != date.fromordinal(newest))
            ):
                out["names"] += 1
                break
        name_base += len(state.names)
        activity = activity_of(state, day)
        mine = {
            "active_users_7d": int(m.active_users[7][a]),
            "active_users_30d": int(m.active_users[30][a]),
            "active_users_today": int(m.active_users[1][a]),
            "users_ever_active": int(m.users_ever[a]),
            "active_days_7d": int(m.active_days[7][a]),
            "active_days_28d": int(m.active_days[28][a]),
            "events_7d": int(m.events_7d[a]),
        }
        if any(activity[k] != v for k, v in mine.items()):  # type: ignore[literal-required]
            out["activity"] += 1
        # Float sums in another order: the rounded minutes may differ in the last digit.
        if activity["usage_minutes_7d"] != round(float(m.seconds_7d[a]) / 60, 2):
            out["minutes"] += 1
    return out


def per_account(states: list[AccountUsage], day: date) -> float:
    started = time.perf_counter()
    for state in states:
        activity_of(state, day)
        name_use_of(state, day)
    return time.perf_counter() - started


async def load_states(server: str) -> list[bytes]:
    conn = await asyncpg.connect(plain_dsn(database_url(server, sweep_bench.TEMPLATE)))
    try:
        return [r["state"] for r in await conn.fetch("SELECT state FROM account_usage")]
    finally:
        await conn.close()


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
                dict(r._mapping) for r in await conn.execute(select(health_daily).limit(rows))
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
        return out
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True, help="the server's maintenance db")
    parser.add_argument("--rows", type=int, default=100_000, help="daily rows written")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the best is kept")
    parser.add_argument("--out", type=Path, help="JSON results")
    args = parser.parse_args()
    gc.set_threshold(*SERVICE_COLLECTIONS)  # as a scoring process runs
    blobs = asyncio.run(load_states(args.database_url))
    started = time.perf_counter()
    states = [usage.decode(blob) for blob in blobs]
    decode_s = time.perf_counter() - started
    day = (sweep_bench.NOW + timedelta(days=1)).date()
    c = columns_of(states)
    scalar = min(per_account(states, day) for _ in range(args.repeat))
    columnar = float("inf")
    for _ in range(args.repeat):
        started = time.perf_counter()
        m = measure(c, day.toordinal())
        columnar = min(columnar, time.perf_counter() - started)
    n = len(states)
    result: dict[str, Any] = {
        **result_header("columnar_probe", __file__, sys.argv[1:]),
        "accounts": n,
        "rows": {
            "days": len(c.day_account),
            "names": len(c.name_index),
            "users": len(c.user_index),
        },
        "decode_us_per_account": round(decode_s / n * 1e6, 1),
        "per_account_us": round(scalar / n * 1e6, 1),
        "columnar_us_per_account": round(columnar / n * 1e6, 2),
        "disagreements": disagreements(states, c, m, day),
        "writes": asyncio.run(writes(args.database_url, args.rows)),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
