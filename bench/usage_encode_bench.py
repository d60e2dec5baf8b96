"""Encoding and decoding one account's usage state (``services/scoring/usage.py``), the
value written with every batch that touches the account: timeit over three shapes of
the dedup window (event-id hashes of the last 48 hours of receipt), 20 days of use.

    python bench/usage_encode_bench.py            # the tree on sys.path (PYTHONPATH=…)
"""

from __future__ import annotations

import timeit
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial

from services.scoring import usage

# (ids a hour, hours): a quiet account's window, a busy hour, two days of 2,000 an hour.
SHAPES = ((555, 1), (5000, 1), (2000, 48))
CALLS = 200


def state(ids_an_hour: int, hours: int) -> usage.AccountUsage:
    start = datetime(2026, 11, 23, tzinfo=UTC)
    account = usage.AccountUsage()
    for n in range(ids_an_hour * hours):
        account.first_sight(f"e{n}", start + timedelta(hours=n // ids_an_hour))
    for day in range(20):
        account.add(
            (start - timedelta(days=day)).date(), f"u{day % 10}", 1.0, [("event", "login", 1)]
        )
    return account


def _per_call(call: Callable[[], object]) -> float:
    return timeit.timeit(call, number=CALLS) / CALLS


def main() -> None:
    for ids_an_hour, hours in SHAPES:
        account = state(ids_an_hour, hours)
        blob = usage.encode(account)
        encode = _per_call(partial(usage.encode, account))
        decode = _per_call(partial(usage.decode, blob))
        print(
            f"{ids_an_hour} ids x {hours} h: encode {encode * 1e6:,.0f} µs, "
            f"decode {decode * 1e6:,.0f} µs, {len(blob):,} B"
        )


if __name__ == "__main__":
    main()
