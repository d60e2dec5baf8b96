#!/usr/bin/env python3
"""Ingest-path throughput: HTTP ``POST /v1/events`` against a bare aiokafka producer.

Both sides write the same events, serialized to the same bytes, to the same real Kafka
broker in the same run, with the same producer settings (acks=all, idempotence on,
linger 5 ms) and the same topic layout (``<prefix>.usage``, same partition count,
keyed by account id). The figure of merit is events/s acknowledged by the broker;
the report is their ratio ``http_rate / bare_rate``.

* **http**: ``healthwatch ingest`` in its own process (stock asyncio loop, uvicorn with
  httptools), driven from this process by ``--concurrency`` httpx clients, each with
  one keep-alive connection, posting pre-serialized batches of ``--batch`` events and
  waiting for each 202 (which the server sends only once Kafka acked the batch).
* **bare**: one ``AIOKafkaProducer`` in this process; ``--concurrency`` tasks each send
  a ``--batch`` of messages and wait for their acks before the next: what the server
  does per request (``KafkaProducer.send_many``), without HTTP and validation. Of the
  two ways of driving the bare producer measured here it is the faster one, so the
  ratio does not flatter the HTTP path.
* **bare, stream** (supplementary): the same producer, ``--concurrency`` coroutines
  calling ``send()`` for every message without waiting, then waiting for all acks.

The database only serves API-key lookups (cached in-process by ``KeyStore``), so a
SQLite file in the temp dir stands in for PostgreSQL.

Run: ``python bench/ingest_bench.py`` (see ``bench/README.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Sequence

from ingest.options import Options
from ingest.phases import run
from ingest.plots import plot
from ingest.report import print_table, report
from lib.console import err
from lib.processes import scratch_dir
from lib.results import add_output_options, finish, output_options
from lib.services import Broker, add_service_options

import devservices


def parse_args(argv: Sequence[str]) -> Options:
    parser = argparse.ArgumentParser(
        description="Ingest throughput: HTTP POST /v1/events vs a bare aiokafka producer."
    )
    parser.add_argument("--events", type=int, default=50_000, help="measured events per side")
    parser.add_argument("--batch", type=int, default=100, help="events per HTTP request")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent HTTP clients")
    parser.add_argument("--warmup", type=int, default=5_000, help="warm-up events per side")
    parser.add_argument(
        "--rounds", type=int, default=3, help="split --events over rounds; report the median"
    )
    parser.add_argument("--accounts", type=int, default=2_000, help="distinct account ids (keys)")
    add_service_options(parser, postgres=False)
    add_output_options(parser, "ingest")
    args = parser.parse_args(argv)
    if args.events < args.rounds or args.batch < 1 or args.concurrency < 1 or args.warmup < 1:
        parser.error("--events >= --rounds, and --batch, --concurrency, --warmup >= 1")
    return Options(
        events=args.events,
        batch=args.batch,
        concurrency=args.concurrency,
        warmup=args.warmup,
        rounds=args.rounds,
        accounts=args.accounts,
        bootstrap=args.bootstrap,
        **output_options(args),
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    opts = parse_args(argv)
    broker: Broker | None = None
    kafka_version = "unknown (external broker)"
    started = time.monotonic()
    with scratch_dir("healthwatch-bench-", opts.keep) as workdir:
        try:
            if opts.bootstrap is None:
                services = devservices
                kafka_version = str(services.KAFKA_VERSION)
                broker = services.KafkaBroker(workdir / "kafka")
                assert broker is not None
                err.print(f"[bold]starting Kafka {kafka_version}[/] in {workdir / 'kafka'}")
                broker.start()
            outcome = asyncio.run(run(opts, workdir, broker, kafka_version))
        finally:
            if broker is not None:
                broker.stop()
    result = report(opts, outcome, [os.path.relpath(__file__), *argv])
    return finish(result, started, opts, print_table, plot)


if __name__ == "__main__":
    sys.exit(main())
