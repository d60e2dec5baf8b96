"""The run loop every consumer service uses: read a batch, handle it, repeat; stop cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from shared.bus.base import Consumer, Record

log = logging.getLogger(__name__)

Handler = Callable[[Sequence[Record]], Awaitable[None]]


async def pause(event: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less if ``event`` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)


async def consume(
    consumer: Consumer,
    handle: Handler,
    stop: asyncio.Event,
    *,
    name: str,
    max_records: int,
    poll_timeout_s: float = 1.0,
    retry_backoff_s: float = 1.0,
) -> None:
    """Until ``stop`` is set: hand each batch to ``handle``. A failed batch is read again
    from the stored offsets after a pause, so nothing is skipped. A batch in flight
    when ``stop`` is set completes (its transaction commits) before the loop ends."""
    await consumer.start()
    log.info("%s consumer started", name)
    try:
        while not stop.is_set():
            generation = consumer.generation
            records = await consumer.getmany(poll_timeout_s, max_records)
            if not records:
                continue
            try:
                async with consumer.handling:
                    if consumer.generation != generation:
                        # Partitions were (re)assigned while we read: the records may
                        # predate the seek. Drop them and read again from the offsets
                        # stored with the state, so nothing is skipped or applied twice.
                        await consumer.rewind()
                        continue
                    await handle(records)
            except Exception:
                log.exception("%s: batch of %d records failed; retrying", name, len(records))
                await consumer.rewind()
                await pause(stop, retry_backoff_s)
    finally:
        await consumer.stop()
        log.info("%s consumer stopped", name)
