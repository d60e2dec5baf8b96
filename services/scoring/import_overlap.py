"""Events of an import older than what the dedup window remembers of an earlier import.

The dedup window keeps an account's event ids for ``DEDUP_HOURS`` before its newest
event (``usage.py``): within one import, files are merged by event time and the window
keeps what a later line may repeat (``import_ahead``). An export imported in a later
run that overlaps one imported before repeats events the window has forgotten, and
they count again (found from outside: two monthly exports overlapping by 16 days
counted 11,211 events twice). Keeping every id would cost the rows the engine dropped
(issue 12); so an import counts the events it reads that are older than the window
before their account's newest event as it stood when the import began, and says so.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scoring.usage import DEDUP_HOURS
from shared.contracts.events import EARLIEST_TIME
from shared.storage.db import among
from shared.storage.tables import account_health

WINDOW = timedelta(hours=DEDUP_HOURS)


class EarlierImports:
    """Each account's newest event before this import began, read once per account."""

    def __init__(self, engine: AsyncEngine, late: timedelta | None = None):
        """``late``: how far before its account's newest event a usage event is too
        late to count at all (the late grace): reported as such, not here too (the
        summary said the same 39,609 events were counted twice and not counted, found
        from outside)."""
        self._engine = engine
        self._late = late
        self._newest: dict[str, datetime | None] = {}

    async def before_window(
        self, lines: Iterable[tuple[bytes, tuple[datetime, Any] | None]]
    ) -> int:
        """How many usage events of ``lines`` (a line, its event time and account id),
        before they are applied, are older than the window before their account's newest
        earlier event. Only usage events: the others count by their own ids (a ticket's
        update, a touchpoint) and never twice. A line whose time has no zone or lies out
        of range is the scoring step's to reject."""
        known = [
            (line, stamp)
            for line, stamp in lines
            if stamp is not None
            and isinstance(stamp[1], str)
            and stamp[0].tzinfo is not None
            and stamp[0] >= EARLIEST_TIME
        ]
        unread = {stamp[1] for _, stamp in known} - self._newest.keys()
        if unread:
            h = account_health.c
            async with self._engine.connect() as conn:
                rows = await conn.execute(
                    select(h.account_id, h.last_seen_at).where(among(conn, h.account_id, unread))
                )
                found = {account: seen for account, seen in rows}
            self._newest.update({account: found.get(account) for account in unread})
        return sum(
            1
            for line, (moment, account) in known
            if (newest := self._newest[account]) is not None
            and moment < newest - WINDOW
            and (self._late is None or moment >= newest - self._late)
            and _kind(line) == "usage"
        )


def _kind(line: bytes) -> object:
    """The line's kind (read only for the few lines past the window)."""
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return event.get("kind") if isinstance(event, dict) else None
