"""The transactional outbox of bus messages: written in the caller's transaction,
published to the bus after it commits.

Scoring used to publish its alerts inside its transaction, before the commit: a crash
after the publish and before the commit replayed the batch and published again (the
alerts service stored it once, by id and revision), and every batch held its database
locks while it waited for Kafka's acknowledgement. Through the outbox, the state, the
offsets and the messages commit together; ``relay`` then publishes what is stored,
oldest first, and deletes it once the bus acknowledged. A crash between the commit and
the publish leaves the messages for the next relay (at start, and every few seconds):
published once. A crash after the publish and before the delete publishes them again;
their ids make the consumers store them once.

The embedded bus needs none of this: its log is a table of the same database, written in
the caller's transaction already.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.bus.base import MessageTooLarge, OutMessage, Producer, message_rows
from shared.clock import utcnow
from shared.storage.tables import bus_outbox

log = logging.getLogger(__name__)

# Messages per relay transaction: one produce batch to Kafka, one DELETE.
RELAY_BATCH = 500


class MessageOutbox:
    """A ``Producer`` whose messages commit with the caller's transaction; ``relay``
    publishes them through ``producer`` after the commit."""

    def __init__(self, engine: AsyncEngine, producer: Producer):
        self._engine = engine
        self._producer = producer

    async def start(self) -> None:
        """The bus's producer is started and stopped by its owner (the runtime)."""

    async def stop(self) -> None:
        """See ``start``."""

    async def send_many(
        self, messages: Sequence[OutMessage], conn: AsyncConnection | None = None
    ) -> None:
        """Store ``messages`` in ``conn``'s transaction; without one, publish them now."""
        if not messages:
            return
        if conn is None:
            await self._producer.send_many(messages)
            return
        await conn.execute(bus_outbox.insert(), message_rows(messages, utcnow()))

    async def relay(self) -> int:
        """Publish every stored message, oldest first; return how many. Raises (and
        keeps them) when the bus is down. Rows another relay holds are skipped
        (PostgreSQL), so scoring processes relay side by side."""
        published = 0
        while True:
            async with self._engine.begin() as conn:
                query = select(bus_outbox).order_by(bus_outbox.c.id).limit(RELAY_BATCH)
                if conn.dialect.name == "postgresql":
                    query = query.with_for_update(skip_locked=True)
                rows = list(await conn.execute(query))
                if not rows:
                    return published
                await self._publish([OutMessage(r.topic, r.key, r.value, r.headers) for r in rows])
                await conn.execute(
                    delete(bus_outbox).where(bus_outbox.c.id.in_([r.id for r in rows]))
                )
            published += len(rows)

    async def _publish(self, messages: list[OutMessage]) -> None:
        """Publish ``messages``; one the bus refuses for its size can never go, and must
        not hold back the others forever: it is logged and dropped."""
        try:
            await self._producer.send_many(messages)
        except MessageTooLarge:
            for message in messages:
                try:
                    await self._producer.send_many([message])
                except MessageTooLarge as exc:
                    log.error(
                        "outbox: a %d-byte message to %s refused for its size, dropped: %s",
                        len(message.value),
                        message.topic,
                        exc,
                    )
