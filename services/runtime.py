"""Wiring: build each service from the settings and run it until a stop event.

``run_dev`` runs all three in one process (the embedded default); the CLI's
``ingest`` / ``scoring`` / ``alerts`` commands run one each (production).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import uvicorn
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, ProcessCollector, disable_created_metrics
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.admin_keys import router as keys_router
from services.alerts.api import AlertsApiContext
from services.alerts.api import router as alerts_router
from services.alerts.cases.api import router as cases_router
from services.alerts.channels import Channel, configured_channels
from services.alerts.intake import AlertIntake
from services.alerts.metrics import AlertsMetrics
from services.alerts.opportunities import router as opportunities_router
from services.alerts.outbox import Outbox, OutboxSender
from services.alerts.routing import unowned_reach
from services.alerts.silences_api import router as silences_router
from services.alerts.timers import AlertTimers
from services.dashboard.app import mount_dashboard
from services.dashboard.import_page import AccountsReader
from services.ingest.app import create_app
from services.ingest.connectors.accounts_csv import read_all
from services.ingest.connectors.mapping import cached_mapping
from services.reports.api import router as reports_router
from services.reports.fmt import Fmt
from services.scoring.api import HealthApiContext
from services.scoring.api import router as health_router
from services.scoring.export import router as export_router
from services.scoring.metrics import ScoringMetrics, count_accounts
from services.scoring.model.store import ModelStore
from services.scoring.model_check import check_model
from services.scoring.plans.api import PlansApiContext
from services.scoring.plans.api import router as plans_router
from services.scoring.plans.templates import plan_templates
from services.scoring.portfolio import router as portfolio_router
from services.scoring.processor import ScoringProcessor
from services.scoring.retention.api import RetentionContext
from services.scoring.retention.api import router as retention_router
from services.scoring.retention.pipeline import ForecastRule
from services.scoring.sweep import QuietAccountSweep
from services.scoring.workload.api import WorkloadApiContext
from services.scoring.workload.api import router as workload_router
from shared.alerting.store import AlertingStore, alerting_store
from shared.auth import KeyStore
from shared.bus.base import DeadLetter, Producer, Record
from shared.bus.deadletter import dead_letterer
from shared.bus.embedded import prune_consumed
from shared.bus.factory import ALERTS_TOPIC, DEADLETTER_TOPIC, Bus, create_bus, event_topics
from shared.bus.offsets import offset_loader
from shared.bus.outbox import MessageOutbox
from shared.config import Settings
from shared.jobs import Jobs
from shared.storage.db import (
    SQLITE_BUSY_TIMEOUT_MS,
    create_engine,
    migrate,
    schema_behind,
    schema_revisions,
)
from shared.web import (
    READY_WITHIN_S,
    HttpMetrics,
    Readiness,
    base_app,
    count_requests,
    ops_router,
    refused_sign_in,
    unreachable,
)
from shared.worker import ConsumerMetrics, Progress, consume, describe

log = logging.getLogger(__name__)

# No "_created" series beside every counter and histogram: two fifths of /metrics, read
# by no rule or panel. (A process-wide setting of the client: this is the composition
# root, where the processes are made.)
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus_client


# How long readiness waits for SQLite's write lock: a probe must answer in a second, and a
# writer holding the lock (a scoring batch, an import) shows the file takes writes.
PROBE_WAIT_MS = 200


class ReadOnlyDatabase(Exception):
    """The database answers but takes no writes (a standby, a read-only transaction
    default)."""


class SchemaBehind(Exception):
    """The database answers, but this release's migrations have not run on it."""


