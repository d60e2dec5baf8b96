"""Reading and writing the accounts' usage states (``usage.py``) inside the caller's
transaction: one SELECT for a batch's accounts, one upsert of those it changed, and the
long daily history (``activity_daily``) rewritten for the days it changed."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scoring import usage
from services.scoring.usage import AccountUsage
from shared.storage.db import bulk_insert
from shared.storage.tables import account_usage, activity_daily

Usage = dict[str, AccountUsage]  # account id → its usage state


async def load(conn: AsyncConnection, ids: Iterable[str], *, for_update: bool = False) -> Usage:
    """The usage states of ``ids`` (an empty one for an account never seen).
    ``for_update``: lock the rows to commit (PostgreSQL), in one order everywhere, so
    two transactions changing the same account (a consumer losing its partition while
    the next one starts) apply one after the other instead of one losing the other's."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    query = select(account_usage.c.account_id, account_usage.c.state).where(
        account_usage.c.account_id.in_(wanted)
    )
    if for_update and conn.dialect.name == "postgresql":
        query = query.order_by(account_usage.c.account_id).with_for_update()
    states = {row.account_id: usage.decode(row.state) for row in await conn.execute(query)}
    return {account_id: states.get(account_id) or AccountUsage() for account_id in wanted}


async def complete(conn: AsyncConnection, states: Usage, ids: Iterable[str]) -> Usage:
    """``states`` with the missing ones of ``ids`` loaded (in place, and returned)."""
    missing = set(ids) - states.keys()
    if missing:
        states.update(await load(conn, missing))
    return states


async def save(conn: AsyncConnection, states: Mapping[str, AccountUsage], now: datetime) -> None:
    """Write the states that changed, and their changed days into the daily history."""
    changed = {account_id: state for account_id, state in states.items() if state.changed}
    if not changed:
        return
    await _overwrite(
        conn,
        account_usage,
        [
            {"account_id": account_id, "state": usage.encode(state), "updated_at": now}
            for account_id, state in sorted(changed.items())
        ],
        keys=["account_id"],
    )
    await _overwrite(
        conn,
        activity_daily,
        [
            {
                "account_id": account_id,
                "day": date.fromordinal(ordinal),
                "events": use.events,
                "duration_s": use.seconds,
                "active_users": len(use.users),
            }
            for account_id, state in sorted(changed.items())
            for ordinal in sorted(state.touched)
            if (use := state.days.get(ordinal)) is not None
        ],
        keys=["account_id", "day"],
    )
    for state in changed.values():
        state.touched.clear()
        state.changed = False


async def _overwrite(
    conn: AsyncConnection, table: Table, rows: list[dict[str, Any]], *, keys: list[str]
) -> None:
    """Insert ``rows``, overwriting those whose ``keys`` exist: one statement (on
    PostgreSQL one parameter set, see ``bulk_insert``)."""
    if not rows:
        return
    stmt, params = bulk_insert(conn, table, rows)
    stmt = stmt.on_conflict_do_update(
        index_elements=keys,
        set_={name: stmt.excluded[name] for name in rows[0] if name not in keys},
    )
    await conn.execute(stmt, params)
