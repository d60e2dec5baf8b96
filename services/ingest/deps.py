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

# What an ingest key may send: what people do in the product, and their survey answers.
# It ships in browsers and apps (the Segment write key), so anyone may hold it; the
# records of the company's own systems (the CRM's facts and touchpoints, billing's
# payments, the helpdesk's tickets) move owners, alerts and reminders, and need a crm
# key: with an ingest key a forged call silenced an overdue touchpoint reminder, a
# forged payment raised a critical alert (found from outside).
BROWSER_KINDS = frozenset({"usage", "nps"})
SERVER_KINDS = frozenset(KINDS) - BROWSER_KINDS
SERVER_REFUSAL = (
    "account facts, touchpoints, payments and tickets come from your own systems, so "
    "they need a crm key ('healthwatch keys create --role crm'), not an ingest key "
    "(which ships in browsers and apps)"
)


def sendable_kinds(key: ApiKey) -> tuple[frozenset[str], str]:
    """The kinds ``key`` may send to /v1/events, and what an event of another kind is
    told (per event, in a batch that holds others: ``require_kinds`` says it for a
    batch of none but those)."""
    allowed = (BROWSER_KINDS if key.allows(Scope.ingest) else frozenset()) | (
        SERVER_KINDS if key.allows(Scope.crm) else frozenset()
    )
    if not key.allows(Scope.crm):
        return allowed, SERVER_REFUSAL
    if not key.allows(Scope.ingest):
        return allowed, "this key lacks the 'ingest' scope needed for usage and NPS answers"
    return allowed, ""


def require_kinds(key: ApiKey, kinds: set[str]) -> None:
    """403 unless ``key`` may send every kind in ``kinds``: the records of the company's
    systems (SERVER_KINDS) need a crm key, usage and NPS answers an ingest key."""
    if kinds & SERVER_KINDS and not key.allows(Scope.crm):
        raise ClientError(
            403,
            "forbidden",
            "Account facts, touchpoints, payments and tickets come from your own systems "
            "(they set owners and raise alerts), so they need a crm key, not an ingest "
            "key (which ships in browsers and apps): send them with a key made by "
            "'healthwatch keys create --role crm'.",
        )
    if kinds & BROWSER_KINDS and not key.allows(Scope.ingest):
        raise ClientError(403, "forbidden", "This key lacks the 'ingest' scope needed here.")
