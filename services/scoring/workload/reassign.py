"""Reassigning accounts to another CSM, as an account-facts change.

The owner lives in the accounts table, which scoring alone writes when account facts
apply. A reassignment is therefore an ``account`` event carrying the new owner,
published on the bus as ingest would publish a CRM's (and as the dashboard publishes a
touchpoint): scoring stays the one writer, a replay of the bus gives the same owner,
and alerts, cases and due touchpoints follow, since they read the account's current
owner. A later CRM sync that sends ``owner`` overrides it, as any newer fact does.

Only a key that sees every account (a lead's or an admin's) with the ``respond`` scope
may reassign.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from services.scoring.queries import visible_account
from shared.alerting.store import AlertingStore
from shared.auth import ApiKey, Scope
from shared.bus.base import OutMessage
from shared.config import Settings
from shared.contracts.events import AccountFacts, Owner, fold_email
from shared.contracts.wire import encode_event
from shared.people import known_owners, works_here
from shared.web import ClientError

# One request's accounts: a whole portfolio moves in a few requests, and one answer
# stays small.
MAX_ACCOUNTS = 500


def may_reassign(key: ApiKey) -> bool:
    return key.portfolio_of is None and key.allows(Scope.respond)


async def reassignment(
    conn: AsyncConnection,
    key: ApiKey,
    account_ids: Sequence[str],
    to_owner: str,
    now: datetime,
    alerting: AlertingStore,
) -> tuple[list[AccountFacts], list[str]]:
    """The events that move ``account_ids`` to ``to_owner``, and the accounts left out
    because they are the owner's already. 403 for a CSM's key, 404 for an unknown id,
    422 for an owner healthwatch sends no work to (``shared.people.works_here``)."""
    if not may_reassign(key):
        raise ClientError(
            403, "lead_only", "Only a lead or an admin key may reassign accounts between CSMs."
        )
    unchanged, moving = [], []
    for account_id in dict.fromkeys(account_ids):
        row = await visible_account(conn, account_id, key)
        if row is not None and row.owner_email == fold_email(to_owner):
            unchanged.append(account_id)
        else:
            moving.append(account_id)
    if moving and not await works_here(conn, to_owner, alerting):
        raise ClientError(
            422,
            "unknown_owner",
            "{owner} is no one healthwatch sends work to, so the accounts would leave every "
            "CSM's list: check the address, or give them a CSM key first (Admin, or "
            "`healthwatch keys create --role csm --csm-email …`).",
            values={"owner": to_owner},
        )
    events = [
        AccountFacts(
            event_id=f"reassign:{uuid.uuid4().hex}",
            account_id=account_id,
            occurred_at=now,
            received_at=now,
            owner=Owner(email=to_owner),
        )
        for account_id in moving
    ]
    # The owner as the CRM already knows them (Slack id, name), so their alerts reach
    # their Slack.
    return await known_owners(conn, events), unchanged


def messages(events: Sequence[AccountFacts], settings: Settings) -> list[OutMessage]:
    """The bus messages ingest would publish for ``events``: the account topic, keyed by
    the account (so they land on its partition, in order with its other events)."""
    return [
        OutMessage(settings.topic(e.kind), e.account_id.encode(), encode_event(e)) for e in events
    ]
