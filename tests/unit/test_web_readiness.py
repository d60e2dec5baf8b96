"""``healthwatch web`` serves pages, reads and alert actions from the database only: its
readiness asked for Kafka too, so a broker outage took every web replica out of
service (found in review)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.exc import OperationalError

from devservices import free_port
from services import runtime
from services.cli.mistakes import startup_mistake
from shared import worker
from shared.auth import KeyStore, Scope, create_key
from shared.config import Settings
from shared.storage.db import create_engine, migrate
from shared.web import refused_sign_in
from shared.worker import Progress


async def test_web_is_ready_without_the_broker(embedded_settings: Settings, tmp_path: Path) -> None:
    settings = embedded_settings.model_copy(
        update={
            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'web.db'}",
            "kafka_bootstrap": f"127.0.0.1:{free_port()}",  # nobody listens there
        }
    )
    engine = create_engine(settings.database_url)
    await migrate(engine)
    await engine.dispose()
    async with runtime.open_runtime(settings) as rt:
        assert await rt.why_web_not_ready() is None
        # The consumers' readiness still needs the broker.
        assert await rt.why_not_ready() == "the message bus (Kafka) does not answer"


async def test_a_database_outage_is_not_counted_as_a_stall_once_it_is_over(
    embedded_settings: Settings, tmp_path: Path
) -> None:
    """A loop cannot move while the database is down, and may sleep out its last
    backoff after it is back: readiness turned red again a few seconds after an outage a
    little shorter than the stall limit (found from outside, 116 s against 120 s)."""
    settings = embedded_settings.model_copy(
        update={"database_url": f"sqlite+aiosqlite:///{tmp_path / 'hw.db'}"}
    )
    async with _moved_at_zero(settings) as (rt, now):
        limit = settings.consumer_stall_s
        working, down = rt.engine, create_engine(f"sqlite+aiosqlite:///{tmp_path}/no/such.db")
        rt.engine = down
        now[0] = 1.0
        assert await rt.why_not_ready()  # the database is down: that alone says not ready
        now[0] = limit - 4
        assert await rt.why_not_ready()
        rt.engine = working
        now[0] = limit - 1
        assert await rt.why_not_ready() is None  # back; the loop is still in its backoff
        now[0] = limit + 5
        assert (
            await rt.why_not_ready() is None
        )  # not stalled: the outage (limit - 2 s) was not the loop's
        now[0] = 2 * limit - 1
        # Still for the limit, the outage not counted.
        assert await rt.why_not_ready() == f"no progress for {limit:g} s in scoring"
        await down.dispose()


async def test_a_database_that_takes_no_writes_is_not_ready(
    tmp_path: Path, database_url: str
) -> None:
    """``SELECT 1`` kept readiness green for minutes while every write failed (an
    unwritable SQLite file, found from outside). A writer holding SQLite's lock is no
    such failure: the file takes writes."""
    from sqlalchemy import text

    path = tmp_path / "hw.db"
    writable = create_engine(f"sqlite+aiosqlite:///{path}")
    await migrate(writable)
    read_only = create_engine(f"sqlite+aiosqlite:///file:{path}?mode=ro&uri=true")
    try:
        await runtime.database_writable(writable)
        with pytest.raises(OperationalError, match="readonly"):
            await runtime.database_writable(read_only)
        async with writable.begin() as holding:  # another writer, mid-transaction
            await holding.execute(text("CREATE TABLE busy (x int)"))
            await runtime.database_writable(create_engine(f"sqlite+aiosqlite:///{path}"))
    finally:
        await writable.dispose()
        await read_only.dispose()
    postgres = create_engine(database_url)
    try:
        await migrate(postgres)
        await runtime.database_writable(postgres)
        async with postgres.connect() as conn:
            name = (await conn.execute(text("SELECT current_database()"))).scalar_one()
            await conn.execute(
                text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
            )
            await conn.commit()
        await postgres.dispose()  # new connections take the database's new default
        with pytest.raises(runtime.ReadOnlyDatabase):
            await runtime.database_writable(postgres)
    finally:
        await postgres.dispose()


async def test_a_schema_not_migrated_and_a_database_refusing_the_sign_in_are_named(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """On an unmigrated database every service said ready while every call answered 503,
    and nothing said to migrate; on a wrong user, password or database name they started
    and said ready, the cause logged only once a request came (found from outside)."""
    empty = create_engine(database_url)
    try:
        with pytest.raises(runtime.SchemaBehind, match="none"):
            await runtime.database_writable(empty)
        await runtime.check_database_at_start(empty)  # says so, starts
        assert "run `healthwatch migrate`" in caplog.text
        await migrate(empty)
        await runtime.database_writable(empty)
    finally:
        await empty.dispose()
    nowhere = create_engine(database_url.rsplit("/", 1)[0] + "/no_such_database_here")
    try:
        with pytest.raises(Exception) as refused:
            await runtime.check_database_at_start(nowhere)
        assert refused_sign_in(refused.value)
        line = startup_mistake(refused.value)
        assert line is not None and "HEALTHWATCH_DATABASE_URL" in line
    finally:
        await nowhere.dispose()


async def test_ingest_is_not_ready_when_it_could_verify_no_key(
    embedded_settings: Settings, tmp_path: Path
) -> None:
    """Started while the database was down (or with a wrong password), ingest said ready
    and refused every request, having no key verified to go on with (found from
    outside). With one verified within the hour it stays in service, as documented."""
    settings = embedded_settings.model_copy(
        update={"database_url": f"sqlite+aiosqlite:///{tmp_path / 'hw.db'}"}
    )
    async with runtime.open_runtime(settings) as rt:
        raw = await create_key(rt.engine, "product", [Scope.ingest])
        working, down = rt.engine, create_engine(f"sqlite+aiosqlite:///{tmp_path}/no/such.db")
        keys = KeyStore(working)
        assert await rt.why_ingest_not_ready(keys) is None  # the database answers
        rt.engine = down
        reason = await rt.why_ingest_not_ready(KeyStore(down))
        assert reason == (
            "the database does not answer, and no key was verified within the hour to go on with"
        )
        assert await keys.verify(raw) is not None
        assert await rt.why_ingest_not_ready(keys) is None  # it goes on with that key
        rt.engine = working
        await down.dispose()


async def test_readiness_says_which_part_is_not_ready(
    embedded_settings: Settings, tmp_path: Path
) -> None:
    """/readyz answered only ``{"ready": false}``: the operator looking at a failing probe
    had to guess which dependency. It names the part (not the error: it is open)."""
    import httpx

    settings = embedded_settings.model_copy(
        update={"database_url": f"sqlite+aiosqlite:///{tmp_path / 'web.db'}"}
    )
    async with runtime.open_runtime(settings) as rt:
        transport = httpx.ASGITransport(app=runtime.web_app(rt))
        async with httpx.AsyncClient(transport=transport, base_url="http://web") as client:
            ready = await client.get("/readyz")
            working, rt.engine = rt.engine, create_engine(f"sqlite+aiosqlite:///{tmp_path}/no/x.db")
            try:
                down = await client.get("/readyz")
            finally:
                await rt.engine.dispose()
                rt.engine = working
    assert (ready.status_code, ready.json()) == (200, {"ready": True})
    assert down.status_code == 503
    # A SQLite file that cannot be opened (its folder gone): not there, as a server down.
    assert down.json() == {"ready": False, "reason": "the database does not answer"}


async def test_the_web_service_counts_its_requests(
    embedded_settings: Settings, tmp_path: Path
) -> None:
    """Its 5xx were invisible: only ingest counted requests. By route template, with the
    process's memory, and without a "_created" series beside each counter."""
    import httpx

    from shared.auth import Role, create_key, role_scopes

    settings = embedded_settings.model_copy(
        update={"database_url": f"sqlite+aiosqlite:///{tmp_path / 'web.db'}"}
    )
    async with runtime.open_runtime(settings) as rt:
        ops = await create_key(rt.engine, "ops", role_scopes(Role.ops, None))
        app = runtime.web_app(rt)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://web") as client:
            assert (await client.get("/v1/accounts/acme/health")).status_code == 401
            scraped = await client.get("/metrics", headers={"Authorization": f"Bearer {ops}"})
    text = scraped.text
    assert (
        'healthwatch_http_requests_total{route="/v1/accounts/{account_id}/health",status="401"} 1.0'
        in text
    )
    assert "process_resident_memory_bytes" in text
    assert "_created" not in text


