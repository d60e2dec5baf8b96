"""The ingest bench's workload: usage events in batches, over a number of accounts."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from shared.contracts.events import EVENT_ADAPTER
from shared.contracts.wire import encode_event

EVENT_NAMES = ("login", "view_report", "export", "search", "create_invoice", "comment")


MODULES = ("reports", "billing", "projects", "admin")


KIND = "usage"


@dataclass
class Workload:
    """The same events as HTTP bodies and as the bytes the server puts on Kafka."""

    raw: list[dict[str, Any]]
    bodies: list[bytes]  # one JSON body per batch: {"events": [...]}
    batch_sizes: list[int]
    messages: list[tuple[bytes, bytes]]  # (key, value) exactly as the ingest publisher makes them
    validate_encode_us: float  # per event: pydantic validation + model_copy + encode_event

    @property
    def events(self) -> int:
        return len(self.raw)

    def message_batches(self) -> list[list[tuple[bytes, bytes]]]:
        batches: list[list[tuple[bytes, bytes]]] = []
        start = 0
        for size in self.batch_sizes:
            batches.append(self.messages[start : start + size])
            start += size
        return batches


def make_workload(n: int, batch: int, rng: random.Random, tag: str, accounts: int) -> Workload:
    now = datetime.now(UTC)
    raw: list[dict[str, Any]] = []
    for i in range(n):
        account = rng.randrange(accounts)
        event: dict[str, Any] = {
            "kind": KIND,
            "event_id": f"{tag}-{i:07d}-{rng.getrandbits(40):010x}",
            "account_id": f"acct-{account:05d}",
            "user_id": f"acct-{account:05d}-u{rng.randrange(40):02d}",
            "event": rng.choice(EVENT_NAMES),
            "occurred_at": (now - timedelta(seconds=rng.uniform(0, 3 * 86400))).isoformat(),
        }
        if rng.random() < 0.5:
            event["module"] = rng.choice(MODULES)
        raw.append(event)
    chunks = [raw[i : i + batch] for i in range(0, n, batch)]
    # The server stamps received_at and encodes with the same function (see
    # services/ingest/publisher.py), so the bare side sends byte-identical records
    # apart from the received_at instant.
    received_at = datetime.now(UTC)
    messages = []
    started = time.perf_counter()
    for item in raw:
        model = EVENT_ADAPTER.validate_python(item)
        value = encode_event(model.model_copy(update={"received_at": received_at}))
        messages.append((model.account_id.encode(), value))
    validate_encode_us = (time.perf_counter() - started) / n * 1e6
    return Workload(
        raw=raw,
        bodies=[orjson.dumps({"events": c}) for c in chunks],
        batch_sizes=[len(c) for c in chunks],
        messages=messages,
        validate_encode_us=validate_encode_us,
    )
