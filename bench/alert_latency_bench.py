#!/usr/bin/env python3
"""End-to-end alert latency: HTTP ingest → Kafka → scoring → Kafka → alerts → Slack.

The production topology, every service in its own process (``healthwatch ingest``,
``healthwatch scoring``, ``healthwatch alerts``, configured by ``HEALTHWATCH_*``
variables), a real Kafka broker and a real PostgreSQL server (started by the script
with ``devservices``, as ``scoring_bench.py`` does), and a Slack
stand-in: a small HTTP server in its own process that notes ``time.time()`` when each
request arrives and which trigger accounts the posted message names.

* **Background load**: ``--background-accounts`` healthy accounts (every user active,
  seats = users) send usage events at ``--rate`` events/s (default 1,000) through
  ``POST /v1/events``, ``--batch`` events per request, paced open-loop (a request is
  due every ``batch / rate`` s, up to ``--concurrency`` in flight).
* **Triggers**: every ``--trigger-interval`` s a fresh trigger account (facts sent and
  scored before the measured phase: 50 seats, its own owner) gets its 8-day history in
  one request: 4 users active on each of the last 8 days, 32 events. That makes its
  active-user share 8 % with 8 days of history, so the only rule of the bench's
  alerting file (``low_activity``: share < 20 % and >= 7 days of history) fires once.
* **Latency** of a trigger: Slack stand-in receipt time minus the time the trigger
  request was answered 202 (headline), and minus the time it was sent (reported too).

Alert grouping is off (``notify.group_wait = "0s"`` in the bench's alerting file). The
Slack pace (``slack_min_interval_s``, default 1 s per destination, and an incoming
webhook is one destination) is set with ``--slack-min-interval`` (bench default 0: see
``bench/README.md``).

Run: ``python bench/alert_latency_bench.py`` (see ``bench/README.md``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from alerts.options import Options
from alerts.phases import run
from alerts.plots import plot
from alerts.report import print_table, report
from alerts.slack import serve_slack_standin
from lib.results import add_output_options, finish
from lib.services import add_service_options, quiet_logging, run_bench, service_options


def parse_args(argv: Sequence[str]) -> Options:
    parser = argparse.ArgumentParser(
        description="End-to-end alert latency, HTTP ingest to a Slack stand-in, under load."
    )
    parser.add_argument("--rate", type=float, default=1000, help="background events/s")
    parser.add_argument("--batch", type=int, default=100, help="background events per request")
    parser.add_argument("--concurrency", type=int, default=8, help="background requests in flight")
    parser.add_argument("--background-accounts", type=int, default=100)
    parser.add_argument("--users", type=int, default=10, help="users per background account")
    parser.add_argument("--duration", type=float, default=120, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=10, help="warm-up seconds (triggers too)")
    parser.add_argument("--trigger-interval", type=float, default=0.3, help="seconds")
    parser.add_argument(
        "--slack-min-interval",
        type=float,
        default=0.0,
        help="HEALTHWATCH_SLACK_MIN_INTERVAL_S for the alerts service (product default 1.0)",
    )
    parser.add_argument(
        "--slack-mode",
        choices=("webhook", "web-api"),
        default="webhook",
        help="incoming webhook (one destination) or Web API with one owner per trigger",
    )
    parser.add_argument("--scoring-batch-max", type=int, help="settings default if not given")
    parser.add_argument(
        "--scoring-processes",
        type=int,
        default=1,
        help="healthwatch scoring processes in one consumer group (they share the partitions)",
    )
    parser.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="HEALTHWATCH_NAME=VALUE",
        help="extra setting for the three services (repeatable), e.g. "
        "HEALTHWATCH_DELIVERY_POLL_INTERVAL_S=0.1",
    )
    parser.add_argument("--drain-timeout", type=float, default=60, help="wait for late alerts")
    add_service_options(parser)
    add_output_options(parser, "alert_latency")
    a = parser.parse_args(argv)
    service_env = {}
    for item in a.service_env:
        name, eq, value = item.partition("=")
        if not eq or not name.startswith("HEALTHWATCH_"):
            parser.error(f"--service-env {item!r}: expected HEALTHWATCH_NAME=VALUE")
        service_env[name] = value
    if a.rate <= 0 or a.batch < 1 or a.trigger_interval <= 0 or a.duration <= 0:
        parser.error("--rate, --batch, --trigger-interval and --duration must be positive")
    if a.scoring_processes < 1:
        parser.error("--scoring-processes must be at least 1")
    return Options(
        rate=a.rate,
        batch=a.batch,
        concurrency=a.concurrency,
        background_accounts=a.background_accounts,
        users=a.users,
        duration=a.duration,
        warmup=a.warmup,
        trigger_interval=a.trigger_interval,
        slack_min_interval=a.slack_min_interval,
        slack_mode=a.slack_mode,
        scoring_batch_max=a.scoring_batch_max,
        scoring_processes=a.scoring_processes,
        service_env=service_env,
        drain_timeout=a.drain_timeout,
        **service_options(a),
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_slack_standin"]:
        serve_slack_standin(int(argv[1]), Path(argv[2]), argv[3])
        return 0
    opts = parse_args(argv)
    quiet_logging()
    started = time.monotonic()
    services, results = run_bench(opts, "healthwatch-alert-latency-", run)
    result = report(opts, results, services, [os.path.relpath(__file__), *argv])
    return finish(result, started, opts, print_table, plot)


if __name__ == "__main__":
    sys.exit(main())
