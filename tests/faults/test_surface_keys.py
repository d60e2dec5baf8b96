"""Keys can be listed and revoked (issue 11, item 16): ``healthwatch keys list`` and
``keys revoke``, and the admin API (GET/POST /v1/keys, DELETE /v1/keys/{id}). A revoked
key is refused (401) once the key caches expire; the secret is never shown again."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import httpx
import pytest

from shared.auth import KeyStore, Scope, create_key
from shared.config import Settings
from shared.storage.db import create_engine, migrate
from tests.support.harness import running, wait_for

pytestmark = pytest.mark.integration

# The test shortens the key cache so that a revocation shows within its bound; the
# production TTL (a minute) is the same code path, only longer.
TEST_CACHE_TTL_S = 0.5


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_admin_api_lists_creates_and_revokes_keys(
    kafka_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(KeyStore, "CACHE_TTL_S", TEST_CACHE_TTL_S)
    async with running(kafka_settings, scoring=False, alerts=False) as hw:
        admin = await create_key(hw.rt.engine, "root", [Scope.admin])
        async with httpx.AsyncClient(base_url=hw.url, headers=_bearer(admin), timeout=30) as c:
            made = await c.post("/v1/keys", json={"name": "lead", "role": "cs_lead"})
            assert made.status_code == 201, made.text
            body = made.json()
            lead, key_id = body["key"], body["key_id"]
            assert lead.startswith(f"hwk_{key_id}_") and body["role"] == "cs_lead"
            assert body["scopes"] == ["read", "respond"] and body["revoked_at"] is None
            assert made.headers["cache-control"] == "no-store"  # the secret, once
            csm = await c.post(
                "/v1/keys", json={"name": "anna", "role": "csm", "csm_email": "anna@example.com"}
            )
            assert csm.status_code == 201 and csm.json()["csm_email"] == "anna@example.com"

            listed = await c.get("/v1/keys")
            assert listed.status_code == 200
            rows = {k["key_id"]: k for k in listed.json()["keys"]}
            assert rows[key_id]["name"] == "lead" and rows[key_id]["role"] == "cs_lead"
            secret = lead.split("_", 2)[2]
            assert secret not in listed.text and "hash" not in listed.text

            # The new key works; once revoked, it is refused within the cache TTL.
            assert (await c.get("/v1/accounts", headers=_bearer(lead))).status_code == 200
            gone = await c.delete(f"/v1/keys/{key_id}")
            assert gone.status_code == 200 and gone.json()["revoked_at"] is not None
            again = await c.delete(f"/v1/keys/{key_id}")  # idempotent: the same moment
            assert again.json()["revoked_at"] == gone.json()["revoked_at"]

            async def refused() -> bool:
                r = await c.get("/v1/accounts", headers=_bearer(lead))
                return r.status_code == 401

            await wait_for(refused, timeout=30, what="the revoked key to be refused")
            rows = {k["key_id"]: k for k in (await c.get("/v1/keys")).json()["keys"]}
            assert rows[key_id]["revoked_at"] == gone.json()["revoked_at"]
            assert (await c.delete("/v1/keys/nosuchkey")).status_code == 404

            for raw in (
                b'{"name": "\\ud800", "role": "admin"}',  # a lone surrogate
                b'{"name": "x", "role": "csm", "csm_email": "a\\u0000@example.com"}',
                b'{"name": "x", "role": "admin"',
                b"[]",
            ):
                r = await c.post("/v1/keys", content=raw)
                assert r.status_code == 422, (raw, r.status_code, r.text)
            for bad in (
                {"name": "x" * 201, "role": "admin"},
                {"name": "x", "scopes": ["nope"]},
                {"name": "x", "role": "csm", "csm_email": "not an email"},
                {"name": "x"},  # neither role nor scopes
                {"name": "x", "role": "admin", "scopes": ["read"]},
                {"name": "x", "role": "csm"},  # a CSM key names its CSM
                {"name": "x", "role": "admin", "csm_email": "a@example.com"},
                {"name": "two\r\nlines", "role": "admin"},
                {"name": "", "role": "admin"},
                {"name": "x", "role": "root"},
            ):
                r = await c.post("/v1/keys", json=bad)
                assert r.status_code == 422, (bad, r.status_code, r.text)


def _cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "HEALTHWATCH_DATABASE_URL": database_url,
        "HEALTHWATCH_KAFKA_BOOTSTRAP": "",
    }
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "keys", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


async def test_cli_lists_and_revokes_keys(database_url: str) -> None:
    engine = create_engine(database_url)
    await migrate(engine)
    try:
        made = await asyncio.to_thread(
            _cli,
            database_url,
            "create",
            "--role",
            "csm",
            "--csm-email",
            "anna@example.com",
            "--name",
            "anna",
        )
        assert made.returncode == 0, made.stderr
        raw = made.stdout.strip()
        key_id, secret = raw.split("_", 2)[1:]
        keys = KeyStore(engine)
        assert (await keys.verify(raw)) is not None

        listed = await asyncio.to_thread(_cli, database_url, "list", "--json")
        assert listed.returncode == 0, listed.stderr
        (row,) = [json.loads(line) for line in listed.stdout.splitlines()]
        assert row["key_id"] == key_id and row["role"] == "csm" and row["revoked_at"] is None
        assert row["csm_email"] == "anna@example.com" and row["scopes"] == "read,respond"
        table = await asyncio.to_thread(_cli, database_url, "list")
        assert key_id in table.stdout and "anna@example.com" in table.stdout
        assert secret not in listed.stdout + table.stdout + listed.stderr + table.stderr

        revoked = await asyncio.to_thread(_cli, database_url, "revoke", key_id)
        assert revoked.returncode == 0 and f"revoked key {key_id}" in revoked.stderr
        after = json.loads((await asyncio.to_thread(_cli, database_url, "list", "--json")).stdout)
        assert after["revoked_at"] is not None
        assert (await KeyStore(engine).verify(raw)) is None  # a fresh cache: refused at once
        # Again: said so, not "revoked" as if just now.
        again = await asyncio.to_thread(_cli, database_url, "revoke", key_id)
        assert again.returncode == 0 and f"key {key_id} was revoked already" in again.stderr
        unknown = await asyncio.to_thread(_cli, database_url, "revoke", "nosuchkey")
        assert unknown.returncode == 1 and "no key" in unknown.stderr
    finally:
        await engine.dispose()
