"""What other packages may read of alerts: the one import they are allowed besides the
commands of ``actions.py`` (the import rules in ``pyproject.toml``, explained in
``docs/architecture.md``).

A key tied to a CSM (``ApiKey.portfolio_of``) sees the alerts of the accounts that CSM
owns now, whoever owned them when the alert fired; the alerts API and the dashboard
both filter through ``visible_alerts``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Select, Text, and_, case, cast, false, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.auth import ApiKey
from shared.contracts.alerts import SEVERITY_ORDER, TIER_ORDER
from shared.contracts.events import fold_email
from shared.storage.tables import accounts, alerts

ALERT_ID_CHARS = 300  # the alerts.alert_id column


def visible_alerts(q: Select[Any], key: ApiKey) -> Select[Any]:
    """``q`` (over the alerts table) narrowed to the alerts ``key`` may see."""
    if key.portfolio_of is not None:
        return q.where(alerts.c.account_id.in_(accounts_of(key.portfolio_of)))
    return q


def accounts_of(owner_email: str) -> Select[Any]:
    """The ids of the accounts ``owner_email`` owns now (the accounts table)."""
    return select(accounts.c.account_id).where(accounts.c.owner_email == fold_email(owner_email))


def storable_alert_id(alert_id: str) -> bool:
    """Could be an alert id at all: ids fit their column and hold no NUL (which
    PostgreSQL refuses in text), so anything else is simply not found."""
    return len(alert_id) <= ALERT_ID_CHARS and "\x00" not in alert_id


def of_rule(rule: str) -> ColumnElement[bool]:
    """The alert's own rule, or a symptom of its family (``details.symptoms``, stored as
    ``{"rule":"nps_detractor",…}`` by the storage's compact JSON): a detractor listed
    under an account's relationship alert is found by "NPS detractor" too. The API's
    filter and the dashboard's both: they had counted 0 and 4 of one rule's alerts."""
    stored = '"rule":' + orjson.dumps(rule).decode()
    in_payload = cast(alerts.c.payload, Text).contains(stored, autoescape=True)
    return or_(alerts.c.rule == rule, in_payload)


def alert_rows() -> Select[Any]:
    """The alerts' rows, each with ``owner_now``: its account's owner now (alerts follow
    the account, as their visibility and the owner filter do), else the one it fired
    for. A reassigned account's alerts named the old CSM (found from outside)."""
    now = select(accounts.c.owner_email).where(accounts.c.account_id == alerts.c.account_id)
    return select(
        alerts, func.coalesce(now.scalar_subquery(), alerts.c.owner_email).label("owner_now")
    )


async def visible_alert(conn: AsyncConnection, alert_id: str, key: ApiKey) -> Any:
    """The alert's row (``alert_rows``) if ``key`` may see it, else None."""
    if not storable_alert_id(alert_id):
        return None
    q = visible_alerts(alert_rows().where(alerts.c.alert_id == alert_id), key)
    return (await conn.execute(q)).first()


async def total_of(conn: AsyncConnection, q: Select[Any]) -> int:
    """How many rows ``q`` selects without its limit and offset: a list that shows a page
    says how many there are (issue 15: no count capped silently)."""
    whole = q.limit(None).offset(None).order_by(None).subquery()
    return int((await conn.execute(select(func.count()).select_from(whole))).scalar_one())


def snoozed(now: datetime) -> ColumnElement[bool]:
    """An alert snoozed at ``now``."""
    return and_(alerts.c.snoozed_until.is_not(None), alerts.c.snoozed_until > now)


def waiting(now: datetime) -> ColumnElement[bool]:
    """An alert that waits for someone at ``now`` (the dashboard's "to do", the API's
    ``status=to_do``): firing, and not snoozed, muted by its account's critical alert
    or marked not useful. Acknowledged means somebody has it; it waits no more."""
    a = alerts.c
    return and_(a.status == "firing", ~snoozed(now), a.muted == false(), a.not_useful == false())


def urgency() -> tuple[ColumnElement[int], ColumnElement[int]]:
    """The order people attend to alerts in (``SEVERITY_ORDER``, then ``TIER_ORDER`` of
    the account, which the query joins as ``accounts``), for an ``order_by``."""
    return (
        case(SEVERITY_ORDER, value=alerts.c.severity, else_=len(SEVERITY_ORDER)),
        case(TIER_ORDER, value=accounts.c.tier, else_=len(TIER_ORDER)),
    )
