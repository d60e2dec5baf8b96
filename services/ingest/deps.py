"""FastAPI dependencies, as ``Annotated`` aliases used by the routes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine

from services.ingest.metrics import IngestMetrics
from services.ingest.publisher import EventPublisher
from shared.auth import ApiKey, Scope
from shared.clock import Clock
from shared.config import Settings
from shared.web import require_scope


@dataclass
class IngestContext:
    settings: Settings
    engine: AsyncEngine
    publisher: EventPublisher
    metrics: IngestMetrics
    clock: Clock


def get_context(request: Request) -> IngestContext:
    ctx: IngestContext = request.app.state.ingest
    return ctx


Context = Annotated[IngestContext, Depends(get_context)]
IngestKey = Annotated[ApiKey, Depends(require_scope(Scope.ingest))]
