"""The clock for quiet accounts.

Event time only moves when an account sends events; one that went quiet never does.
Once per wall-clock day, the sweep re-scores every account whose newest event is older
than today, as of today, so inactivity, ticket silence and renewal windows move and
their rules fire. Running it again the same day changes nothing.
"""

from __future__ import annotations

import logging
from datetime import datetime, time

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scoring.processor import ScoringProcessor
from shared.bus.base import Producer
from shared.clock import Clock, utcnow
from shared.storage.tables import account_health

log = logging.getLogger(__name__)

# Accounts re-scored per transaction: small enough to keep locks short.
CHUNK = 200


class QuietAccountSweep:
    def __init__(
        self,
        engine: AsyncEngine,
        producer: Producer,
        processor: ScoringProcessor,
        *,
        clock: Clock = utcnow,
    ):
        self._engine = engine
        self._producer = producer
        self._processor = processor
        self._clock = clock

    async def run_once(self) -> int:
        """Re-score today's not yet swept quiet accounts; returns how many."""
        now = self._clock()
        zone = self._processor.zone
        today = now.astimezone(zone).date()
        midnight = datetime.combine(today, time(), zone)
        h = account_health
        due = (
            select(h.c.account_id)
            .where(h.c.as_of < midnight, or_(h.c.swept_on.is_(None), h.c.swept_on < today))
            .order_by(h.c.account_id)
            .limit(CHUNK)
            # Every scoring replica runs the sweep. Each takes the due rows no other
            # transaction holds (another replica's chunk, a batch rescoring them) and
            # locks them, so replicas split the work instead of each doing all of it;
            # a skipped row is still due at the next pass. (SQLite: no-op, one writer.)
            .with_for_update(skip_locked=True)
        )
        total = 0
        while True:
            async with self._engine.begin() as conn:
                ids = set((await conn.execute(due)).scalars())
                if not ids:
                    break
                alerts = await self._processor.rescore(conn, ids, now, as_of=today)
                if alerts:
                    await self._producer.send_many(self._processor.alert_messages(alerts), conn)
                await conn.execute(update(h).where(h.c.account_id.in_(ids)).values(swept_on=today))
            total += len(ids)
            for alert in alerts:
                log.info("sweep alert %s: %s", alert.alert_id, alert.title)
        if total:
            log.info("sweep: %d quiet accounts re-scored as of %s", total, today)
        return total
