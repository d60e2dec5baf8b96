"""The production bus: Apache Kafka through aiokafka."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import (
    InvalidProducerEpoch,
    KafkaError,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    RecordTooLargeError,
    TopicAlreadyExistsError,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.bus.base import BusUnavailable, MessageTooLarge, OffsetLoader, OutMessage, Record

log = logging.getLogger(__name__)
# The largest message our producers send and our topics take (as the topic's
# max.message.bytes, so it holds on a broker left at its 1 MB default): above ingest's
# largest event (shared/contracts/events.py MAX_EVENT_BYTES, 2 MiB) plus key, headers
# and batch overhead, so no event ingest accepts is refused by the bus.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


# Filling a batch under a backlog (KafkaConsumer.getmany): each further read waits at
# most FILL_POLL_S for the fetcher (a fetch from a broker that has the data answers in
# milliseconds), and filling stops after FILL_BUDGET_S, so a batch is handled at most
# about a second after its first record was read.
FILL_POLL_S = 0.1
FILL_BUDGET_S = 1.0
# Filling starts only when a partition read from is this many records behind: a backlog
# of seconds even at several thousand events/s. Under a steady light load the log's end
# is nearly always a few hundred records ahead (records arrive while a batch is handled),
# and filling then added up to FILL_BUDGET_S to every batch: the alert latency's p99
# went from 0.97 to 1.68 s at 1,000 events/s (docs/benchmarks.md). Once filling, the
# batch takes the backlog to its end (within the batch's size and FILL_BUDGET_S): a
# tail of fewer records left for a batch of its own would rescore its accounts again.
# Records arriving meanwhile keep the end ahead, so such a batch may fill for the whole
# budget: the bound on a backlog's batches is the same as before, about a second.
FILL_MIN_BEHIND = 5000

# A lag reading asks the broker for the log ends and the database for the stored
# offsets; a few seconds is an answer either way (the next reading comes LAG_INTERVAL_S
# later).
LAG_REQUEST_TIMEOUT_S = 3.0

# The group's copy of the offsets is for lag tools only; a commit not done in this
# long is dropped (the next batch commits newer offsets anyway).
COMMIT_TIMEOUT_S = 5.0


# Send errors after which an idempotent producer's sequence is lost for good: aiokafka
# 0.14 fails the batch and goes on with the same producer id and sequence, so every
# later send to the partition fails alike. Ingest answered 503 to everything after 3 of
# 4 broker restarts, ready all the while (found from outside).
LOST_SEQUENCE = (OutOfOrderSequenceNumber, ProducerFenced, InvalidProducerEpoch)


def _sender_stopped(producer: AIOKafkaProducer) -> bool:
    """Whether the producer's sender has ended for good. aiokafka ends it on a fatal
    error, such as ``OutOfOrderSequenceNumber`` when a broker restarted under load has
    lost the idempotent producer's sequence, and fails every later send with that error:
    ingest answered 503 until restarted by hand (found from outside)."""
    task = getattr(getattr(producer, "_sender", None), "sender_task", None)
    return task is not None and task.done()


class KafkaProducer:
    """Idempotent producer with acks=all; ``send_many`` returns once the broker acked."""

    def __init__(
        self,
        bootstrap: str,
        *,
        ack_timeout_s: float,
        prepare: Callable[[], Awaitable[None]] | None = None,
        client_id: str = "healthwatch",
    ):
        self._bootstrap = bootstrap
        self._ack_timeout_s = ack_timeout_s
        # Creates our topics; run before the first send, since a broker that
        # auto-creates topics would otherwise create them with its default partitions.
        self._prepare = prepare
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None
        self._lost: AIOKafkaProducer | None = None  # a send failed with LOST_SEQUENCE
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        try:
            await self._ensure_started()
        except BusUnavailable:
            log.warning("Kafka at %s is not reachable yet; will retry on demand", self._bootstrap)

    async def _ensure_started(self) -> AIOKafkaProducer:
        async with self._lock:
            if (
                self._producer is not None
                and self._producer is not self._lost
                and not _sender_stopped(self._producer)
            ):
                return self._producer
            if self._producer is not None:
                # Every send of this producer would fail with the error that stopped it,
                # until the process restarts: start a new one (a new producer id).
                log.warning("Kafka producer stopped after a fatal error; starting a new one")
                stopped, self._producer, self._lost = self._producer, None, None
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(stopped.stop(), self._ack_timeout_s)
            if self._prepare is not None:
                await self._prepare()
            producer = AIOKafkaProducer(
                bootstrap_servers=self._bootstrap,
                client_id=self._client_id,
                acks="all",
                enable_idempotence=True,
                # A few ms of lingering batches the events of one request together.
                linger_ms=5,
                request_timeout_ms=int(self._ack_timeout_s * 1000),
                max_request_size=MAX_MESSAGE_BYTES,
            )
            try:
                await asyncio.wait_for(producer.start(), self._ack_timeout_s)
            except (KafkaError, OSError, TimeoutError) as exc:
                await producer.stop()
                raise BusUnavailable(
                    f"cannot connect to Kafka at {self._bootstrap}: {exc}"
                ) from exc
            self._producer = producer
            return producer

    async def stop(self) -> None:
        # Under the lock: a producer being started (a readiness probe, a send) is
        # stopped once it is, rather than left running after the service stopped.
        async with self._lock:
            if self._producer is not None:
                producer, self._producer = self._producer, None
                await producer.stop()

    async def reachable(self) -> bool:
        """Whether the broker answers now (a metadata request, bounded in time)."""
        try:
            producer = await self._ensure_started()
            # The probe is a readiness check: a few seconds is an answer either way.
            async with asyncio.timeout(min(self._ack_timeout_s, 3.0)):
                await producer.client.fetch_all_metadata()
        except (BusUnavailable, KafkaError, OSError, TimeoutError):
            return False
        return True

    async def send_many(
        self, messages: Sequence[OutMessage], conn: AsyncConnection | None = None
    ) -> None:
        producer = await self._ensure_started()
        try:
            async with asyncio.timeout(self._ack_timeout_s):
                futures = [
                    await producer.send(
                        m.topic,
                        m.value,
                        key=m.key,
                        headers=[(k, v.encode()) for k, v in m.headers.items()],
                    )
                    for m in messages
                ]
                await asyncio.gather(*futures)
        except (MessageSizeTooLargeError, RecordTooLargeError) as exc:
            raise MessageTooLarge(f"Kafka refused a message for its size: {exc!r}") from exc
        except (KafkaError, TimeoutError) as exc:
            if isinstance(exc, LOST_SEQUENCE):
                self._lost = producer  # replaced at the next send (_ensure_started)
            raise BusUnavailable(f"Kafka did not acknowledge: {exc!r}") from exc


class _SeekToStoredOffsets(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, consumer: KafkaConsumer):
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # Every batch commits its offsets with its state: just let the one in flight finish.
        async with self._consumer.handling:
            self._consumer.unseeked -= revoked

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        async with self._consumer.handling:
            try:
                await self._consumer.seek_to_stored(assigned)
            except Exception as exc:
                # The database is down. Raising here would only be logged by aiokafka,
                # which would then read from the log's start; the partitions stay
                # paused instead, and getmany seeks them once the offsets can be read.
                log.warning("cannot load stored offsets (%r); partitions held until it can", exc)


class KafkaConsumer:
    """Group consumer whose positions come from the offsets stored in the database;
    it records them in the group too, after the database, for standard lag tools."""

    def __init__(
        self,
        bootstrap: str,
        topics: Sequence[str],
        *,
        group_id: str,
        load_offsets: OffsetLoader,
        prepare: Callable[[], Awaitable[None]] | None = None,
        client_id: str = "healthwatch",
    ):
        self._bootstrap = bootstrap
        self._topics = list(topics)
        self._group_id = group_id
        self._client_id = client_id
        self._load_offsets = load_offsets
        self._stored_seen: dict[tuple[str, int], int] = {}  # offsets last read, for lag
        self._past_end_told: dict[tuple[str, int], int] = {}  # stored offsets warned of
        self._prepare = prepare
        self.generation = 0
        self.handling = asyncio.Lock()
        # Assigned partitions whose stored offsets could not be loaded yet (paused).
        self.unseeked: set[TopicPartition] = set()
        self._client: AIOKafkaConsumer | None = None

    def _new_client(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=self._group_id,
            client_id=self._client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # Co-partitioning: an account's events of every kind carry its id as key,
            # so they sit in the same partition number of each topic; the range
            # assignor gives that number of every topic to one consumer, so one
            # process applies all of an account's events. Round robin (aiokafka's
            # default) splits them whenever partitions per topic are not a multiple of
            # the consumers. Only one assignor is offered: aiokafka (0.14) sends one
            # JoinGroup per configured assignor in every rebalance, and each extra
            # JoinGroup starts another rebalance, which can keep a group from ever
            # settling (aio-libs/aiokafka PR #1168).
            partition_assignment_strategy=(RangePartitionAssignor,),
            # No producer here is transactional, so this changes nothing today; exactly
            # once comes from offsets stored with the state in the database, and alerts
            # (published from the outbox after scoring commits) from their ids and
            # revisions.
            isolation_level="read_committed",
        )

    @property
    def _consumer(self) -> AIOKafkaConsumer:
        if self._client is None:
            raise BusUnavailable("the Kafka consumer is not started")
        return self._client

    async def start(self) -> None:
        """Connect and subscribe; raises BusUnavailable while the broker is unreachable
        (the caller retries: a failed client cannot be started again, so each attempt
        builds a new one)."""
        if self._prepare is not None:
            await self._prepare()  # our topics, with our partition count, first
        client = self._new_client()
        try:
            await client.start()
        except Exception as exc:
            await client.stop()
            raise BusUnavailable(f"cannot connect to Kafka at {self._bootstrap}: {exc!r}") from exc
        client.subscribe(self._topics, listener=_SeekToStoredOffsets(self))
        self._client = client

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.stop()
            self._client = None

    async def seek_to_stored(self, partitions: set[TopicPartition]) -> None:
        """Move ``partitions`` to their stored offsets. If those cannot be loaded, the
        partitions are paused and remembered, and this raises."""
        consumer = self._consumer
        try:
            stored = await self._load_offsets([(tp.topic, tp.partition) for tp in partitions])
        except Exception:
            consumer.pause(*partitions)
            self.unseeked |= partitions
            self.generation += 1  # a batch read before this failure is stale
            raise
        for tp in partitions:
            # Nothing stored yet: the start of the log, as offset 0, which needs no
            # lookup; if retention has deleted it, the fetch is out of range and
            # auto_offset_reset="earliest" moves to the log's start. An awaited lookup
            # (seek_to_beginning) here, under the handling lock, could wait for a
            # rebalance that itself waits for that lock, and the group would hang.
            consumer.seek(tp, stored.get((tp.topic, tp.partition), 0))
        consumer.resume(*(partitions & self.unseeked))
        self.unseeked -= partitions
        self.generation += 1

    async def rewind(self) -> None:
        await self.seek_to_stored(set(self._consumer.assignment()))

    async def lag(self) -> dict[tuple[str, int], int]:
        """Log end minus the offset stored with the state, per assigned partition. The
        ends are asked of the broker: the fetcher's high-water mark moves only while the
        loop fetches, so a loop stuck in a batch showed a lag of 0 (found from outside).
        The stored offsets last read stand in while the database is down."""
        consumer = self._consumer
        assigned = list(consumer.assignment())
        if not assigned:
            return {}
        keys = [(tp.topic, tp.partition) for tp in assigned]
        # The stored offsets before the ends: a batch committed between the two reads
        # then cannot put a stored offset past an end read before it (a false "topic
        # made again", found in review).
        try:
            async with asyncio.timeout(LAG_REQUEST_TIMEOUT_S):
                stored = await self._load_offsets(keys)
            # A partition with nothing stored starts at 0: read, not unknown.
            self._stored_seen.update({key: stored.get(key, 0) for key in keys})
        except Exception:  # the database down: the offsets last read
            log.debug("consumer lag: stored offsets unreadable; using the last read")
        async with asyncio.timeout(LAG_REQUEST_TIMEOUT_S):
            ends = await consumer.end_offsets(assigned)
        self._say_if_past_end(ends, keys, assigned)
        # A partition whose stored offset was never read (the database down since the
        # start) is left out, as unknown: counted from 0, it showed the whole log.
        return {
            key: max(0, ends[tp] - self._stored_seen[key])
            for tp, key in zip(assigned, keys, strict=True)
            if tp in ends and key in self._stored_seen
        }

    def _say_if_past_end(
        self,
        ends: Mapping[TopicPartition, int],
        keys: Sequence[tuple[str, int]],
        assigned: Sequence[TopicPartition],
    ) -> None:
        """Warn, once per partition and offset, of a stored offset past its log's end:
        the topic was deleted and made again, or the cluster replaced, and the consumer
        reads the log from its start (``auto_offset_reset``). It had done so without a
        word, the lag showing 0 (found from outside)."""
        for tp, key in zip(assigned, keys, strict=True):
            stored = self._stored_seen.get(key)
            if tp not in ends or stored is None or stored <= ends[tp]:
                continue
            if self._past_end_told.get(key) == stored:
                continue
            self._past_end_told[key] = stored
            log.warning(
                "%s[%d]: the offset stored with the state (%d) is past the end of the log "
                "(%d): the topic was made again or the cluster replaced; reading it from "
                "its start",
                key[0],
                key[1],
                stored,
                ends[tp],
            )

    async def committed(self, offsets: Mapping[tuple[str, int], int]) -> None:
        try:
            # aiokafka retries a commit until the coordinator answers: bounded, so a
            # broker outage cannot hold up the loop (or its stop) for this copy.
            async with asyncio.timeout(COMMIT_TIMEOUT_S):
                await self._consumer.commit(
                    {TopicPartition(t, p): o for (t, p), o in offsets.items()}
                )
        except Exception as exc:  # a rebalance or an outage: the next batch commits again
            log.debug("could not record offsets in the Kafka group: %r", exc)

    async def getmany(self, timeout_s: float, max_records: int) -> list[Record]:
        consumer = self._consumer
        if self.unseeked:
            async with self.handling:
                self.unseeked &= consumer.assignment()
                if self.unseeked:
                    await self.seek_to_stored(set(self.unseeked))
        batches = await consumer.getmany(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        records = _records(batches)
        # Under a backlog, fill the batch up to ``max_records``: one getmany returns only
        # what the fetcher has buffered (about 1 MB per partition), and the handler's
        # cost is mostly per account and batch, not per record (docs/benchmarks.md). A
        # consumer that is caught up returns at once, so light traffic gains no latency.
        deadline = asyncio.get_running_loop().time() + FILL_BUDGET_S
        least = FILL_MIN_BEHIND
        while (
            records
            and len(records) < max_records
            and _behind(consumer, batches, least)
            and asyncio.get_running_loop().time() < deadline
        ):
            batches = await consumer.getmany(
                timeout_ms=int(FILL_POLL_S * 1000), max_records=max_records - len(records)
            )
            if not batches:
                break
            records += _records(batches)
            least = 1  # a backlog: read to its end
        return records


def _records(
    batches: Mapping[TopicPartition, Sequence[ConsumerRecord[bytes, bytes]]],
) -> list[Record]:
    return [
        Record(
            topic=msg.topic,
            partition=msg.partition,
            offset=msg.offset,
            key=msg.key,
            value=msg.value,
            headers={k: v.decode(errors="replace") for k, v in msg.headers or ()},
            timestamp=msg.timestamp / 1000 if msg.timestamp is not None else None,
        )
        for messages in batches.values()
        for msg in messages
    ]


def _behind(
    consumer: AIOKafkaConsumer,
    batches: Mapping[TopicPartition, Sequence[ConsumerRecord[bytes, bytes]]],
    least: int,
) -> bool:
    """Records wait in a partition just read from: its last record is ``least`` or more
    short of the log's end as the broker last told it (no request is sent)."""
    for tp, messages in batches.items():
        try:
            end = consumer.highwater(tp)
        except AssertionError:  # revoked meanwhile: the next getmany sorts that out
            continue
        if messages and end is not None and end - (messages[-1].offset + 1) >= least:
            return True
    return False


# How long creating the topics may take before the broker counts as unreachable:
# listing and creating a few topics takes well under a second on a live broker.
ENSURE_TOPICS_TIMEOUT_S = 10.0


async def ensure_topics(
    bootstrap: str, topics: Sequence[str], *, partitions: int, replication: int
) -> None:
    """Create the topics that do not exist yet; BusUnavailable if the broker is not there."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        async with asyncio.timeout(ENSURE_TOPICS_TIMEOUT_S):
            await admin.start()
            existing = set(await admin.list_topics())
            limit = {"max.message.bytes": str(MAX_MESSAGE_BYTES)}
            missing = [
                NewTopic(t, partitions, replication, topic_configs=limit)
                for t in topics
                if t not in existing
            ]
            if missing:
                with contextlib.suppress(TopicAlreadyExistsError):  # a concurrent creator won
                    await admin.create_topics(missing)
    except (KafkaError, OSError, TimeoutError) as exc:
        raise BusUnavailable(f"cannot create topics on Kafka at {bootstrap}: {exc!r}") from exc
    finally:
        with contextlib.suppress(Exception):  # closing a client that never connected
            await admin.close()
