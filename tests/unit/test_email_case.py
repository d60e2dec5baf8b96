"""Emails are folded to lower case where they enter, so a CRM's "Anna@Example.COM"
and a key made for "anna@example.com" (or "ANNA@example.com") name one CSM; migration
0016 folds the emails stored before."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text

from shared.auth import Role, create_key, role_scopes
from shared.config import Settings
from tests.support.factories import EngineFactory
from tests.support.harness import add_account, running
from tests.support.migrations import upgrade_to


async def test_an_owner_email_in_other_case_is_still_the_csms_account(
    embedded_settings: Settings,
) -> None:
    async with running(embedded_settings, alerts=False) as hw:
        await add_account(hw, "acme", seats=5, email="Anna@Example.COM")
        await add_account(hw, "globex", seats=5, email="carl@example.com")
        for asked in ("anna@example.com", "ANNA@example.com"):
            key = await create_key(hw.rt.engine, "anna", role_scopes(Role.csm, asked), asked)
            async with hw.client() as client:
                client.headers["Authorization"] = f"Bearer {key}"
                listed = (await client.get("/v1/accounts")).json()
                assert [a["account_id"] for a in listed["accounts"]] == ["acme"], asked
                assert (await client.get("/v1/accounts/acme")).status_code == 200
                assert (await client.get("/v1/accounts/globex")).status_code == 404
        async with hw.client() as client:  # a lead's filter, in any case; one CSM
            r = await client.get("/v1/accounts", params={"csm": "ANNA@EXAMPLE.COM"})
            assert [a["account_id"] for a in r.json()["accounts"]] == ["acme"], r.text
            capacity = (await client.get("/v1/capacity")).json()
            assert sorted(c["owner_email"] for c in capacity["csms"]) == [
                "anna@example.com",
                "carl@example.com",
            ], capacity


async def test_migration_folds_the_emails_stored_before(
    engine_factory: EngineFactory, database_either: str | None
) -> None:
    engine = await engine_factory(database_either, migrated=False)
    now = datetime(2026, 12, 1, tzinfo=UTC)
    async with engine.begin() as conn:
        await conn.run_sync(upgrade_to("0015"))
        await conn.execute(
            text(
                "INSERT INTO api_keys (key_id, name, secret_hash, scopes, csm_email, created_at)"
                " VALUES ('k1', 'anna', 'h', 'read', 'Anna@Example.COM', :now)"
            ),
            {"now": now},
        )
        await conn.execute(
            text(
                "INSERT INTO accounts (account_id, owner_email, facts, facts_occurred_at,"
                " updated_at) VALUES ('acme', 'Anna@example.com', '{}', :now, :now)"
            ),
            {"now": now},
        )
        await conn.execute(
            text(
                "INSERT INTO saved_views (owner, name, query, created_at) VALUES"
                " ('Anna@example.com', 'red', 'band=red', :now),"
                " ('anna@example.com', 'red', 'band=red&tier=gold', :now),"
                " ('Anna@example.com', 'mine', 'sort=score', :now),"
                " ('ANNA@example.com', 'mine', 'sort=arr', :now),"
                " ('Zoë@Example.com', 'z', 'band=red', :now)"
            ),
            {"now": now},
        )
        await conn.run_sync(upgrade_to("0016"))
        keys = (await conn.execute(text("SELECT csm_email FROM api_keys"))).scalars().all()
        owners = (await conn.execute(text("SELECT owner_email FROM accounts"))).scalars().all()
        views = (
            await conn.execute(text("SELECT owner, name, query FROM saved_views ORDER BY name"))
        ).all()
    assert keys == ["anna@example.com"] and owners == ["anna@example.com"]
    assert [tuple(v) for v in views] == [
        ("anna@example.com", "mine", "sort=arr"),  # two unfolded twins: the first kept
        ("anna@example.com", "red", "band=red&tier=gold"),  # the folded owner's own kept
        ("zoë@example.com", "z", "band=red"),  # folded as the service folds, not ASCII only
    ]
