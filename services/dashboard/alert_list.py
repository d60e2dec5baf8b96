"""The alerts a viewer may see, as the home page, the alerts page, an alert's page and an
account's page list them: filtered, counted and ordered most urgent first.

"To do" is what still waits for the viewer: a firing alert nobody acknowledged, not
snoozed, not muted by a critical alert of its account, not marked not useful. It is
the list that shrinks as a CSM works it; "open" (firing or acknowledged) is every alert
whose problem is still there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.alerts.queries import (
    accounts_of,
    of_rule,
    snoozed,
    total_of,
    urgency,
    visible_alerts,
    waiting,
)
from services.dashboard.auth import Viewer
from shared.contracts.alerts import OPEN_ALERT_STATUSES
from shared.storage.tables import account_health, accounts, alerts


@dataclass(frozen=True)
class AlertFilters:
    """Which alerts a list shows: open ones by default."""

    states: tuple[str, ...] = OPEN_ALERT_STATUSES
    rule: str | None = None  # the alert's rule or one of its symptoms'
    severity: str | None = None
    account_id: str | None = None
    alert_id: str | None = None
    search: str | None = None  # a part of the account's id or name, any case
    owner: str | None = None  # the account's owner now
    to_do: bool = False  # only what waits for someone (the module's docstring)
    snoozed: bool = False
    muted: bool = False
    tier: str | None = None  # the account's tier now


# The orders a list may take besides the most urgent first (``list_alerts``): the most
# ARR at stake, the weakest health, the longest waiting. Each keeps what still waits for
# someone first, and breaks ties most urgent first.
SORTS = ("urgency", "arr", "health", "oldest")


def arr_of() -> Any:
    """An account's ARR from its CRM facts (MRR × 12 where only MRR was sent), as the
    portfolio counts it; NULL when it sent neither."""
    fields = accounts.c.facts["fields"]
    return func.coalesce(fields["arr"].as_float(), fields["mrr"].as_float() * 12)


def _money_group(home: str | None) -> Any:
    """SQL: where an account's ARR sorts among currencies (``queries.money_group``)."""
    named = accounts.c.facts["fields"]["currency"].as_string()
    return case((or_(named.is_(None), named == (home or "")), ""), else_=named)


# The alerts page's states, by the name its menu and query string use.
VIEWS = {
    "to_do": AlertFilters(("firing",), to_do=True),
    "open": AlertFilters(OPEN_ALERT_STATUSES),
    "firing": AlertFilters(("firing",)),
    "acknowledged": AlertFilters(("acknowledged",)),
    "snoozed": AlertFilters(OPEN_ALERT_STATUSES, snoozed=True),
    "muted": AlertFilters(OPEN_ALERT_STATUSES, muted=True),
    "resolved": AlertFilters(("resolved",)),
    "all": AlertFilters((*OPEN_ALERT_STATUSES, "resolved")),
}


def _alert_query(who: Viewer, f: AlertFilters, now: datetime) -> Any:
    q = (
        select(
            alerts.c.alert_id,
            alerts.c.account_id,
            alerts.c.rule,
            alerts.c.severity,
            alerts.c.status,
            alerts.c.title,
            alerts.c.fired_at,
            alerts.c.stored_at,
            alerts.c.acknowledged_by,
            alerts.c.snoozed_until,
            alerts.c.muted,
            alerts.c.not_useful,
            alerts.c.resolved_at,
            accounts.c.name,
            arr_of().label("arr"),
            accounts.c.facts["fields"]["currency"].as_string().label("currency"),
            account_health.c.score.label("health_score"),
            account_health.c.band.label("health_band"),
        )
        # (urgency orders by the account's tier: the join is named ``accounts``)
        .select_from(
            alerts.outerjoin(accounts, accounts.c.account_id == alerts.c.account_id).outerjoin(
                account_health, account_health.c.account_id == alerts.c.account_id
            )
        )
        .where(alerts.c.status.in_(f.states))
    )
    for column, wanted in (
        (alerts.c.severity, f.severity),
        (alerts.c.account_id, f.account_id),
        (alerts.c.alert_id, f.alert_id),
        (accounts.c.tier, f.tier),
    ):
        if wanted:
            q = q.where(column == wanted)
    if f.rule:
        q = q.where(of_rule(f.rule))
    if f.search:
        # (SQLite's lower() folds ASCII only: "École" is found by "école" on PostgreSQL,
        # by "Éc" on both; names in Chinese have no case.)
        part = f.search.lower()
        q = q.where(
            or_(
                func.lower(alerts.c.account_id).contains(part, autoescape=True),
                func.lower(accounts.c.name).contains(part, autoescape=True),
            )
        )
    if f.owner:
        q = q.where(alerts.c.account_id.in_(accounts_of(f.owner)))
    if f.to_do:
        q = q.where(waiting(now))
    if f.snoozed:
        q = q.where(snoozed(now))
    if f.muted:
        q = q.where(alerts.c.muted)
    return visible_alerts(q, who.key)


