"""``healthwatch web`` serves pages, reads and alert actions from the database only: its
readiness asked for Kafka too, so a broker outage took every web replica out of
service (found in review)."""

from __future__ import annotations

from pathlib import Path

from devservices import free_port
from services import runtime
from shared.config import Settings
from shared.storage.db import create_engine, migrate
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
        assert await rt.web_ready()
        assert not await rt.ready()  # the consumers' readiness still needs the broker


async def test_a_database_outage_is_not_counted_as_a_stall_once_it_is_over(
    embedded_settings: Settings, tmp_path: Path
) -> None:
    """A loop cannot move while the database is down, and may sleep out its last
    backoff after it is back: readiness turned red again a few seconds after an outage a
    little shorter than the stall limit (found from outside, 116 s against 120 s)."""
    settings = embedded_settings.model_copy(
        update={"database_url": f"sqlite+aiosqlite:///{tmp_path / 'hw.db'}"}
    )
    engine = create_engine(settings.database_url)
    await migrate(engine)
    await engine.dispose()
    async with runtime.open_runtime(settings) as rt:
        now = [0.0]
        rt.progress = Progress(clock=lambda: now[0])
        rt.progress.moved("scoring")
        limit = settings.consumer_stall_s
        working, down = rt.engine, create_engine(f"sqlite+aiosqlite:///{tmp_path}/no/such.db")
        rt.engine = down
        now[0] = 1.0
        assert not await rt.ready()  # the database is down: that alone says not ready
        now[0] = limit - 4
        assert not await rt.ready()
        rt.engine = working
        now[0] = limit - 1
        assert await rt.ready()  # back; the loop is still in its backoff
        now[0] = limit + 5
        assert await rt.ready()  # not stalled: the outage (limit - 2 s) was not the loop's
        now[0] = 2 * limit - 1
        assert not await rt.ready()  # still for the limit, the outage not counted
        await down.dispose()
