"""The ``healthwatch`` command."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import re
import secrets
import signal
import sqlite3
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from datetime import date, datetime, timezone, tzinfo
from pathlib import Path
from typing import Annotated, Any, TypeVar

import orjson
import typer
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry
from pydantic import SecretStr, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine

from services import runtime
from services.admin_keys import printable
from services.scoring.backfill import ImportReport, check_file_names, import_files
from services.scoring.history_files import UnreadableFile
from services.scoring.import_files import CopyOfAFileReadBefore, NotTheFileReadBefore
from services.scoring.import_lock import ImportLockLost, ImportRunning
from services.scoring.metrics import ScoringMetrics
from services.scoring.model.schema import ModelError
from services.scoring.plans.templates import PlanTemplateError
from services.scoring.processor import ScoringProcessor
from services.simulate import Simulator
from shared.alerting.schema import AlertingError
from shared.alerting.store import alerting_store
from shared.auth import KeyInfo, Role, Scope, create_key, list_keys, revoke_key, role_scopes
from shared.bus.base import BusUnavailable
from shared.bus.factory import create_bus
from shared.config import Settings
from shared.contracts.events import Email
from shared.i18n import DEFAULT_LANGUAGE, LANGUAGES, Refusal, translate
from shared.storage.db import create_engine, migrate
from shared.worker import describe, is_transient

app = typer.Typer(
    help="healthwatch: customer-health monitoring and early warning.", no_args_is_help=True
)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
console = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")


def cli_language() -> str:
    """The language of the commands' messages: HEALTHWATCH_LANGUAGE (or its line in
    .env) when set, as the services read it; else the terminal's locale (LC_ALL,
    LC_MESSAGES, LANG, as gettext reads them: zh_CN.UTF-8 reads Chinese); else English.
    Never fails: a setting that does not read is reported by ``main``."""
    try:
        settings = Settings()
        if "language" in settings.model_fields_set:
            return settings.language
    except (ValueError, OSError):  # a setting that does not read; an unreadable .env
        pass
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        if value := os.environ.get(name):
            return "zh-CN" if value.lower().startswith("zh") else DEFAULT_LANGUAGE
    return DEFAULT_LANGUAGE


def t(text: str, **values: object) -> str:
    """``text`` in the commands' language (``cli_language``), its fields filled from
    ``values``. The English is the catalog's key (shared/i18n/locale/zh_CN/cli.po); rich's
    markup stays in both."""
    return translate(cli_language(), text, **values)


def worded(exc: BaseException) -> str:
    """An exception's message for the terminal, in the commands' language when it is a
    ``Refusal`` (a template with values), else as it is; escaped for rich."""
    return escape(exc.worded(cli_language()) if isinstance(exc, Refusal) else str(exc))


LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
# Libraries whose INFO (and DEBUG) records name the URLs they call, and an outgoing
# webhook's URL is its credential: httpx logs "HTTP Request: POST <url>" at INFO,
# slack_sdk logs the webhook URL when it retries. Their warnings still show.
QUIET_LOGGERS = ("aiokafka", "httpx", "httpcore", "slack_sdk", "aiohttp", "aiosmtplib")
# APScheduler logs every run of every job at INFO (the accounts gauge each minute): noise
# that buries the health changes and alerts; a failed job is still an error.
CHATTY_LOGGERS = ("apscheduler",)


def _setup_logging(settings: Settings) -> None:
    setup_logging(settings.log_level)


# Distinct repeated messages a RepeatFilter tracks before it forgets the stale ones.
REPEATS_KEPT = 1000


def setup_logging(level: str | int, fmt: str = LOG_FORMAT) -> None:
    """Log to stderr one line per record, control characters escaped and passwords in
    URLs hidden (see OneLineFormatter); chatty libraries at WARNING."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter(fmt))
    handler.addFilter(RepeatFilter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    for name in (*QUIET_LOGGERS, *CHATTY_LOGGERS):
        logging.getLogger(name).setLevel(logging.WARNING)


def _raised_at(record: logging.LogRecord) -> str:
    """The record's exception, its type and the line that raised it: every unhandled
    request error logs one message ("Exception in ASGI application"), so without this
    the first bug of a minute hid all the others."""
    exc = record.exc_info[1] if record.exc_info else None
    if exc is None:
        return ""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb is not None else ""
    return f" [{type(exc).__name__} {where}]"


class RepeatFilter(logging.Filter):
    """A warning or error said again within ``window_s`` (the same text, and the same
    exception raised at the same line) is counted, not written; the next one written
    after the window says how many were left out. A broker outage had
    aiokafka log "Unable connect to node" 4,431 times a second, and the outbox a
    traceback every poll while the database was down: gigabytes an hour of one line.
    Tracks at most REPEATS_KEPT messages (oldest first out; beyond that, records pass),
    under a lock: PDF rendering logs from a thread."""

    def __init__(self, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self._window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        # (logger, level, message) → (when written, left out since), oldest written first
        self._seen: OrderedDict[tuple[str, int, str], tuple[float, int]] = OrderedDict()
        # out of their window with repeats left out: said when next written
        self._left_out: dict[tuple[str, int, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        try:
            message = record.getMessage()
        except Exception:
            return True  # logging reports a bad format itself
        key = (record.name, record.levelno, message + _raised_at(record))
        with self._lock:
            now = self._clock()
            while self._seen and now - next(iter(self._seen.values()))[0] >= self._window_s:
                expired, (_, repeats) = self._seen.popitem(last=False)
                if repeats and len(self._left_out) < REPEATS_KEPT:
                    self._left_out[expired] = repeats
            if key in self._seen:
                written, left_out = self._seen[key]
                self._seen[key] = (written, left_out + 1)
                return False
            if len(self._seen) >= REPEATS_KEPT:
                return True
            left_out = self._left_out.pop(key, 0)
            self._seen[key] = (now, 0)
        if left_out:
            record.msg = f"{message} ({left_out} more like it in the last "
            record.msg += f"{self._window_s:.0f} s not shown)"
            record.args = None
        return True


def redacted_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:  # not a database URL: hide whatever userinfo it has
        return _USERINFO.sub(r"\1***@", url)


class OneLineFormatter(logging.Formatter):
    """Every record one line, whatever its text holds: C0 control characters but tab
    (and DEL, NEL, U+2028/9) in the message and its arguments are escaped, so a CR/LF in
    an account name cannot forge a record; passwords in URLs become ***. A traceback
    follows on lines of its own, each indented, so no line at column 0 is anything but
    a record's start."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_controls(_USERINFO.sub(r"\1***@", super().formatMessage(record)))

    def formatException(self, ei: Any) -> str:
        return _indented(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return _indented(super().formatStack(stack_info))


# scheme://user:password@ → scheme://user:***@ (the password is the URL's secret part).
_USERINFO = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*:)[^/\s@]+@")
_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, 0x85) if c != 0x09}
_ESCAPES |= {0x0A: "\\n", 0x0D: "\\r", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def escape_controls(text: str) -> str:
    return text.translate(_ESCAPES)


def _indented(text: str) -> str:
    return "\n".join("    " + escape_controls(line) for line in text.splitlines())


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


WORKERS_OPTION = typer.Option(
    min=1,
    help="Processes replaying the history, a share of the accounts each (default and most: "
    "one per core; one per 200,000 events by default); the result is the same for any number",
)


def _run(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``main`` until it returns or SIGINT/SIGTERM asks it to stop gracefully."""

    async def wrapper() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    asyncio.run(wrapper())


def _serve(runner: runtime.ServiceRunner, settings: Settings, port: int) -> None:
    _port_free(settings.host, port)

    async def main(stop: asyncio.Event) -> None:
        async with runtime.open_runtime(settings) as rt:
            await runner(rt, stop)

    _run(main)


def _port_free(host: str, port: int) -> None:
    """Fail at once on a busy port, before the services start only to be torn down
    (serve_http's own bind still catches a port taken in between)."""
    runtime.bind(host, port).close()


@app.command()
@collecting(SERVICE_COLLECTIONS)
def dev(
    simulate: Annotated[
        int, typer.Option(help="Simulated customer accounts to start (0: none)")
    ] = 0,
    port: Annotated[
        int | None,
        typer.Option(help="HTTP port (default HEALTHWATCH_INGEST_PORT)", min=0, max=65535),
    ] = None,
) -> None:
    """Every service in one process with the embedded bus and a SQLite file."""
    settings = Settings()
    if port is not None:
        settings = settings.model_copy(update={"ingest_port": port})
    if not settings.embedded:
        console.print(t("[yellow]HEALTHWATCH_KAFKA_BOOTSTRAP is set: dev mode uses Kafka too.[/]"))
    _port_free(settings.host, settings.ingest_port)
    if simulate and not settings.zendesk_webhook_secret.get_secret_value():
        # The demo's live tickets arrive as Zendesk sends them (docs/connectors.md), signed
        # with a secret only this process and its simulator know.
        settings = settings.model_copy(
            update={"zendesk_webhook_secret": SecretStr(secrets.token_urlsafe(24))}
        )
    alerting_store(settings)  # an unreadable alerting file: one line now, not at its first use
    _setup_logging(settings)
    log = logging.getLogger("healthwatch.dev")
    warn_about_settings(settings, log)

    async def main(stop: asyncio.Event) -> None:
        async with runtime.open_runtime(settings) as rt:
            url = f"http://{settings.host}:{settings.ingest_port}"
            log.info(
                "healthwatch dev: API on %s (dashboard %s/ui/, docs %s/docs), database %s",
                url,
                url,
                url,
                redacted_url(settings.database_url),
            )
            tasks = [runtime.run_dev(rt, stop), _welcome(rt.engine, url, log)]
            if simulate:
                # read and respond too: the simulator works the demo's risk cases.
                scopes = [Scope.ingest, Scope.crm, Scope.read, Scope.respond]
                key = await create_key(rt.engine, "dev-simulator", scopes)
                zendesk = settings.zendesk_webhook_secret.get_secret_value()
                sim = Simulator(
                    url, key, simulate, progress=_log_progress(log), zendesk_secret=zendesk
                )
                tasks.append(_simulate_when_up(sim, stop, log))
            await runtime.together(*tasks)

    _run(main)


# Roles whose keys the dashboard lets in (it needs the read scope).
SIGN_IN_ROLES = (Role.admin, Role.cs_lead, Role.csm)


async def _welcome(engine: AsyncEngine, url: str, log: logging.Logger) -> None:
    """Once the server is up: where the dashboard and the docs are, and a key to sign in
    with, made on the first start of a database without one (later starts say how to
    make another rather than piling up keys)."""
    await asyncio.sleep(0.5)  # let the HTTP server bind: a busy port ends dev first
    log.info("Dashboard: %s/ui/   API docs: %s/docs", url, url)
    if any(k.role in SIGN_IN_ROLES and k.revoked_at is None for k in await list_keys(engine)):
        log.info(
            "Sign in at %s/ui/ with a dashboard key; make one with "
            "'%s keys create --role cs_lead --name NAME'",
            url,
            _own_command(),
        )
        return
    key = await create_key(engine, "demo sign-in", role_scopes(Role.cs_lead, None))
    # Printed to the terminal, once, and never through logging: log records end up in
    # files and collectors, and the key is a credential. On standard output, apart from
    # the log (standard error), so `dev 2>dev.log` keeps it out of the file. Only `dev`
    # does this, the demo whose user sits at this terminal; production commands never do.
    Console(soft_wrap=True).print(
        t("Sign in at {url}/ui/ with key {key}", url=url, key=key), highlight=False
    )
    sys.stdout.flush()


def _own_command() -> str:
    """How to run this healthwatch from the folder it was started in: `make demo` runs it
    from .venv without activating that, so the bare name would not be found there."""
    script = Path(sys.argv[0]).absolute()
    if script.name != "healthwatch":  # python -m services.cli, a test harness
        return "healthwatch"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return "healthwatch"


# Seconds between an import's progress lines in a log (a terminal shows a live bar).
IMPORT_LOG_EVERY_S = 10.0


class _ImportLog:
    """Each file's records read as log lines: at most every IMPORT_LOG_EVERY_S while the
    import reads, and each file's last count when it ends (``close``)."""

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._when: dict[str, float] = {}  # file → when its count was last logged
        self._logged: dict[str, int] = {}  # file → the count logged then
        self._read: dict[str, tuple[int, int]] = {}  # file → its records read, in all

    def __call__(self, name: str, read: int, total: int) -> None:
        self._read[name] = (read, total)
        now = time.monotonic()
        if now - self._when.get(name, float("-inf")) >= IMPORT_LOG_EVERY_S:
            self._when[name] = now
            self._emit(name, read, total)

    def close(self) -> None:
        for name, (read, total) in self._read.items():
            if self._logged.get(name) != read:
                self._emit(name, read, total)

    def _emit(self, name: str, read: int, total: int) -> None:
        self._logged[name] = read
        total = max(total, read)  # a file written to while it is read
        share = 100 * read // total if total else 100
        self._log.info("import: %s: %d of %d records read (%d%%)", name, read, total, share)


def _log_progress(log: logging.Logger) -> Callable[[str, int, int], None]:
    def report(stage: str, done: int, total: int) -> None:
        if stage == "history" and (done == total or done % max(1, total // 10) == 0):
            log.info("simulator: history %d/%d accounts", done, total)

    return report


async def _simulate_when_up(sim: Simulator, stop: asyncio.Event, log: logging.Logger) -> None:
    """The demo's traffic beside the services. A simulator that gives up (ingest
    unavailable for minutes: a full or unwritable disk) stops alone: it had taken the
    API, scoring and alerts down with it (found from outside)."""
    await asyncio.sleep(0.5)  # let the HTTP server bind
    log.info("simulator: %d accounts", len(sim.accounts))
    try:
        await sim.run(stop)
    except Exception as exc:  # the demo's traffic only: the services go on
        log.error(
            "simulator stopped (%s); the services go on: restart to simulate again",
            describe(exc),
        )


def warn_about_settings(settings: Settings, log: logging.Logger) -> None:
    """Warn at start about settings that are unsafe in production."""
    if settings.webhook_url and not settings.webhook_secret.get_secret_value():
        log.warning(
            "HEALTHWATCH_WEBHOOK_URL is set but HEALTHWATCH_WEBHOOK_SECRET is not: notices "
            "go out unsigned, so the receiver cannot tell them from forgeries; set a secret"
        )
    if settings.smtp_host and not settings.smtp_starttls:
        log.warning(
            "HEALTHWATCH_SMTP_STARTTLS is off: alert emails (and the SMTP password) cross "
            "the network in clear text"
        )


@app.command()
@collecting(SERVICE_COLLECTIONS)
def ingest() -> None:
    """Run the ingest API alone (production mode)."""
    settings = Settings()
    _setup_logging(settings)
    _serve(runtime.run_ingest, settings, settings.ingest_port)


@app.command()
@collecting(SERVICE_COLLECTIONS)
def scoring() -> None:
    """Run one scoring consumer (add more processes to scale; they share the group)."""
    settings = Settings()
    _setup_logging(settings)
    _serve(runtime.run_scoring_service, settings, settings.scoring_port)


@app.command()
@collecting(SERVICE_COLLECTIONS)
def alerts() -> None:
    """Run the alerts service: intake from the alerts topic and delivery."""
    settings = Settings()
    alerting_store(settings)  # an unreadable alerting file: one line now, not at its first use
    _setup_logging(settings)
    warn_about_settings(settings, logging.getLogger("healthwatch.alerts"))
    _serve(runtime.run_alerts_service, settings, settings.alerts_port)


@app.command()
def web() -> None:
    """Serve the dashboard, the read API and the alerts API in one place (production
    mode; no consumer: run as many as you like)."""
    settings = Settings()
    alerting_store(settings)  # an unreadable alerting file: one line now, not at its first use
    _setup_logging(settings)
    _serve(runtime.run_web_service, settings, settings.web_port)


@app.command("migrate")
def migrate_cmd() -> None:
    """Create or upgrade the database schema (Alembic)."""
    settings = Settings()

    async def main() -> None:
        engine = create_engine(settings.database_url)
        try:
            await migrate(engine)
        finally:
            await engine.dispose()

    asyncio.run(main())
    console.print(t("schema is up to date"))


@keys_app.command("create")
def keys_create(
    role: Annotated[
        Role | None,
        typer.Option(help="admin, cs_lead, csm (with --csm-email), ops, ingest or crm"),
    ] = None,
    scope: Annotated[
        list[Scope] | None,
        typer.Option(help="Or raw scope(s): ingest, crm, read, respond, admin, metrics"),
    ] = None,
    name: Annotated[str, typer.Option(help="What the key is for")] = "unnamed",
    csm_email: Annotated[
        str | None, typer.Option(help="Limit the key to this CSM's portfolio")
    ] = None,
) -> None:
    """Create an API key and print it (it is stored hashed: this is the only copy)."""
    settings = Settings()
    if (role is None) == (not scope):
        raise typer.BadParameter(t("give a --role (or, for special cases, --scope …), not both"))
    try:
        scopes = role_scopes(role, csm_email) if role is not None else frozenset(scope or [])
        printable(name)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if csm_email is not None:
        try:  # a key for "not-an-email" would see no account, silently
            csm_email = TypeAdapter(Email).validate_python(csm_email)
        except ValidationError:
            raise typer.BadParameter(
                t("--csm-email {email!r} is not an email", email=csm_email)
            ) from None

    async def create(engine: AsyncEngine) -> str:
        return await create_key(engine, name, scopes, csm_email)

    key = asyncio.run(_on_database(settings, create))
    print(key)
    what = (
        t("role {role}", role=role.value)
        if role
        else t("scopes {scopes}", scopes=", ".join(sorted(s.value for s in scopes)))
    )
    console.print(t("[green]created[/] key {name} with {what}", name=escape(repr(name)), what=what))


@keys_app.command("list")
def keys_list(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per key")] = False,
) -> None:
    """List every key (revoked ones too): id, name, role or scopes, CSM, dates. Never the
    secret, which is not stored."""
    keys = asyncio.run(_on_database(Settings(), list_keys))
    if as_json:
        for k in keys:
            print(orjson.dumps(_key_row(k)).decode())
        return
    table = Table("id", "name", "role / scopes", "csm", "created", "revoked", box=None)
    for k in keys:
        row = _key_row(k)
        table.add_row(*(Text(escape_controls(str(row[c] or ""))) for c in row if c != "scopes"))
    # Piped output has no terminal width to fit: keep every column whole.
    Console(width=None if sys.stdout.isatty() else 200).print(table)
    console.print(t("{n} key(s); revoke one with 'healthwatch keys revoke KEY_ID'", n=len(keys)))


def _key_row(k: KeyInfo) -> dict[str, str | None]:
    scopes = ",".join(sorted(s.value for s in k.scopes))
    return {
        "key_id": k.key_id,
        "name": k.name,
        "role": k.role.value if k.role else f"scopes: {scopes}",
        "csm_email": k.csm_email,
        "created_at": k.created_at.isoformat(timespec="seconds"),
        "revoked_at": k.revoked_at.isoformat(timespec="seconds") if k.revoked_at else None,
        "scopes": scopes,
    }


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key's id (keys list)")]) -> None:
    """Revoke a key: every service refuses it within a minute (their key caches)."""

    async def revoke(engine: AsyncEngine) -> tuple[datetime | None, bool]:
        before = await list_keys(engine, key_id)
        already = bool(before) and before[0].revoked_at is not None
        return await revoke_key(engine, key_id), already

    when, already = asyncio.run(_on_database(Settings(), revoke))
    if when is None:
        console.print(
            t("[red]no key {key_id}[/]: 'healthwatch keys list' shows the ids", key_id=repr(key_id))
        )
        raise typer.Exit(1)
    at = when.isoformat(timespec="seconds")
    if already:  # it printed "revoked" again, as if just now
        console.print(t("key {key_id} was revoked already, at {at}", key_id=key_id, at=at))
        return
    console.print(t("[green]revoked[/] key {key_id} at {at}", key_id=key_id, at=at))


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


async def _on_database(settings: Settings, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
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


@app.command("import")
@collecting(BATCH_COLLECTIONS)
def import_cmd(
    files: Annotated[
        list[Path],
        typer.Argument(
            help="NDJSON, CSV (.gz accepted) or Parquet files, each in time order; several "
            "are read side by side, merged by event time"
        ),
    ],
    restart: Annotated[
        bool,
        typer.Option(help="Read the lines rejected before again (after fixing them in place)"),
    ] = False,
) -> None:
    """Load historical events through the scoring code (resumable; sends no alerts)."""
    settings = Settings()
    _setup_logging(settings)
    # A band change of the past per account and day (564 lines for 300 accounts) buried
    # the progress lines; the score history holds them.
    logging.getLogger("services.scoring.processor").setLevel(logging.WARNING)
    folders = [str(f) for f in files if f.is_dir()]
    if folders:
        console.print(
            t(
                "[red]a folder, not a file:[/] {folders}: name its files "
                "(for example folder/*.ndjson.gz)",
                folders=escape(", ".join(folders)),
            )
        )
        raise typer.Exit(2)
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        console.print(t("[red]no such file:[/] {files}", files=escape(", ".join(missing))))
        raise typer.Exit(2)
    try:
        check_file_names(files)
    except ValueError as exc:
        console.print(t("[red]not started:[/] {reason}", reason=worded(exc)))
        raise typer.Exit(2) from None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    async def main() -> ImportReport:
        engine = create_engine(settings.database_url)
        # The alerts still open at the end go to the alerts topic (opened, not notified).
        bus = create_bus(settings, engine)
        try:
            if settings.embedded:
                await migrate(engine)
            await bus.producer.start()
            metrics = ScoringMetrics(CollectorRegistry())
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                MofNCompleteColumn(),
                TextColumn(t("records")),
                TimeRemainingColumn(),
                console=console,
            ) as progress:
                # No total until the file's first reading has counted its records.
                tasks = {f.name: progress.add_task(f.name, total=None) for f in files}
                logged = _ImportLog(logging.getLogger("healthwatch.import"))

                def report(name: str, read: int, total: int) -> None:
                    progress.update(tasks[name], completed=read, total=max(total, read))
                    if not console.is_terminal:  # a log, a CI job: lines instead of a bar
                        logged(name, read, total)

                try:
                    return await import_files(
                        files,
                        lambda sink: ScoringProcessor(engine, sink, settings, metrics),
                        progress=report,
                        restart=restart,
                        alerts_to=bus.producer,
                    )
                finally:
                    logged.close()  # where each file got to, however the import ended
        finally:
            await bus.producer.stop()
            await engine.dispose()

    try:
        result = asyncio.run(main())
    except KeyboardInterrupt:
        console.print(
            t(
                "[yellow]stopped[/]: what was read up to the last batch saved is imported; "
                "run the same command again to go on from there"
            )
        )
        raise typer.Exit(130) from None
    except (ImportRunning, NotTheFileReadBefore, CopyOfAFileReadBefore) as exc:
        console.print(t("[red]not started:[/] {reason}", reason=worded(exc)))
        raise typer.Exit(2) from None
    except ImportLockLost as exc:
        console.print(t("[red]stopped:[/] {reason}", reason=worded(exc)))
        raise typer.Exit(1) from None
    if result.stopped is not None:
        console.print(
            t(
                "[red]stopped:[/] {reason}; the {imported} events read before it are "
                "imported: run the import again once the file is whole (it goes on from "
                "there)",
                reason=escape(result.stopped),
                imported=result.imported,
            )
        )
        _print_rejected(result)
        raise typer.Exit(1)
    repeated = (
        t(", {n} repeated event ids counted once", n=result.repeated) if result.repeated else ""
    )
    console.print(
        t(
            "[green]imported[/] {imported} events from {files} file(s) ({before} lines read "
            "by an earlier run{repeated}); {swept} accounts brought up to today; {days} "
            "daily scores recorded; {not_sent} alert messages of the past were not sent; "
            "{opened} alerts still true were opened without notices",
            imported=result.imported,
            files=result.files,
            before=result.skipped_already_imported,
            repeated=repeated,
            swept=result.swept,
            days=result.days_scored,
            not_sent=result.alerts_not_sent,
            opened=result.alerts_opened,
        )
    )
    if result.rejected_before:
        console.print(
            t(
                "[yellow]{n} line(s) rejected by an earlier run[/] are still to fix: fix "
                "them in place and run again with --restart",
                n=result.rejected_before,
            )
        )
    if result.rejected or result.rejected_before:
        _print_rejected(result)
        raise typer.Exit(1)


# Rejected lines listed after an import; the rest are counted (each is in the log).
REJECTS_SHOWN = 20


def _print_rejected(result: ImportReport) -> None:
    if not result.rejected:
        return
    console.print(
        t(
            "[yellow]{n} line(s) rejected[/]: fix them and run again with --restart (only "
            "the rejected lines are read again; fix them in place, so that every line "
            "keeps its number):",
            n=len(result.rejected),
        )
    )
    for name, line, reason in result.rejected[:REJECTS_SHOWN]:
        console.print(f"  {escape(name)}:{line}: {escape(reason)}")
    if len(result.rejected) > REJECTS_SHOWN:
        console.print(
            t(
                "  … and {n} more: the log has every one (HEALTHWATCH_LOG_LEVEL=WARNING or lower)",
                n=len(result.rejected) - REJECTS_SHOWN,
            )
        )


@app.command()
@collecting(BATCH_COLLECTIONS)
def backtest(
    files: Annotated[list[Path], typer.Argument(help="History: NDJSON or CSV event files")],
    churn: Annotated[
        Path | None, typer.Option(help="CSV of account_id,churn_date (besides churn events)")
    ] = None,
    horizons: Annotated[
        str, typer.Option(help="Days ahead to predict, comma-separated")
    ] = "30,60,90",
    step_days: Annotated[
        int,
        typer.Option(
            help="Score every account, quiet ones included, every N days; the alert rules "
            "step on those days (1: daily)",
            min=1,
        ),
    ] = 7,
    model: Annotated[
        Path | None, typer.Option(help="A model TOML file (default: built in)")
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder for report.json and report.html")] = Path(
        "backtest-report"
    ),
    workers: Annotated[int | None, WORKERS_OPTION] = None,
) -> None:
    """Replay history through the scoring code and report how well the score predicted churn."""
    from services.scoring.backtest import report as rpt
    from services.scoring.model.schema import DEFAULT_MODEL, parse_model

    source = (model or DEFAULT_MODEL).read_text(encoding="utf-8")
    try:
        health_model = parse_model(source)
    except ValueError as exc:  # ModelError lists every problem with its location
        raise typer.BadParameter(str(exc)) from exc
    try:
        wanted = [int(h) for h in horizons.split(",") if h.strip()]
    except ValueError:
        raise typer.BadParameter(
            t(
                "--horizons {horizons!r}: days ahead, whole numbers with commas, e.g. 30,60,90",
                horizons=horizons,
            )
        ) from None
    if any(h <= 0 for h in wanted):
        raise typer.BadParameter(t("--horizons are days ahead: whole numbers above 0"))
    result = _replayed(files, churn, source=source, step_days=step_days, workers=workers)
    built = rpt.build(result, wanted, health_model)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_bytes(orjson.dumps(rpt.public(built), option=orjson.OPT_INDENT_2))
    (out / "report.html").write_text(rpt.html_report(built), encoding="utf-8")
    print(rpt.text(built))
    console.print(
        t("written {json} and {html}", json=out / "report.json", html=out / "report.html")
    )


@app.command()
@collecting(BATCH_COLLECTIONS)
def calibrate(
    files: Annotated[list[Path], typer.Argument(help="History: NDJSON or CSV event files")],
    churn: Annotated[
        Path | None, typer.Option(help="CSV of account_id,churn_date (besides churn events)")
    ] = None,
    horizon: Annotated[int, typer.Option(help="Days ahead to predict churn", min=1)] = 30,
    step_days: Annotated[int, typer.Option(help="Score every account every N days", min=1)] = 7,
    out: Annotated[Path, typer.Option(help="The calibrated model's TOML file")] = Path(
        "calibrated-model.toml"
    ),
    version: Annotated[str, typer.Option(help="The new model's version")] = "calibrated",
    workers: Annotated[int | None, WORKERS_OPTION] = None,
    model: Annotated[
        Path | None,
        typer.Option(
            help="Base model TOML (default: the handbook's): its groups, settings and "
            "declared [behaviour] ratios (e.g. dislikes per like) carry over"
        ),
    ] = None,
) -> None:
    """Learn an explainable health model (a curve and a weight per measure) from the
    history, judged out of sample beside the model it starts from and the baselines."""
    from services.scoring.backtest.calibration import calibrate as fit_model
    from services.scoring.backtest.calibration import text as calibration_text
    from services.scoring.model.schema import load_default_model, parse_model

    source = model.read_text(encoding="utf-8") if model else None
    try:
        base = parse_model(source) if source else load_default_model()
    except ValueError as exc:  # ModelError lists every problem with its location
        raise typer.BadParameter(str(exc)) from exc
    result = _replayed(files, churn, source=source, step_days=step_days, workers=workers)
    try:
        _, toml_text, report = fit_model(result, horizon, base, version)
    except ValueError as exc:
        console.print(
            t(
                "[red]cannot calibrate:[/] {reason}. A model is fitted on the earlier part of "
                "the history and needs churned accounts there whose measures differ from the "
                "rest: give a longer history or more accounts (`healthwatch backtest` judges "
                "the handbook's model on this one).",
                reason=worded(exc),
            )
        )
        raise typer.Exit(1) from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(toml_text, encoding="utf-8")
    print(calibration_text(report, horizon))
    if any(w["check"] == "worse_than_default" for w in report["warnings"]):
        console.print(
            t("written {out}, but keep the model it started from: see the warning above", out=out)
        )
        return
    console.print(
        t(
            "written {out}: review it (diff it against GET /v1/health-model), then apply it "
            "with PUT /v1/health-model",
            out=out,
        )
    )


def _replayed(
    files: list[Path],
    churn: Path | None,
    *,
    source: str | None,
    step_days: int,
    workers: int | None,
) -> Any:
    """The history replayed (``backtest``, ``calibrate``), with progress; a user's
    mistake (an unreadable churn file or history, no events, no churn) ends the command
    with one line saying what to fix."""
    from rich.progress import Progress

    from services.scoring.backtest.replay import ChurnFileError, read_churn_csv, replay

    try:
        outcomes = read_churn_csv(churn) if churn else {}
    except ChurnFileError as exc:
        console.print(t("[red]cannot read the churn file:[/] {reason}", reason=worded(exc)))
        raise typer.Exit(2) from None
    setup_logging("WARNING")
    lang = cli_language()  # once: the progress below is called for every batch
    with Progress(console=console) as progress:
        reading = progress.add_task(translate(lang, "reading history"), total=None)
        task = progress.add_task(translate(lang, "replaying history"), total=None)
        logged = [0]  # lines read when last logged

        def read(lines: int) -> None:
            progress.update(
                reading, description=translate(lang, "reading history: {n} lines", n=lines)
            )
            # A log, a CI job: a line per half a million lines read instead of a bar.
            if not console.is_terminal and lines - logged[0] >= 500_000:
                logged[0] = lines
                console.print(translate(lang, "replay: {n} lines read", n=lines))

        def report(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)
            if not console.is_terminal and (done == total or done % max(1, total // 10) == 0):
                console.print(
                    translate(
                        lang,
                        "replay: {done}/{total} evaluation days scored (every --step-days)",
                        done=done,
                        total=total,
                    )
                )

        try:
            result = asyncio.run(
                replay(
                    files,
                    churn=outcomes,
                    model_source=source,
                    step_days=step_days,
                    progress=report,
                    reading=read,
                    workers=workers,
                )
            )
        except UnreadableFile as exc:
            console.print(t("[red]stopped:[/] {reason}", reason=worded(exc)))
            raise typer.Exit(1) from None
    if result.rejected:
        console.print(
            t(
                "[yellow]{n} line(s) rejected[/] (not JSON, not an event, or dated in the "
                "future) and left out:",
                n=result.rejected,
            )
        )
        for name, line, reason in result.rejects:
            console.print(f"  {escape(name)}:{line}: {escape(reason)}")
        if result.rejected > len(result.rejects):
            console.print(
                t(
                    "  … and {n} more: `healthwatch import` of the files into a scratch "
                    "database lists each with its reason",
                    n=result.rejected - len(result.rejects),
                )
            )
    if not result.events:
        console.print(t("[red]no events in the history:[/] check the files (NDJSON, CSV, Parquet)"))
        raise typer.Exit(2)
    if not result.churn:
        console.print(t("[red]no churn outcomes:[/] pass --churn FILE or include churn events"))
        raise typer.Exit(2)
    return result


@app.command()
def report(
    account: Annotated[str, typer.Argument(help="Account id")],
    kind: Annotated[str, typer.Option(help="usage (30 days), bimonthly or qbr")] = "usage",
    end: Annotated[str | None, typer.Option(help="Last day, YYYY-MM-DD (default today)")] = None,
    lang: Annotated[
        str | None, typer.Option(help="en or zh-CN (default: HEALTHWATCH_LANGUAGE)")
    ] = None,
    pdf: Annotated[
        bool, typer.Option("--pdf", help="A PDF (also when --out ends in .pdf)")
    ] = False,
    out: Annotated[
        Path | None, typer.Option(help="File (default: <account>-<kind>.html, or .pdf)")
    ] = None,
) -> None:
    """Write an account's report as print-ready HTML, or as a PDF."""
    from services.reports.api import file_part
    from services.reports.data import KINDS, UnknownAccount
    from services.reports.document import Ask, document
    from services.reports.fmt import Fmt
    from services.reports.pdf import PdfUnavailable

    if kind not in KINDS:
        raise typer.BadParameter(t("--kind must be one of {choices}", choices=", ".join(KINDS)))
    if lang is not None and lang not in LANGUAGES:
        raise typer.BadParameter(t("--lang must be one of {choices}", choices=", ".join(LANGUAGES)))
    from services.scoring.queries import AHEAD_OF_UTC, account_zone

    settings = Settings()
    # A malformed --end stops here, before the database; the day is the account's.
    _report_day(end, timezone(AHEAD_OF_UTC))
    pdf = pdf or (out is not None and out.suffix.lower() == ".pdf")
    fmt = Fmt(lang or settings.language, settings.currency)

    async def write(engine: AsyncEngine) -> bytes:
        async with engine.connect() as conn:
            # "Today" in the account's zone, as the API's and the dashboard's reports: on
            # the service's clock (UTC) a Shanghai account's morning was left out.
            zone = await account_zone(conn, account, settings.zone)
            last = _report_day(end, zone)
            return await document(conn, Ask(account, kind, last, fmt, zone, pdf=pdf))

    try:
        body = asyncio.run(_on_database(settings, write))
    except UnknownAccount:
        where = escape(database_shown(settings.database_url))
        console.print(
            t(
                "[red]no account {account}[/] in {where}: check the id (GET /v1/accounts "
                "lists them) or the database (HEALTHWATCH_DATABASE_URL)",
                account=escape(repr(account)),
                where=where,
            )
        )
        raise typer.Exit(1) from None
    except PdfUnavailable as exc:
        console.print(t("[red]no PDF[/]: {reason}", reason=worded(exc)))
        raise typer.Exit(2) from None
    target = out or Path(f"{file_part(account)}-{kind}.{'pdf' if pdf else 'html'}")
    target.write_bytes(body)
    console.print(t("[green]wrote[/] {target}", target=escape(str(target))))


def _report_day(end: str | None, zone: tzinfo, option: str = "--end") -> date:
    """``--end`` as a day within the calendar the queries take (default today in
    ``zone``)."""
    from services.reports.api import today_in
    from services.scoring.queries import FIRST_DAY, LAST_DAY

    try:
        last = date.fromisoformat(end) if end else today_in(zone)
    except ValueError as exc:
        raise typer.BadParameter(
            t("{option} {day!r}: give a day as YYYY-MM-DD", option=option, day=end)
        ) from exc
    if not FIRST_DAY <= last <= LAST_DAY:
        raise typer.BadParameter(
            t(
                "{option}: give a day from {first} to {last}",
                option=option,
                first=FIRST_DAY,
                last=LAST_DAY,
            )
        )
    if last > today_in(zone):  # its days to come would read as days without use
        raise typer.BadParameter(
            t(
                "{option} {day}: a day to come; give today or an earlier day",
                option=option,
                day=last,
            )
        )
    return last


accounts_app = typer.Typer(help="Account facts from CRM exports.", no_args_is_help=True)
app.add_typer(accounts_app, name="accounts")


@accounts_app.command("import")
def accounts_import(
    file: Annotated[Path, typer.Argument(help="CSV export (UTF-8; see --encoding)")],
    format: Annotated[
        str, typer.Option(help="hubspot (companies), salesforce (accounts) or csv (ours)")
    ] = "csv",
    url: Annotated[str, typer.Option(help="Ingest base URL")] = "http://127.0.0.1:8000",
    key: Annotated[str, typer.Option(envvar="HEALTHWATCH_KEY", help="A crm key")] = "",
    check: Annotated[bool, typer.Option("--check", help="Only read and map; send nothing")] = False,
    encoding: Annotated[
        str | None,
        typer.Option(help="gb18030 for Excel's Chinese CSV (default: UTF-8, checked whole)"),
    ] = None,
) -> None:
    """Send a CRM export's account facts to POST /v1/accounts (docs/connectors.md)."""
    from datetime import UTC

    from rich.progress import Progress, TextColumn

    from services.ingest.connectors.accounts_csv import FALLBACK_ENCODING, CsvError
    from services.ingest.connectors.importer import ImportRefused, http_sender, import_accounts
    from services.ingest.connectors.mapping import FORMATS, load_mapping

    if format not in FORMATS:
        raise typer.BadParameter(t("--format must be one of {choices}", choices=", ".join(FORMATS)))
    if encoding is not None and encoding.lower() not in ("gb18030", "utf-8", "utf8"):
        raise typer.BadParameter(t("--encoding is {fallback} or utf-8", fallback=FALLBACK_ENCODING))
    if not file.is_file():
        console.print(t("[red]no such file:[/] {files}", files=escape(str(file))))
        raise typer.Exit(2)
    if not key and not check:
        console.print(t("[red]a crm key is needed:[/] healthwatch keys create --role crm"))
        raise typer.Exit(2)
    mapping = load_mapping(Settings().connectors_file)
    send = None if check else http_sender(url, key)
    rows_read = TextColumn("{task.description}: {task.completed} " + t("rows"))
    with Progress(rows_read, console=console) as bar:
        task = bar.add_task(file.name, total=None)
        try:
            done = import_accounts(
                file,
                format,
                mapping,
                datetime.now(UTC),
                send=send,
                progress=lambda rows: bar.update(task, completed=rows),
                encoding=encoding,
            )
        except (CsvError, ImportRefused) as exc:
            console.print(t("[red]not imported[/]: {reason}", reason=worded(exc)))
            raise typer.Exit(1) from None
    counts = {"done": done.imported, "rows": done.rows, "file": escape(file.name)}
    if check:
        console.print(t("[green]would import[/] {done} of {rows} rows from {file}", **counts))
    else:
        console.print(t("[green]imported[/] {done} of {rows} rows from {file}", **counts))
    if check and done.sample:
        read = done.encoding.upper().removesuffix("-SIG")
        console.print(
            t("first rows as read ({encoding}): check that the names read right", encoding=read)
        )
        for account, name in done.sample:
            console.print(f"  {escape(account)}: {escape(name)}")
    if done.errors:
        n = len(done.errors)
        if check:
            console.print(t("[yellow]{n} problem(s)[/]; those rows would not be imported:", n=n))
        else:
            console.print(t("[yellow]{n} problem(s)[/]; those rows were not imported:", n=n))
        for e in done.errors[:50]:
            console.print(
                t(
                    "  row {row}, {column}: {message}",
                    row=e.row,
                    column=escape(e.column),
                    message=escape(e.message),
                )
            )
        if len(done.errors) > 50:
            console.print(
                t("  …and {n} more: fix these, then run --check again", n=len(done.errors) - 50)
            )
        raise typer.Exit(1)


@app.command("export")
def export_cmd(
    kind: Annotated[str, typer.Argument(help="accounts, scores or history")],
    out: Annotated[Path, typer.Option(help="File to write ('-': standard output)")],
    format: Annotated[str, typer.Option(help="csv or parquet")] = "csv",
    start: Annotated[
        str | None,
        typer.Option("--from", help="history: first day, YYYY-MM-DD (default: 90 days back)"),
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="history: last day (default today)")
    ] = None,
) -> None:
    """Write every account's facts, current scores or daily history as CSV or Parquet."""
    from services.scoring.export import FORMATS, KINDS, Ask, export_chunks, history_days
    from shared.web import ClientError

    if kind not in KINDS:
        raise typer.BadParameter(t("KIND must be one of {choices}", choices=", ".join(KINDS)))
    if format not in FORMATS:
        raise typer.BadParameter(t("--format must be one of {choices}", choices=", ".join(FORMATS)))
    if kind != "history" and (start or end):
        raise typer.BadParameter(
            t("--from and --to choose days of history; {kind} has none", kind=kind)
        )
    settings = Settings()
    try:
        first = date.fromisoformat(start) if start else None
    except ValueError:
        raise typer.BadParameter(
            t("{option} {day!r}: give a day as YYYY-MM-DD", option="--from", day=start)
        ) from None
    try:
        last = _report_day(end, settings.zone, "--to")
        first, last = history_days(first, last, lambda: last)
    except (ValueError, ClientError) as exc:
        raise typer.BadParameter(f"--from/--to: {exc}") from exc

    to_stdout = str(out) == "-"  # as Unix tools read "-": a pipe, not a file named "-"

    async def write(engine: AsyncEngine) -> int:
        size = 0
        with contextlib.nullcontext(sys.stdout.buffer) if to_stdout else out.open("wb") as f:
            async for chunk in export_chunks(
                engine, Ask(kind, None, first, last), format, bom=not to_stdout
            ):
                size += f.write(chunk)
        return size

    size = asyncio.run(_on_database(settings, write))
    what = ""
    if kind == "history":
        # The default range is a part of the history: said, or it reads as all of it.
        what = t(": daily history {first} to {last}", first=first, last=last)
        what += "" if start else t(" (--from for earlier)")
    where = t("standard output") if to_stdout else escape(str(out))
    Console(stderr=True, soft_wrap=True).print(
        t("[green]wrote[/] {where}{what} ({size} bytes)", where=where, what=what, size=size)
    )


@app.command()
def simulate(
    url: Annotated[str, typer.Option(help="Ingest base URL")] = "http://127.0.0.1:8000",
    api_url: Annotated[
        str | None,
        typer.Option(
            help="Base URL of the plans and cases APIs (production: `healthwatch web`'s; "
            "default: --url, as dev mode serves both)"
        ),
    ] = None,
    key: Annotated[str, typer.Option(envvar="HEALTHWATCH_KEY", help="Ingest API key")] = "",
    accounts: Annotated[int, typer.Option(help="Number of simulated accounts", min=1)] = 50,
    live: Annotated[bool, typer.Option(help="Keep sending live traffic after the history")] = True,
    seed: int = 7,
    history_out: Annotated[
        Path | None, typer.Option(help="Instead: write months of history to this NDJSON(.gz)")
    ] = None,
    churn_out: Annotated[Path, typer.Option(help="With --history-out: churn CSV")] = Path(
        "churn.csv"
    ),
    months: Annotated[
        int, typer.Option(help="With --history-out: months of history (2 or more)", min=2)
    ] = 12,
    shape: Annotated[
        str,
        typer.Option(
            help="With --history-out: product shape — crm (B2B seats, the handbook's), "
            "subscription (single-user app, 8 event types) or transactional (purchases)"
        ),
    ] = "crm",
) -> None:
    """Send realistic traffic for N accounts to an ingest URL, or write a history file."""
    if history_out is not None:
        from datetime import UTC, datetime, timedelta

        from services.simulate_history import SHAPES, write_history

        if shape not in SHAPES:
            raise typer.BadParameter(
                t("--shape must be one of {choices}", choices=", ".join(SHAPES))
            )
        written, churned = write_history(
            history_out,
            churn_out,
            accounts=accounts,
            days=months * 30,
            # Ending yesterday: every event lies in the past, so the file imports as
            # it is (a line later than now + max_future_skew is refused).
            end=datetime.now(UTC).date() - timedelta(days=1),
            seed=seed,
            shape=shape,
            progress=lambda n: console.print(t("{n} events written…", n=n)),
        )
        console.print(
            t(
                "wrote {written} events to {out}; {churned} accounts churned ({churn_out})",
                written=written,
                out=history_out,
                churned=churned,
                churn_out=churn_out,
            )
        )
        return
    if not key:
        console.print(
            t(
                "[red]a key with the ingest and crm scopes (read and respond too, for the "
                "demo's plans and cases) is needed:[/] "
                "healthwatch keys create --scope ingest --scope crm --scope read --scope respond"
            )
        )
        raise typer.Exit(2)
    setup_logging("INFO", "%(asctime)s %(message)s")
    from rich.progress import Progress

    with Progress(console=console) as progress:
        lang = cli_language()  # once: the progress below is called for every batch
        task = progress.add_task(translate(lang, "history"), total=accounts)

        def report(stage: str, done: int, total: int) -> None:
            if stage == "history":
                progress.update(task, completed=done)
            else:
                progress.update(task, description=translate(lang, "live: {n} events sent", n=done))

        sim = Simulator(url, key, accounts, seed=seed, progress=report, api_url=api_url)
        _run(lambda stop: sim.run(stop, live=live))


def main() -> None:
    try:
        app()
    except Exception as exc:  # only the mapped mistakes: anything else is a bug, re-raised
        message = startup_mistake(exc)
        if message is None:
            raise
        console.print(Text(escape_controls(f"healthwatch: {message}")))
        sys.exit(2)


def startup_mistake(exc: BaseException) -> str | None:
    """One line naming the fix, when ``exc`` is a mistake in the settings or the
    surroundings (not a bug): a setting, a busy port, a file, the database."""
    if isinstance(exc, BaseExceptionGroup):  # a service of `dev` failed to start
        lines = [startup_mistake(e) for e in exc.exceptions]
        return None if None in lines else "; ".join(dict.fromkeys(str(m) for m in lines))
    if isinstance(exc, ValidationError):
        return "; ".join(_setting_error(e) for e in exc.errors())
    if isinstance(exc, runtime.PortInUse | MissingDatabase):
        return str(exc)
    if isinstance(exc, OSError) and exc.filename is not None:
        return t(
            "cannot open {file} ({reason}): fix the path or its permissions",
            file=exc.filename,
            reason=exc.strerror,
        )
    if isinstance(exc, AlertingError | ModelError | PlanTemplateError):
        return " ".join(t("invalid file: {reason}", reason=exc).split())
    chain = list(_chain(exc))
    sqlite = next((e for e in chain if isinstance(e, sqlite3.DatabaseError)), None)
    if sqlite is not None and str(sqlite) in SQLITE_FILE_ERRORS:
        return t(
            "the SQLite file {file} {problem}: fix HEALTHWATCH_DATABASE_URL, or create the "
            "file's folder",
            file=_database_shown(),
            problem=t(SQLITE_FILE_ERRORS[str(sqlite)]),
        )
    refusal = next((e for e in chain if str(getattr(e, "sqlstate", ""))[:2] in REFUSED), None)
    if refusal is not None:
        return t(
            "the database {url} refused the connection ({reason}): fix "
            "HEALTHWATCH_DATABASE_URL (user, password, database name) or create what it names",
            url=_database_shown(),
            reason=refusal,
        )
    # The broker is no start-up condition (services start without it): a bus error
    # reaching this edge is no database outage, and is not dressed up as one.
    if is_transient(exc) and not any(isinstance(e, KafkaError | BusUnavailable) for e in chain):
        return t(
            "the database {url} is unreachable ({reason}): start it, or set "
            "HEALTHWATCH_DATABASE_URL",
            url=_database_shown(),
            reason=describe(exc),
        )
    return None


# SQLSTATE classes of a server refusing a connection: 28 (the user or the password),
# 3D (no such database).
REFUSED = ("28", "3D")
# SQLite's words for a file that cannot be the database, and what they mean to a person
# (translated where they are said).
SQLITE_FILE_ERRORS = {
    "file is not a database": "is no SQLite database (another file at that path?)",
    "unable to open database file": "cannot be opened (its folder missing, or not writable)",
}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps: SQLAlchemy's ``orig`` (the driver's error), else the cause."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__


def _setting_error(error: ErrorDetails) -> str:
    # Only the location and message: pydantic's input_value would show a password.
    name = "HEALTHWATCH_" + "_".join(str(part) for part in error["loc"]).upper()
    return f"{name}: {error['msg'].removeprefix('Value error, ')}"


def _database_shown() -> str:
    try:
        return database_shown(Settings().database_url)
    except ValidationError:  # cannot happen after a start that got this far
        return "(HEALTHWATCH_DATABASE_URL)"


if __name__ == "__main__":
    main()
