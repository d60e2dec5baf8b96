"""The services' commands: ``dev`` (everything in one process), ``ingest``,
``scoring``, ``alerts``, ``web`` and ``migrate``."""

from __future__ import annotations

import asyncio
import logging
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from pydantic import SecretStr
from rich.console import Console
from sqlalchemy.ext.asyncio import AsyncEngine

from services import runtime
from services.cli.base import (
    SERVICE_COLLECTIONS,
    app,
    collecting,
    console,
    port_free,
    run_until_stopped,
    serve_service,
)
from services.cli.logs import redacted_url, service_logging
from services.cli.text import cli_language, t
from services.simulate import Simulator
from shared.alerting.store import alerting_store
from shared.auth import Role, Scope, create_key, list_keys, role_scopes
from shared.config import Settings
from shared.storage.db import create_engine, migrate
from shared.worker import describe


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
    port_free(settings.host, settings.ingest_port, "HEALTHWATCH_INGEST_PORT, or --port")
    if simulate and not settings.zendesk_webhook_secret.get_secret_value():
        # The demo's live tickets arrive as Zendesk sends them (docs/connectors.md), signed
        # with a secret only this process and its simulator know.
        settings = settings.model_copy(
            update={"zendesk_webhook_secret": SecretStr(secrets.token_urlsafe(24))}
        )
    alerting_store(settings)  # an unreadable alerting file: one line now, not at its first use
    service_logging(settings)
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
                    url,
                    key,
                    simulate,
                    progress=_log_progress(log),
                    zendesk_secret=zendesk,
                    language=cli_language(),
                )
                tasks.append(_simulate_when_up(sim, stop, log))
            await runtime.together(*tasks)

    run_until_stopped(main)


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
        if stop.is_set():  # the services stopping under it: a request found them gone
            log.info("simulator stopped with the services")
            return
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
    service_logging(settings)
    serve_service(runtime.run_ingest, settings, settings.ingest_port, "HEALTHWATCH_INGEST_PORT")


@app.command()
@collecting(SERVICE_COLLECTIONS)
def scoring() -> None:
    """Run one scoring consumer (add more processes to scale; they share the group)."""
    settings = Settings()
    service_logging(settings)
    serve_service(
        runtime.run_scoring_service, settings, settings.scoring_port, "HEALTHWATCH_SCORING_PORT"
    )


@app.command()
@collecting(SERVICE_COLLECTIONS)
def alerts() -> None:
    """Run the alerts service: intake from the alerts topic and delivery."""
    settings = Settings()
    alerting_store(settings)  # an unreadable alerting file: one line now, not at its first use
    service_logging(settings)
    warn_about_settings(settings, logging.getLogger("healthwatch.alerts"))
    serve_service(
        runtime.run_alerts_service, settings, settings.alerts_port, "HEALTHWATCH_ALERTS_PORT"
    )


@app.command()
def web() -> None:
    """Serve the dashboard, the read API and the alerts API in one place (production
    mode; no consumer: run as many as you like)."""
    settings = Settings()
    alerting_store(settings)  # an unreadable alerting file: one line now, not at its first use
    service_logging(settings)
    serve_service(runtime.run_web_service, settings, settings.web_port, "HEALTHWATCH_WEB_PORT")


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
