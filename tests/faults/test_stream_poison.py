"""Poison records never stop a consumer (issue 11, items 1 and 2).

A record that fails on its own is found by bisecting its batch and set aside in the
dead-letter topic with the reason, its offset committed; everything after it is scored.
A failure that blames no record (the database down) is retried, never dead-lettered,
and a member that stops moving turns /readyz red. The poison is written straight onto
the topics, as a producer other than ingest (or an older ingest) could.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
import typer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import exc as sa
from sqlalchemy import select

import services.scoring.processor as processor_module
from services.cli.deadletters import read_letters, send_back
from services.scoring.sweep import QuietAccountSweep
from shared.bus.base import MessageTooLarge, OutMessage, Record, TopicPartition
from shared.bus.deadletter import MAX_COPY_BYTES, dead_letter_message, dead_letterer
from shared.bus.embedded import EmbeddedBus
from shared.bus.factory import DEADLETTER_TOPIC
from shared.bus.kafka import MAX_MESSAGE_BYTES
from shared.bus.offsets import next_offsets, save_offsets
from shared.config import Settings
from shared.storage.tables import account_health, bus_log
from shared.worker import Progress, consume, is_transient
from tests.support.factories import EngineFactory, ProcessorFactory
from tests.support.harness import Harness, facts, running, usage, wait_for
from tests.support.usage import seen_ids

# Valid events sent after the poison must be scored within this: generous for a loaded
# two-core machine, far below "stuck forever".
PROGRESS_TIMEOUT_S = 60
# A value just under the largest message our topics take (key, headers and batch
# overhead fit in the 512 bytes left): its dead-letter copy, whole and with the
# dead-letter headers, would not fit.
NEAR_LIMIT_BYTES = MAX_MESSAGE_BYTES - 512


def poison_usage() -> dict[str, Any]:
    """The first reported poison: year 1 at +14:00 overflows on its way to UTC."""
    return usage("poisoned", "u1", event_id="poison-date", occurred_at="0001-01-01T00:00:00+14:00")


def poison_account() -> dict[str, Any]:
    """The second: a seat count past every integer column."""
    return {"kind": "account", "event_id": "poison-seats", **facts("poisoned", seats=2**63)}


@pytest.fixture
def failing_application(monkeypatch: pytest.MonkeyPatch) -> dict[str, type[Exception]]:
    """Events whose id starts with a key of the returned map fail when applied, with the
    exception it maps to: a record that passes every contract check and still breaks
    scoring (as the date and seat poisons did before ingest validated them)."""
    failing: dict[str, type[Exception]] = {}
    apply_events = processor_module.apply_events

    async def apply(conn: Any, events: Sequence[Any], **kw: Any) -> Any:
        for e in events:
            for prefix, error in failing.items():
                if e.event_id.startswith(prefix):
                    raise error(f"cannot apply {e.event_id}")
        return await apply_events(conn, events, **kw)

    monkeypatch.setattr(processor_module, "apply_events", apply)
    return failing


async def scored(hw: Harness, ids: set[str]) -> bool:
    return await seen_ids(hw.rt.engine, ids) == ids


def poison_messages(settings: Settings) -> list[OutMessage]:
    """The poisons, encoded as a careless producer would: no validation on the way."""
    raw = [poison_usage(), poison_account(), usage("poisoned", "u2", event_id="poison-apply-1")]
    messages = [
        OutMessage(
            settings.topic(e["kind"]),
            b"poisoned",
            orjson.dumps(e, option=orjson.OPT_PASSTHROUGH_DATETIME),
        )
        for e in raw
    ]
    # Not JSON and just under the broker's limit: its whole copy could not be produced.
    blob = b"\xff" * NEAR_LIMIT_BYTES
    return [*messages, OutMessage(settings.topic("usage"), b"poisoned", blob)]


def valid_after(n: int = 12) -> list[dict[str, Any]]:
    """Valid events behind the poison, on its partition (same account) and on others."""
    return [usage("poisoned" if i % 2 else f"clean{i}", f"u{i}") for i in range(n)]


def check_dead_letters(
    letters: list[tuple[bytes, Mapping[str, str]]], poison: list[OutMessage]
) -> None:
    """One dead letter per poison, each naming its original and saying why."""
    by_hash = {h["sha256"]: (v, h) for v, h in letters}
    assert set(by_hash) == {hashlib.sha256(m.value).hexdigest() for m in poison}
    for m in poison:
        value, headers = by_hash[hashlib.sha256(m.value).hexdigest()]
        assert headers["reason"], headers
        assert headers["source_topic"] == m.topic
        assert headers["original_size"] == str(len(m.value))
        assert value == m.value[:MAX_COPY_BYTES]
    applied = by_hash[hashlib.sha256(poison[2].value).hexdigest()][1]
    assert applied["reason"] == "OverflowError: cannot apply poison-apply-1"
    assert by_hash[hashlib.sha256(poison[3].value).hexdigest()][1]["truncated"] == "true"


@pytest.mark.integration
async def test_poison_on_kafka_is_dead_lettered_and_scoring_goes_on(
    kafka_settings: Settings, failing_application: dict[str, type[Exception]]
) -> None:
    failing_application["poison-apply"] = OverflowError
    settings = kafka_settings
    poison = poison_messages(settings)
    valid = valid_after()
    async with running(settings) as hw:
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap, max_request_size=MAX_MESSAGE_BYTES
        )
        await producer.start()
        try:
            for m in poison:
                await producer.send_and_wait(m.topic, m.value, key=m.key)
            for e in valid:
                await producer.send_and_wait(
                    settings.topic("usage"), orjson.dumps(e), key=e["account_id"].encode()
                )
        finally:
            await producer.stop()
        ids = {e["event_id"] for e in valid}
        await wait_for(
            lambda: scored(hw, ids), timeout=PROGRESS_TIMEOUT_S, what="valid events scored"
        )
        letters = await read_kafka_dead_letters(settings, len(poison))
        assert (await hw.health("poisoned")) is not None
        # What refused the third is fixed: `healthwatch dead-letters` lists the letters
        # and sends it back, and it counts; the one cut short is not sent back.
        failing_application.clear()
        listed = await read_letters(settings, hw.rt.engine)
        assert len(listed) == len(poison)
        ref = next(x.ref for x in listed if b"poison-apply-1" in x.value)
        cut = next(x.ref for x in listed if x.headers.get("truncated") == "true")
        with pytest.raises(typer.BadParameter, match="first 64 KiB"):
            await send_back(settings, hw.rt.engine, [cut])
        assert await send_back(settings, hw.rt.engine, [ref]) == 1
        await wait_for(
            lambda: scored(hw, {"poison-apply-1"}),
            timeout=PROGRESS_TIMEOUT_S,
            what="the dead letter sent back scored",
        )
    check_dead_letters(letters, poison)


async def read_kafka_dead_letters(
    settings: Settings, n: int
) -> list[tuple[bytes, Mapping[str, str]]]:
    consumer = AIOKafkaConsumer(
        settings.topic(DEADLETTER_TOPIC),
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=f"reader-{uuid.uuid4().hex[:6]}",
    )
    await consumer.start()
    out: list[tuple[bytes, Mapping[str, str]]] = []
    try:

        async def enough() -> bool:
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                out.extend((m.value, {k: v.decode() for k, v in m.headers}) for m in msgs)
            return len(out) >= n

        await wait_for(enough, timeout=PROGRESS_TIMEOUT_S, what=f"{n} dead letters")
    finally:
        await consumer.stop()
    return out


async def test_poison_on_the_embedded_bus_is_dead_lettered_and_scoring_goes_on(
    embedded_settings: Settings, failing_application: dict[str, type[Exception]]
) -> None:
    failing_application["poison-apply"] = OverflowError
    settings = embedded_settings
    poison = poison_messages(settings)
    valid = valid_after()
    async with running(settings) as hw:
        await hw.rt.bus.producer.send_many(poison)
        await hw.rt.bus.producer.send_many(
            [
                OutMessage(settings.topic("usage"), e["account_id"].encode(), orjson.dumps(e))
                for e in valid
            ]
        )
        ids = {e["event_id"] for e in valid}
        await wait_for(
            lambda: scored(hw, ids), timeout=PROGRESS_TIMEOUT_S, what="valid events scored"
        )
        async with hw.rt.engine.connect() as conn:
            q = select(bus_log.c.value, bus_log.c.headers).where(
                bus_log.c.topic == settings.topic(DEADLETTER_TOPIC)
            )
            letters = [(r.value, r.headers) for r in await conn.execute(q)]
        sample = hw.rt.registry.get_sample_value
        assert sample("healthwatch_scoring_dead_letters_total") == len(poison)
        bisected = {"group": settings.consumer_group_scoring}
        assert sample("healthwatch_consumer_dead_letters_total", bisected) == 1
    check_dead_letters(letters, poison)


async def test_a_member_that_stops_moving_turns_readiness_red(
    embedded_settings: Settings, failing_application: dict[str, type[Exception]]
) -> None:
    # Stalled after 3 s: longer than an idle poll (1 s), short enough for a test.
    settings = embedded_settings.model_copy(update={"consumer_stall_s": 3.0})
    failing_application["stuck"] = ConnectionResetError  # the database, not the record
    stuck = usage("stuck", "u1", event_id="stuck-1")
    async with running(settings) as hw, httpx.AsyncClient(base_url=hw.url) as client:

        async def readiness(status: int) -> bool:
            return (await client.get("/readyz")).status_code == status

        await wait_for(lambda: readiness(200), timeout=30, what="ready")
        await hw.rt.bus.producer.send_many(
            [OutMessage(settings.topic("usage"), b"stuck", orjson.dumps(stuck))]
        )
        await wait_for(lambda: readiness(503), timeout=30, what="not ready while stuck")
        failing_application.clear()  # the outage ends
        await wait_for(lambda: scored(hw, {"stuck-1"}), timeout=PROGRESS_TIMEOUT_S, what="scored")
        await wait_for(lambda: readiness(200), timeout=30, what="ready again")
        async with hw.rt.engine.connect() as conn:
            q = select(bus_log).where(bus_log.c.topic == settings.topic(DEADLETTER_TOPIC))
            assert (await conn.execute(q)).all() == []  # an outage sets nothing aside


# --- the loop alone, on the embedded bus ---------------------------------------------


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (OverflowError("date value out of range"), False),
        (ValueError("bad"), False),
        (MessageTooLarge("too big"), False),
        (sa.DataError("stmt", {}, Exception("value out of int64 range")), False),
        (sa.IntegrityError("stmt", {}, Exception("duplicate key")), False),
        (KeyError("x"), False),
        (sa.OperationalError("stmt", {}, ConnectionRefusedError("refused")), True),
        (sa.InterfaceError("stmt", {}, Exception("connection is closed")), True),
        (sa.ProgrammingError("stmt", {}, Exception('relation "x" does not exist')), True),
        (sa.InternalError("stmt", {}, Exception("cannot switch to state 11")), True),
        (ConnectionResetError("reset"), True),
        (TimeoutError(), True),
    ],
)
def test_failures_are_told_apart(exc: Exception, transient: bool) -> None:
    assert is_transient(exc) is transient


def test_an_outage_is_one_line_a_fault_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """A database outage wrote a traceback every pass of every loop: 580 of an alerts
    log's 786 lines (found from outside). The reason alone, when retrying is all to do."""
    import logging

    from shared.worker import log_failed

    logger = logging.getLogger("healthwatch.test")
    down = sa.OperationalError("stmt", {}, ConnectionRefusedError("refused"))
    with caplog.at_level(logging.WARNING, logger="healthwatch.test"):
        log_failed(logger, "outbox pass failed; retrying", down)
        log_failed(logger, "outbox pass failed; retrying", KeyError("x"))
    outage, fault = caplog.records
    assert outage.levelno == logging.WARNING and outage.exc_info is None
    assert outage.getMessage() == "outbox pass failed; retrying (ConnectionRefusedError: refused)"
    assert fault.levelno == logging.ERROR and fault.exc_info is not None


