"""Score history: the latest score per account per day, band changes, and the inputs
of earlier days that explanations compare against."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.storage.db import insert_ignore, upsert
from shared.storage.tables import account_health, band_changes, health_daily

# Explanations compare with the score before this one, and with these days back.
LOOKBACK_DAYS = (7, 30)


@dataclass(frozen=True)
class Previous:
    score: int | None
    band: str | None
    inputs: dict[str, Any] | None


async def load_previous(conn: AsyncConnection, ids: Iterable[str]) -> dict[str, Previous]:
    rows = await conn.execute(
        select(
            account_health.c.account_id,
            account_health.c.score,
            account_health.c.band,
            account_health.c.inputs,
        ).where(account_health.c.account_id.in_(list(ids)))
    )
    return {r.account_id: Previous(r.score, r.band, r.inputs) for r in rows}


async def load_past_inputs(
    conn: AsyncConnection, as_of: dict[str, date]
) -> dict[tuple[str, int], dict[str, Any]]:
    """(account, days back) → that day's stored inputs, for each of LOOKBACK_DAYS."""
    wanted = {
        (a, d - timedelta(days=back)): back for a, d in as_of.items() for back in LOOKBACK_DAYS
    }
    if not wanted:
        return {}
    # Accounts × days, filtered to the wanted pairs here: an OR per pair would make a
    # query too deep for SQLite at a few hundred accounts.
    rows = await conn.execute(
        select(health_daily.c.account_id, health_daily.c.day, health_daily.c.inputs).where(
            health_daily.c.account_id.in_({a for a, _ in wanted}),
            health_daily.c.day.in_({d for _, d in wanted}),
        )
    )
    return {
        (r.account_id, wanted[(r.account_id, r.day)]): r.inputs
        for r in rows
        if (r.account_id, r.day) in wanted
    }


async def record(
    conn: AsyncConnection,
    daily: list[dict[str, Any]],
    changes: list[dict[str, Any]],
) -> None:
    """Upsert each account's row for its day; add band changes (replays add nothing)."""
    await upsert(
        conn,
        health_daily,
        daily,
        keys=["account_id", "day"],
        update=["score", "band", "inputs", "explanation"],
    )
    if changes:
        await conn.execute(insert_ignore(conn, band_changes).on_conflict_do_nothing(), changes)


def band_change(
    account_id: str, at: datetime, before: Previous | None, band: str, score: int | None
) -> dict[str, Any] | None:
    if before is not None and before.band == band:
        return None
    return {
        "account_id": account_id,
        "changed_at": at,
        "from_band": before.band if before else None,
        "to_band": band,
        "score": score,
    }
