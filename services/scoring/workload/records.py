"""Every touchpoint, NPS answer and failed payment scoring applies, kept one row per event.

``account_health`` keeps only the newest touchpoint, the two newest answers and the
newest failed payment, and Dedup (``usage.DEDUP_HOURS``) forgets event ids after 48
hours; the cadences need the last visit and QBR (CAD-03: up to a quarter back), the NPS
trend answers over years (SV-05: one about every six months), and an as-of read the
contacts, answers and failed payments known by its day (``relationship_as_of.py``).
Written in the scoring batch's transaction, so a row exists exactly when its event was
applied; the event id keeps a replay from adding one twice.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from shared.contracts.events import Event, NpsResponse, PaymentEvent, PaymentStatus, Touchpoint
from shared.storage.db import bulk_insert
from shared.storage.tables import nps_responses, payment_failures, touchpoint_log


async def record_relationship(conn: AsyncConnection, events: Sequence[Event]) -> None:
    """Keep the touchpoints, NPS answers and failed payments among ``events`` (the
    payments ``state.py`` moves ``last_payment_failed_at`` by)."""
    touches = [
        {
            "event_id": e.event_id,
            "account_id": e.account_id,
            "occurred_at": e.occurred_at,
            "touchpoint_kind": e.touchpoint_kind.value,
            "csm_email": e.csm_email,
            "contact_role": e.contact_role.value if e.contact_role else None,
            "contact_name": e.contact_name,
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
    failures = [
        {"event_id": e.event_id, "account_id": e.account_id, "occurred_at": e.occurred_at}
        for e in events
        if isinstance(e, PaymentEvent) and e.status is PaymentStatus.failed
    ]
    for table, rows in (
        (touchpoint_log, touches),
        (nps_responses, answers),
        (payment_failures, failures),
    ):
        if rows:
            stmt, params = bulk_insert(conn, table, rows)
            await conn.execute(stmt.on_conflict_do_nothing(), params)
