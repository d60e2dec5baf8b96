"""The clock for quiet accounts.

Event time only moves when an account sends events; one that went quiet never does.
Once per wall-clock day, the sweep re-scores every account whose newest event is older
than today, as of today (the account's own day, in its zone), so inactivity, ticket
silence and renewal windows move and their rules fire.
Running it again the same day changes nothing. While ``healthwatch import`` runs on the
database the sweep stops before its next chunk (``import_lock.py``); the import sweeps
when it ends.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, time, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Select, or_, select, true
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scoring.import_lock import import_running
from services.scoring.lanes import in_lanes
from services.scoring.processor import ScoringProcessor, mark_swept
from services.scoring.zones import zone_name, zones_in_use
from shared.bus.base import Producer
from shared.clock import Clock, utcnow
from shared.storage.tables import account_health, accounts
from shared.worker import describe, is_transient

log = logging.getLogger(__name__)

# Accounts re-scored per transaction. Each chunk costs about twenty statements whatever
# its size (the model, the alerting file, the import lock, each table's read), about
# 16 ms on the 2-core bench machine: 80 µs an account at 200, 33 at 500, where a sweep
# spends 600 µs an account in all (docs/benchmarks.md). Its rows stay locked while it is
# scored, about 0.3 s at 500: a batch with an event for one of them (a quiet account
# waking up then) waits that long, well inside the 1 s alert latency.
CHUNK = 500


@dataclass(frozen=True)
class _ZoneDay:
    """Today in one zone, and which accounts count their days in it (SQL)."""

    today: date
    zone: tzinfo
    accounts: ColumnElement[bool]


@dataclass
class _Tally:
    """Accounts swept in a zone so far, by every lane."""

    accounts: int = 0
    # A lane saw an import begin: every lane stops before its next chunk. Stopping them
    # so rather than cancelling lets a chunk in flight finish and be counted; cancelled
    # after its commit, it was swept but missing from the count the log gives.
    import_began: bool = False


class _ImportRunning(Exception):
    """An import holds the database: the sweep stops (``swept`` accounts so far in the
    zone)."""

    def __init__(self, swept: int):
        self.swept = swept


def _accounts_in(names: list[str]) -> Select[Any]:
    return select(accounts.c.account_id).where(zone_name().in_(names))


class QuietAccountSweep:
    def __init__(
        self,
        engine: AsyncEngine,
        producer: Producer,
        processor: ScoringProcessor,
        *,
        clock: Clock = utcnow,
        waits_for_import: bool = True,
    ):
        self._engine = engine
        self._producer = producer
        self._processor = processor
        self._clock = clock
        self._waits_for_import = waits_for_import  # False: the import's own sweep

    async def run_once(self) -> int:
        """Re-score today's not yet swept quiet accounts; returns how many. A chunk
        that fails for an account's own fault is swept account by account, and an
        account that fails alone is marked swept and logged: one account must not keep
        the sweep from every account after it. "Today" is each account's own: the
        accounts of each zone are swept once their day has begun."""
        now = self._clock()
        total = 0
        try:
            for day in await self._zone_days(now):
                total += await self._sweep_zone(now, day)
        except _ImportRunning as running:
            log.info(
                "sweep: stopped after %d accounts: an import is running on this database "
                "(it sweeps when it ends)",
                total + running.swept,
            )
            return total + running.swept
        return total

    async def _zone_days(self, now: datetime) -> list[_ZoneDay]:
        """Today in the service's zone (accounts without a zone of their own) and in
        each zone accounts name (services/scoring/zones.py)."""
        async with self._engine.connect() as conn:
            names = await zones_in_use(conn)
        default = self._processor.zone
        others = sorted(names - {default.key})
        ids = account_health.c.account_id
        rest = ids.not_in(_accounts_in(others)) if others else true()
        days = [_ZoneDay(now.astimezone(default).date(), default, rest)]
        for name in others:
            zone = ZoneInfo(name)
            days.append(_ZoneDay(now.astimezone(zone).date(), zone, ids.in_(_accounts_in([name]))))
        return days

    async def _sweep_zone(self, now: datetime, day: _ZoneDay) -> int:
        swept = _Tally()
        await in_lanes(self._engine, lambda: self._sweep_lane(now, day, swept))
        if swept.import_began:
            raise _ImportRunning(swept.accounts)
        if swept.accounts:
            log.info(
                "sweep: %d quiet accounts re-scored as of %s (%s)",
                swept.accounts,
                day.today,
                day.zone,
            )
        return swept.accounts

    async def _sweep_lane(self, now: datetime, day: _ZoneDay, swept: _Tally) -> None:
        """Chunk after chunk of the zone's due accounts, until none is left that another
        lane (or replica) does not hold, or an import begins; counted in ``swept``."""
        after: str | None = None  # the last account of the chunk before, in id order
        while True:
            if swept.import_began or (
                self._waits_for_import and await import_running(self._engine)
            ):
                swept.import_began = True
                return
            try:
                ids = await self._sweep_chunk(now, day, after)
            except Exception as exc:
                if is_transient(exc):
                    raise  # the database is down: the next run retries
                log.warning("sweep: a chunk failed (%s); one account at a time", describe(exc))
                ids = await self._sweep_alone(now, day, after, swept)
            if not ids:
                return
            swept.accounts += len(ids)
            after = max(ids)

    def _due(self, day: _ZoneDay, after: str | None, *, lock: bool = True) -> Select[Any]:
        h = account_health
        midnight = datetime.combine(day.today, time(), day.zone)
        due = (
            select(h.c.account_id)
            .where(
                day.accounts,
                h.c.as_of < midnight,
                or_(h.c.swept_on.is_(None), h.c.swept_on < day.today),
            )
            .order_by(h.c.account_id)
            .limit(CHUNK)
        )
        # Each chunk starts after the one before (in the primary key's order): from the
        # first id every time, the scan stepped over every account swept so far, 53 ms
        # a chunk half way through 100,000 accounts, and the pass grew with their square.
        if after is not None:
            due = due.where(h.c.account_id > after)
        # Every scoring replica runs the sweep. Each takes the due rows no other
        # transaction holds (another replica's chunk, a batch rescoring them) and
        # locks them, so replicas split the work instead of each doing all of it;
        # a skipped row is still due at the next pass. (SQLite: no-op, one writer.)
        return due.with_for_update(skip_locked=True) if lock else due

    async def _sweep_chunk(
        self, now: datetime, day: _ZoneDay, after: str | None, only: str | None = None
    ) -> set[str]:
        """Re-score the next chunk of due accounts (those after ``after``; or due account
        ``only``) in one transaction; returns their ids (none: nothing left)."""
        today = day.today
        due = self._due(day, after)
        if only is not None:
            due = due.where(account_health.c.account_id == only)
        async with self._engine.begin() as conn:
            ids = set((await conn.execute(due)).scalars())
            if not ids:
                return ids
            alerts = await self._processor.rescore(conn, ids, now, as_of=today, swept_on=today)
            if alerts:
                await self._producer.send_many(self._processor.alert_messages(alerts), conn)
        if alerts:
            await self._processor.relay()
        for alert in alerts:
            log.info("sweep alert %s: %s", alert.alert_id, alert.title)
        return ids

    async def _sweep_alone(
        self, now: datetime, day: _ZoneDay, after: str | None, swept: _Tally
    ) -> set[str]:
        """The next chunk, one account per transaction, until an import begins; an
        account that fails on its own is marked swept (its next event rescores it) and
        logged."""
        today = day.today
        async with self._engine.connect() as conn:
            q = self._due(day, after, lock=False)
            candidates: list[str] = list((await conn.execute(q)).scalars())
        done: set[str] = set()
        for account_id in candidates:
            if swept.import_began:  # another lane saw it
                break
            try:
                done |= await self._sweep_chunk(now, day, after, only=account_id)
            except Exception as exc:
                if is_transient(exc):
                    raise
                log.error("sweep: skipping account %r today: %s", account_id, describe(exc))
                async with self._engine.begin() as conn:
                    await mark_swept(conn, {account_id}, today)
                done.add(account_id)
        return done
