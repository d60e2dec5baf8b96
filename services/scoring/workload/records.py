"""Every touchpoint and NPS answer scoring applies, kept one row per event.

``account_health`` keeps only the newest touchpoint and the two newest answers, and
Dedup (``usage.DEDUP_HOURS``) forgets event ids after 48 hours; the cadences need the last
visit and QBR (CAD-03: up to a quarter back) and the NPS trend answers over years
(SV-05: one about every six months). Written in the scoring batch's transaction, so a
row exists exactly when its event was applied; the event id keeps a replay from adding
one twice.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from shared.contracts.events import Event, NpsResponse, Touchpoint
from shared.storage.db import bulk_insert
from shared.storage.tables import nps_responses, touchpoint_log


async def record_relationship(conn: AsyncConnection, events: Sequence[Event]) -> None:
    """Keep the touchpoints and NPS answers among ``events``."""
    touches = [
        {
            "event_id": e.event_id,
            "account_id": e.account_id,
            "occurred_at": e.occurred_at,
            "touchpoint_kind": e.touchpoint_kind.value,
            "csm_email": e.csm_email,
        }
        for e in events
        if isinstance(e, Touchpoint)
    ]
    answers = [
        {
            "event_id": e.event_id,
            "account_id": e.account_id,
            "occurred_at": e.occurred_at,
            "score": e.score,
            "user_id": e.user_id,
            "comment": e.comment,
        }
        for e in events
        if isinstance(e, NpsResponse)
    ]
    for table, rows in ((touchpoint_log, touches), (nps_responses, answers)):
        if rows:
            stmt, params = bulk_insert(conn, table, rows)
            await conn.execute(stmt.on_conflict_do_nothing(), params)
