#!/usr/bin/env python3
"""Alert volume: how many alerts the default alerting file opens, on the demo's traffic
and on months of simulated history, with the backtest's per-rule precision.

In process, no Kafka or PostgreSQL: the scoring code over an embedded database, as the
backtest runs it. Deterministic for a seed (the simulators' clocks are fixed).

Run: ``python bench/alerts_volume_bench.py --label after`` (see ``bench/README.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from alerts_volume.demo import run_demo
from alerts_volume.steady import run_steady

from shared.alerting.schema import default_alerting_source, parse_alerting

RESULTS = Path(__file__).resolve().parent / "results"
DEMO_START = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
HISTORY_END = date(2026, 12, 1)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--accounts", type=int, default=200, help="demo accounts (make demo: 200)")
    parser.add_argument("--seed", type=int, default=7, help="demo simulator seed (make demo: 7)")
    parser.add_argument("--live-seconds", type=int, default=240, help="demo live traffic, seconds")
    parser.add_argument("--history-accounts", type=int, default=200)
    parser.add_argument("--history-days", type=int, default=180)
    parser.add_argument("--history-seed", type=int, default=11)
    parser.add_argument("--skip-days", type=int, default=28, help="history days not counted")
    parser.add_argument("--label", default="current", help="names the result file")
    parser.add_argument(
        "--out", type=Path, help="JSON results (default bench/results/alerts_volume-<label>.json)"
    )
    parser.add_argument("--demo-only", action="store_true")
    parser.add_argument(
        "--alerting",
        type=Path,
        help="the alerting file to measure (default: the shipped one); the README's "
        "'before' is the file of commit f3e6266",
    )
    return parser.parse_args(argv)


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    result: dict[str, Any] = {
        "label": args.label,
        "options": {k: str(v) for k, v in vars(args).items()},
    }
    alerting = args.alerting.read_text("utf-8") if args.alerting else default_alerting_source()
    parse_alerting(alerting)  # a bad file fails here, not in the middle of a replay
    demo = await run_demo(args.accounts, args.seed, DEMO_START, args.live_seconds, alerting)
    result["demo"] = demo
    print_demo(result["demo"])
    if not args.demo_only:
        result["history"] = await run_steady(
            args.history_accounts,
            args.history_days,
            args.history_seed,
            HISTORY_END,
            args.skip_days,
            alerting,
        )
        print_history(result["history"])
    result["wall_seconds_total"] = round(time.perf_counter() - started, 1)
    return result


def print_demo(d: dict[str, Any]) -> None:
    print(f"demo, {d['accounts']} accounts: {d['alerts_opened']} alerts opened,", end=" ")
    print(f"{d['open_at_end']} open at the end")
    print(f"  accounts with an open alert {d['accounts_with_open_alert']},", end=" ")
    print(f"with 2+ {d['accounts_with_2_or_more_open']}", end=", ")
    print(f"most on one {d['most_open_on_one_account']}")
    print(f"  opened before the account's first usage: {d['opened_before_first_usage']}")
    print(f"  open per CSM: {d['open_per_csm']}")
    print(f"  open by rule (the lead symptom): {d['open_by_rule']}")
    print(f"  open by severity: {d['open_by_severity']}")


def print_history(h: dict[str, Any]) -> None:
    print(f"history, {h['accounts']} accounts x {h['days']} days", end=" ")
    print(f"(counted from {h['counted_from']}): {h['alerts_opened']} alerts opened,", end=" ")
    print(f"{h['alerts_per_account_week']} per account per week,", end=" ")
    print(f"{h['alerts_per_40_accounts_day']} per day for 40 accounts")
    print(f"  base churn rate {h['base_churn_rate']}")
    print(f"  {'rule':28} {'fired':>6} {'churn 30d':>9} {'90d':>6} {'lift 30d':>8}")
    for rule, q in h["rule_precision"].items():
        c, lift = q["churned_within"], q["lift"]["30"] or 0
        print(f"  {rule:28} {q['fired']:>6} {c['30']:>9.0%} {c['90']:>6.0%} {lift:>8.2f}")


def main(argv: Sequence[str] = sys.argv[1:]) -> None:
    args = parse_args(argv)
    result = asyncio.run(measure(args))
    out = args.out or RESULTS / f"alerts_volume-{args.label}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out} ({result['wall_seconds_total']} s)")


if __name__ == "__main__":
    main()
