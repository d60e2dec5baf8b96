"""The ingest HTTP application."""

from __future__ import annotations

from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.ingest.connectors.mapping import cached_mapping
from services.ingest.connectors.routes import router as connectors_router
from services.ingest.deps import IngestContext
from services.ingest.metrics import IngestMetrics
from services.ingest.publisher import EventPublisher
from services.ingest.routes import router
from shared.auth import KeyStore
from shared.bus.base import Producer
from shared.clock import Clock, utcnow
from shared.config import Settings
from shared.web import (
    ClientError,
    Readiness,
    base_app,
    client_error_handler,
    count_requests,
    ops_router,
)


def create_app(
    settings: Settings,
    engine: AsyncEngine,
    producer: Producer,
    *,
    registry: CollectorRegistry,
    ready: Readiness,
    clock: Clock = utcnow,
) -> FastAPI:
    metrics = IngestMetrics(registry)
    app = base_app("healthwatch ingest", KeyStore(engine))
    app.state.ingest = IngestContext(
        settings=settings,
        engine=engine,
        publisher=EventPublisher(producer, settings, metrics),
        metrics=metrics,
        clock=clock,
    )
    app.include_router(router)
    # Read the connectors' mapping now: a broken file stops the start, not a webhook.
    cached_mapping(settings.connectors_file)
    app.include_router(connectors_router)
    app.include_router(ops_router(registry, ready))

    count_requests(app, metrics.requests)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        """Framework errors (405, …) in the shape of ours, with a code (the framework's
        reason, "Method Not Allowed", stays English)."""
        assert isinstance(exc, StarletteHTTPException)
        code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_").replace("-", "_")
        refusal = ClientError(
            exc.status_code,
            code,
            "{detail}: see /docs.",
            values={"detail": exc.detail},
            headers=dict(exc.headers or {}),
        )
        return await client_error_handler(request, refusal)

    @app.exception_handler(404)
    async def not_found(request: Request, _exc: Exception) -> JSONResponse:
        return await client_error_handler(
            request,
            ClientError(
                404,
                "not_found",
                "No route {path}: see /docs.",
                values={"path": request.url.path},
            ),
        )

    return app
