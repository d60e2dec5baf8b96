"""Engine creation, backend-neutral upserts and migrations."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import ColumnElement, Connection, Table, any_, bindparam, event, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DataError, DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


# How long a SQLite transaction waits for the one writer before SQLITE_BUSY: long
# enough for any scoring batch to commit. A connection may ask for less with the
# execution option SQLITE_BUSY_TIMEOUT_MS (embedded ingest: its produce timeout).
BUSY_TIMEOUT_MS = 30_000
SQLITE_BUSY_TIMEOUT_MS = "sqlite_busy_timeout_ms"


def create_engine(url: str) -> AsyncEngine:
    """An async engine; SQLite gets durable, lock-friendly settings."""
    # orjson for JSON columns: scores carry their inputs and explanation as JSON, and
    # the stdlib encoder was the largest single cost of writing them.
    codec: dict[str, Any] = {"json_serializer": _json_dumps, "json_deserializer": orjson.loads}
    if url.startswith("sqlite"):
        _create_private(make_url(url).database)
        engine = create_async_engine(url, connect_args={"timeout": 30}, **codec)
        _tune_sqlite(engine)
        return engine
    return create_async_engine(
        _asyncpg_url(url), pool_size=10, max_overflow=10, pool_pre_ping=True, **codec
    )


def _create_private(database: str | None) -> None:
    """Make a SQLite file that is not there yet readable by its owner alone: it holds
    customers' data, and under the usual umask SQLite made it world-readable (found
    from outside). SQLite opens an empty file as an empty database, and gives the
    journal files it makes beside it the same mode. A file there already keeps its own."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    # There already, or its folder is not: SQLite says what is wrong.
    with contextlib.suppress(FileExistsError, FileNotFoundError, PermissionError):
        os.close(os.open(database, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


# libpq's TLS modes, which asyncpg takes by the same names as ``ssl``.
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def _asyncpg_url(url: str) -> URL:
    """``url`` with libpq's ``sslmode=`` (a habit of every PostgreSQL URL) as asyncpg's
    ``ssl=``: passed on as it was, asyncpg refused the keyword with a 370-line
    traceback at start (found from outside)."""
    parsed = make_url(url)
    if "sslmode" not in parsed.query:
        return parsed
    query = dict(parsed.query)
    query["ssl"] = query.pop("sslmode")
    return parsed.set(query=query)


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _tune_sqlite(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_conn: DBAPIConnection, _entry: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin (see below).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        # WAL lets readers run beside the writer; synchronous=FULL fsyncs each commit,
        # so an event acknowledged by embedded ingest survives kill -9 and power loss.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")  # and again at each begin
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Ingest, scoring and alerts share one file: wait for the lock, don't fail;
        # as long as the connection's SQLITE_BUSY_TIMEOUT_MS option says, if it does.
        wait_ms = conn.get_execution_options().get(SQLITE_BUSY_TIMEOUT_MS, BUSY_TIMEOUT_MS)
        conn.exec_driver_sql(f"PRAGMA busy_timeout={int(wait_ms)}")
        # Take the write lock up front: a deferred transaction that later upgrades to
        # a writer fails with SQLITE_BUSY at once instead of waiting for busy_timeout.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


# The PostgreSQL errors that mean a value cannot be stored as sent: text past its column
# (22001), a number out of range (22003), a NUL or other character the encoding lacks
# (22021, 22P05). The rest of class 22 (division by zero, a bad cast) is our bug.
UNSTORABLE_STATES = frozenset({"22001", "22003", "22021", "22P05"})


def unstorable_value(exc: BaseException) -> bool:
    """Whether the database refused a value it cannot hold: SQLAlchemy raises it as
    ``DataError``, or through asyncpg as a bare ``DBAPIError`` with the SQLSTATE. The
    client can fix that; it is no outage, and no server bug."""
    if not isinstance(exc, DBAPIError):
        return False
    state = getattr(getattr(exc, "orig", None), "sqlstate", None)
    if isinstance(state, str):
        return state in UNSTORABLE_STATES
    return isinstance(exc, DataError)


def insert_ignore(conn: AsyncConnection, table: Table) -> Any:
    """``INSERT … ON CONFLICT DO NOTHING`` builder for the connection's backend."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def among(conn: AsyncConnection, column: ColumnElement[Any], values: Iterable[Any]) -> Any:
    """``column IN values`` for the connection's backend. On PostgreSQL ``= ANY(array)``:
    one parameter, where SQLAlchemy renders and casts an IN list anew on every execution
    (about 1.2 ms of CPU for 200 account ids; an import's day runs several)."""
    if conn.dialect.name != "postgresql":
        return column.in_(list(values))
    return column == any_(bindparam(None, list(values), type_=postgresql.ARRAY(column.type)))


def bulk_insert(
    conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]]
) -> tuple[Any, Any]:
    """An ``INSERT`` of many ``rows`` (each with the same keys) for the connection's
    backend, and the parameters to execute it with; add ``ON CONFLICT`` or ``RETURNING``
    to the statement as to ``insert_ignore``'s.

    On PostgreSQL the rows travel as one array per column, unnested by the server: one
    statement with one parameter set. Row by row, SQLAlchemy's parameter processing was
    a fifth of the scoring path's CPU time on the per-event tables."""
    stmt = insert_ignore(conn, table)
    if conn.dialect.name != "postgresql" or not rows:
        return stmt, list(rows)
    names = list(rows[0])
    columns = select(
        *(func.unnest(bindparam(n, type_=postgresql.ARRAY(table.c[n].type))) for n in names)
    )
    return stmt.from_select(names, columns), {n: [r[n] for r in rows] for n in names}


async def bulk_upsert(
    conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]], *, keys: Sequence[str]
) -> None:
    """Insert ``rows`` (each with the same keys), overwriting every other column of those
    whose ``keys`` exist: one statement (on PostgreSQL one parameter set, see
    ``bulk_insert``). For many rows of plain columns; ``upsert`` for the rest."""
    if not rows:
        return
    stmt, params = bulk_insert(conn, table, rows)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(keys),
        set_={name: stmt.excluded[name] for name in rows[0] if name not in keys},
    )
    await conn.execute(stmt, params)


