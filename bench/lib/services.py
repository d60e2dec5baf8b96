"""Kafka and PostgreSQL for a bench: given (``--bootstrap``/``--postgres-url``) or
started locally with ``devservices``, and a fresh migrated database per run."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import asyncpg  # type: ignore[import-untyped]

import devservices
from lib.console import err
from lib.processes import scratch_dir
from lib.results import OutputOptions, output_options
from shared.storage.db import create_engine, migrate


class Broker(Protocol):
    """What a bench uses of ``devservices.KafkaBroker``."""

    @property
    def bootstrap(self) -> str: ...

    @property
    def pid(self) -> int | None: ...

    def start(self, timeout: float = ...) -> None: ...

    def stop(self, timeout: float = ...) -> None: ...


def plain_dsn(url: str) -> str:
    """asyncpg's form of a SQLAlchemy ``postgresql+asyncpg://`` URL."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def database_url(server_url: str, name: str) -> str:
    return server_url.rsplit("/", 1)[0] + "/" + name


async def create_database(server_url: str, name: str, template: str | None = None) -> str:
    """A fresh, migrated database on the server (or a copy of database ``template``);
    returns its SQLAlchemy URL."""
    conn = await asyncpg.connect(plain_dsn(server_url))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        copied = f' TEMPLATE "{template}"' if template else ""
        await conn.execute(f'CREATE DATABASE "{name}"{copied}')
    finally:
        await conn.close()
    url = database_url(server_url, name)
    if template:
        return url  # migrated as its template is
    engine = create_engine(url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()
    return url


@dataclass
class Services:
    bootstrap: str
    postgres_url: str  # SQLAlchemy URL of a maintenance database ("postgres")
    broker_pid: int | None
    postgres_pid: int | None
    kafka_version: str


def postmaster_pid(data_dir: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int((data_dir / "postmaster.pid").read_text().splitlines()[0])
    return None


def start_services(
    bootstrap: str | None, postgres_url: str | None, workdir: Path, stack: contextlib.ExitStack
) -> Services:
    """Kafka and PostgreSQL unless given, started in parallel; ``stack`` stops them."""
    local = devservices
    broker: Broker | None = None
    cluster: Any = None
    kafka_version = "unknown (external broker)"
    if bootstrap is None:
        kafka_version = str(local.KAFKA_VERSION)
        broker = local.KafkaBroker(workdir / "kafka")
    if postgres_url is None:
        cluster = local.PostgresCluster(workdir / "pg")
    jobs: list[Callable[[], None]] = []
    if broker is not None:
        stack.callback(broker.stop)
        jobs.append(broker.start)
        err.print(f"[bold]starting Kafka {kafka_version}[/] in {workdir / 'kafka'}")
    if cluster is not None:
        stack.callback(cluster.stop)
        jobs.append(cluster.start)
        err.print(f"[bold]starting PostgreSQL[/] in {workdir / 'pg'}")
    with ThreadPoolExecutor(max_workers=2) as pool:
        for future in [pool.submit(job) for job in jobs]:
            future.result()
    return Services(
        bootstrap=bootstrap or (broker.bootstrap if broker else ""),
        postgres_url=postgres_url or str(cluster.url),
        broker_pid=broker.pid if broker else None,
        postgres_pid=postmaster_pid(cluster.data_dir) if cluster is not None else None,
        kafka_version=kafka_version,
    )


T = TypeVar("T")


def quiet_logging() -> None:
    """Warnings and errors of the services still reach stderr; aiokafka's transient
    warnings (coordinator not ready yet on a fresh broker) would only clutter progress."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.ERROR)


def run_with_services(
    bootstrap: str | None,
    postgres_url: str | None,
    *,
    prefix: str,
    keep: bool,
    body: Callable[[Path, Services], Coroutine[Any, Any, T]],
) -> tuple[Services, T]:
    """``body(workdir, services)`` in a scratch dir with Kafka and PostgreSQL (given or
    started here, stopped afterwards)."""
    with scratch_dir(prefix, keep) as workdir, contextlib.ExitStack() as stack:
        services = start_services(bootstrap, postgres_url, workdir, stack)
        return services, asyncio.run(body(workdir, services))


@dataclass
class ServiceOptions(OutputOptions):
    """The options of a bench that needs Kafka and PostgreSQL (given or started here)."""

    bootstrap: str | None
    postgres_url: str | None


def service_options(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed ``--bootstrap``, ``--postgres-url`` and output options, as keywords."""
    return {"bootstrap": args.bootstrap, "postgres_url": args.postgres_url, **output_options(args)}


def run_bench(
    opts: ServiceOptions,
    prefix: str,
    run: Callable[[Any, Path, Services], Coroutine[Any, Any, T]],
) -> tuple[Services, T]:
    """``run(opts, workdir, services)`` through ``run_with_services``."""
    return run_with_services(
        opts.bootstrap,
        opts.postgres_url,
        prefix=prefix,
        keep=opts.keep,
        body=functools.partial(run, opts),
    )


def add_service_options(parser: argparse.ArgumentParser, *, postgres: bool = True) -> None:
    """``--bootstrap`` and (unless the bench needs no PostgreSQL) ``--postgres-url``."""
    parser.add_argument("--bootstrap", help="use this Kafka instead of starting a local broker")
    if postgres:
        parser.add_argument(
            "--postgres-url",
            help="use this PostgreSQL (postgresql+asyncpg://user@host:port/postgres; databases "
            "are created on it) instead of starting a cluster",
        )
