"""Run real services in the test's event loop and talk to them like a client would."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from devservices import free_port
from services import runtime
from shared.auth import Scope, create_key
from shared.bus.embedded import PARTITION
from shared.bus.factory import ALERTS_TOPIC
from shared.config import Settings
from shared.storage.db import create_engine, migrate
from shared.storage.tables import (
    account_health,
    accounts,
    activity_daily,
    alerts,
    bus_log,
    bus_outbox,
    consumer_offsets,
    deliveries,
    tickets,
)
from tests.support.usage import count_processed, usage_rows

T = TypeVar("T")


@dataclass
class Harness:
    rt: runtime.Runtime
    url: str
    key: str

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=30
        )

    async def usage_events(self, account_id: str) -> int:
        """Usage events counted in the account's daily activity."""
        async with self.rt.engine.connect() as conn:
            total = (
                await conn.execute(
                    select(func.sum(activity_daily.c.events)).where(
                        activity_daily.c.account_id == account_id
                    )
                )
            ).scalar()
        return int(total or 0)

    async def has_usage_events(self, account_id: str, expected: int) -> bool:
        return await self.usage_events(account_id) == expected

    async def health(self, account_id: str) -> Any:
        async with self.rt.engine.connect() as conn:
            return (
                await conn.execute(
                    select(account_health).where(account_health.c.account_id == account_id)
                )
            ).first()


@asynccontextmanager
async def running(
    settings: Settings, *, ingest: bool = True, scoring: bool = True, alerts: bool = True
) -> AsyncIterator[Harness]:
    """Migrate, then run the chosen services until the block ends (graceful stop)."""
    settings = settings.model_copy(update={"ingest_port": free_port()})
    engine = create_engine(settings.database_url)
    await migrate(engine)
    await engine.dispose()
    async with runtime.open_runtime(settings) as rt:
        stop = asyncio.Event()
        tasks = []
        if ingest:
            tasks.append(asyncio.create_task(runtime.run_ingest(rt, stop, with_health_api=True)))
        if scoring:
            tasks.append(asyncio.create_task(runtime.run_scoring(rt, stop)))
        if alerts:
            tasks.append(asyncio.create_task(runtime.run_alerts(rt, stop)))
        key = await create_key(
            rt.engine, "test", [Scope.ingest, Scope.crm, Scope.read, Scope.respond]
        )
        url = f"http://127.0.0.1:{settings.ingest_port}"
        if ingest:
            await wait_for(lambda: _up(url), timeout=30, what="ingest to listen")
        try:
            yield Harness(rt, url, key)
        finally:
            stop.set()
            await asyncio.gather(*tasks)


@asynccontextmanager
async def running_apart(settings: Settings) -> AsyncIterator[tuple[Harness, Settings]]:
    """Ingest, scoring, alerts and web as in production: each with its own runtime
    (database pool, Kafka clients, metrics registry) and port, as separate processes
    have them. Yields a harness on the ingest service and the settings naming the ports."""
    ports = ("ingest_port", "scoring_port", "alerts_port", "web_port")
    settings = settings.model_copy(update={name: free_port() for name in ports})
    engine = create_engine(settings.database_url)
    await migrate(engine)
    await engine.dispose()
    async with (
        runtime.open_runtime(settings) as ingest_rt,
        runtime.open_runtime(settings) as scoring_rt,
        runtime.open_runtime(settings) as alerts_rt,
        runtime.open_runtime(settings) as web_rt,
    ):
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(runtime.run_ingest(ingest_rt, stop)),
            asyncio.create_task(runtime.run_scoring_service(scoring_rt, stop)),
            asyncio.create_task(runtime.run_alerts_service(alerts_rt, stop)),
            asyncio.create_task(runtime.run_web_service(web_rt, stop)),
        ]
        key = await create_key(
            ingest_rt.engine, "test", [Scope.ingest, Scope.crm, Scope.read, Scope.respond]
        )
        try:
            for port in (getattr(settings, name) for name in ports):
                url = f"http://127.0.0.1:{port}"
                await wait_for(lambda u=url: _up(u), timeout=30, what=f"{url} to listen")
            yield Harness(ingest_rt, f"http://127.0.0.1:{settings.ingest_port}", key), settings
        finally:
            stop.set()
            await asyncio.gather(*tasks)


async def _up(url: str) -> bool:
    try:
        async with httpx.AsyncClient() as c:
            return (await c.get(url + "/healthz")).status_code == 200
    except httpx.TransportError:
        return False


async def wait_for(
    check: Callable[[], Awaitable[T]], *, timeout: float, what: str, interval: float = 0.1
) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


def at(days_ago: float = 0, *, base: datetime | None = None) -> str:
    moment = (base or datetime.now(UTC)) - timedelta(days=days_ago)
    return moment.isoformat()