async def database_writable(engine: AsyncEngine) -> None:
    """Raise unless the database answers and takes writes. ``SELECT 1`` alone kept
    readiness green for minutes while every write failed (an unwritable SQLite file,
    found from outside). SQLite is written to, a byte that does not change; PostgreSQL
    says whether it is a standby or defaults to read-only (a full disk there still shows
    only in the writes, as their errors and the stall check)."""
    if engine.dialect.name == "postgresql":
        async with engine.connect() as conn:
            read_only = text("SELECT pg_is_in_recovery(), current_setting('transaction_read_only')")
            standby, default = (await conn.execute(read_only)).one()
            behind = await schema_behind(conn)
        if standby or default == "on":
            raise ReadOnlyDatabase("the database takes no writes")
        if behind is not None:
            raise SchemaBehind(behind)
        return
    try:
        async with engine.execution_options(
            **{SQLITE_BUSY_TIMEOUT_MS: PROBE_WAIT_MS}
        ).begin() as conn:
            # A write that changes nothing (the header's user_version, unused here): only
            # a committed write reaches the file and its WAL, where a full or unwritable
            # disk refuses it.
            version = (await conn.execute(text("PRAGMA user_version"))).scalar_one()
            await conn.execute(text(f"PRAGMA user_version = {int(version)}"))
    except OperationalError as exc:
        if "locked" not in str(exc):
            raise  # "locked": another writer holds the lock, so the file takes writes


# A loop stalled this many times ``consumer_stall_s`` fails liveness. Readiness says so
# at one (and the HealthwatchScoringStalled alert fires); three give a slow batch under
# load, a long pause and a loop's last backoff room before a restart, which costs a
# rebalance and the cache.
RESTART_AFTER_STALLS = 3


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    bus: Bus
    registry: CollectorRegistry
    consumers: ConsumerMetrics
    # Requests to the read API, the dashboard, the alerts API and the ops endpoints of
    # every service but ingest (which counts its own): 5xx there were invisible.
    http: HttpMetrics
    progress: Progress = field(default_factory=Progress)
    # When readiness first found the database down (Progress's clock), until it is back.
    _down_since: float | None = field(default=None, init=False, repr=False)

    async def why_not_ready(self) -> str | None:
        """Why this process is not ready, or None: the database answers and takes
        writes, the bus answers, and no consume loop has stalled."""
        if (database := await self.why_web_not_ready()) is not None:
            if self._down_since is None:
                self._down_since = self.progress.now()
            return database
        if self._down_since is not None:
            # The loops could not move while the database was down, and one may still
            # be sleeping out its last backoff (up to 15 s): the outage is not their
            # stall. Counted as one, an outage a little shorter than the stall limit
            # turned readiness red again seconds after the database was back.
            self.progress.credit(self.progress.now() - self._down_since)
            self._down_since = None
        stalled = self.progress.stalled(self.settings.consumer_stall_s)
        if stalled:
            log.warning(
                "not ready: no progress for %ss in %s", self.settings.consumer_stall_s, stalled
            )
            return f"no progress for {self.settings.consumer_stall_s:g} s in {', '.join(stalled)}"
        return await self.why_ingest_not_ready()

    async def alive(self) -> bool:
        """False when a consume loop has not even tried to move (``Progress.stuck``) for
        RESTART_AFTER_STALLS stall limits while the database takes writes and the bus
        answers: an await that never returns. Liveness then fails and the orchestrator
        restarts the process, which resumes from the offsets stored with the state. A
        loop retrying through an outage is trying (a full disk, a schema not migrated
        yet, connections reset), and a dependency down or not answering is its outage:
        a restart would not help, and restarts during it only delay the recovery."""
        limit = self.settings.consumer_stall_s * RESTART_AFTER_STALLS
        stalled = self.progress.stuck(limit)
        if not stalled:
            return True
        try:
            await database_writable(self.engine)
            if not await self.bus.reachable():
                return True
        except Exception:
            return True
        log.error(
            "not alive: %s made no attempt for %ss while the database and the bus answer "
            "(stuck); a restart is due",
            stalled,
            limit,
        )
        return False

    async def why_web_not_ready(self) -> str | None:
        """The web service alone: the database answers and takes writes. It runs no
        consumer, and what it serves (pages, reads, alert actions) needs no broker: a
        readiness that asked for Kafka took every web replica out of service during a
        broker outage. The reason names the part, not the error: /readyz is open."""
        try:
            await database_writable(self.engine)
        except ReadOnlyDatabase:
            return "the database takes no writes (a standby, or read-only by default)"
        except SchemaBehind as behind:
            # Every API call answered 503 "key store unavailable" while /readyz said
            # ready, and no line said to migrate (found from outside).
            head, _ = schema_revisions()
            return (
                f"the database's schema is at {behind} and this release needs {head}: run "
                "`healthwatch migrate`"
            )
        except Exception as exc:
            # SQLite's "unable to open database file": a folder gone or not mounted.
            if unreachable(exc) or "unable to open database" in str(exc):
                return "the database does not answer"
            if refused_sign_in(exc):
                return "the database refuses the sign-in: check HEALTHWATCH_DATABASE_URL"
            return "the database refuses a write (a full disk?)"
        return None

    async def why_ingest_not_ready(self, keys: KeyStore | None = None) -> str | None:
        """Ingest alone: the bus answers, and ``keys`` can verify a key. While the
        database is down it keeps accepting from keys verified within the hour (README,
        failure table), so it stays in service: a readiness probe that needed the
        database took every ingest replica out of service, refusing connections instead
        of answering (found from outside). A process holding no such key (started during
        the outage, or with a wrong password) refuses every request: not ready then (it
        had said ready, found from outside)."""
        if not await self.bus.reachable():
            return "the message bus (Kafka) does not answer"
        if keys is None or keys.holds_recent():
            return None
        if (database := await self.why_web_not_ready()) is not None:
            return f"{database}, and no key was verified within the hour to go on with"
        return None


