"""The run loop every consumer service uses: read a batch, handle it, repeat; stop cleanly.

It never gives up: a consumer that cannot start, a database or broker outage, and a
record that can never be handled each have their answer below, and ``Progress`` tells
readiness when a loop has stopped moving anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field

import asyncpg  # type: ignore[import-untyped]
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy import exc as sa

from shared.bus.base import BusUnavailable, Consumer, DeadLetter, MessageTooLarge, Record
from shared.bus.offsets import next_offsets
from shared.clock import pause

log = logging.getLogger(__name__)

# What it returns is not read (the scoring step returns the events it counted).
Handler = Callable[[Sequence[Record]], Awaitable[object]]

# Lag is read from the offsets stored with the state and the log ends; once every few
# seconds is plenty for a gauge scraped every 15 s.
LAG_INTERVAL_S = 5.0
# Retries after a failure wait base * 2^(n-1) seconds, jittered (so the members of a
# group do not all hit a database that just came back at once), at most the cap: an
# outage of any length costs one attempt per member every 15 s, and the loop resumes
# at most 15 s after the database or broker is back.
RETRY_BASE_S = 1.0
RETRY_CAP_S = 15.0


class ConsumerMetrics:
    """Per-process consumer metrics; one instance per registry (every loop shares it)."""

    def __init__(self, registry: CollectorRegistry):
        self.lag = Gauge(
            "healthwatch_consumer_lag_records",
            "Records in the bus not yet applied by the consumer group (log end minus "
            "the offset stored with the state), per topic partition",
            ["group", "topic", "partition"],
            registry=registry,
        )
        self.last_progress = Gauge(
            "healthwatch_consumer_last_progress_timestamp_seconds",
            "When the consume loop last moved (a batch applied or set aside, or a poll "
            "that found nothing to do); a loop stuck in a batch or retrying through an "
            "outage leaves it behind",
            ["group"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "healthwatch_consumer_dead_letters_total",
            "Records set aside because handling them failed on their own",
            ["group"],
            registry=registry,
        )


class Progress:
    """When each consume loop of a process last moved (a batch applied or set aside,
    or a poll that found nothing to do), and when it last tried to (a step begun, a
    retry after a failure, a start attempted): readiness asks which loops have stalled,
    liveness which are stuck (not even trying: an await that never returns)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._moved: dict[str, float] = {}
        self._tried: dict[str, float] = {}

    def moved(self, name: str) -> None:
        self._moved[name] = self._tried[name] = self._clock()

    def tried(self, name: str) -> None:
        self._tried[name] = self._clock()

    def forget(self, name: str) -> None:
        self._moved.pop(name, None)
        self._tried.pop(name, None)

    def now(self) -> float:
        return self._clock()

    def credit(self, seconds: float) -> None:
        """Every loop's clock set ``seconds`` later (not past now): what kept them from
        moving for that long (a database outage readiness saw) is not their stall. All
        of it restarted, a database that blinked now and then hid a loop stuck for
        another reason."""
        now = self._clock()
        self._moved = {name: min(now, t + seconds) for name, t in self._moved.items()}

    def stalled(self, threshold_s: float) -> list[str]:
        """Loops that have not moved for longer than ``threshold_s``."""
        return self._older(self._moved, threshold_s)

    def stuck(self, threshold_s: float) -> list[str]:
        """Loops that have not even tried to move for longer than ``threshold_s``: a loop
        retrying through an outage (a full disk, a schema not migrated yet, resets) is
        trying, not stuck."""
        return self._older(self._tried, threshold_s)

    def _older(self, since: dict[str, float], threshold_s: float) -> list[str]:
        now = self._clock()
        return sorted(n for n, t in since.items() if now - t > threshold_s)


def retry_delay_s(failures: int, rng: random.Random) -> float:
    """Exponential backoff with jitter after ``failures`` consecutive failures."""
    ceiling = min(RETRY_CAP_S, RETRY_BASE_S * 2 ** max(0, failures - 1))
    return rng.uniform(ceiling / 2, ceiling)


# A failure carrying one of these is the records' fault: the same records fail again
# however often they are retried (a date out of range, a number too large for its
# column, a constraint, a message the bus can never take). The batch is bisected.
_RECORD_FAULTS: tuple[type[BaseException], ...] = (
    ArithmeticError,
    ValueError,  # also asyncpg's client-side DataError (a value it cannot encode)
    MessageTooLarge,
    MessageSizeTooLargeError,
    sa.DataError,
    sa.IntegrityError,
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
)
# A failure carrying one of these (and no record fault) blames no record: the database
# or the bus is down, slow, restarting or out of connections, a transaction lost a
# lock conflict, the driver lost track of a connection cut mid-query (InternalError,
# seen on a PostgreSQL restart), or the schema is not migrated yet (ProgrammingError:
# dead-lettering every record because a table is missing would empty the topics).
# Retried as is.
_TRANSIENT: tuple[type[BaseException], ...] = (
    BusUnavailable,
    KafkaError,
    OSError,
    TimeoutError,
    sa.OperationalError,
    sa.InterfaceError,
    sa.InternalError,
    sa.DisconnectionError,
    sa.TimeoutError,
    sa.ProgrammingError,
    asyncpg.PostgresConnectionError,
    asyncpg.InternalClientError,
    asyncpg.InterfaceError,
    asyncpg.OperatorInterventionError,
    asyncpg.InsufficientResourcesError,
    asyncpg.TransactionRollbackError,
)


