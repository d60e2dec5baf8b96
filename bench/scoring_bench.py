#!/usr/bin/env python3
"""Scoring throughput, state size per account and ``healthwatch import`` speed, in one run.

Real services: a Kafka broker and a PostgreSQL server, started by the script with
``devservices`` (or given with ``--bootstrap`` / ``--postgres-url``).

The workload: ``--accounts`` accounts (about ``--users`` users each) with one account
facts event each, then ``--events`` usage events spread over the last ``--days`` days,
in event-time order (as a live stream would have delivered them), each with an event
name, a module and a platform (shapes of ``services/simulate.py``).

1. **Scoring through the full consumer path.** The workload is produced once to the
   event topics with ``shared.bus.kafka.KafkaProducer`` and ``encode_event``. Then, for
   each ``--batches`` value (``scoring_batch_max``; default 20000, SQLite's default,
   and 100000, PostgreSQL's), each side in its own consumer group:

   * **bare**: an ``AIOKafkaConsumer`` subscribed to the same topics, configured like the
     scoring consumer, reads to the end with ``getmany`` and only counts records;
   * **scoring**: ``services.runtime.open_runtime`` + ``run_scoring`` into a fresh,
     migrated PostgreSQL database, timed until the offsets committed with the state say
     every record was consumed (the accounts' usage states' ``events_seen`` checked after).

   Headline: ``scoring_rate / bare_rate`` per configuration (the project's target: >= 0.5);
   with ``--processes``, the same for N ``healthwatch scoring`` processes.
2. **State size per account**: the hot usage value (``account_usage.state``, msgspec +
   zstd: median, mean, p90 bytes, and the accounts' shape) and ``pg_total_relation_size``
   of every per-account table, over the number of accounts: after each scoring run, after
   the PostgreSQL import below, and, with ``--state-accounts`` (e.g. 10000), for larger
   states built with the import path. As the run leaves them, and after ``VACUUM FULL``.
3. **``healthwatch import``**: the same events as an NDJSON file through
   ``services.scoring.backfill.import_files`` (as ``services/cli/history.py`` calls it), into a
   fresh PostgreSQL database and into a fresh SQLite file (target: >= 200k events/s).
4. **The sweep of quiet accounts** (``QuietAccountSweep.run_once``) a day after the
   imported states' last event, on each imported PostgreSQL state (target: 100k accounts
   in <= 10 s).

Run: ``python bench/scoring_bench.py`` (see ``bench/README.md``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

from lib.results import add_output_options, finish
from lib.services import add_service_options, quiet_logging, run_bench, service_options
from scoring.options import Options
from scoring.phases import run
from scoring.plots import plot
from scoring.report import report, warnings_for
from scoring.tables import print_tables


def _int_list(text: str) -> list[int]:
    return [int(x.replace("_", "")) for x in text.split(",") if x.strip()]


def parse_args(argv: Sequence[str]) -> Options:
    parser = argparse.ArgumentParser(
        description="Scoring throughput (consumer path vs bare consumer), state size per "
        "account, and healthwatch import events/s."
    )
    parser.add_argument("--events", type=int, default=100_000, help="usage events")
    parser.add_argument("--accounts", type=int, default=1_000, help="accounts of the main run")
    parser.add_argument("--users", type=float, default=10, help="mean users per account")
    parser.add_argument("--days", type=int, default=20, help="days the events spread over")
    parser.add_argument(
        "--batches",
        type=_int_list,
        default=[20000, 100000],
        help="scoring_batch_max values to measure, comma-separated",
    )
    parser.add_argument(
        "--state-accounts",
        type=_int_list,
        default=[],
        help="account counts of extra state-size runs through the import path, e.g. 10000 "
        "(about 10 min per 10,000 accounts at 100 events each on 2 cores); default none",
    )
    parser.add_argument(
        "--state-events-per-account",
        type=float,
        default=None,
        help="usage events per account in those runs (default: --events / --accounts)",
    )
    parser.add_argument("--partitions", type=int, help="partitions per topic (default: settings)")
    parser.add_argument(
        "--scoring-timeout", type=float, default=300, help="give up a consumer phase after s"
    )
    parser.add_argument(
        "--bare-rounds", type=int, default=3, help="bare reads per batch size (median used)"
    )
    parser.add_argument(
        "--processes",
        type=_int_list,
        default=[],
        help="also score with this many `healthwatch scoring` processes in one group, "
        "comma-separated (e.g. 1,2; a repeated count starts a new group again); default none",
    )
    parser.add_argument("--no-vacuum", action="store_true", help="skip VACUUM FULL sizes")
    parser.add_argument(
        "--no-import",
        action="store_true",
        help="skip the import of the main workload (the Kafka path and --state-accounts only)",
    )
    add_service_options(parser)
    add_output_options(parser, "scoring")
    args = parser.parse_args(argv)
    if args.events < args.days or args.accounts < 1 or args.days < 1 or not args.batches:
        parser.error("need --events >= --days >= 1, --accounts >= 1 and at least one batch")
    if args.bare_rounds < 1:
        parser.error("--bare-rounds must be >= 1")
    return Options(
        events=args.events,
        accounts=args.accounts,
        users=args.users,
        days=args.days,
        batches=args.batches,
        state_accounts=args.state_accounts,
        state_events_per_account=args.state_events_per_account,
        partitions=args.partitions,
        scoring_timeout=args.scoring_timeout,
        bare_rounds=args.bare_rounds,
        processes=args.processes,
        vacuum=not args.no_vacuum,
        imports=not args.no_import,
        **service_options(args),
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    opts = parse_args(argv)
    quiet_logging()
    started = time.monotonic()
    services, results = run_bench(opts, "healthwatch-scoring-bench-", run)
    result = report(opts, results, services, [os.path.relpath(__file__), *argv])
    result["warnings"] = warnings_for(result)
    return finish(result, started, opts, print_tables, plot)


if __name__ == "__main__":
    sys.exit(main())