# How long a service's start waits for the database to answer its first question: an
# outage is no start-up mistake (it starts, not ready), so this only bounds the wait.
START_PROBE_S = 5.0


async def check_database_at_start(engine: AsyncEngine) -> None:
    """Raise the database's refusal of the sign-in (a wrong user, password or database
    name: the settings are wrong, the command says so in one line and exits 2); warn of
    a schema not migrated, and of a database not answering (an outage: start anyway).
    Services had started on a wrong password, said ready, and logged the cause only
    once a request came (found from outside)."""
    try:
        async with asyncio.timeout(START_PROBE_S), engine.connect() as conn:
            behind = await schema_behind(conn)
    except Exception as exc:
        if refused_sign_in(exc):
            raise
        log.warning("the database does not answer yet (%s); starting anyway", describe(exc))
        return
    if behind is not None:
        head, _ = schema_revisions()
        log.warning(
            "the database's schema is at %s and this release needs %s: run "
            "`healthwatch migrate` (not ready until then)",
            behind,
            head,
        )


@contextlib.asynccontextmanager
async def open_runtime(settings: Settings, *, registry: CollectorRegistry | None = None):  # type: ignore[no-untyped-def]
    engine = create_engine(settings.database_url)
    if settings.embedded:
        # One process owns the embedded database: keep its schema current on start.
        await migrate(engine)
    else:
        await check_database_at_start(engine)
    bus = create_bus(settings, engine)
    # Creates the topics and connects, or, while the broker is unreachable, says so and
    # leaves it to the first produce or consume: services start without a broker.
    await bus.producer.start()
    if registry is None:
        registry = CollectorRegistry()
        # The process's memory and CPU, to read against a pod's limits (a registry of
        # our own has none of the default registry's collectors).
        ProcessCollector(registry=registry)
    try:
        yield Runtime(
            settings, engine, bus, registry, ConsumerMetrics(registry), HttpMetrics(registry)
        )
    finally:
        await bus.producer.stop()
        await engine.dispose()


def dead_letters_for(rt: Runtime, group_id: str, counter: Counter | None = None) -> DeadLetter:
    """Records group ``group_id`` cannot handle go to the dead-letter topic (and are
    counted in ``counter`` too, when given)."""
    topic = rt.settings.topic(DEADLETTER_TOPIC)
    dead_letter = dead_letterer(rt.engine, rt.bus.producer, topic=topic, group_id=group_id)
    if counter is None:
        return dead_letter

    async def counted(record: Record, reason: str) -> None:
        await dead_letter(record, reason)
        counter.inc()

    return counted


# Messages a crash or an outage left in scoring's outbox wait at most this long once
# the bus is back; a batch relays its own at once, so this is the rare path.
OUTBOX_RELAY_INTERVAL_S = 5


# Accounts by band and danger level change with scores, but a gauge scraped every 15 s
# needs no fresher count than once a minute (one GROUP BY over account_health).
ACCOUNTS_GAUGE_INTERVAL_S = 60


