"""The days of an imported history, scored one by one (``healthwatch import``).

A live service writes an account's score when its events arrive and once a day when it
is quiet (the sweep). An import reads months in minutes, so it scores the days itself:
each account, every day from its first day in the import to the history's last day, as
of that day (its daily counts, and its facts and tickets as they were then), in day
order so the alert rules step forward in time. A day whose score and inputs did not
change writes no row of its own in the scoring step; the import then copies the
previous day's row, so the history holds one row per account per day.

Where the scoring stands is kept before each batch commits, and with the day it
closes: the newest day read and the day through which every account is scored in
``import_calendar``, the first days of accounts read but not scored yet in
``import_pending`` (a row each). An import stopped anywhere and run again scores each
day once, its last days included.

Events on a day already scored (a later import of an earlier period, a tickets file
after the usage file) open the day again for their accounts alone, kept in
``import_pending`` too: each of them is scored again from that day on, and the other
accounts' days stand (scoring them again wrote what they had, at the cost of a whole
import's days).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Date, and_, delete, func, literal, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scoring.history import NOON
from services.scoring.import_lines import Stamp
from services.scoring.import_lock import StillHeld, held
from services.scoring.import_tickets import changed_days, ticket_lines
from services.scoring.lanes import in_lanes
from services.scoring.measures import _day
from services.scoring.processor import ScoringProcessor
from services.scoring.sweep import CHUNK
from shared.bus.base import Producer
from shared.contracts.events import EARLIEST_TIME
from shared.storage.db import among, bulk_upsert, insert_ignore, upsert
from shared.storage.tables import health_daily, import_calendar, import_pending


class ImportCalendar:
    """Each account's first day, the newest day read, and the days already scored."""

    def __init__(
        self,
        processor: ScoringProcessor,
        sink: Producer,
        first: dict[str, date],
        newest: date | None = None,
        closed: date | None = None,
        pending: dict[str, date] | None = None,
        *,
        still_held: StillHeld = held,
    ):
        self._processor = processor
        self._sink = sink
        self._still_held = still_held  # the import lock, checked before each day
        self.first = first  # account → its first day
        self.newest = newest
        # Every account is scored through this day, but those waiting in ``_pending``
        # from a day on or before it (its days opened again for them).
        self.closed = closed
        self._file_newest: date | None = None  # the newest day of the file being read
        # Accounts to be scored again from a day (their first day, not closed yet: no
        # score history row to find them by when the import runs again; or a closed day
        # their events opened again), those of them not kept in ``import_pending`` yet,
        # and whether ``import_calendar`` is behind.
        self._pending = dict(pending or {})
        self._unkept: set[str] = set()
        self._changed = False

    def start_file(self) -> None:
        """Another file: its days are read from its own start (tickets after usage)."""
        self._file_newest = None

    @classmethod
    async def load(
        cls, processor: ScoringProcessor, sink: Producer, still_held: StillHeld = held
    ) -> ImportCalendar:
        """Where earlier runs left the calendar: accounts scored before start from their
        first row, those read but not scored yet from the day kept for them."""
        h, kept, waiting = health_daily.c, import_calendar.c, import_pending.c
        group = processor.group_id
        async with processor.engine.connect() as conn:
            rows = await conn.execute(select(h.account_id, func.min(h.day)).group_by(h.account_id))
            first = {account_id: day for account_id, raw in rows if (day := _day(raw))}
            stood = (
                await conn.execute(select(kept.newest, kept.closed).where(kept.group_id == group))
            ).first()
            unscored = await conn.execute(
                select(waiting.account_id, waiting.first_day).where(waiting.group_id == group)
            )
            pending = {account_id: day for account_id, raw in unscored if (day := _day(raw))}
        for account_id, day in pending.items():
            first[account_id] = min(first.get(account_id, day), day)
        newest, closed = (_day(stood.newest), _day(stood.closed)) if stood else (None, None)
        if stood is None and first:
            # No import yet, but scores: the live service's. Its days stand as scored,
            # through its newest; an import's events on them open them for their
            # accounts alone (else the first import rescored every live account and
            # dropped its rows after the file's last day; found in review).
            async with processor.engine.connect() as conn:
                newest = closed = _day(await conn.scalar(select(func.max(h.day))))
        return cls(processor, sink, first, newest, closed, pending, still_held=still_held)

    def note(self, stamps: Sequence[Stamp]) -> None:
        """Learn each account's first day and the newest day from a batch's lines (their
        ``stamp_of``; a line the scoring step rejects is skipped here as well). Events on
        days already scored (a second file, or lines out of time order) open those days
        again for their accounts."""
        zone = self._processor.zone
        latest = self._processor.latest_event_time
        for stamp in stamps:
            if stamp is None or not isinstance(account_id := stamp[1], str):
                continue
            moment = stamp[0]
            if moment.tzinfo is None or not EARLIEST_TIME <= moment <= latest:
                continue  # the scoring step rejects the line (no zone, before 2000, future)
            day = moment.astimezone(zone).date()
            known = self.first.get(account_id)
            if known is None or day < known:
                self.first[account_id] = day
            reopens = self.closed is not None and day <= self.closed
            if known is None or day < known or reopens:
                self._wait(account_id, day)
            if self.newest is None or day > self.newest:
                self.newest = day
                self._changed = True
            self._file_newest = max(self._file_newest or day, day)

    async def note_tickets(self, lines: Sequence[bytes]) -> None:
        """Open again the days a batch's ticket lines change that ``note`` does not:
        from a ticket's opening when it is new, moved or opened at another time, for
        the account it leaves too (``import_tickets``; found in review: both were left
        as scored). Only days already scored need it; the others are scored in turn."""
        if self.closed is None:
            return
        read = ticket_lines(lines)
        if not read:  # most batches: no connection taken for them
            return
        async with self._processor.engine.connect() as conn:
            changed = await changed_days(conn, read, self._processor.zone)
        for day, accounts in changed.values():
            if day > self.closed:
                continue
            for account in accounts:
                # From the account's first day: it has no days before to score.
                if (first := self.first.get(account)) is not None:
                    self._wait(account, max(day, first))

    def _wait(self, account_id: str, day: date) -> None:
        """``account_id`` is to be scored again from ``day``: its first day, or a day
        already closed that its events open again for it alone (the other accounts'
        days stand; scoring them again wrote what they had)."""
        waiting = self._pending.get(account_id)
        if waiting is None or day < waiting:
            self._pending[account_id] = day
            self._unkept.add(account_id)
            self._changed = True

    async def remember(self) -> None:
        """Keep what ``note`` learnt (the newest day, a closed day moved back, accounts
        not scored yet) before the batch that read it commits: a stop after that commit
        then still scores those days when the import runs again. Kept early rather than
        late: days scored once more cost time, days never scored lose history."""
        if not self._changed:
            return
        async with self._processor.engine.begin() as conn:
            await self._keep(conn)

    async def close_read_days(self) -> int:
        """Score the days before the newest one read in this file: a time-ordered file
        has no more events for them. Returns the rows written."""
        if self._file_newest is None:
            return 0
        return await self._close(self._file_newest - timedelta(days=1))

    async def close_all(self) -> int:
        """Score every day through the history's last."""
        return 0 if self.newest is None else await self._close(self.newest)

    async def _close(self, until: date) -> int:
        if not self.first:
            return 0
        day = self.closed + timedelta(days=1) if self.closed else min(self.first.values())
        if self._pending:  # days closed before, opened again for some accounts
            day = min(day, *self._pending.values())
        written = 0
        while day <= until:
            await self._still_held()
            if self.closed is not None and day <= self.closed:
                ids = sorted(a for a, since in self._pending.items() if since <= day)
            else:
                ids = sorted(a for a, first in self.first.items() if first <= day)
            if not ids:  # no account begins by this day yet
                day += timedelta(days=1)
                continue
            chunks = [ids[at : at + CHUNK] for at in range(0, len(ids), CHUNK)]
            # The last chunk alone, after the others: it keeps the day as closed, so it
            # commits once every other chunk of the day has.
            written += await self._score_in_lanes(chunks[:-1], day)
            written += await self._score_day(chunks[-1], day, closes=True)
            day += timedelta(days=1)
        return written

    async def _score_in_lanes(self, chunks: list[list[str]], day: date) -> int:
        """Score ``chunks`` as of ``day``, several at once (``lanes.py``), none of them
        closing the day. Returns the rows written."""
        todo = iter(chunks)
        written = 0

        async def lane() -> None:
            nonlocal written
            for chunk in todo:  # shared by the lanes: each chunk once
                # Awaited first, then added: ``written += await …`` would read the
                # total before the await and lose what another lane added meanwhile.
                rows = await self._score_day(chunk, day, closes=False)
                written += rows

        await in_lanes(self._processor.engine, lane)
        return written

    async def _score_day(self, ids: list[str], day: date, *, closes: bool) -> int:
        """Score ``ids`` as of ``day``; the day's last chunk (``closes``) also keeps the
        day as closed, in the same transaction (a stop between chunks scores the day's
        chunks again, each of them as of the day, writing what it wrote before)."""
        processor = self._processor
        async with processor.engine.begin() as conn:
            # A day's changes are stamped at its noon, or now for today's: an alert an
            # import opened at 00:37 was stamped fired at 12:00, hours ahead (found from
            # outside).
            noon = min(datetime.combine(day, NOON, UTC), processor.wall_now())
            alerts = await processor.rescore(conn, set(ids), noon, as_of=day, past_day=True)
            if alerts:
                await self._sink.send_many(processor.alert_messages(alerts), conn)
            written = await _carry_forward(conn, ids, day)
            if closes:
                await self._closed(conn, day)
            return written

    async def _closed(self, conn: AsyncConnection, day: date) -> None:
        """Keep ``day`` as scored. Before the closed day (days opened again), the
        accounts waiting from it go on from the next day; from it on, every account
        is scored through it and none waits from it."""
        waiting = import_pending.c
        mine = and_(waiting.group_id == self._processor.group_id, waiting.first_day <= day)
        if self.closed is not None and day < self.closed:
            after = day + timedelta(days=1)
            self._pending = {a: max(since, after) for a, since in self._pending.items()}
            await self._keep(conn)
            await conn.execute(update(import_pending).where(mine).values(first_day=after))
            return
        self.closed = day
        self._pending = {a: first for a, first in self._pending.items() if first > day}
        self._unkept &= self._pending.keys()
        await self._keep(conn)
        await conn.execute(delete(import_pending).where(mine))

    async def _keep(self, conn: AsyncConnection) -> None:
        """Write the newest and closed days, and the accounts first read since the last
        write (a batch's new accounts, not every account waiting)."""
        group = self._processor.group_id
        row = {"group_id": group, "newest": self.newest, "closed": self.closed}
        await upsert(conn, import_calendar, [row], keys=["group_id"], update=["newest", "closed"])
        unkept = [
            {"group_id": group, "account_id": account_id, "first_day": self._pending[account_id]}
            for account_id in sorted(self._unkept)
        ]
        await bulk_upsert(conn, import_pending, unkept, keys=["group_id", "account_id"])
        self._unkept.clear()
        self._changed = False


async def _carry_forward(conn: AsyncConnection, ids: list[str], day: date) -> int:
    """Give ``day`` a row for each of ``ids`` scored before it: the newest earlier one
    (the score did not change). Returns how many accounts have a row for the day.

    Copied by the database (``INSERT … SELECT``): the rows' inputs and explanations, a
    few KB each, need not travel to the import and back, decoded and encoded again."""
    h = health_daily.c
    newest = (
        select(h.account_id, func.max(h.day).label("day"))
        .where(among(conn, h.account_id, ids), h.day < day)
        .group_by(h.account_id)
        .subquery()
    )
    copies = select(
        h.account_id, literal(day, Date), h.score, h.band, h.inputs, h.explanation
    ).join(newest, and_(newest.c.account_id == h.account_id, newest.c.day == h.day))
    columns = ["account_id", "day", "score", "band", "inputs", "explanation"]
    # An account with a row of its own on the day keeps it (the copy conflicts).
    await conn.execute(
        insert_ignore(conn, health_daily).from_select(columns, copies).on_conflict_do_nothing()
    )
    scored = select(func.count()).where(among(conn, h.account_id, ids), h.day == day)
    return int(await conn.scalar(scored) or 0)
