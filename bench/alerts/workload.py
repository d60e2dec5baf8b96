"""The alert latency bench's workload: trigger accounts built to raise one alert each, and
background accounts posting usage at a steady rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
from rich.progress import Progress

from alerts.options import Options

TRIGGER_SEATS = 50


TRIGGER_USERS = 4  # active users a day: 4 / 50 = 8 % < 20 %


TRIGGER_DAYS = 8  # >= 7 days of history


EVENT_NAMES = ("login", "view", "create", "run", "export", "search")


MODULES = ("reports", "billing", "projects", "admin")


@dataclass
class Trigger:
    account_id: str
    phase: str  # warmup / measured
    body: bytes
    sent: float = 0.0  # time.time() just before the request
    answered: float = 0.0  # time.time() when the 202 was back
    status: int = 0


@dataclass
class Load:
    """Background load bookkeeping (the asyncio side)."""

    accepted: int = 0
    requests: int = 0
    failures: int = 0
    late_starts: int = 0  # requests that started > 1 s after their due time
    latencies_ms: list[float] = field(default_factory=list)
    accepted_at: list[tuple[float, int]] = field(default_factory=list)  # (time, events)
    last_error: str = ""


def background_accounts(n: int, users: int, run_id: str) -> list[tuple[str, list[str]]]:
    return [
        (f"bg-{run_id}-{i:04d}", [f"bg-{run_id}-{i:04d}-u{u}" for u in range(users)])
        for i in range(n)
    ]


def owner(i: int) -> dict[str, str]:
    return {"email": f"csm{i}@example.com", "slack_id": f"UBENCH{i:05d}"}


def facts_body(account_id: str, seats: int, i: int) -> dict[str, Any]:
    """Account facts as the CRM sends them (the shape of ``tests/support/harness.facts``)."""
    return {
        "account_id": account_id,
        "name": f"{account_id} Inc",
        "seats_purchased": seats,
        "occurred_at": (datetime.now(UTC) - timedelta(days=30)).isoformat(),
        "owner": owner(i),
        "tier": "enterprise",
        "lifecycle_stage": "stable",
    }


def trigger_body(account_id: str) -> bytes:
    """Its 8-day history in one request: ``TRIGGER_USERS`` users active on each of the
    last ``TRIGGER_DAYS`` days (``tests/support/harness.low_activity_history``)."""
    now = datetime.now(UTC)
    events = [
        {
            "kind": "usage",
            "event_id": uuid.uuid4().hex,
            "account_id": account_id,
            "user_id": f"{account_id}-u{u}",
            "event": "login",
            "occurred_at": (now - timedelta(days=d + 0.01)).isoformat(),
        }
        for d in range(TRIGGER_DAYS)
        for u in range(TRIGGER_USERS)
    ]
    return orjson.dumps({"events": events})


def background_body(
    accounts: Sequence[tuple[str, list[str]]], batch: int, cursor: int, rng: random.Random
) -> bytes:
    now = datetime.now(UTC).isoformat()
    events = []
    for k in range(batch):
        account_id, users = accounts[(cursor + k) % len(accounts)]
        events.append(
            {
                "kind": "usage",
                "event_id": uuid.UUID(int=rng.getrandbits(128)).hex,
                "account_id": account_id,
                "user_id": users[(cursor + k) // len(accounts) % len(users)],
                "event": rng.choice(EVENT_NAMES),
                "module": rng.choice(MODULES),
                "occurred_at": now,
            }
        )
    return orjson.dumps({"events": events})


async def background(
    url: str,
    key: str,
    accounts: Sequence[tuple[str, list[str]]],
    opts: Options,
    stop: asyncio.Event,
    load: Load,
    progress: Progress,
    task: Any,
) -> None:
    """Open-loop load: a request is due every ``batch / rate`` s; at most
    ``concurrency`` in flight (a due request waits for a free slot: counted late)."""
    rng = random.Random(opts.seed)
    interval = opts.batch / opts.rate
    slots = asyncio.Semaphore(opts.concurrency)
    limits = httpx.Limits(max_connections=opts.concurrency)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    pending: set[asyncio.Task[None]] = set()
    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, timeout=30
    ) as client:

        async def one(body: bytes, due: float) -> None:
            try:
                started = time.monotonic()
                if started - due > 1.0:
                    load.late_starts += 1
                response = await client.post("/v1/events", content=body)
                load.latencies_ms.append((time.monotonic() - started) * 1000)
                load.requests += 1
                if response.status_code == 202:
                    got = int(response.json()["accepted"])
                    load.accepted += got
                    load.accepted_at.append((time.time(), got))
                    progress.advance(task, got)
                else:
                    load.failures += 1
                    load.last_error = f"{response.status_code}: {response.text[:300]}"
            except httpx.HTTPError as exc:
                load.failures += 1
                load.last_error = repr(exc)
            finally:
                slots.release()

        start = time.monotonic()
        k = 0
        while not stop.is_set():
            due = start + k * interval
            delay = due - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                if stop.is_set():
                    break
            await slots.acquire()
            body = background_body(accounts, opts.batch, k * opts.batch, rng)
            job = asyncio.create_task(one(body, due))
            pending.add(job)
            job.add_done_callback(pending.discard)
            k += 1
        if pending:
            await asyncio.gather(*pending)


def send_triggers(
    url: str,
    key: str,
    triggers: Sequence[Trigger],
    offsets: Sequence[float],
    abort: threading.Event,
    on_sent: Callable[[], None],
) -> None:
    """In a thread of its own, with a blocking client: the 202 time is taken the moment
    the response is back, not when a busy event loop gets round to it. Trigger ``i`` is
    due ``offsets[i]`` s after the start (open loop: a slow answer delays only the next
    trigger that falls due meanwhile)."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        start = time.monotonic()
        for i, trig in enumerate(triggers):
            delay = start + offsets[i] - time.monotonic()
            if delay > 0 and abort.wait(delay):
                return
            if abort.is_set():
                return
            trig.sent = time.time()
            try:
                response = client.post("/v1/events", content=trig.body)
                trig.answered = time.time()
                trig.status = response.status_code
            except httpx.HTTPError:
                trig.answered = time.time()
                trig.status = -1
            on_sent()


def make_triggers(opts: Options, run_id: str) -> list[Trigger]:
    n_measured = max(1, int(opts.duration / opts.trigger_interval))
    n_warm = max(1, int(opts.warmup / opts.trigger_interval)) if opts.warmup > 0 else 0
    return [
        Trigger(f"trig-{run_id}-{i:05d}", "warmup" if i < n_warm else "measured", b"")
        for i in range(n_warm + n_measured)
    ]
