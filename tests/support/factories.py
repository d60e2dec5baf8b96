"""Factory fixtures: build engines and scoring processors the way the services do, and
tear them down after the test (arq's style: the fixture returns a builder).

Registered for every test by ``tests/conftest.py`` (``pytest_plugins``)::

    async def test_x(engine_factory: EngineFactory, processor_factory: ProcessorFactory):
        engine = await engine_factory()              # the test's database, migrated
        processor = processor_factory(engine, clock=lambda: NOW)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scoring.metrics import ScoringMetrics
from services.scoring.processor import ScoringProcessor
from shared.bus.base import Producer
from shared.bus.embedded import EmbeddedBus
from shared.clock import Clock
from shared.config import Settings
from shared.storage.db import create_engine, migrate

# (url = the embedded settings' database, migrated = True) → an engine disposed at teardown.
EngineFactory = Callable[..., Awaitable[AsyncEngine]]


class ProcessorFactory(Protocol):
    def __call__(
        self,
        engine: AsyncEngine,
        *,
        producer: Producer | None = None,
        settings: Settings | None = None,
        metrics: ScoringMetrics | None = None,
        clock: Clock | None = None,
        kind: type[ScoringProcessor] = ScoringProcessor,
    ) -> ScoringProcessor: ...


@pytest.fixture(params=["sqlite", "postgresql"])
def database_either(request: pytest.FixtureRequest, database_url: str) -> str | None:
    """The database a test runs on, once each: None (the embedded SQLite file), then a
    fresh PostgreSQL database; for ``engine_factory``."""
    return database_url if request.param == "postgresql" else None


@pytest.fixture
async def engine_factory(embedded_settings: Settings) -> AsyncIterator[EngineFactory]:
    """Engines on a database (default: the test's embedded SQLite file), migrated unless
    ``migrated=False``; every one is disposed when the test ends."""
    engines: list[AsyncEngine] = []

    async def make(url: str | None = None, *, migrated: bool = True) -> AsyncEngine:
        engine = create_engine(url or embedded_settings.database_url)
        engines.append(engine)
        if migrated:
            await migrate(engine)
        return engine

    yield make
    for engine in engines:
        await engine.dispose()


@pytest.fixture
async def engine_either(engine_factory: EngineFactory, database_either: str | None) -> AsyncEngine:
    """A migrated engine on SQLite, then on a fresh PostgreSQL database."""
    return await engine_factory(database_either)


@pytest.fixture
def processor_factory(embedded_settings: Settings) -> ProcessorFactory:
    """Scoring processors on an engine. Defaults: the embedded bus on that engine as the
    producer, the embedded settings, metrics on a fresh registry, the real clock."""

    def make(
        engine: AsyncEngine,
        *,
        producer: Producer | None = None,
        settings: Settings | None = None,
        metrics: ScoringMetrics | None = None,
        clock: Clock | None = None,
        kind: type[ScoringProcessor] = ScoringProcessor,
    ) -> ScoringProcessor:
        extra = {} if clock is None else {"clock": clock}
        return kind(
            engine,
            producer if producer is not None else EmbeddedBus(engine),
            settings or embedded_settings,
            metrics or ScoringMetrics(CollectorRegistry()),
            **extra,
        )

    return make
