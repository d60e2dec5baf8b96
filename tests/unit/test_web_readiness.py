"""``healthwatch web`` serves pages, reads and alert actions from the database only: its
readiness asked for Kafka too, so a broker outage took every web replica out of
service (found in review)."""

from __future__ import annotations

from pathlib import Path

from devservices import free_port
from services import runtime
from shared.config import Settings
from shared.storage.db import create_engine, migrate


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