async def list_alerts(
    conn: AsyncConnection,
    who: Viewer,
    now: datetime,
    f: AlertFilters,
    limit: int | None = None,
    offset: int = 0,
    sort: str = "urgency",
    currency: str | None = None,
) -> tuple[int, list[dict[str, Any]]]:
    """The total of the alerts matching ``f`` and the ``limit`` of them from ``offset``:
    open ones first, those waiting for someone before those acknowledged, snoozed or
    muted (a snooze left the alert at the top of the home page's most urgent), then by
    ``sort`` (``SORTS``): the most severe, then strategic accounts before enterprise and
    non-focus ones (two small accounts' alerts led a strategic one's for being newer),
    then the newest; or the most ARR, the weakest health or the oldest first, ties the
    most urgent first. Most ARR first never compares two currencies: the service's
    (``currency``) first, then each other, the unknown last (``queries.MONEY_SORTS``)."""
    q = _alert_query(who, f, now)
    total = await total_of(conn, q)
    chosen = {
        "arr": (arr_of().is_(None), _money_group(currency), arr_of().desc()),
        "health": (account_health.c.score.asc().nulls_last(),),
        # Waiting longest: stored (people told) first, as the lead page's "oldest".
        "oldest": (alerts.c.stored_at.asc(),),
    }.get(sort, ())
    q = q.order_by(
        (alerts.c.status == "resolved"),
        (alerts.c.status == "acknowledged"),
        snoozed(now),
        alerts.c.muted,
        *chosen,
        *urgency(),
        alerts.c.fired_at.desc(),
        alerts.c.alert_id,
    )
    if limit is not None:
        q = q.limit(limit).offset(offset)
    return total, [_alert_row(r, who, now) for r in await conn.execute(q)]


async def count_alerts(conn: AsyncConnection, who: Viewer, now: datetime, f: AlertFilters) -> int:
    return await total_of(conn, _alert_query(who, f, now))


def _alert_row(r: Any, who: Viewer, now: datetime) -> dict[str, Any]:
    is_snoozed = r.snoozed_until is not None and r.snoozed_until > now
    is_open = r.status != "resolved"
    return {
        "alert_id": r.alert_id,
        "account_id": r.account_id,
        "account_name": r.name or r.account_id,
        "arr": r.arr,
        "currency": r.currency,
        "health_score": r.health_score,
        "health_band": r.health_band,
        "rule": r.rule,
        "severity": r.severity,
        "status": r.status,
        "title": r.title,
        "fired_at": r.fired_at,
        "stored_at": r.stored_at,  # since when people know of it: "waiting longest"
        "resolved_at": r.resolved_at,
        "acknowledged_by": r.acknowledged_by,
        "snoozed_until": r.snoozed_until if is_snoozed else None,
        "muted": r.muted,
        "not_useful": r.not_useful,
        "can_acknowledge": who.can_respond and r.status == "firing",
        "can_snooze": who.can_respond and is_open and not is_snoozed,
        "can_resolve": who.can_respond and is_open,
    }


async def open_alerts(
    conn: AsyncConnection, who: Viewer, now: datetime, account_id: str | None = None
) -> list[dict[str, Any]]:
    """Every open (firing or acknowledged) alert, of one account if given, most urgent
    first."""
    _, rows = await list_alerts(conn, who, now, AlertFilters(account_id=account_id))
    return rows
