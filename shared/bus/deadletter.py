"""Records set aside: a bounded copy of each, with why and where it came from."""

from __future__ import annotations

import hashlib

from sqlalchemy.ext.asyncio import AsyncEngine

from shared.bus.base import DeadLetter, OutMessage, Producer, Record
from shared.bus.offsets import save_offsets

# The copy kept of a record's value. Kafka refuses messages over its limit (1 MB by
# default): a record near it, plus our headers, would never fit, and its dead letter
# would be retried forever. 64 KiB is far below any limit and keeps every event ingest
# accepts whole (its largest legitimate events are a few KiB); a larger value keeps
# its head, and the headers name the original (source, size, sha256) to fetch it.
MAX_COPY_BYTES = 64 * 1024
# Keys are account ids (a few dozen bytes); a hostile one is cut like the value.
MAX_KEY_BYTES = 1024
# The reason is a message or a validation summary; headers must stay small too.
MAX_REASON_CHARS = 1000


def dead_letter_message(record: Record, reason: str, topic: str) -> OutMessage:
    """The dead letter of ``record``: at most MAX_COPY_BYTES of its value, and headers
    saying why it was set aside and where the original is."""
    value = record.value or b""
    headers = {
        "reason": reason[:MAX_REASON_CHARS],
        "source_topic": record.topic,
        "source_partition": str(record.partition),
        "source_offset": str(record.offset),
        "original_size": str(len(value)),
        "sha256": hashlib.sha256(value).hexdigest(),
    }
    if len(value) > MAX_COPY_BYTES:
        headers["truncated"] = "true"
    key = record.key[:MAX_KEY_BYTES] if record.key is not None else None
    return OutMessage(topic, key, value[:MAX_COPY_BYTES], headers)


def dead_letterer(
    engine: AsyncEngine, producer: Producer, *, topic: str, group_id: str
) -> DeadLetter:
    """A DeadLetter for consumer group ``group_id``: the copy and the offset after the
    record commit in one transaction (the embedded bus writes through it; Kafka acks
    the copy before the offset commits, so a failure in between repeats the copy,
    never loses it)."""

    async def dead_letter(record: Record, reason: str) -> None:
        async with engine.begin() as conn:
            await producer.send_many([dead_letter_message(record, reason, topic)], conn)
            await save_offsets(
                conn, group_id, {(record.topic, record.partition): record.offset + 1}
            )

    return dead_letter
