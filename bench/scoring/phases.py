"""The scoring bench's phases, in order: the workload into Kafka, a run per batch size, the
service processes, the file import and the larger states.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from lib.baseline import bare_consume
from lib.console import err, make_progress
from lib.measure import PhaseMeter, rate
from lib.services import Services, create_database
from rich.progress import Progress

from scoring.options import Options
from scoring.runs import (
    bench_settings,
    import_run,
    processes_run,
    produce,
    records_in_topics,
    scoring_run,
    sweep_run,
    wait_for_leaders,
)
from scoring.state import state_size, synthetic_values
from scoring.workload import iter_workload, make_accounts, to_messages, write_ndjson
from services.cli.base import BATCH_COLLECTIONS, SERVICE_COLLECTIONS, collecting
from shared.bus.base import OutMessage
from shared.bus.factory import all_topics, event_topics
from shared.bus.kafka import ensure_topics
from shared.config import POSTGRES_BATCH_MAX, Settings


@dataclass
class Phases:
    """What every phase of a run shares: the options, the services, the settings every
    run starts from, the CPU meter and the progress bars."""

    opts: Options
    services: Services
    workdir: Path
    run_id: str
    base: Settings  # Kafka, topics and partitions of the run; each phase adds its database
    meter: PhaseMeter
    progress: Progress
    total: int  # records of the workload (usage events + account facts)
    now: datetime  # the workload's events end here

    async def database(self, name: str) -> str:
        return await create_database(self.services.postgres_url, f"bench_{self.run_id}_{name}")

    async def state(
        self, url: str, source: str, per_account: float, note: str = ""
    ) -> dict[str, Any]:
        if note:
            err.print(f"  measuring state size of {note}")
        return {
            "source": source,
            "events_per_account": round(per_account, 1),
            **await state_size(url, self.opts.vacuum),
        }


def make_workload(
    opts: Options, base: Settings, now: datetime, rng: random.Random
) -> tuple[list[dict[str, Any]], list[OutMessage], dict[str, Any]]:
    """The raw events, their Kafka messages and the workload's description."""
    err.print(
        f"[bold]workload[/]: {opts.accounts:,} accounts, {opts.events:,} usage events over "
        f"{opts.days} days (+{opts.accounts:,} account facts)"
    )
    accounts = make_accounts(opts.accounts, opts.users, rng)
    raw = list(iter_workload(accounts, opts.events, opts.days, now, rng))
    total = len(raw)
    started = time.perf_counter()
    messages = to_messages(raw, base)
    encode_us = (time.perf_counter() - started) / total * 1e6
    return (
        raw,
        messages,
        {
            "accounts": opts.accounts,
            "usage_events": opts.events,
            "account_facts_events": opts.accounts,
            "records_total": total,
            "users_per_account_mean": round(sum(len(a.users) for a in accounts) / len(accounts), 2),
            "days": opts.days,
            "mean_record_bytes": round(sum(len(m.value) for m in messages) / total, 1),
            "validate_encode_us_per_event": round(encode_us, 1),
        },
    )


async def fill_kafka(p: Phases, messages: Sequence[OutMessage]) -> float:
    """Create the topics and produce the workload; the produce rate. Checks that every
    record is in Kafka."""
    bootstrap, topics = p.services.bootstrap, all_topics(p.base)
    await ensure_topics(
        bootstrap,
        topics,
        partitions=p.base.kafka_partitions,
        replication=p.base.kafka_replication,
    )
    await wait_for_leaders(bootstrap, topics)
    produce_s = await produce(p.base, messages, p.progress)
    in_kafka = await records_in_topics(bootstrap, event_topics(p.base), p.base.kafka_partitions)
    if in_kafka != p.total:
        raise RuntimeError(f"{in_kafka} records in Kafka, expected {p.total}")
    return produce_s


