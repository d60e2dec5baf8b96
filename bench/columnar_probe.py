"""A feasibility probe for issue 12's vectorised scorer: parts of the scoring step worked
out for every account at once, from the usage states held as columns, beside the
per-account functions the step calls today, on the same states; and what writing a
day's score rows costs.

Not the engine: it answers the questions the engine's design depends on, with numbers.

1. **Measures.** ``name_use_of`` and ``activity_of`` (services/scoring/measures.py)
   walk each account's days in Python, and decoding the state costs as much again. Held
   as columns (account, day, name, count; account, day, user; user), the same sums are a
   few NumPy passes over every account together. The probe decodes the sweep bench
   template's states, turns them into columns (untimed: a state held in arrays would
   read into them), times both ways as of the day after the workload's last, and counts
   the accounts on which they disagree.
2. **Inputs.** The product-agnostic inputs (``generic_inputs``) from those columns
   (``columnar_inputs.py``): sums, top names and arithmetic in NumPy, then each account's
   dict of inputs in Python, as the stored rows need one; timed beside ``generic_inputs``
   on the measures ``load_measures`` reads, with the default model's settings and with
   declared names and a ratio, and compared in value and key order.
3. **The model** (``columnar_model.py``) beside ``evaluate``, and **the rules**
   (``columnar_rules.py``) beside ``rules.step`` for every (account, rule), on the
   template's states and on states and values mixed to reach every branch.
4. **Writes** (``columnar_writes.py``). The template's ``health_daily`` rows, ``--rows``
   of them, into a scratch table of the same columns: the service's ``upsert``,
   ``COPY`` into a temporary table with one ``INSERT … ON CONFLICT``, and by ``COPY`` as
   a history in columns would hold them.

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
from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import columnar_model
import columnar_rule_passes
import numpy as np
import numpy.typing as npt
import sweep_bench
from columnar_inputs import Facts, build, name_columns, prepare
from columnar_writes import writes
from lib.measure import result_header
from lib.services import database_url, plain_dsn

from services.cli.base import SERVICE_COLLECTIONS
from services.scoring import inputs, usage
from services.scoring.inputs import generic_inputs
from services.scoring.measures import Measures, load_measures
from services.scoring.model.evaluate import evaluate
from services.scoring.model.schema import Behaviour, HealthModel, Ratio, load_default_model
from services.scoring.usage import AccountUsage
from services.scoring.usage_measures import NAME_WINDOW_DAYS, activity_of, name_use_of
from shared.storage.db import create_engine

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


async def load_states(server: str) -> dict[str, bytes]:
    """Every account's stored usage state, by account id."""
    conn = await asyncpg.connect(plain_dsn(database_url(server, sweep_bench.TEMPLATE)))
    try:
        rows = await conn.fetch("SELECT account_id, state FROM account_usage ORDER BY account_id")
        return {r["account_id"]: r["state"] for r in rows}
    finally:
        await conn.close()


async def reference_measures(
    server: str, ids: list[str], states: list[AccountUsage], day: date
) -> list[Measures]:
    """Each account's measures as the step reads them (``load_measures``), in id order."""
    engine = create_engine(database_url(server, sweep_bench.TEMPLATE))
    try:
        async with engine.connect() as conn:
            return await load_measures(
                conn, set(ids), day, usage=dict(zip(ids, states, strict=True))
            )
    finally:
        await engine.dispose()


def inputs_part(
    measures: list[Measures], states: list[AccountUsage], m: Measured, day: date, repeat: int
) -> dict[str, Any]:
    """``generic_inputs`` account by account against ``generic_columns``, µs an account
    (best of ``repeat``), and the accounts whose inputs differ (in value or order), for the
    default model's settings (no declared names) and for declared ones."""
    names = name_columns([state.names for state in states])
    facts = Facts(
        day=day.toordinal(),
        first_seen=np.array(
            [x.first_seen.toordinal() if x.first_seen else 0 for x in measures], dtype=np.int64
        ),
        active_days_28d=m.active_days[28],
        active_users_30d=m.active_users[30],
    )
    out: dict[str, Any] = {}
    declared = Behaviour(
        events=["login", "never-sent"],
        ratios=[Ratio(name="exports_per_view", numerator="export", denominator="view")],
    )
    for label, behaviour in (("default", Behaviour()), ("declared", declared)):
        scalar = arrays = dicts = float("inf")
        for _ in range(repeat):
            started = time.perf_counter()
            expected = [generic_inputs(x, behaviour) for x in measures]
            scalar = min(scalar, time.perf_counter() - started)
            started = time.perf_counter()
            prepared = prepare(m.sums, m.newest, names, facts, behaviour)
            arrays = min(arrays, time.perf_counter() - started)
            started = time.perf_counter()
            got = build(prepared, facts, behaviour)
            dicts = min(dicts, time.perf_counter() - started)
        n = len(measures)
        out[label] = {
            "keys_per_account": round(sum(len(x) for x in expected) / n, 1),
            "per_account_us": round(scalar / n * 1e6, 1),
            "columnar_arrays_us_per_account": round(arrays / n * 1e6, 2),
            "columnar_dicts_us_per_account": round(dicts / n * 1e6, 2),
            "disagreements": sum(
                list(a.items()) != list(b.items()) for a, b in zip(expected, got, strict=True)
            ),
        }
    return out


def model_part(measures: list[Measures], model: HealthModel, repeat: int) -> dict[str, Any]:
    """``evaluate`` account by account against ``columnar_model``: reading the inputs
    into columns, choosing the profiles, the arrays, and the ``Evaluation`` objects,
    each timed (µs an account, best of ``repeat``), and the accounts that differ."""
    raws = [inputs.model_inputs(x, model.depth, model.sla, model.behaviour) for x in measures]
    segments = [inputs.segment_of(x) for x in measures]
    best: dict[str, float] = {}

    def timed(label: str, started: float) -> None:
        best[label] = min(best.get(label, float("inf")), time.perf_counter() - started)

    for _ in range(repeat):
        started = time.perf_counter()
        expected = [evaluate(model, raw, seg) for raw, seg in zip(raws, segments, strict=True)]
        timed("per_account", started)
        started = time.perf_counter()
        raw = columnar_model.columns(model, raws)
        timed("columnar_read_inputs", started)
        started = time.perf_counter()
        chosen = columnar_model.profiles(model, segments)
        timed("columnar_profiles", started)
        started = time.perf_counter()
        parts = columnar_model.evaluate_columns(model, raw, chosen)
        timed("columnar_arrays", started)
        started = time.perf_counter()
        got = columnar_model.build(model, parts, len(raws))
        timed("columnar_objects", started)
    n = len(measures)
    return {
        **{f"{label}_us": round(seconds / n * 1e6, 2) for label, seconds in best.items()},
        "bands": dict(Counter(e.band for e in expected)),
        "capped": sum(e.capped_by is not None for e in expected),
        "profiles": dict(Counter(e.profile or "(none)" for e in expected)),
        "disagreements": sum(a != b for a, b in zip(expected, got, strict=True)),
    }


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
    states = [usage.decode(blob) for blob in blobs.values()]
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
    reference = asyncio.run(reference_measures(args.database_url, list(blobs), states, day))
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
        "inputs": inputs_part(
            reference,
            states,
            m,
            day,
            args.repeat,
        ),
        "model": model_part(reference, load_default_model(), args.repeat),
        "rules": columnar_rule_passes.rules_part(
            args.database_url, reference, load_default_model()
        ),
        "writes": asyncio.run(writes(args.database_url, args.rows)),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
