"""What the commands share: the app and its groups, the terminal, garbage collection
thresholds, running until a signal, and opening the database a command works on."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from services import runtime
from services.cli.logs import redacted_url
from services.cli.text import t
from shared.config import Settings
from shared.storage.db import create_engine, migrate

app = typer.Typer(
    help="healthwatch: customer-health monitoring and early warning.", no_args_is_help=True
)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
console = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")


accounts_app = typer.Typer(help="Account facts from CRM exports.", no_args_is_help=True)
app.add_typer(accounts_app, name="accounts")


# Garbage collection thresholds, as ``gc.set_threshold`` takes them: new objects
# between young collections, young collections between middle ones, middle ones between
# full ones (CPython 3.11's default: 700, 10, 10). A full collection walks every live
# object, and each young one walks the objects allocated since the last.
#
# The services: scoring allocates fast (decoded events, measures, each score's dicts)
# while it holds many objects (the cached usage states, a chunk's accounts). At 700 a
# chunk's short-lived objects survive young collections, are walked again in the older
# generations and make them grow, which triggers full collections. A sweep of 10,000
# quiet accounts (docs/benchmarks.md) took 1.36 ms an account with the default, 1.09 with
# these and 1.04 with no collection at all. The memory a rarer collection leaves is
# cyclic garbage only (reference counting frees the rest at once).
SERVICE_COLLECTIONS = (10_000, 10, 100)
# The commands that work through a history, then end: full collections rarer still.
# They hold millions of objects (usage states, the scores a report reads), so full
# collections were 14% of a 300-account backtest (57.9 s; 49.8 s with them 100 times
# rarer; 49.0 s with none). A young threshold of 10,000 changed nothing measurable in
# the backtest (23.6-23.9 s against 24.0-25.0 s) and slowed the import (104-126 s
# against 94-112 s for 300 accounts), so it keeps the default.
BATCH_COLLECTIONS = (700, 10, 1000)


@contextlib.contextmanager
def collecting(thresholds: tuple[int, int, int]) -> Iterator[None]:
    """Run with these collection thresholds, put back at the end (a test runs commands
    in its own process); as a decorator, around a command."""
    before = gc.get_threshold()
    gc.set_threshold(*thresholds)
    try:
        yield
    finally:
        gc.set_threshold(*before)


def run_until_stopped(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``main`` until it returns or SIGINT/SIGTERM asks it to stop gracefully."""

    async def wrapper() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    asyncio.run(wrapper())


def serve_service(
    runner: runtime.ServiceRunner, settings: Settings, port: int, setting: str
) -> None:
    """Serve ``runner`` on ``port``, set by ``setting`` (named when the port is busy)."""
    port_free(settings.host, port, setting)

    async def main(stop: asyncio.Event) -> None:
        async with runtime.open_runtime(settings) as rt:
            await runner(rt, stop)

    run_until_stopped(main)


def port_free(host: str, port: int, setting: str) -> None:
    """Fail at once on a busy port, before the services start only to be torn down
    (serve_http's own bind still catches a port taken in between)."""
    runtime.bind(host, port, setting).close()


class MissingDatabase(Exception):
    """The SQLite file a command would open does not exist: most likely the command runs
    from another folder than the one `healthwatch dev` made it in."""


def sqlite_file(url: str) -> Path | None:
    """The absolute path of a SQLite database file (None: another backend, or memory)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).resolve()


def database_shown(url: str) -> str:
    """The URL without its password, and a SQLite file's absolute path."""
    file = sqlite_file(url)
    return redacted_url(url) + (f" ({file})" if file else "")


async def on_database(settings: Settings, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    """``work`` on a fresh engine (the embedded database migrated first), disposed after.
    Refuses a SQLite file that does not exist: creating an empty one would hand out a
    key no running service knows."""
    file = sqlite_file(settings.database_url)
    if file is not None and not file.exists():
        raise MissingDatabase(
            t(
                "no database at {file}: run from the project folder (where `healthwatch dev` "
                "made it) or set HEALTHWATCH_DATABASE_URL",
                file=file,
            )
        )
    engine = create_engine(settings.database_url)
    try:
        if settings.embedded:
            await migrate(engine)
        done = await work(engine)
    finally:
        await engine.dispose()
    console.print(t("database {url}", url=escape(database_shown(settings.database_url))))
    return done
