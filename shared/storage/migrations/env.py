"""Alembic environment: runs on a connection handed over by ``shared.storage.db.migrate``,
or opens one from ``sqlalchemy.url`` (``alembic -x`` / ``healthwatch migrate``)."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection

from shared.storage.db import create_engine
from shared.storage.tables import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_from_url(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_run)
            await conn.commit()
    finally:
        await engine.dispose()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    asyncio.run(_run_from_url(context.config.get_main_option("sqlalchemy.url") or ""))
