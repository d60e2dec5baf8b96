"""Who healthwatch sends work to: the people a task may be given to and accounts may be
moved to.

An address typed into a form or an API body must name one of them. A task's due and
overdue notices go to its owner by email, so any address a respond key named turned the
service into a mailer of its text to outsiders (found from outside); an account moved
to a mistyped address left every CSM's list without a word (found from outside).
"""

from __future__ import annotations

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.alerting.store import AlertingStore
from shared.contracts.events import fold_email
from shared.storage.tables import accounts, api_keys


async def works_here(conn: AsyncConnection, email: str, alerting: AlertingStore) -> bool:
    """``email`` is someone healthwatch sends work to: an account's owner or sales owner
    (the CRM's), a CSM's unrevoked key or a person of the routing of the alerting file
    in force (``alerting``: the service's store, whose default is the configured
    file)."""
    email = fold_email(email)
    seller = accounts.c.facts["fields"]["sales_owner"]["email"].as_string()
    owner = (
        select(accounts.c.account_id)
        # lower(): an owner stored before emails were folded
        .where(or_(func.lower(accounts.c.owner_email) == email, func.lower(seller) == email))
        .limit(1)
    )
    if (await conn.execute(owner)).first() is not None:
        return True
    key = (
        select(api_keys.c.key_id)
        .where(func.lower(api_keys.c.csm_email) == email, api_keys.c.revoked_at.is_(None))
        .limit(1)
    )
    if (await conn.execute(key)).first() is not None:
        return True
    in_force, _ = await alerting.current(conn)
    routing = in_force.routing
    people = [routing.team, *routing.people.values()]
    return email in {fold_email(person.email) for person in people if person.email}
