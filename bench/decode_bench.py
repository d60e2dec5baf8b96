"""Decoding one usage record: pydantic alone against the fast path (shared/contracts/fastwire.py).

    python bench/decode_bench.py            # ~10 s on 2 cores
    python bench/decode_bench.py --rounds 200

Times ``decode_event(record, "usage")`` on the same records both ways, in the same process,
and prints µs per record. Each figure is the best of ``--rounds`` rounds of 2,000 calls:
on a shared machine the best round is the one least disturbed by other processes.
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

from shared.contracts import fastwire
from shared.contracts.events import EVENT_ADAPTER
from shared.contracts.wire import decode_event, encode_event

STAMP = datetime(2026, 12, 3, 8, 15, 43, 4211, tzinfo=UTC)
BASE = {
    "kind": "usage",
    "event_id": "3f1c2a9e-7b7e-4c1e-9a51-2f0d5c4b8e11",
    "account_id": "acct-0042",
    "user_id": "u-1187",
    "occurred_at": "2026-12-03T08:15:42.123456Z",
    "received_at": STAMP,
}
# Records as ingest publishes them (validated, stamped, encode_event), and one that is not.
RECORDS: dict[str, bytes] = {
    "typical (module, feature, duration, 2 properties)": encode_event(
        EVENT_ADAPTER.validate_python(
            BASE
            | {
                "event": "report_exported",
                "module": "reports",
                "feature": "export",
                "platform": "app",
                "duration_s": 12.5,
                "properties": {"format": "xlsx", "rows": 1200},
            }
        )
    ),
    "minimal (as the simulator's)": encode_event(
        EVENT_ADAPTER.validate_python(BASE | {"event": "login", "platform": "app"})
    ),
    "not canonical (a padded name): falls back": encode_event(
        EVENT_ADAPTER.validate_python(BASE | {"event": "login"})
    ).replace(b'"login"', b'" login"'),
}


def best_us(call: Callable[[], Any], rounds: int, number: int = 2000) -> float:
    return min(timeit.timeit(call, number=number) for _ in range(rounds)) / number * 1e6


def pydantic_only(record: bytes) -> Callable[[], Any]:
    def call() -> Any:
        fast = fastwire.decode_usage
        fastwire.decode_usage = lambda value: None
        try:
            return decode_event(record, "usage")
        finally:
            fastwire.decode_usage = fast

    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60, help="rounds of 2,000 calls (60)")
    rounds = parser.parse_args().rounds
    print(f"{'record':52} {'bytes':>5} {'pydantic':>9} {'fast path':>9}")
    for name, record in RECORDS.items():
        slow = best_us(pydantic_only(record), rounds)
        fast = best_us(partial(decode_event, record, "usage"), rounds)
        print(f"{name:52} {len(record):5} {slow:7.2f}µs {fast:7.2f}µs")


if __name__ == "__main__":
    main()
