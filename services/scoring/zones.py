"""Whose calendar days: each account's activity counts on the days of its own zone.

An account's zone is its CRM fact ``timezone`` (an IANA name, checked at ingest), else
the service's ``HEALTHWATCH_TIMEZONE``. A usage event at 2026-12-02T00:30+08:00 of an
account in Asia/Shanghai is Dec 2 activity even when the service runs in UTC.

The zone is part of the account's state (the merged facts, last writer by event time),
and a batch applies its facts before its usage, so the zone an event is counted in is
the account's zone when the event is applied: the same on every replay of the same log.

A change of zone applies to the events applied after it. Days already counted stay as
they were: raw events are not kept (only daily totals), so they cannot be re-bucketed,
and re-bucketing would rewrite history scores and alerts were computed from. A zone is
set once when the account is created in practice; a correction shifts at most the day
of the change.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.storage.db import among
from shared.storage.tables import accounts

ZONE_FIELD = "timezone"


def zone_name() -> ColumnElement[Any]:
    """The stored zone name of an ``accounts`` row (NULL without one), in SQL."""
    name: ColumnElement[Any] = accounts.c.facts[("fields", ZONE_FIELD)].as_string()
    return name


def zone_of(facts: Mapping[str, Any] | None, default: tzinfo) -> tzinfo:
    """The zone of an account from its stored facts (``accounts.facts``)."""
    name = ((facts or {}).get("fields") or {}).get(ZONE_FIELD)
    # Names were checked at ingest; ZoneInfo caches one object per name.
    return ZoneInfo(name) if isinstance(name, str) else default


async def account_zones(
    conn: AsyncConnection, ids: Collection[str], default: tzinfo
) -> dict[str, tzinfo]:
    """account → its zone, for ``ids`` (the default for those without facts)."""
    zones = dict.fromkeys(ids, default)
    if ids:
        rows = await conn.execute(
            select(accounts.c.account_id, zone_name()).where(
                among(conn, accounts.c.account_id, ids), zone_name().is_not(None)
            )
        )
        zones.update({account_id: ZoneInfo(name) for account_id, name in rows})
    return zones


async def account_zone(conn: AsyncConnection, account_id: str, default: tzinfo) -> tzinfo:
    """One account's zone (``default`` without facts naming one)."""
    return (await account_zones(conn, [account_id], default))[account_id]


async def zones_in_use(conn: AsyncConnection) -> set[str]:
    """The zone names accounts carry (the service's default is not among them unless
    an account names it)."""
    rows = await conn.execute(select(zone_name()).where(zone_name().is_not(None)).distinct())
    return set(rows.scalars())
