"""Who hears about a case or task, read from the account now (the accounts table), and
the notices themselves, put into the alerts service's outbox.

A case's people are the account's owner CSM (else the team) plus the roles its tier adds
in the alerting file's routing: for a strategic account the lead and the sales owner
(``facts.fields.sales_owner``), because everyone who dealt with the customer joins the
review (DG-10). Overdue work goes to ``routing.escalate_to`` (the lead).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.alerts import routing
from services.alerts.outbox import CASE_NOTIFICATION, Outbox
from shared.alerting.schema import Recipient, Routing
from shared.config import Settings
from shared.contracts.events import Owner
from shared.contracts.notices import CaseNote, Notice, NoticeKind
from shared.people import stored_owner
from shared.storage.tables import accounts


@dataclass(frozen=True)
class Contacts:
    """An account's name, owner, tier and sales owner now."""

    name: str | None = None
    owner: Owner | None = None
    tier: str | None = None
    sales_owner: Owner | None = None


async def contacts(conn: AsyncConnection, account_id: str) -> Contacts:
    """The account's contacts now; empty if the account is unknown."""
    q = select(
        accounts.c.name,
        accounts.c.owner_email,
        accounts.c.owner_slack_id,
        accounts.c.tier,
        accounts.c.facts,
    ).where(accounts.c.account_id == account_id)
    row = (await conn.execute(q)).first()
    if row is None:
        return Contacts()
    owner = stored_owner(row.owner_email, row.owner_slack_id, row.facts)
    return Contacts(row.name, owner, row.tier, _sales_owner(row.facts))


def _sales_owner(facts: Any) -> Owner | None:
    sales = ((facts or {}).get("fields") or {}).get("sales_owner")
    try:
        return Owner.model_validate(sales) if isinstance(sales, dict) else None
    except ValidationError:
        return None  # not a usable owner: the alerting file's sales manager instead


def case_people(who: Contacts, rules: Routing, settings: Settings) -> list[Recipient]:
    """The owner (else the team), and for a strategic account the lead and sales owner."""
    return routing.account_people(who.owner, who.tier, who.sales_owner, rules, settings)


def task_owner(named: str | None, who: Contacts, rules: Routing, settings: Settings) -> Recipient:
    """A task's owner: the one named on it, else the account's owner (else the team)."""
    if named:
        if who.owner is not None and who.owner.email == named:
            return Recipient(email=named, slack=who.owner.slack_id)
        return Recipient(email=named)
    return routing.account_people(who.owner, None, None, rules, settings)[0]


def escalation(who: Contacts, rules: Routing, settings: Settings) -> list[Recipient]:
    """Who hears of overdue work: the lead (``routing.escalate_to``), else the team."""
    return routing.escalation_people(who.sales_owner, rules, settings)


async def tell(
    conn: AsyncConnection,
    outbox: Outbox,
    kind: NoticeKind,
    note: CaseNote,
    people: list[Recipient],
    *,
    notification: str,
    now: datetime,
) -> int:
    """Put one notice about a case or task; keyed by it and ``notification``, so a
    second pass puts nothing."""
    notice = Notice(kind, [], f"{note.ref}/{notification}", note)
    name = CASE_NOTIFICATION + notification
    return await outbox.put(conn, notice, people, notification=name, now=now)
