"""One import at a time per database.

Two runs of ``healthwatch import`` on the same files would both start from the stored
offsets and apply every record twice (the dedup window knows event ids for 48 hours of
ingest time, not a history's), and two runs on different files would score the same
past days side by side. The import therefore holds a lock for its whole run that the
process's end releases, whatever ends it:

- PostgreSQL: a session advisory lock, on a connection held open for the run;
- SQLite: ``flock`` on a file beside the database (``<database>.import-lock``).

The scoring service's daily sweep of quiet accounts waits for a running import
(``import_running``): scored as of today between the import's past days, an account's
rules would step back and forth in time and notify for a history half read. The import
sweeps every account itself when it ends.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

# The PostgreSQL advisory lock of an import: a key pair no other lock of this database
# uses (the tickets' locks, services/scoring/state.py, take another first key).
IMPORT_LOCK = {"space": 0x696D7072, "key": 0}  # "impr"


class ImportRunning(Exception):
    """Another import holds the lock."""

    def __init__(self, where: str):
        super().__init__(
            f"another `healthwatch import` is running on {where}; wait for it to end "
            "(or stop it: an import stopped anywhere resumes where it stood), then run "
            "this one again"
        )


def _lock_file(engine: AsyncEngine) -> Path | None:
    """The lock file of a SQLite database file (none in memory: no other process)."""
    database = engine.url.database
    if not database or database == ":memory:":
        return None
    return Path(f"{database}.import-lock")


@asynccontextmanager
async def import_lock(engine: AsyncEngine) -> AsyncIterator[None]:
    """Hold the import lock of ``engine``'s database for the block; raises
    ``ImportRunning`` at once if another import holds it."""
    if engine.dialect.name == "postgresql":
        async with engine.connect() as conn:
            take = text("SELECT pg_try_advisory_lock(:space, :key)")
            taken = await conn.scalar(take, IMPORT_LOCK)
            await conn.commit()
            if not taken:
                raise ImportRunning("this PostgreSQL database")
            try:
                yield
            finally:
                await conn.execute(text("SELECT pg_advisory_unlock(:space, :key)"), IMPORT_LOCK)
                await conn.commit()
        return
    path = _lock_file(engine)
    if path is None:
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ImportRunning(str(engine.url.database)) from None
        yield
    finally:
        os.close(fd)  # releases the lock


async def import_running(engine: AsyncEngine) -> bool:
    """Whether an import holds the lock of ``engine``'s database now (taken shared and
    let go at once when free)."""
    if engine.dialect.name == "postgresql":
        async with engine.begin() as conn:
            free = await conn.scalar(
                text("SELECT pg_try_advisory_xact_lock_shared(:space, :key)"), IMPORT_LOCK
            )
        return not free
    path = _lock_file(engine)
    if path is None or not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