async def upsert(
    conn: AsyncConnection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    keys: Sequence[str],
    update: Sequence[str],
) -> None:
    """Insert rows; on key conflict overwrite the ``update`` columns."""
    if not rows:
        return
    stmt = insert_ignore(conn, table)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(keys), set_={c: stmt.excluded[c] for c in update}
    )
    await conn.execute(stmt, list(rows))


@functools.cache
def schema_revisions() -> tuple[str, frozenset[str]]:
    """This release's schema head and every revision it knows (the migrations'
    script directory, read once)."""
    script = ScriptDirectory.from_config(alembic_config())
    head = script.get_current_head()
    assert head is not None
    return head, frozenset(r.revision for r in script.walk_revisions())


async def schema_behind(conn: AsyncConnection) -> str | None:
    """The database's schema revision ("none" when never migrated) if this release's
    migrations are still to run on it, else None. A revision this release does not know
    is newer (another release migrated it first, as a rolling upgrade does): not behind."""
    head, known = schema_revisions()
    try:
        version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    except DBAPIError as exc:
        if "alembic_version" not in str(exc):
            raise
        return "none"
    if version is None:
        return "none"
    return version if version in known and version != head else None


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        cfg.set_main_option("sqlalchemy.url", url)
    return cfg


# The PostgreSQL advisory lock migrations hold, a single 64-bit key: PostgreSQL keeps
# those apart from the two-part keys an import's and the tickets' locks take.
MIGRATE_LOCK_KEY = 0x68770001


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest Alembic revision. On PostgreSQL under an advisory
    lock held to the end of the transaction: every replica of a release may migrate as
    it starts (the Kubernetes Deployments' init containers), and two migrations at once
    had hung on each other's locks; the second now waits, then finds nothing to do."""

    def _upgrade(sync_conn: Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = sync_conn
        # "heads", not "head": features developed side by side may add migrations that
        # branch from one parent until they are put in one line; every branch applies.
        command.upgrade(cfg, "heads")

    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATE_LOCK_KEY}
            )
        await conn.run_sync(_upgrade)
