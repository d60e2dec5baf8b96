"""Tasks on a real SQLite database: created once per source key, owned by the account's
owner now unless named, listed by owner and overdue, completed once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from services.alerts.cases.tasks import (
    NewTask,
    OwnerRefused,
    TaskError,
    TaskFilter,
    complete_task,
    create_task,
    list_tasks,
    visible_task,
)
from shared.alerting.store import AlertingStore
from shared.auth import ApiKey, Scope, create_key, revoke_key
from shared.config import Settings
from shared.people import works_here
from shared.storage.db import create_engine, migrate
from shared.storage.tables import accounts
from tests.support.alerting import alerting_toml

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
# The shipped alerting file (its routing's people may own tasks).
ALERTING = AlertingStore()


@pytest.fixture
async def engine(embedded_settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(embedded_settings.database_url)
    await migrate(engine)
    async with engine.begin() as conn:
        for account_id, owner in (("acme", "anna@example.com"), ("beta", "bob@example.com")):
            await conn.execute(
                accounts.insert().values(
                    account_id=account_id,
                    name=account_id.title(),
                    owner_email=owner,
                    facts={},
                    facts_occurred_at=T0,
                    updated_at=T0,
                )
            )
    # Carl owns no account yet: a CSM with a key, whom a task may name.
    await create_key(engine, "carl", [Scope.read, Scope.respond], "carl@example.com")
    yield engine
    await engine.dispose()


def csm(email: str) -> ApiKey:
    return ApiKey(key_id="k", name="k", scopes=frozenset({Scope.read}), csm_email=email)


async def test_create_list_complete(engine: AsyncEngine) -> None:
    follow_up = NewTask(
        "acme",
        "nps_followup",
        "Call the detractor",
        T0 + timedelta(days=7),
        "alert:a1",
        source_key="nps:a1",
    )
    async with engine.begin() as conn:
        first = await create_task(conn, follow_up, T0, ALERTING)
        assert await create_task(conn, follow_up, T0, ALERTING) == first  # a replay adds nothing
        await conn.execute(
            accounts.insert().values(
                account_id="gamma",
                name="Gamma",
                owner_email="carl@example.com",
                facts={},
                facts_occurred_at=T0,
                updated_at=T0,
            )
        )
        named = NewTask(
            "gamma",
            "case_action",
            "Meet the boss",
            T0 + timedelta(days=1),
            "lead@x",
            owner_email="carl@example.com",
        )
        await create_task(conn, named, T0, ALERTING)
        with pytest.raises(TaskError):
            await create_task(conn, NewTask("acme", "case_action", " ", T0, "x"), T0, ALERTING)
        # The dashboard's form stored any text as an owner; the API's body refused it.
        for owner in ("不是邮箱", "carl@", "carl@example.com\x00"):
            with pytest.raises(TaskError, match="not an email address"):
                await create_task(conn, replace(named, owner_email=owner), T0, ALERTING)
    async with engine.begin() as conn:
        mine, total = await list_tasks(conn, csm("anna@example.com"), TaskFilter())
        assert total == 1 and mine[0]["owner_email"] == "anna@example.com"
        assert mine[0]["account_name"] == "Acme"
        # Another CSM's key sees neither the task nor its account's.
        assert await visible_task(conn, first, csm("bob@example.com")) is None
        carl, _ = await list_tasks(conn, None, TaskFilter(owner="carl@example.com"))
        assert [t["title"] for t in carl] == ["Meet the boss"]
        late, _ = await list_tasks(conn, None, TaskFilter(overdue_at=T0 + timedelta(days=2)))
        assert [t["title"] for t in late] == ["Meet the boss"]
        # The account handed over: its task follows the owner now.
        await conn.execute(
            update(accounts)
            .where(accounts.c.account_id == "acme")
            .values(owner_email="bob@example.com")
        )
        moved, _ = await list_tasks(conn, None, TaskFilter(owner="bob@example.com"))
        assert [t["task_id"] for t in moved] == [first]
        await complete_task(conn, first, "bob@example.com", T0 + timedelta(days=1))
        with pytest.raises(TaskError):
            await complete_task(conn, first, "bob@example.com", T0 + timedelta(days=1))
        done, total = await list_tasks(conn, None, TaskFilter(open_only=False, account_id="acme"))
        assert total == 1 and done[0]["done_by"] == "bob@example.com"
        assert (await list_tasks(conn, None, TaskFilter(account_id="acme")))[1] == 0


async def test_a_task_is_for_someone_who_works_here(engine: AsyncEngine) -> None:
    """Found from outside: any respond key could name any address as a task's owner,
    and its due and overdue notices emailed that address the key's text (phishing
    through the company's mail server); a NUL made a title on SQLite. (A due date in
    the past stays allowed: a step already late when planned is overdue at once.)"""
    dave = await create_key(engine, "dave", [Scope.read], "dave@example.com")
    await revoke_key(engine, dave.split("_")[1])
    async with engine.begin() as conn:
        for outsider in ("victim@outside.example", "Victim@Outside.example"):
            with pytest.raises(TaskError, match="not someone healthwatch sends work to"):
                await create_task(
                    conn,
                    NewTask("acme", "case_action", "Verify", T0, "x", owner_email=outsider),
                    T0,
                    ALERTING,
                )
        # An account's owner (any case) or sales owner, and a CSM with a key may be named.
        await conn.execute(
            update(accounts)
            .where(accounts.c.account_id == "beta")
            .values(facts={"fields": {"sales_owner": {"email": "sam@example.com"}}})
        )
        for insider in ("Bob@Example.com", "Sam@example.com"):
            named = NewTask("acme", "case_action", "Call", T0, "x", owner_email=insider)
            assert await create_task(conn, named, T0, ALERTING) > 0
        # A CSM with a key sees their own portfolio only: a task on another CSM's account
        # would reach nobody's list but the lead's (found from outside), so it is refused,
        # saying why. On an account of theirs it is theirs.
        on_annas = NewTask("acme", "case_action", "Call", T0, "x", owner_email="carl@example.com")
        with pytest.raises(OwnerRefused, match="cannot see account 'acme'") as refused:
            await create_task(conn, on_annas, T0, ALERTING)
        assert refused.value.code == "owner_cannot_see"
        await conn.execute(
            update(accounts)
            .where(accounts.c.account_id == "acme")
            .values(owner_email="carl@example.com")
        )
        assert await create_task(conn, on_annas, T0, ALERTING) > 0
        # A CSM's key revoked: no longer someone work is sent to.
        with pytest.raises(TaskError, match="not someone healthwatch sends work to"):
            gone = NewTask("acme", "case_action", "Call", T0, "x", owner_email="dave@example.com")
            await create_task(conn, gone, T0, ALERTING)
        with pytest.raises(TaskError, match="without control characters"):
            await create_task(conn, NewTask("acme", "case_action", "a\x00b", T0, "x"), T0, ALERTING)


async def test_the_configured_alerting_files_people_may_own_tasks(engine: AsyncEngine) -> None:
    """The routing's people are those of the alerting file in force: the configured
    file (HEALTHWATCH_ALERTING_FILE) where none is stored, not the shipped one (a lead
    named only in the configured file was refused, found in review)."""
    routing = (
        '[routing]\nescalate_to = ["cs_lead"]\n\n[routing.people.cs_lead]\n'
        'name = "Lead"\nemail = "lead@corp.example"\n'
    )
    configured = AlertingStore(alerting_toml(routing=routing))
    async with engine.begin() as conn:
        assert await works_here(conn, "Lead@corp.example", configured)
        assert not await works_here(conn, "lead@corp.example", ALERTING)
        task = NewTask("acme", "case_action", "Call", T0, "x", owner_email="lead@corp.example")
        assert await create_task(conn, task, T0, configured) > 0