async def batch_phase(p: Phases, batch: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The bare consumer and the scoring consumer path at one ``scoring_batch_max``; their
    figures and the state size the scoring run left."""
    opts, tag = p.opts, f"b{batch}"
    # The bare read takes well under a second: several rounds, each with a fresh
    # group, and the median round is the figure the ratio uses.
    rounds = [
        await bare_consume(
            p.services.bootstrap,
            event_topics(p.base),
            p.total,
            batch,
            p.meter,
            p.progress,
            f"bare consumer, {batch} #{i + 1}",
            opts.scoring_timeout,
        )
        for i in range(opts.bare_rounds)
    ]
    ordered = sorted(rounds, key=lambda r: r["events_per_s"] or 0.0)
    bare = {**ordered[len(ordered) // 2], "rounds": rounds}
    url = await p.database(f"scoring_{tag}")
    settings = p.base.model_copy(
        update={
            "database_url": url,
            "consumer_group_scoring": f"bench-{p.run_id}-scoring-{tag}",
            "consumer_group_alerts": f"bench-{p.run_id}-alerts-{tag}",
            "scoring_batch_max": batch,
        }
    )
    with collecting(SERVICE_COLLECTIONS):  # as `healthwatch scoring` runs
        scoring = await scoring_run(
            settings,
            p.total,
            opts.events,
            p.meter,
            p.progress,
            f"scoring, batch {batch}",
            opts.scoring_timeout,
        )
    figures = {
        "scoring_batch_max": batch,
        "bare": bare,
        "scoring": scoring,
        "ratio": (
            round(scoring["events_per_s"] / bare["events_per_s"], 4)
            if scoring["events_per_s"] and bare["events_per_s"]
            else None
        ),
    }
    source = f"Kafka scoring run, scoring_batch_max={batch}"
    state = await p.state(url, source, opts.events / opts.accounts, f"the batch-{batch} database")
    err.print(f"  sweeping the batch-{batch} database's accounts a day later")
    with collecting(SERVICE_COLLECTIONS):
        figures["sweep"] = await sweep_run(url, p.meter, p.now + timedelta(days=1))
    return figures, state


async def processes_phase(p: Phases) -> dict[str, Any]:
    """Scoring in N ``healthwatch scoring`` processes of one group, per ``--processes``.
    A count may repeat (e.g. 2,2,2: three cold starts of a two-member group)."""
    found: dict[str, Any] = {}
    for i, n in enumerate(p.opts.processes):
        url = await p.database(f"procs_{i}_{n}")
        settings = p.base.model_copy(
            update={
                "database_url": url,
                "consumer_group_scoring": f"bench-{p.run_id}-procs-{i}-{n}",
                # The service's default on PostgreSQL: the base settings name no
                # database, and a copy keeps the default they resolved (SQLite's).
                "scoring_batch_max": POSTGRES_BATCH_MAX,
            }
        )
        key = str(n) if p.opts.processes.index(n) == i else f"{n} (start {i + 1})"
        found[key] = await processes_run(
            settings, p.total, n, p.workdir, p.meter, p.progress, p.opts.scoring_timeout
        )
    return found


def with_ratios(found: dict[str, Any], scoring: dict[str, Any]) -> dict[str, Any]:
    """Each process count's rate over the bare consumer's at the same batch size, read in
    the same run (none when that batch size was not measured in process)."""
    for data in found.values():
        bare = scoring.get(f"b{data['scoring_batch_max']}", {}).get("bare", {})
        bare_rate = bare.get("events_per_s")
        data["bare_events_per_s"] = bare_rate
        for key, of in (
            ("ratio", "events_per_s"),
            ("ratio_after_first", "events_per_s_after_first_poll"),
        ):
            data[key] = round(data[of] / bare_rate, 4) if bare_rate and data[of] else None
    return found


async def import_phase(p: Phases, ndjson: Path, results: dict[str, Any]) -> None:
    """``healthwatch import`` of the same events (``ndjson``) into PostgreSQL and SQLite."""
    opts = p.opts
    url = await p.database("import")
    with collecting(BATCH_COLLECTIONS):  # as `healthwatch import` runs
        results["import"]["postgresql"] = await import_run(
            url, ndjson, p.total, opts.events, p.meter, p.progress, "import → PostgreSQL"
        )
    results["state"]["import_pg"] = await p.state(
        url,
        "healthwatch import into PostgreSQL (same events as the Kafka run)",
        opts.events / opts.accounts,
    )
    with collecting(SERVICE_COLLECTIONS):
        results["sweep"]["import_pg"] = await sweep_run(url, p.meter, p.now + timedelta(days=1))
    sqlite_url = f"sqlite+aiosqlite:///{p.workdir / 'import.db'}"
    with collecting(BATCH_COLLECTIONS):
        results["import"]["sqlite"] = await import_run(
            sqlite_url, ndjson, p.total, opts.events, p.meter, p.progress, "import → SQLite"
        )


async def larger_states_phase(p: Phases, now: datetime, results: dict[str, Any]) -> None:
    """State size of ``--state-accounts`` accounts, imported (the fast path there)."""
    opts = p.opts
    per_account = opts.state_events_per_account or opts.events / opts.accounts
    for size in opts.state_accounts:
        events = round(size * per_account)
        state_rng = random.Random(opts.seed * 1000 + size)
        path = p.workdir / f"state-{size}.ndjson"
        workload = iter_workload(
            make_accounts(size, opts.users, state_rng),
            events,
            opts.days,
            now,
            state_rng,
            cohort=opts.accounts,
        )
        lines = write_ndjson(path, workload, p.progress, size + events)
        url = await p.database(f"state_{size}")
        with collecting(BATCH_COLLECTIONS):
            results["import"][f"postgresql_{size}_accounts"] = await import_run(
                url, path, lines, events, p.meter, p.progress, f"import {size:,} accounts"
            )
        path.unlink()
        results["state"][f"import_{size}"] = await p.state(
            url,
            f"healthwatch import into PostgreSQL, {size:,} accounts",
            per_account,
            f"{size:,} accounts",
        )
        err.print(f"  sweeping {size:,} quiet accounts a day later")
        with collecting(SERVICE_COLLECTIONS):
            results["sweep"][f"import_{size}"] = await sweep_run(
                url, p.meter, now + timedelta(days=1)
            )


async def run(opts: Options, workdir: Path, services: Services) -> dict[str, Any]:
    rng = random.Random(opts.seed)
    run_id = uuid.uuid4().hex[:8]
    now = datetime.now(UTC)
    base = bench_settings(kafka_bootstrap=services.bootstrap, topic_prefix=f"bench-{run_id}")
    partitions = opts.partitions or base.kafka_partitions
    base = base.model_copy(update={"kafka_partitions": partitions})
    results: dict[str, Any] = {
        "partitions": partitions,
        "scoring": {},
        "state": {},
        "import": {},
        "sweep": {},
    }
    raw, messages, results["workload"] = make_workload(opts, base, now, rng)
    total = len(raw)
    with make_progress() as progress:
        meter = PhaseMeter(services.broker_pid, services.postgres_pid)
        p = Phases(opts, services, workdir, run_id, base, meter, progress, total, now)
        # 1. The Kafka path: the bare consumer and scoring at each batch size.
        produce_s = await fill_kafka(p, messages)
        results["workload"]["produce_events_per_s"] = rate(total, produce_s)
        del messages
        for batch in opts.batches:
            figures, state = await batch_phase(p, batch)
            results["sweep"][f"kafka_b{batch}"] = figures.pop("sweep")
            results["scoring"][f"b{batch}"] = figures
            results["state"][f"kafka_b{batch}"] = state
        if opts.processes:
            results["processes"] = with_ratios(await processes_phase(p), results["scoring"])
        # 3. Import; 2. larger states through the import path.
        if opts.imports:
            ndjson = workdir / "events.ndjson"
            write_ndjson(ndjson, iter(raw), progress, total)
            del raw
            await import_phase(p, ndjson, results)
            ndjson.unlink()
        await larger_states_phase(p, now, results)
    results["hot_state_synthetic"] = synthetic_values(opts.seed)
    results["checks"] = {"records_in_kafka": total, "records_produced": total}
    return results
