"""Who healthwatch sends work to: the people a task may be given to and accounts may be
moved to, and the language each chose for what they are sent.

An address typed into a form or an API body must name one of them. A task's due and
overdue notices go to its owner by email, so any address a respond key named turned the
service into a mailer of its text to outsiders (found from outside); an account moved
to a mistyped address left every CSM's list without a word (found from outside).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, TypeGuard

from sqlalchemy import ColumnElement, exists, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.alerting.store import AlertingStore
from shared.contracts.events import AccountFacts, Owner, fold_email
from shared.storage.db import among, upsert
from shared.storage.tables import accounts, api_keys, person_languages


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


async def sees_account(conn: AsyncConnection, email: str, account_id: str) -> bool:
    """Whether ``email`` may see ``account_id`` (``may_see``). A task given to a CSM who
    could not see its account was on the lead's lists but never on theirs, nor its case
    (found from outside): a CSM sees their own portfolio only."""
    owner = select(accounts.c.owner_email).where(accounts.c.account_id == account_id)
    seen = await conn.execute(select(may_see(literal(fold_email(email)), owner.scalar_subquery())))
    return bool(seen.scalar())


def may_see(email: ColumnElement[str], owner: ColumnElement[str | None]) -> ColumnElement[bool]:
    """SQL: whether the person ``email`` (folded) may see an account owned by ``owner``:
    yes unless all their unrevoked keys are CSM keys whose portfolio leaves it out (the
    account is another CSM's). Someone with no key reads their notices only. NULL (read
    as no) for a restricted person and an account that is not there."""
    theirs = (func.lower(api_keys.c.csm_email) == email) & api_keys.c.revoked_at.is_(None)
    admin = ("," + api_keys.c.scopes + ",").like("%,admin,%")
    return or_(
        ~exists().where(theirs),
        exists().where(theirs, admin),
        func.lower(owner) == email,  # lower(): an owner stored before emails were folded
    )


def _to_fill(person: Owner | None) -> TypeGuard[Owner]:
    """A person named by email without a Slack id (a ``null`` given is meant, and kept)."""
    return (
        person is not None
        and person.email is not None
        and "slack_id" not in person.model_fields_set
    )


def owner_to_fill(event: AccountFacts) -> bool:
    """Whether ``event`` names its account's owner or sales owner by email without a Slack
    id: a CRM export has no Slack column."""
    return _to_fill(event.owner) or _to_fill(event.sales_owner)


# (account id, email) → the person as stored there; and the account's id "" for anyone.
Known = dict[tuple[str, str], Owner]


async def known_owners(conn: AsyncConnection, events: Sequence[AccountFacts]) -> list[AccountFacts]:
    """``events``, each owner and sales owner named by email without a Slack id given the
    Slack id (and, if it has none, the name) healthwatch knows for that email: the
    account's own, when it has that person already, else those of another account the
    person owns. The owner a fact names replaces the stored one whole: a re-import of
    unchanged owners from a CRM export stopped every Slack notice of their accounts
    (found from outside)."""
    emails = {p.email for e in events for p in (e.owner, e.sales_owner) if _to_fill(p)}
    if not emails:
        return list(events)
    known = await _owners(conn, emails)
    if sold := {e.account_id for e in events if _to_fill(e.sales_owner)}:
        known |= await _sellers(conn, sold)

    def filled(account_id: str, person: Owner | None) -> Owner | None:
        if not _to_fill(person):
            return person
        email = person.email or ""
        found = known.get((account_id, email)) or known.get(("", email))
        if found is None:
            return person
        name = person.name if "name" in person.model_fields_set else found.name
        return person.model_copy(update={"slack_id": found.slack_id, "name": name})

    return [
        e.model_copy(
            update={
                "owner": filled(e.account_id, e.owner),
                "sales_owner": filled(e.account_id, e.sales_owner),
            }
        )
        if owner_to_fill(e)
        else e
        for e in events
    ]


async def _owners(conn: AsyncConnection, emails: set[str | None]) -> Known:
    """The accounts owned by ``emails``, each owner as stored, and per email the first
    with a Slack id (by account id: the same choice every time) as anyone's."""
    a = accounts.c
    name = a.facts["fields"]["owner"]["name"].as_string()
    rows = await conn.execute(
        select(a.account_id, a.owner_email, a.owner_slack_id, name.label("name"))
        .where(among(conn, a.owner_email, emails))
        .order_by(a.owner_slack_id.is_(None), a.account_id)
    )
    known: Known = {}
    for row in rows:
        stored = Owner.model_construct(
            email=row.owner_email, slack_id=row.owner_slack_id, name=row.name
        )
        known[(row.account_id, row.owner_email)] = stored
        known.setdefault(("", row.owner_email), stored)
    return known


async def _sellers(conn: AsyncConnection, ids: set[str]) -> Known:
    """The sales owners of accounts ``ids`` as stored (one owns no account as a CSM)."""
    a = accounts.c
    seller = a.facts["fields"]["sales_owner"]
    rows = await conn.execute(
        select(
            a.account_id,
            seller["email"].as_string().label("email"),
            seller["slack_id"].as_string().label("slack_id"),
            seller["name"].as_string().label("name"),
        ).where(among(conn, a.account_id, ids))
    )
    return {
        (row.account_id, row.email): Owner.model_construct(
            email=row.email, slack_id=row.slack_id, name=row.name
        )
        for row in rows
        if row.email
    }


def stored_owner(email: str | None, slack_id: str | None, facts: Any) -> Owner | None:
    """An account's owner as its row holds them (``accounts``: the email and Slack id in
    columns, the name in the facts), None without an email or a Slack id. The name had
    been left out: every alert said ``"owner": {"name": null}`` of an owner the CRM had
    named (found from outside)."""
    if not (email or slack_id):
        return None
    named = (((facts or {}).get("fields") or {}).get("owner") or {}).get("name")
    name = named if isinstance(named, str) and named.strip() else None
    return Owner.model_construct(email=email, slack_id=slack_id, name=name)


async def chosen_languages(conn: AsyncConnection, emails: Iterable[str]) -> dict[str, str]:
    """The language each of ``emails`` chose on the dashboard, by the email as given, for
    those who chose one."""
    by_folded = {fold_email(email): email for email in emails if email}
    if not by_folded:
        return {}
    p = person_languages.c
    rows = await conn.execute(
        select(p.email, p.language).where(among(conn, p.email, list(by_folded)))
    )
    return {by_folded[email]: language for email, language in rows}


async def remember_language(
    conn: AsyncConnection, email: str, language: str, now: datetime
) -> None:
    """Remember that ``email`` reads ``language``: what they are sent follows it."""
    row = {"email": fold_email(email), "language": language, "chosen_at": now}
    await upsert(conn, person_languages, [row], keys=["email"], update=["language", "chosen_at"])