def scoring_producer(rt: Runtime) -> Producer:
    """Kafka: scoring's alerts and dead letters commit with the state and offsets into
    the outbox and are published after the commit (the embedded bus's log is a table
    written in the same transaction already)."""
    return rt.bus.producer if rt.settings.embedded else MessageOutbox(rt.engine, rt.bus.producer)


async def run_scoring(rt: Runtime, stop: asyncio.Event) -> None:
    """The consumer, and the hourly sweep that re-scores quiet accounts."""
    s = rt.settings
    metrics = ScoringMetrics(rt.registry)
    producer = scoring_producer(rt)
    processor = ScoringProcessor(rt.engine, producer, s, metrics)
    consumer = rt.bus.consumer(
        event_topics(s),
        group_id=s.consumer_group_scoring,
        load_offsets=offset_loader(rt.engine, s.consumer_group_scoring),
    )
    sweep = QuietAccountSweep(rt.engine, producer, processor)
    jobs = Jobs()
    jobs.every(s.sweep_interval_s, sweep.run_once, name="sweep of quiet accounts")
    # What a crash or a Kafka outage left in the outbox: at start and then every few
    # seconds (each batch relays its own right after its commit).
    jobs.every(OUTBOX_RELAY_INTERVAL_S, processor.relay, name="outbox relay")
    jobs.every(ACCOUNTS_GAUGE_INTERVAL_S, count_accounts, rt.engine, metrics, name="accounts gauge")
    async with jobs.running():
        await consume(
            consumer,
            processor.handle,
            stop,
            name="scoring",
            max_records=s.scoring_batch_max,
            # Counted with the undecodable ones: one dead-letter series for alerting.
            dead_letter=dead_letters_for(rt, s.consumer_group_scoring, metrics.dead_letters),
            metrics=rt.consumers,
            progress=rt.progress,
            group=s.consumer_group_scoring,
        )


async def _say_if_unowned_reach_nobody(
    rt: Runtime, alerting: AlertingStore, channels: Sequence[Channel]
) -> None:
    """Warn once at start when an alert of an account without an owner would reach
    nobody (no team fallback on the channels configured): each such alert is logged and
    counted as unroutable, but nothing said so before the first (found from outside).
    A database not answering yet says nothing: the loops wait for it."""
    try:
        # Bounded: a database that takes connections but does not answer must not hold
        # up the start of the loops, which handle it.
        async with asyncio.timeout(READY_WITHIN_S), rt.engine.connect() as conn:
            current, _ = await alerting.current(conn)
    except Exception as exc:
        log.debug("alerts: routing not checked at start (%s)", describe(exc))
        return
    if not unowned_reach(channels, current.routing, rt.settings):
        log.warning(
            "alerts of accounts without an owner reach nobody on %s: set "
            "HEALTHWATCH_FALLBACK_EMAIL or HEALTHWATCH_SLACK_FALLBACK_CHANNEL (or the "
            "alerting file's routing.team), or give every account an owner in the CRM",
            ", ".join(c.name for c in channels),
        )


async def run_alerts(rt: Runtime, stop: asyncio.Event) -> None:
    s = rt.settings
    metrics = AlertsMetrics(rt.registry)
    channels = configured_channels(s)
    if not channels:
        log.warning(
            "no alert channel configured: alerts are stored and logged only "
            "(set HEALTHWATCH_SLACK_WEBHOOK_URL, HEALTHWATCH_SMTP_HOST or HEALTHWATCH_WEBHOOK_URL)"
        )
    # One store of the alerting file (HEALTHWATCH_ALERTING_FILE as its default) for
    # the intake, the sender and the timers.
    alerting = alerting_store(s)
    if channels:
        await _say_if_unowned_reach_nobody(rt, alerting, channels)
    outbox = Outbox(channels, s, metrics)
    intake = AlertIntake(rt.engine, outbox, s, metrics, alerting=alerting)
    consumer = rt.bus.consumer(
        [s.topic(ALERTS_TOPIC)],
        group_id=s.consumer_group_alerts,
        load_offsets=offset_loader(rt.engine, s.consumer_group_alerts),
    )
    sender = OutboxSender(rt.engine, channels, s, metrics, alerting=alerting, wake=outbox.queued)
    timers = AlertTimers(rt.engine, outbox, s, metrics, alerting=alerting)
    await together(
        consume(
            consumer,
            intake.handle,
            stop,
            name="alerts",
            max_records=200,
            dead_letter=dead_letters_for(rt, s.consumer_group_alerts),
            metrics=rt.consumers,
            progress=rt.progress,
            group=s.consumer_group_alerts,
        ),
        sender.run(stop),
        timers.run(stop),
    )