def today_moment() -> datetime:
    """A moment of today (UTC, the stacks' zone) already past: half way between midnight
    and now. Seeding "today" a fixed time before now puts it on yesterday in the first
    minutes after midnight, and a test that looks for today's point then fails."""
    now = datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight + (now - midnight) / 2


def usage(
    account: str,
    user: str,
    *,
    days_ago: float = 0,
    base: datetime | None = None,
    event_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A usage event ``days_ago`` before ``base`` (default: now; ``today_moment()`` for
    a history whose newest day must be today)."""
    return {
        "kind": "usage",
        "event_id": event_id or uuid.uuid4().hex,
        "account_id": account,
        "user_id": user,
        "event": "login",
        "occurred_at": at(days_ago, base=base),
        **extra,
    }


def facts(
    account: str, *, seats: int, email: str | None = None, slack: str | None = None, **extra: Any
) -> dict[str, Any]:
    owner = {"email": email, "slack_id": slack} if email or slack else None
    body: dict[str, Any] = {
        "account_id": account,
        "name": f"{account} Inc",
        "seats_purchased": seats,
        "occurred_at": at(30),
    }
    if owner:
        body["owner"] = {k: v for k, v in owner.items() if v}
    return {**body, **extra}


def low_activity_history(account: str, *, active_users: int, days: int = 8) -> list[dict[str, Any]]:
    """``active_users`` users active every day for ``days`` days (ending now)."""
    return [
        usage(account, f"{account}-u{u}", days_ago=d + 0.01)
        for d in range(days)
        for u in range(active_users)
    ]


Snapshot = dict[str, list[dict[str, Any]]]


async def state_snapshot(engine: AsyncEngine) -> Snapshot:
    """Every piece of scoring state, in a comparable form (rows as column → value)."""
    queries = {
        "activity_daily": select(activity_daily).order_by(
            activity_daily.c.account_id, activity_daily.c.day
        ),
        "tickets": select(tickets).order_by(tickets.c.ticket_id),
        "accounts": select(
            accounts.c.account_id, accounts.c.seats_purchased, accounts.c.facts
        ).order_by(accounts.c.account_id),
        # The explanation says what moved since the previous score, which depends on
        # where batches began and ended, and the sweep's bookkeeping depends on when
        # processes started; the state and the score do not.
        "account_health": select(
            *[c for c in account_health.c if c.name not in ("updated_at", "components", "swept_on")]
        ).order_by(account_health.c.account_id),
    }
    out = {}
    async with engine.connect() as conn:
        for name, q in queries.items():
            out[name] = [dict(r._mapping) for r in await conn.execute(q)]
    out["account_usage"] = await usage_rows(engine)
    return out


def assert_same_state(got: Snapshot, expected: Snapshot, how: str) -> None:
    """Fail naming the first row and the columns that differ, table by table."""
    for table, rows in expected.items():
        if got[table] == rows:
            continue
        if len(got[table]) != len(rows):
            raise AssertionError(f"{table} {how}: {len(got[table])} rows, expected {len(rows)}")
        mine, theirs = next((a, b) for a, b in zip(got[table], rows, strict=True) if a != b)
        moved = {c: (mine[c], theirs[c]) for c in theirs if mine[c] != theirs[c]}
        key = next(iter(theirs.values()))
        raise AssertionError(f"{table} {how}, first at {key!r}: (got, expected) {moved}")


# Tickets of test accounts were created two hours ago; their updates follow in minutes.
START = datetime.now(UTC) - timedelta(hours=2)


def ticket(account: str, n: int, status: str, step: int) -> dict[str, Any]:
    """Ticket ``T<n>`` of ``account`` in ``status``; ``step`` orders updates in event time."""
    return {
        "kind": "ticket",
        "event_id": f"{account}-T{n}-{status}-{step}",
        "account_id": account,
        "ticket_id": f"{account}-T{n}",
        "status": status,
        "created_at": START.isoformat(),
        "occurred_at": (START + timedelta(minutes=step)).isoformat(),
    }


async def processed(hw: Harness) -> int:
    """Events scoring has applied so far."""
    return await count_processed(hw.rt.engine)


async def send(hw: Harness, events: list[dict[str, Any]]) -> None:
    """Send and wait until scoring has applied them (so each step is scored alone)."""
    before = await processed(hw)
    async with hw.client() as client:
        r = await client.post("/v1/events", json={"events": events})
        assert r.status_code == 202, r.text

    async def done() -> bool:
        return await processed(hw) >= before + len(events)

    await wait_for(done, timeout=60, what=f"{len(events)} events scored")


async def add_account(hw: Harness, account: str, **extra: Any) -> None:
    async with hw.client() as client:
        r = await client.post("/v1/accounts", json=facts(account, **extra))
        assert r.status_code == 202, r.text

    async def known() -> bool:
        async with hw.rt.engine.connect() as conn:
            q = select(accounts.c.account_id).where(accounts.c.account_id == account)
            return (await conn.execute(q)).first() is not None

    await wait_for(known, timeout=60, what=f"account {account} stored")


@asynccontextmanager
async def signed_in(hw: Harness, key: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client holding a dashboard session of ``key`` (signed in through /ui/login)."""
    async with httpx.AsyncClient(base_url=hw.url, timeout=60) as browser:
        form = (await browser.get("/ui/login")).text
        csrf = form.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        r = await browser.post("/ui/login", data={"csrf": csrf, "key": key, "next": "/ui/"})
        assert r.status_code == 303, r.text
        yield browser


async def alert_stored(hw: Harness, alert_id: str) -> None:
    """Wait until the alerts service has stored ``alert_id`` (scoring publishes it in the
    batch's transaction; the alerts consumer stores it a moment later)."""

    async def stored() -> bool:
        async with hw.rt.engine.connect() as conn:
            q = select(alerts.c.alert_id).where(alerts.c.alert_id == alert_id)
            return (await conn.execute(q)).first() is not None

    await wait_for(stored, timeout=60, what=f"alert {alert_id} stored")


async def end_offsets(hw: Harness, topics: Sequence[str]) -> dict[tuple[str, int], int]:
    """Where each non-empty partition of ``topics`` ends now: the offset its next record
    will get (Kafka's end offsets, or the embedded log's last row id + 1)."""
    s = hw.rt.settings
    if s.embedded:
        async with hw.rt.engine.connect() as conn:
            q = (
                select(bus_log.c.topic, func.max(bus_log.c.offset))
                .where(bus_log.c.topic.in_(topics))
                .group_by(bus_log.c.topic)
            )
            return {(t, PARTITION): int(last) + 1 for t, last in await conn.execute(q)}
    # Partitions from the admin API: a plain consumer's metadata covers only topics it
    # subscribed to, and would find none here (and so wait for nothing).
    admin = AIOKafkaAdminClient(bootstrap_servers=s.kafka_bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    tps = [TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"]]
    assert len({tp.topic for tp in tps}) == len(set(topics)), f"topics missing: {described}"
    consumer = AIOKafkaConsumer(bootstrap_servers=s.kafka_bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    return {(tp.topic, tp.partition): end for tp, end in ends.items() if end > 0}


async def caught_up(hw: Harness, group: str, topics: Sequence[str], *, timeout: float = 60) -> None:
    """Wait until consumer group ``group`` has applied every record published to
    ``topics`` before this call. Its offsets commit with the state (and the outgoing
    messages) they produced, so afterwards all of that is visible."""
    target = await end_offsets(hw, topics)

    async def done() -> bool:
        async with hw.rt.engine.connect() as conn:
            q = select(
                consumer_offsets.c.topic,
                consumer_offsets.c.partition,
                consumer_offsets.c.next_offset,
            ).where(consumer_offsets.c.group_id == group)
            stored = {(r.topic, r.partition): r.next_offset for r in await conn.execute(q)}
        return all(stored.get(tp, 0) >= end for tp, end in target.items())

    await wait_for(done, timeout=timeout, what=f"group {group} to consume {sorted(target)}")


async def outbox_empty(hw: Harness) -> bool:
    """No delivery is pending: each was sent (or given up on), none is on its way."""
    async with hw.rt.engine.connect() as conn:
        q = select(func.count()).select_from(deliveries).where(deliveries.c.status == "pending")
        return int((await conn.execute(q)).scalar_one()) == 0


async def relayed(engine: AsyncEngine) -> bool:
    """Scoring's outbox is empty: every alert and dead letter it committed is on the bus
    (after a broker outage the relay publishes them a few seconds later)."""
    async with engine.connect() as conn:
        q = select(func.count()).select_from(bus_outbox)
        return int((await conn.execute(q)).scalar_one()) == 0


async def alerts_settled(hw: Harness, *, timeout: float = 60) -> None:
    """Wait until the alerts service has taken in every alert published so far and has
    sent (or given up on) every notice that queued. Afterwards whatever the system was
    going to send about them, rightly or wrongly, has arrived: a test can assert that
    nothing more did. (Not for alerts with reminders due: those keep queueing.)"""
    s = hw.rt.settings
    await wait_for(lambda: relayed(hw.rt.engine), timeout=timeout, what="the outbox relayed")
    await caught_up(hw, s.consumer_group_alerts, [s.topic(ALERTS_TOPIC)], timeout=timeout)
    await wait_for(lambda: outbox_empty(hw), timeout=timeout, what="every queued notice sent")
