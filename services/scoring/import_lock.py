"""One import at a time per database.

Two runs of ``healthwatch import`` on the same files would both start from the stored
offsets and apply every record twice (the dedup window knows event ids for 48 hours of
ingest time, not a history's), and two runs on different files would score the same
past days side by side. The import therefore holds a lock for its whole run that the
process's end releases, whatever ends it:

- PostgreSQL: a session advisory lock, on a connection held open for the run;
- SQLite: ``flock`` on a file beside the database (``<database>.import-lock``).

The scoring service's daily sweep of quiet accounts stops for a running import (it
asks ``import_running`` before each chunk): scored as of today between the import's
past days, an account's rules would step back and forth in time and notify for a
history half read. The import sweeps every account itself when it ends.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger(__name__)

# The PostgreSQL advisory lock of an import: a key pair no other lock of this database
# uses (the tickets' locks, services/scoring/state.py, take another first key).
IMPORT_LOCK = {"space": 0x696D7072, "key": 0}  # "impr"
# Tries to take the lock before saying another import holds it: a sweep asking
# ``import_running`` on SQLite holds the file shared for an instant.
TAKE_TRIES = 20
TAKE_PAUSE_S = 0.1
# The lock file: readable by all, so a service running as another user than the import
# (``sudo healthwatch import``) can still test it; flock needs no write access.
LOCK_FILE_MODE = 0o644

# What an import calls before each batch: raises when the lock is no longer held.
StillHeld = Callable[[], Awaitable[None]]


class ImportRunning(Exception):
    """Another import holds the lock."""

    def __init__(self, where: str):
        super().__init__(
            f"another `healthwatch import` is running on {where}; wait for it to end "
            "(or stop it: an import stopped anywhere resumes where it stood), then run "
            "this one again"
        )


class ImportLockLost(Exception):
    """The import's PostgreSQL session (and with it the lock) ended while it ran."""

    def __init__(self) -> None:
        super().__init__(
            "the import lost its connection to PostgreSQL, and with it the lock that keeps "
            "other imports out; run it again: it resumes where it stood"
        )


def _lock_file(engine: AsyncEngine) -> Path | None:
    """The lock file of a SQLite database file (none in memory: no other process)."""
    database = engine.url.database
    if not database or database == ":memory:":
        return None
    return Path(f"{database}.import-lock")


@asynccontextmanager
async def import_lock(engine: AsyncEngine) -> AsyncIterator[StillHeld]:
    """Hold the import lock of ``engine``'s database for the block; raises
    ``ImportRunning`` if another import holds it. The block gets a check to await before
    each batch (``ImportLockLost`` once the lock is gone)."""
    if engine.dialect.name == "postgresql":
        async with _pg_lock(engine) as still_held:
            yield still_held
        return
    path = _lock_file(engine)
    if path is None:
        yield held
        return
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, LOCK_FILE_MODE)
    try:
        os.fchmod(fd, LOCK_FILE_MODE)  # whatever the umask, or a file made before
        await _take(lambda: _flock(fd, fcntl.LOCK_EX), str(engine.url.database))
        yield held  # a file lock lasts as long as the process's descriptor
    finally:
        os.close(fd)  # releases the lock


@asynccontextmanager
async def _pg_lock(engine: AsyncEngine) -> AsyncIterator[StillHeld]:
    conn = await engine.connect()
    try:

        async def take() -> bool:
            taken = await conn.scalar(
                text("SELECT pg_try_advisory_lock(:space, :key)"), IMPORT_LOCK
            )
            await conn.commit()
            return bool(taken)

        await _take(take, "this PostgreSQL database")

        async def still_held() -> None:
            try:
                await conn.scalar(text("SELECT 1"))
                await conn.commit()
            except Exception as exc:
                raise ImportLockLost() from exc

        yield still_held
    finally:
        await _let_go(conn)


async def _let_go(conn: AsyncConnection) -> None:
    """Unlock and give the connection back; one that cannot unlock (lost, cancelled) is
    thrown away rather than pooled still holding the lock (its session's end frees it)."""
    try:
        await conn.execute(text("SELECT pg_advisory_unlock(:space, :key)"), IMPORT_LOCK)
        await conn.commit()
    except Exception as exc:
        log.warning(
            "import lock: could not unlock (%s); dropping its connection", type(exc).__name__
        )
        await conn.invalidate()
    await conn.close()


async def _take(attempt: Callable[[], Awaitable[bool]], where: str) -> None:
    for _ in range(TAKE_TRIES):
        if await attempt():
            return
        await asyncio.sleep(TAKE_PAUSE_S)
    raise ImportRunning(where)


async def _flock(fd: int, how: int) -> bool:
    try:
        fcntl.flock(fd, how | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


async def held() -> None:
    """The check of a lock that cannot be lost while the process lives."""
    return None


async def import_running(engine: AsyncEngine) -> bool:
    """Whether an import holds the lock of ``engine``'s database now. PostgreSQL: read
    from ``pg_locks``, taking nothing; SQLite: the file taken shared and let go at once."""
    if engine.dialect.name == "postgresql":
        async with engine.connect() as conn:
            holder = await conn.scalar(
                text(
                    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'"
                    " AND granted AND classid = :space AND objid = :key AND objsubid = 2"
                    " AND database = (SELECT oid FROM pg_database"
                    " WHERE datname = current_database()))"
                ),
                IMPORT_LOCK,
            )
        return bool(holder)
    path = _lock_file(engine)
    if path is None or not path.exists():
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except PermissionError:
        raise PermissionError(
            f"cannot read the import lock file {path}: make it readable (chmod 644) for "
            "the user this service runs as"
        ) from None
    try:
        return not await _flock(fd, fcntl.LOCK_SH)
    finally:
        os.close(fd)
