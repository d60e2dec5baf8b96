"""PostgreSQL down, Kafka healthy (issue 11, item 4): ingest keeps taking events from
keys it verified recently (a bounded cache), answers a JSON 503 with Retry-After for
what needs the database (a key never seen, a Segment user lookup), never a plain 500,
and takes every key again once the database is back. A revoked key still stops within
the cache's TTL while the database is up."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy import update

from devservices import PostgresCluster
from shared.auth import KeyStore, Scope, create_key, split_key
from shared.clock import utcnow
from shared.config import Settings
from shared.storage.db import create_engine, migrate
from shared.storage.tables import api_keys
from shared.web import READY_WITHIN_S
from tests.support.harness import Harness, running, usage, wait_for

pytestmark = pytest.mark.integration

# The key cache's TTL in this test: the outage must outlast it, as a real one outlasts
# a minute, without the test waiting a minute.
TTL_S = 0.5


def _client(hw: Harness, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=hw.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


async def _events(c: httpx.AsyncClient) -> httpx.Response:
    return await c.post("/v1/events", json={"events": [usage("acme", "u")]})


def _track(group: str | None) -> dict[str, object]:
    message: dict[str, object] = {"userId": "u1", "event": "Login", "messageId": "m"}
    if group:
        message["context"] = {"groupId": group}
    return message


def _assert_unavailable(r: httpx.Response) -> None:
    assert r.status_code == 503, r.text
    assert r.json()["code"] == "unavailable"
    assert int(r.headers["Retry-After"]) > 0


async def _on_own_cluster(settings: Settings, cluster: PostgresCluster) -> Settings:
    """``settings`` on a new database of the test's own cluster (which it stops)."""
    conn = await asyncpg.connect(cluster.url.replace("+asyncpg", ""))
    try:
        await conn.execute("CREATE DATABASE hw")
    finally:
        await conn.close()
    return settings.model_copy(update={"database_url": cluster.dsn("hw")})


