"""Reading the accounts' usage states in tests: what was applied, in comparable form."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scoring import usage_store
from services.scoring.state import dedup_key
from services.scoring.usage import AccountUsage, id_hash, name_key
from shared.storage.tables import account_usage


async def usage_states(engine: AsyncEngine) -> dict[str, AccountUsage]:
    """Every stored state, with its dedup window (stored apart, ``usage_seen``)."""
    async with engine.connect() as conn:
        ids = (await conn.execute(select(account_usage.c.account_id))).scalars().all()
        return await usage_store.load(conn, ids)


async def count_processed(engine: AsyncEngine) -> int:
    """Distinct events scoring has applied (late ones included), over all accounts."""
    return sum(state.events_seen for state in (await usage_states(engine)).values())


async def seen_ids(engine: AsyncEngine, ids: Iterable[str], kind: str = "usage") -> set[str]:
    """Those of ``ids`` (events of ``kind``) scoring has seen within the dedup window
    (any account)."""
    hashes = {
        digest
        for state in (await usage_states(engine)).values()
        for received in state.seen.by_hour().values()
        for digest in received
    }
    return {event_id for event_id in ids if id_hash(dedup_key(kind, event_id)) in hashes}


def comparable(account_id: str, state: AccountUsage) -> dict[str, Any]:
    """A state with user ids instead of indices (the indices follow arrival order) and
    without the dedup window (its pruning follows where batches began)."""
    return {
        "account_id": account_id,
        "first_active": sorted(zip(state.users, state.first_active, strict=True)),
        "days": [
            (
                day.isoformat(),
                use.events,
                round(use.seconds, 6),
                sorted(state.users[index] for index in use.users),
                sorted((*name_key(state.names[i]), count) for i, count in use.names.items()),
            )
            for day, use in state.day_items()
        ],
        "events_seen": state.events_seen,
    }


async def usage_rows(engine: AsyncEngine) -> list[dict[str, Any]]:
    states = await usage_states(engine)
    return [comparable(account_id, states[account_id]) for account_id in sorted(states)]