def is_transient(exc: BaseException) -> bool:
    """True when retrying the same records may succeed and none is to blame; False
    when the records are (or may be) at fault, so the batch is bisected. An unknown
    exception counts as the records' fault: a member must never be stuck on a record."""
    chain = list(causes(exc))
    if any(isinstance(e, _RECORD_FAULTS) for e in chain):
        return False
    return any(
        isinstance(e, _TRANSIENT) or getattr(e, "connection_invalidated", False) for e in chain
    )


def causes(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc``, what it wraps (SQLAlchemy's ``orig``) and what caused it, transitively."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        orig = getattr(e, "orig", None)
        todo += [e.__cause__, e.__context__, orig if isinstance(orig, BaseException) else None]


def log_failed(logger: logging.Logger, what: str, exc: BaseException) -> None:
    """A loop's failed pass: one line when the database or the broker is away (an
    outage wrote hundreds of tracebacks of one reason: 580 of an alerts log's 786 lines,
    found from outside), with its traceback when the cause is something else."""
    if is_transient(exc):
        logger.warning("%s (%s)", what, describe(exc))
    else:
        logger.error("%s", what, exc_info=exc)


def describe(exc: BaseException) -> str:
    """A short reason: the driver's error rather than SQLAlchemy's statement dump."""
    inner = getattr(exc, "orig", None)
    shown = inner if isinstance(inner, BaseException) else exc
    return f"{type(shown).__name__}: {shown}"


async def consume(
    consumer: Consumer,
    handle: Handler,
    stop: asyncio.Event,
    *,
    name: str,
    max_records: int,
    dead_letter: DeadLetter | None = None,
    poll_timeout_s: float = 1.0,
    metrics: ConsumerMetrics | None = None,
    progress: Progress | None = None,
    group: str = "",
    rng: random.Random | None = None,
) -> None:
    """Until ``stop`` is set: hand each batch to ``handle``, which commits the state
    and the offsets after the batch in one transaction.

    - The consumer cannot start (broker or database down): retried with backoff.
    - A batch fails for a transient reason (``is_transient``): it is read again from
      the stored offsets after a backoff, however long the outage lasts.
    - A batch fails for its records' fault: it is bisected, each half handled in its
      own transaction, until the failing record is alone; that one goes to
      ``dead_letter`` with the reason (without one, the batch is retried as above).

    A batch in flight when ``stop`` is set completes (its transaction commits) before
    the loop ends."""
    loop = _ConsumeLoop(
        consumer,
        handle,
        stop,
        name=name,
        max_records=max_records,
        dead_letter=dead_letter,
        poll_timeout_s=poll_timeout_s,
        metrics=metrics,
        progress=progress or Progress(),
        group=group or name,
        rng=rng or random.Random(),
    )
    if metrics is not None:
        # Exported at 0 from the start: a labelled counter has no series until its first
        # increase, and increase() over a series that appears at 2 sees no rise, so the
        # shipped alert missed the first dead letters.
        metrics.dead_letters.labels(loop.group)
    await loop.run()


@dataclass
class _ConsumeLoop:
    """The state of one ``consume`` call (parameters as documented there)."""

    consumer: Consumer
    handle: Handler
    stop: asyncio.Event
    name: str
    max_records: int
    dead_letter: DeadLetter | None
    poll_timeout_s: float
    metrics: ConsumerMetrics | None
    progress: Progress
    group: str
    rng: random.Random
    reported: set[tuple[str, int]] = field(default_factory=set)  # partitions with a lag series

    async def run(self) -> None:
        self._moved_now()  # the stall clock starts now, even if start fails
        lag = None
        try:
            if not await self._start():
                return
            if self.metrics is not None:  # beside the loop: a batch stuck leaves it be
                lag = asyncio.create_task(self._report_lag_until_stopped(self.metrics))
            failures, failing_since = 0, 0.0
            while not self.stop.is_set():
                self.progress.tried(self.name)
                try:
                    await self._step()
                    if failures:
                        # The outage's end, said: after "still failing" the log had gone
                        # on with normal lines only (found from outside).
                        log.warning(
                            "%s: recovered after %d failed attempts over %.0f s",
                            self.name,
                            failures,
                            time.monotonic() - failing_since,
                        )
                    failures = 0
                except Exception as exc:
                    if not failures:
                        failing_since = time.monotonic()
                    failures += 1
                    await self._recover(exc, failures)
        finally:
            if lag is not None:
                lag.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await lag
            with contextlib.suppress(Exception):  # stopping must not mask the reason
                await self.consumer.stop()
            self.progress.forget(self.name)
            log.info("%s consumer stopped", self.name)

    def _moved_now(self) -> None:
        self.progress.moved(self.name)
        if self.metrics is not None:
            self.metrics.last_progress.labels(self.group).set_to_current_time()

    async def _start(self) -> bool:
        """Start the consumer, retrying until it starts (True) or ``stop`` is set."""
        failures = 0
        while not self.stop.is_set():
            self.progress.tried(self.name)
            try:
                await self.consumer.start()
            except Exception as exc:
                failures += 1
                delay = retry_delay_s(failures, self.rng)
                log.warning(
                    "%s consumer cannot start (%s); retrying in %.1f s",
                    self.name,
                    describe(exc),
                    delay,
                )
                await pause(self.stop, delay)
                continue
            log.info("%s consumer started", self.name)
            return True
        return False

    async def _recover(self, exc: Exception, failures: int) -> None:
        """After a failed step: back off, and reload positions from the stored offsets
        (if the database is still down, the next read reloads them first)."""
        delay = retry_delay_s(failures, self.rng)
        if failures == 1:
            log_failed(log, f"{self.name}: batch failed; retrying in {delay:.1f} s", exc)
        else:
            log.warning(
                "%s: still failing (%d times: %r); retrying in %.1f s",
                self.name,
                failures,
                describe(exc),
                delay,
            )
        with contextlib.suppress(Exception):
            await self.consumer.rewind()
        await pause(self.stop, delay)

    async def _step(self) -> None:
        """One iteration: read a batch and settle it."""
        generation = self.consumer.generation
        records = await self.consumer.getmany(self.poll_timeout_s, self.max_records)
        if not records:
            self._moved_now()
            return
        if not await self._settle(records, generation):
            # Partitions were (re)assigned while we read: the records may predate the
            # seek. Drop them and read again from the offsets stored with the state,
            # so nothing is skipped or applied twice.
            await self.consumer.rewind()

    async def _settle(self, records: Sequence[Record], generation: int) -> bool:
        """Apply ``records``; if that fails for their fault, apply each half apart, down
        to the single record, which is set aside. False: stale (reassigned meanwhile)."""
        try:
            return await self._apply(records, generation)
        except Exception as exc:
            if self.dead_letter is None or is_transient(exc):
                raise
            if len(records) == 1:
                return await self._set_aside(records[0], generation, exc)
            log.warning(
                "%s: batch of %d records failed (%r); applying its halves apart",
                self.name,
                len(records),
                describe(exc)[:200],
            )
            # In order, so each partition's offsets only move forward.
            mid = len(records) // 2
            return await self._settle(records[:mid], generation) and await self._settle(
                records[mid:], generation
            )

    async def _apply(self, records: Sequence[Record], generation: int) -> bool:
        async with self.consumer.handling:
            if self.consumer.generation != generation:
                return False
            await self.handle(records)
        await self._moved(records)
        return True

    async def _set_aside(self, record: Record, generation: int, exc: Exception) -> bool:
        assert self.dead_letter is not None
        reason = describe(exc)
        async with self.consumer.handling:
            if self.consumer.generation != generation:
                return False
            await self.dead_letter(record, reason)
        # repr: a reason may quote the record, whose CR/LF must not forge log lines.
        log.error(
            "%s: dead-lettered %s[%d]@%d: %r",
            self.name,
            record.topic,
            record.partition,
            record.offset,
            reason[:500],
        )
        if self.metrics is not None:
            self.metrics.dead_letters.labels(self.group).inc()
        await self._moved([record])
        return True

    async def _moved(self, records: Sequence[Record]) -> None:
        self._moved_now()
        await self.consumer.committed(next_offsets(records))

    async def _report_lag_until_stopped(self, metrics: ConsumerMetrics) -> None:
        """The lag every LAG_INTERVAL_S, in a task of its own: reported from the loop's
        step, it stood still (at 0) while a batch hung, and the shipped alerts for a
        stalled or lagging group could not fire (found from outside)."""
        while not self.stop.is_set():
            await self._report_lag(metrics)
            await pause(self.stop, LAG_INTERVAL_S)

    async def _report_lag(self, metrics: ConsumerMetrics) -> None:
        """Set the lag of the partitions this consumer owns; drop the series of
        partitions it gave away in a rebalance (their new owner reports them)."""
        try:
            lag = await self.consumer.lag()
        except Exception:  # a metric must never stop the loop
            log.debug("could not read consumer lag", exc_info=True)
            return
        for topic, partition in self.reported - lag.keys():
            metrics.lag.remove(self.group, topic, str(partition))
        for (topic, partition), records in lag.items():
            metrics.lag.labels(self.group, topic, str(partition)).set(records)
        self.reported = set(lag)
