"""Every replica of a release may migrate the database as it starts (the Kubernetes
manifests run ``healthwatch migrate`` as each Deployment's init container, so no service
starts on an older schema): migrations running at once on PostgreSQL wait for each
other, and all end with the schema at the newest revision."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from shared.storage.db import create_engine, migrate

# Without the lock they hung on each other's locks: the timeout makes that a failure.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def test_migrations_started_together_all_succeed(database_url: str) -> None:
    engines = [create_engine(database_url) for _ in range(4)]
    try:
        await asyncio.gather(*(migrate(engine) for engine in engines))
        async with engines[0].connect() as conn:
            versions = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
            tables = (
                await conn.execute(
                    text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
                )
            ).scalar_one()
        assert len(versions) >= 1 and tables > 10
        await migrate(engines[1])  # at the newest already: nothing to do, no error
    finally:
        for engine in engines:
            await engine.dispose()