async def test_ingest_rides_out_a_database_outage(
    kafka_settings: Settings, own_cluster: PostgresCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(KeyStore, "CACHE_TTL_S", TTL_S)
    settings = await _on_own_cluster(kafka_settings, own_cluster)
    async with running(settings, scoring=False, alerts=False) as hw:
        unseen = await create_key(hw.rt.engine, "unseen", [Scope.ingest])
        revoked = await create_key(hw.rt.engine, "revoked", [Scope.ingest])
        async with _client(hw, hw.key) as c:
            assert (await _events(c)).status_code == 202
        async with _client(hw, revoked) as c:
            assert (await _events(c)).status_code == 202
            parsed = split_key(revoked)
            assert parsed is not None
            async with hw.rt.engine.begin() as db:
                await db.execute(
                    update(api_keys)
                    .where(api_keys.c.key_id == parsed[0])
                    .values(revoked_at=utcnow())
                )
            await asyncio.sleep(TTL_S * 2)
            assert (await _events(c)).status_code == 401

        await asyncio.to_thread(own_cluster.stop)
        await asyncio.sleep(TTL_S * 2)  # past the TTL: the cache alone cannot answer
        async with _client(hw, hw.key) as c:
            for _ in range(3):
                assert (await _events(c)).status_code == 202
        async with httpx.AsyncClient(base_url=hw.url, auth=(hw.key, ""), timeout=30) as c:
            assert (await c.post("/v1/track", json=_track("acme"))).status_code == 200
            # Which account a bare user belongs to is in the database.
            _assert_unavailable(await c.post("/v1/track", json=_track(None)))
        for key in (unseen, revoked):
            async with _client(hw, key) as c:
                _assert_unavailable(await _events(c))

        await asyncio.to_thread(own_cluster.start)

        async def unseen_accepted() -> bool:
            async with _client(hw, unseen) as c:
                return (await _events(c)).status_code == 202

        await wait_for(unseen_accepted, timeout=60, what="a new key to work again", interval=0.5)
        async with _client(hw, revoked) as c:
            assert (await _events(c)).status_code == 401


def _cluster_pids(cluster: PostgresCluster) -> list[int]:
    """The postmaster of this test's own cluster and its children (backends, workers)."""
    postmaster = int((cluster.data_dir / "postmaster.pid").read_text().split()[0])
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # The parent pid is the second field after the parenthesised command name.
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                children.append(int(stat.parent.name))
    return [postmaster, *children]


async def test_a_hung_database_is_a_503_not_a_hung_request(
    kafka_settings: Settings, own_cluster: PostgresCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL paused (SIGSTOP), as a network partition looks: connections hang
    instead of being refused. Key checks give up after LOOKUP_TIMEOUT_S."""
    monkeypatch.setattr(KeyStore, "CACHE_TTL_S", TTL_S)
    monkeypatch.setattr(KeyStore, "LOOKUP_TIMEOUT_S", 1.0)
    settings = await _on_own_cluster(kafka_settings, own_cluster)
    async with running(settings, scoring=False, alerts=False) as hw:
        unseen = await create_key(hw.rt.engine, "unseen", [Scope.ingest])
        async with _client(hw, hw.key) as c:
            assert (await _events(c)).status_code == 202
        pids = _cluster_pids(own_cluster)
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(TTL_S * 2)
            async with _client(hw, hw.key) as c:
                assert (await _events(c)).status_code == 202
            async with _client(hw, unseen) as c:
                _assert_unavailable(await _events(c))
            async with httpx.AsyncClient(base_url=hw.url, auth=(hw.key, ""), timeout=30) as c:
                _assert_unavailable(await c.post("/v1/track", json=_track(None)))
            # Readiness says so within a probe's timeout (it hung for minutes).
            async with httpx.AsyncClient(base_url=hw.url, timeout=READY_WITHIN_S + 2) as c:
                r = await c.get("/readyz")
            assert r.status_code == 503
            assert r.json() == {"ready": False, "reason": "a dependency did not answer within 3 s"}
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)

        async def unseen_accepted() -> bool:
            async with _client(hw, unseen) as c:
                return (await _events(c)).status_code == 202

        await wait_for(unseen_accepted, timeout=60, what="a new key to work again", interval=0.5)


async def test_the_key_cache_is_bounded(
    embedded_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only verified keys are cached, and only the CACHE_SIZE most recently used."""
    monkeypatch.setattr(KeyStore, "CACHE_SIZE", 2)
    engine = create_engine(embedded_settings.database_url)
    await migrate(engine)
    try:
        store = KeyStore(engine)
        keys = [await create_key(engine, f"k{i}", [Scope.ingest]) for i in range(3)]
        for key in keys:
            assert await store.verify(key) is not None
        assert await store.verify("hwk_nobody_secret") is None
        assert len(store._cache) == 2  # the oldest key was evicted, the unknown not kept
    finally:
        await engine.dispose()


async def test_reads_actions_and_pages_are_a_503_while_the_database_is_down(
    kafka_settings: Settings, own_cluster: PostgresCluster
) -> None:
    """Found from outside: with PostgreSQL stopped, every read or action route and every
    dashboard page of a key the process had checked already answered a bare 500 (the key
    came from the cache; the route's own query then failed to connect)."""
    settings = await _on_own_cluster(kafka_settings, own_cluster)
    async with running(settings, scoring=False, alerts=False) as hw:
        lead = await create_key(hw.rt.engine, "lead", [Scope.read, Scope.respond])
        async with _client(hw, lead) as c:
            assert (await c.get("/v1/alerts")).status_code == 200  # the key now cached
        async with httpx.AsyncClient(base_url=hw.url, timeout=30) as browser:
            form = await browser.get("/ui/login")
            csrf = form.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
            signed = await browser.post("/ui/login", data={"csrf": csrf, "key": lead})
            assert signed.status_code == 303
            assert (await browser.get("/ui/alerts")).status_code == 200

            await asyncio.to_thread(own_cluster.stop)
            try:
                async with _client(hw, lead) as c:
                    for path in ("/v1/alerts", "/v1/accounts/acme", "/v1/accounts"):
                        _assert_unavailable(await c.get(path))
                    acted = await c.post("/v1/alerts/acme:low_activity:1/acknowledge")
                    _assert_unavailable(acted)
                page = await browser.get("/ui/alerts")
                assert page.status_code == 503 and "reload the page" in page.text, page.text
                assert int(page.headers["Retry-After"]) > 0
            finally:
                await asyncio.to_thread(own_cluster.start)

        async def served() -> bool:
            async with _client(hw, lead) as c:
                return (await c.get("/v1/alerts")).status_code == 200

        await wait_for(served, timeout=60, what="reads to work again", interval=0.5)
