"""Clocks are injected (``clock: Clock = utcnow``) so tests can pin time; ``pause``
waits, but no longer than until a stop event."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


def from_epoch(seconds: float) -> datetime | None:
    """The UTC moment ``seconds`` after the Unix epoch; None past what a ``datetime``
    holds (years 1-9999), so a number from outside (a header, a payload, a record's
    time) is refused instead of raising."""
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (ValueError, OverflowError, OSError):
        return None


async def pause(event: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less if ``event`` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)
