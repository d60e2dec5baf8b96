"""The production bus: Apache Kafka through aiokafka."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.bus.base import BusUnavailable, OffsetLoader, OutMessage, Record

log = logging.getLogger(__name__)


class KafkaProducer:
    """Idempotent producer with acks=all; ``send_many`` returns once the broker acked."""

    def __init__(self, bootstrap: str, *, ack_timeout_s: float, client_id: str = "healthwatch"):
        self._bootstrap = bootstrap
        self._ack_timeout_s = ack_timeout_s
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        try:
            await self._ensure_started()
        except BusUnavailable:
            log.warning("Kafka at %s is not reachable yet; will retry on demand", self._bootstrap)

    async def _ensure_started(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is not None:
                return self._producer
            producer = AIOKafkaProducer(
                bootstrap_servers=self._bootstrap,
                client_id=self._client_id,
                acks="all",
                enable_idempotence=True,
                # A few ms of lingering batches the events of one request together.
                linger_ms=5,
                request_timeout_ms=int(self._ack_timeout_s * 1000),
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
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

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
        except (KafkaError, TimeoutError) as exc:
            raise BusUnavailable(f"Kafka did not acknowledge: {exc!r}") from exc


class _SeekToStoredOffsets(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, consumer: KafkaConsumer):
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # Every batch commits its offsets with its state: just let the one in flight finish.
        async with self._consumer.handling:
            pass

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        async with self._consumer.handling:
            await self._consumer.seek_to_stored(assigned)


class KafkaConsumer:
    """Group consumer that never commits to Kafka: offsets live in the database."""

    def __init__(
        self,
        bootstrap: str,
        topics: Sequence[str],
        *,
        group_id: str,
        load_offsets: OffsetLoader,
        client_id: str = "healthwatch",
    ):
        self._topics = list(topics)
        self._load_offsets = load_offsets
        self.generation = 0
        self.handling = asyncio.Lock()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group_id,
            client_id=client_id,
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
            # (published before scoring commits) from their ids and revisions.
            isolation_level="read_committed",
        )

    async def start(self) -> None:
        await self._consumer.start()
        self._consumer.subscribe(self._topics, listener=_SeekToStoredOffsets(self))

    async def stop(self) -> None:
        await self._consumer.stop()

    async def seek_to_stored(self, partitions: set[TopicPartition]) -> None:
        stored = await self._load_offsets([(tp.topic, tp.partition) for tp in partitions])
        for tp in partitions:
            # Nothing stored yet: the start of the log, as offset 0, which needs no
            # lookup; if retention has deleted it, the fetch is out of range and
            # auto_offset_reset="earliest" moves to the log's start. An awaited lookup
            # (seek_to_beginning) here, under the handling lock, could wait for a
            # rebalance that itself waits for that lock, and the group would hang.
            self._consumer.seek(tp, stored.get((tp.topic, tp.partition), 0))
        self.generation += 1

    async def rewind(self) -> None:
        await self.seek_to_stored(set(self._consumer.assignment()))

    async def lag(self) -> dict[tuple[str, int], int]:
        out = {}
        for tp in self._consumer.assignment():
            end = self._consumer.highwater(tp)
            if end is None:
                continue  # nothing fetched yet: unknown
            out[(tp.topic, tp.partition)] = max(0, end - await self._consumer.position(tp))
        return out

    async def getmany(self, timeout_s: float, max_records: int) -> list[Record]:
        batches = await self._consumer.getmany(
            timeout_ms=int(timeout_s * 1000), max_records=max_records
        )
        return [
            Record(
                topic=msg.topic,
                partition=msg.partition,
                offset=msg.offset,
                key=msg.key,
                value=msg.value,
                headers={k: v.decode(errors="replace") for k, v in msg.headers or ()},
            )
            for messages in batches.values()
            for msg in messages
        ]


async def ensure_topics(
    bootstrap: str, topics: Sequence[str], *, partitions: int, replication: int
) -> None:
    """Create the topics that do not exist yet."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(t, partitions, replication) for t in topics if t not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # a concurrent creator won
                await admin.create_topics(missing)
    finally:
        await admin.close()
