"""Session-wide real services (Kafka, PostgreSQL) and per-test isolation.

Kafka and PostgreSQL start once per session, only if a test needs them, or are
taken from HEALTHWATCH_TEST_KAFKA / HEALTHWATCH_TEST_DATABASE_URL when set.
Each test gets its own database and its own topic prefix.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

import devservices
from shared.config import Settings
from tests.support.alerting import alerting_toml, write_alerting
from tests.support.workdirs import service_dir

# Factory fixtures (engine_factory, processor_factory) for every test.
pytest_plugins = ["tests.support.factories"]


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    given = os.environ.get("HEALTHWATCH_TEST_KAFKA")
    if given:
        yield given
        return
    with service_dir("kafka") as workdir:
        broker = devservices.KafkaBroker(workdir)
        broker.start()
        try:
            yield broker.bootstrap
        finally:
            broker.stop()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a maintenance database on the session's PostgreSQL server."""
    given = os.environ.get("HEALTHWATCH_TEST_DATABASE_URL")
    if given:
        yield given
        return
    with service_dir("pg") as workdir:
        cluster = devservices.PostgresCluster(workdir)
        cluster.start()
        try:
            yield cluster.url
        finally:
            cluster.stop()


@pytest.fixture
def own_broker() -> Iterator[devservices.KafkaBroker]:
    """A Kafka broker of this test's own, for a test that stops or restarts it (the
    session's broker is shared by every other test)."""
    with service_dir("kafka-own") as workdir:
        broker = devservices.KafkaBroker(workdir)
        broker.start()
        try:
            yield broker
        finally:
            broker.stop()


@pytest.fixture
def own_cluster() -> Iterator[devservices.PostgresCluster]:
    """A PostgreSQL server of this test's own, for a test that stops or restarts it."""
    with service_dir("pg-own") as workdir:
        cluster = devservices.PostgresCluster(workdir)
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.stop()


@pytest.fixture
async def database_url(postgres_url: str) -> AsyncIterator[str]:
    """A fresh, empty database for this test."""
    name = f"hw_{uuid.uuid4().hex[:12]}"
    plain = postgres_url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(plain)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    yield postgres_url.rsplit("/", 1)[0] + "/" + name
    conn = await asyncpg.connect(plain)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
def alerting_file(tmp_path: Path) -> str:
    """Every shipped rule, with test timings (no grouping wait, no digest)."""
    return write_alerting(tmp_path / "alerting.toml", alerting_toml())


@pytest.fixture
def kafka_settings(kafka_bootstrap: str, database_url: str, alerting_file: str) -> Settings:
    """Production-shaped settings: real Kafka (own topics and groups) and PostgreSQL."""
    tag = uuid.uuid4().hex[:8]
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"t{tag}",
        kafka_partitions=3,
        consumer_group_scoring=f"scoring-{tag}",
        consumer_group_alerts=f"alerts-{tag}",
        produce_timeout_s=5,
        delivery_backoff_base_s=0.2,
        delivery_backoff_cap_s=1.0,
        slack_min_interval_s=0.0,
        alerting_file=alerting_file,
        alert_timer_interval_s=0.2,
        smtp_starttls=False,  # the stand-in SMTP server speaks plain SMTP
    )


@pytest.fixture
def embedded_settings(tmp_path: Path, alerting_file: str) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'hw.db'}",
        kafka_bootstrap="",
        bus_poll_interval_s=0.1,
        alerting_file=alerting_file,
        alert_timer_interval_s=0.2,
        smtp_starttls=False,  # the stand-in SMTP server speaks plain SMTP
    )