async def test_a_stuck_loop_fails_liveness_while_what_it_needs_answers(
    embedded_settings: Settings, tmp_path: Path
) -> None:
    """Readiness reporting a stalled loop kept a stuck scoring process running for good
    (its readiness takes no traffic away): liveness now fails when a loop has not even
    tried to move for three stall limits, so the orchestrator restarts it; never for a
    dependency's outage, nor while the loop retries."""
    settings = embedded_settings.model_copy(
        update={"database_url": f"sqlite+aiosqlite:///{tmp_path / 'hw.db'}"}
    )
    async with _moved_at_zero(settings) as (rt, now):
        app = runtime.ops_app(rt, "healthwatch scoring")
        limit = settings.consumer_stall_s
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://hw"
        ) as client:

            async def alive() -> tuple[int, str]:
                answer = await client.get("/healthz")
                return answer.status_code, answer.json()["status"]

            now[0] = limit + 1
            assert (await client.get("/readyz")).status_code == 503
            assert await alive() == (200, "ok")  # reported, not yet restarted
            now[0] = runtime.RESTART_AFTER_STALLS * limit + 1
            assert await alive() == (503, "stalled")
            # Retrying (a full disk, a schema not migrated yet): trying, not stuck.
            rt.progress.tried("scoring")
            assert await alive() == (200, "ok")
            assert (await client.get("/readyz")).status_code == 503  # still no progress
            now[0] += runtime.RESTART_AFTER_STALLS * limit + 1
            assert await alive() == (503, "stalled")
            working = rt.engine
            rt.engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/no/such.db")
            assert await alive() == (200, "ok")  # the database is down: its outage
            await rt.engine.dispose()
            rt.engine = working
            rt.progress.moved("scoring")
            assert await alive() == (200, "ok")


