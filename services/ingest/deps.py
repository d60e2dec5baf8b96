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
from shared.contracts.events import KINDS
from shared.web import ClientError, require_scope


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

# /v1/events and /v1/accounts take an ingest or a crm key: the route checks each event's
# kind against the key (require_kinds), so an ingest key hears it needs a crm key.
EventsKey = Annotated[ApiKey, Depends(require_scope(Scope.ingest, Scope.crm))]


def sendable_kinds(key: ApiKey) -> tuple[frozenset[str], str]:
    """The kinds ``key`` may send to /v1/events, and what an event of another kind is
    told (per event, in a batch that holds others: ``require_kinds`` says it for a
    batch of none but those)."""
    if not key.allows(Scope.crm):
        return frozenset(KINDS) - {"account"}, (
            "account facts need a crm key ('healthwatch keys create --role crm'), not an "
            "ingest key; the other events of the batch were stored"
        )
    if not key.allows(Scope.ingest):
        return frozenset({"account"}), "this key lacks the 'ingest' scope needed for this kind"
    return frozenset(KINDS), ""


def require_kinds(key: ApiKey, kinds: set[str]) -> None:
    """403 unless ``key`` may send every kind in ``kinds``: account facts (owners and
    tiers route alerts) need a crm key, everything else an ingest key."""
    if "account" in kinds and not key.allows(Scope.crm):
        raise ClientError(
            403,
            "forbidden",
            "Account facts set owners and tiers, so they need a crm key, not an ingest "
            "key (which ships in browsers and apps): send them with a key made by "
            "'healthwatch keys create --role crm'.",
        )
    if kinds - {"account"} and not key.allows(Scope.ingest):
        raise ClientError(403, "forbidden", "This key lacks the 'ingest' scope needed here.")