async def together(*aws: Awaitable[None]) -> None:
    """Run side by side; if one fails, cancel the rest and raise."""
    async with asyncio.TaskGroup() as group:
        for aw in aws:
            group.create_task(aw)  # type: ignore[arg-type]


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the caller's stop event rules."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class PortInUse(Exception):
    """The HTTP port cannot be bound: a mistake in the surroundings, not a bug."""


def bind(host: str, port: int, setting: str) -> socket.socket:
    """A listening socket on ``host``:``port``, bound here rather than by uvicorn, which
    answers a busy port with sys.exit from inside its task (a long traceback);
    ``setting`` names where the port is set, for the refusal."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise PortInUse(f"cannot listen on {host}:{port} ({exc}): set HEALTHWATCH_HOST") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise PortInUse(
            f"cannot listen on {host}:{port} ({exc.strerror}): stop the program using it, "
            f"or choose another port ({setting})"
        ) from exc
    return sock


async def serve_http(app: FastAPI, host: str, port: int, stop: asyncio.Event, setting: str) -> None:
    # log_config=None: uvicorn's records go to the root logger and its one-line format
    # (services/cli/logs.py), not to a handler and format of uvicorn's own.
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, log_config=None
    )
    server = _Server(config)
    sock = bind(host, port, setting)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    await task
    stopper.cancel()
    if not stop.is_set():
        raise RuntimeError(f"HTTP server on {host}:{port} stopped unexpectedly (port in use?)")


def ingest_app(rt: Runtime, *, with_health_api: bool = False) -> FastAPI:
    # With the read API (one process, the embedded default) the database is needed.
    async def ingest_ready() -> str | None:
        return await rt.why_ingest_not_ready(app.state.keys)

    ready = rt.why_not_ready if with_health_api else ingest_ready
    app = create_app(rt.settings, rt.engine, rt.bus.producer, registry=rt.registry, ready=ready)
    if with_health_api:
        app.title = "healthwatch"  # every API in one place, not ingest's alone
        mount_health_api(app, rt)
        mount_alerts_api(app, rt)
        mount_dashboard(
            app,
            rt.engine,
            rt.settings,
            rt.bus.producer,
            accounts_reader=accounts_reader(rt.settings),
        )
    return app


def accounts_reader(settings: Settings) -> AccountsReader:
    """The dashboard's CSV import reads an export as ``healthwatch accounts import`` does
    (the ingest connectors, which the dashboard may not import itself)."""
    mapping = cached_mapping(settings.connectors_file)
    return lambda data, fmt: read_all(data, fmt, mapping, datetime.now(UTC))


def mount_health_api(app: FastAPI, rt: Runtime) -> None:
    app.state.health_api = HealthApiContext(
        rt.engine,
        # A new model (the PUT, the dashboard's editor) names measures the score computes.
        ModelStore(check=check_model),
        rt.settings.zone,
        rt.settings.window_days,
        rt.settings.history_days,
        rt.settings.currency,
    )
    app.state.engine = rt.engine  # shared.web.EngineDep: the reports and the keys API
    app.state.report_fmt = Fmt(rt.settings.language, rt.settings.currency)
    app.include_router(health_router)
    app.include_router(portfolio_router)
    app.include_router(export_router)
    app.state.retention = RetentionContext(ForecastRule.of(rt.settings))
    app.include_router(retention_router)
    app.state.plans_api = PlansApiContext(rt.engine, plan_templates(rt.settings), rt.settings.zone)
    app.include_router(plans_router)
    app.include_router(reports_router)
    app.include_router(keys_router)
    app.state.workload_api = WorkloadApiContext(
        rt.engine, rt.settings, alerting_store(rt.settings), rt.bus.producer
    )
    app.include_router(workload_router)


def mount_alerts_api(app: FastAPI, rt: Runtime) -> None:
    app.state.alerts_api = AlertsApiContext(rt.engine, alerting_store(rt.settings), rt.settings)
    app.include_router(alerts_router)
    app.include_router(cases_router)
    app.include_router(opportunities_router)
    app.include_router(silences_router)


def ops_app(rt: Runtime, title: str, ready: Readiness | None = None) -> FastAPI:
    app = base_app(title, KeyStore(rt.engine))
    app.include_router(ops_router(rt.registry, ready or rt.why_not_ready, alive=rt.alive))
    count_requests(app, rt.http.requests)
    return app


ServiceRunner = Callable[[Runtime, asyncio.Event], Awaitable[None]]


async def run_ingest(rt: Runtime, stop: asyncio.Event, *, with_health_api: bool = False) -> None:
    s = rt.settings
    log.info("ingest API on http://%s:%d", s.host, s.ingest_port)
    # The dev command's port is ingest's too, and it takes --port.
    setting = "HEALTHWATCH_INGEST_PORT" + (", or --port" if with_health_api else "")
    app = ingest_app(rt, with_health_api=with_health_api)
    await serve_http(app, s.host, s.ingest_port, stop, setting)


async def run_scoring_service(rt: Runtime, stop: asyncio.Event) -> None:
    """The consumer, plus the read API, the dashboard and ops endpoints on the scoring
    port (the alerts API is on the alerts service's port)."""
    s = rt.settings
    app = ops_app(rt, "healthwatch scoring")
    mount_health_api(app, rt)
    mount_dashboard(
        app, rt.engine, rt.settings, rt.bus.producer, accounts_reader=accounts_reader(rt.settings)
    )
    await together(
        run_scoring(rt, stop),
        serve_http(app, s.host, s.scoring_port, stop, "HEALTHWATCH_SCORING_PORT"),
    )


def web_app(rt: Runtime) -> FastAPI:
    """What people use, in one place: the dashboard, the read API and the alerts API
    (with ops endpoints), no consumer. Scoring replicas cannot share one published port,
    so a deployment points people and notices' links (``HEALTHWATCH_PUBLIC_URL``) here."""
    app = ops_app(rt, "healthwatch web", rt.why_web_not_ready)
    mount_health_api(app, rt)
    mount_alerts_api(app, rt)
    mount_dashboard(
        app, rt.engine, rt.settings, rt.bus.producer, accounts_reader=accounts_reader(rt.settings)
    )
    return app


async def run_web_service(rt: Runtime, stop: asyncio.Event) -> None:
    s = rt.settings
    log.info("dashboard on http://%s:%d/ui/", s.host, s.web_port)
    await serve_http(web_app(rt), s.host, s.web_port, stop, "HEALTHWATCH_WEB_PORT")


async def run_alerts_service(rt: Runtime, stop: asyncio.Event) -> None:
    s = rt.settings
    app = ops_app(rt, "healthwatch alerts")
    mount_alerts_api(app, rt)
    await together(
        run_alerts(rt, stop),
        serve_http(app, s.host, s.alerts_port, stop, "HEALTHWATCH_ALERTS_PORT"),
    )


# Consumed records of the embedded bus are deleted this often; an hour keeps the
# SQLite file small without adding write load while the services are busy.
BUS_PRUNE_INTERVAL_S = 3600


async def run_dev(rt: Runtime, stop: asyncio.Event) -> None:
    """Every service in this process, sharing one registry and one ingest/ops port."""
    s = rt.settings
    jobs = Jobs()
    if rt.bus.embedded is not None:
        readers = {t: s.consumer_group_scoring for t in event_topics(s)}
        readers[s.topic(ALERTS_TOPIC)] = s.consumer_group_alerts
        jobs.every(
            BUS_PRUNE_INTERVAL_S,
            prune_consumed,
            rt.engine,
            readers,
            name="embedded bus clean-up",
            first_now=False,
        )
    async with jobs.running():
        await together(
            run_ingest(rt, stop, with_health_api=True), run_scoring(rt, stop), run_alerts(rt, stop)
        )