async def test_a_stalled_loop_is_not_restarted_while_the_broker_is_away(
    embedded_settings: Settings, tmp_path: Path
) -> None:
    settings = embedded_settings.model_copy(
        update={
            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'hw.db'}",
            "kafka_bootstrap": f"127.0.0.1:{free_port()}",  # nobody listens there
        }
    )
    async with _moved_at_zero(settings) as (rt, now):
        now[0] = runtime.RESTART_AFTER_STALLS * settings.consumer_stall_s + 1
        assert await rt.alive()


@contextlib.asynccontextmanager
async def _moved_at_zero(settings: Settings) -> AsyncIterator[tuple[runtime.Runtime, list[float]]]:
    """The runtime on its migrated database, its loop "scoring" last moved at 0 on a
    clock the test sets (``now[0]``)."""
    engine = create_engine(settings.database_url)
    await migrate(engine)
    await engine.dispose()
    async with runtime.open_runtime(settings) as rt:
        now = [0.0]
        rt.progress = Progress(clock=lambda: now[0])
        rt.progress.moved("scoring")
        yield rt, now


class _Reading:
    """A consumer for the consume loop whose reads a test writes (``getmany``)."""

    generation = 0
    handling = asyncio.Lock()

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def getmany(self, timeout_s: float, max_records: int) -> list[Any]:
        return []

    async def rewind(self) -> None: ...

    async def lag(self) -> dict[Any, int]:
        return {}

    async def committed(self, offsets: Any) -> None: ...


async def test_a_loop_retrying_through_an_outage_is_trying_not_stuck(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A disk full or a schema not migrated yet fails every batch, which the database
    probe does not see: liveness had counted that as stuck and restarted every replica
    (found in review). Each retry is an attempt; only progress is progress."""
    monkeypatch.setattr(worker, "RETRY_BASE_S", 0.01)
    monkeypatch.setattr(worker, "RETRY_CAP_S", 0.01)
    clock = [0.0]
    progress = Progress(clock=lambda: clock[0])
    stop = asyncio.Event()
    reads = [0]

    class Failing(_Reading):
        async def getmany(self, timeout_s: float, max_records: int) -> list[Any]:
            reads[0] += 1
            clock[0] += 100.0  # each retry a while after the one before
            if reads[0] >= 5:
                stop.set()
            raise ConnectionResetError("reset by peer")

    async def handle(records: Any) -> int:
        return 0

    watched: list[tuple[list[str], list[str]]] = []
    original = progress.tried

    def tried(name: str) -> None:
        original(name)
        watched.append((progress.stalled(150), progress.stuck(150)))

    monkeypatch.setattr(progress, "tried", tried)
    await worker.consume(Failing(), handle, stop, name="scoring", max_records=10, progress=progress)
    assert reads[0] == 5
    # Stalled (no batch applied for longer than 150 s), never stuck: it kept trying.
    assert watched[-1] == (["scoring"], [])


async def test_a_loop_says_when_an_outage_it_retried_through_ended(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """After "still failing" the log went on with normal lines only: nothing said when
    the service resumed (found from outside)."""
    monkeypatch.setattr(worker, "RETRY_BASE_S", 0.01)
    monkeypatch.setattr(worker, "RETRY_CAP_S", 0.01)
    stop = asyncio.Event()
    reads = [0]

    class Flaky(_Reading):
        async def getmany(self, timeout_s: float, max_records: int) -> list[Any]:
            reads[0] += 1
            if reads[0] <= 3:
                raise ConnectionResetError("reset by peer")
            if reads[0] >= 5:
                stop.set()
            return []

    async def handle(records: Any) -> int:
        return 0

    await worker.consume(Flaky(), handle, stop, name="scoring", max_records=10)
    said = [r.getMessage() for r in caplog.records if "recovered" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("scoring: recovered after 3 failed attempts")
