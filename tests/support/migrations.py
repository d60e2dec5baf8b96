"""Migrations run to a given revision, for tests of one migration's data changes."""

from __future__ import annotations

from collections.abc import Callable

from alembic import command
from sqlalchemy.engine import Connection

from shared.storage.db import alembic_config


def upgrade_to(revision: str) -> Callable[[Connection], None]:
    """For ``conn.run_sync``: upgrade the connection's database to ``revision``."""

    def run(sync_conn: Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = sync_conn
        command.upgrade(cfg, revision)

    return run