def test_dead_letter_copy_is_bounded_and_names_its_original() -> None:
    value = bytes(range(256)) * (NEAR_LIMIT_BYTES // 256)
    record = Record("hw.usage", 2, 41, b"k" * 5000, value)
    message = dead_letter_message(record, "not JSON: " + "x" * 5000, "hw.deadletter")
    assert message.value == value[:MAX_COPY_BYTES]
    assert message.key is not None and len(message.key) <= 1024
    headers = message.headers
    assert (headers["source_topic"], headers["source_partition"]) == ("hw.usage", "2")
    assert (headers["source_offset"], headers["truncated"]) == ("41", "true")
    assert headers["original_size"] == str(len(value))
    assert headers["sha256"] == hashlib.sha256(value).hexdigest()
    assert sum(len(k) + len(v) for k, v in headers.items()) < 2048


async def test_bisecting_sets_aside_exactly_the_failing_records(
    engine_factory: EngineFactory,
) -> None:
    engine = await engine_factory()
    bus = EmbeddedBus(engine)
    values = [b"poison" if i in (3, 15, 16) else f"ok{i}".encode() for i in range(40)]
    await bus.send_many([OutMessage("t", None, v) for v in values])
    applied: list[bytes] = []
    batches: list[int] = []

    async def handle(records: Sequence[Record]) -> None:
        batches.append(len(records))
        async with engine.begin() as conn:
            if any(r.value == b"poison" for r in records):
                raise OverflowError("date value out of range")
            await save_offsets(conn, "g", next_offsets(records))
        applied.extend(r.value or b"" for r in records)

    async def load(tps: Sequence[TopicPartition]) -> Mapping[TopicPartition, int]:
        async with engine.connect() as conn:
            rows = await conn.execute(select(*_offset_columns()))
            return {(r.topic, r.partition): r.next_offset for r in rows}

    stop = asyncio.Event()
    dead = dead_letterer(engine, bus, topic="dl", group_id="g")
    task = asyncio.create_task(
        consume(bus.consumer(["t"], load), handle, stop, name="t", max_records=40, dead_letter=dead)
    )
    good = [v for v in values if v != b"poison"]
    await wait_for(lambda: _equal(applied, good), timeout=30, what="every good record applied")
    stop.set()
    await task
    async with engine.connect() as conn:
        rows = (await conn.execute(select(bus_log).where(bus_log.c.topic == "dl"))).all()
    stored = await load([("t", 0)])
    assert [r.headers["source_offset"] for r in rows] == ["4", "16", "17"]  # row ids from 1
    assert all(r.headers["reason"] == "OverflowError: date value out of range" for r in rows)
    assert stored == {("t", 0): 41}  # past everything: nothing is read again
    assert batches[0] == 40 and len(batches) < 40  # bisected, not record by record


async def test_a_transient_failure_is_retried_and_nothing_is_set_aside(
    engine_factory: EngineFactory,
) -> None:
    engine = await engine_factory()
    bus = EmbeddedBus(engine)
    await bus.send_many([OutMessage("t", None, f"v{i}".encode()) for i in range(5)])
    attempts: list[int] = []
    applied: list[bytes] = []

    async def handle(records: Sequence[Record]) -> None:
        attempts.append(len(records))
        if len(attempts) <= 2:  # the database is down for the first two attempts
            raise sa.OperationalError("SELECT 1", {}, ConnectionRefusedError("refused"))
        async with engine.begin() as conn:
            await save_offsets(conn, "g", next_offsets(records))
        applied.extend(r.value or b"" for r in records)

    async def load(tps: Sequence[TopicPartition]) -> Mapping[TopicPartition, int]:
        async with engine.connect() as conn:
            rows = await conn.execute(select(*_offset_columns()))
            return {(r.topic, r.partition): r.next_offset for r in rows}

    stop = asyncio.Event()
    dead = dead_letterer(engine, bus, topic="dl", group_id="g")
    progress = Progress()
    task = asyncio.create_task(
        consume(
            bus.consumer(["t"], load),
            handle,
            stop,
            name="t",
            max_records=10,
            dead_letter=dead,
            progress=progress,
        )
    )
    want = [f"v{i}".encode() for i in range(5)]
    await wait_for(lambda: _equal(applied, want), timeout=30, what="the batch applied")
    assert progress.stalled(5.0) == []
    stop.set()
    await task
    assert attempts == [5, 5, 5]  # whole, every time: an outage is no record's fault
    async with engine.connect() as conn:
        assert (await conn.execute(select(bus_log).where(bus_log.c.topic == "dl"))).all() == []


def test_progress_reports_loops_that_stopped_moving() -> None:
    now = [100.0]
    progress = Progress(clock=lambda: now[0])
    progress.moved("scoring")
    progress.moved("alerts")
    now[0] = 150.0
    progress.moved("alerts")
    now[0] = 200.0
    assert progress.stalled(60) == ["scoring"]
    progress.forget("scoring")
    assert progress.stalled(60) == []


def _offset_columns() -> list[Any]:
    from shared.storage.tables import consumer_offsets as o

    return [o.c.topic, o.c.partition, o.c.next_offset]


async def _equal(got: list[bytes], want: list[bytes]) -> bool:
    return got == want


async def test_the_sweep_goes_past_an_account_that_fails_alone(
    embedded_settings: Settings,
    engine_factory: EngineFactory,
    processor_factory: ProcessorFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = datetime(2026, 11, 23, 9, tzinfo=UTC)
    engine = await engine_factory()
    bus = EmbeddedBus(engine)
    processor = processor_factory(engine, producer=bus, clock=lambda: now)
    accounts = ["a-good", "b-bad", "c-good"]
    events = [
        usage(a, "u1", event_id=f"{a}-1", occurred_at=(now - timedelta(days=10)).isoformat())
        for a in accounts
    ]
    await processor.handle(
        [
            Record(embedded_settings.topic("usage"), 0, i, a.encode(), orjson.dumps(e))
            for i, (a, e) in enumerate(zip(accounts, events, strict=True))
        ]
    )
    rescore = processor.rescore

    rescored: set[str] = set()

    async def failing(conn: Any, ids: set[str], *args: Any, **kw: Any) -> Any:
        if "b-bad" in ids:
            raise OverflowError("date value out of range")
        rescored.update(ids)
        return await rescore(conn, ids, *args, **kw)

    monkeypatch.setattr(processor, "rescore", failing)
    sweep = QuietAccountSweep(engine, bus, processor, clock=lambda: now)
    assert await sweep.run_once() == 3
    async with engine.connect() as conn:
        q = select(account_health.c.account_id, account_health.c.swept_on)
        rows = {r.account_id: r for r in await conn.execute(q)}
    assert {a: rows[a].swept_on for a in accounts} == dict.fromkeys(accounts, now.date())
    assert rescored == {"a-good", "c-good"}
    assert await sweep.run_once() == 0  # nothing left for today, the failing one included
