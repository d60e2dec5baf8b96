"""The vendors' webhooks: Zendesk and Freshdesk tickets, HubSpot company facts.

Each route checks the vendor's proof first (``signing``), translates the vendor's
payload into our events (one module per vendor), validates them against the event
contracts and publishes them like every ingest route: 202 only once the bus has them.
Items that are nothing for us (an unmapped HubSpot property) count as accepted.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import SecretStr

from services.ingest.connectors import freshdesk, hubspot, signing, zendesk
from services.ingest.connectors.common import Translated, disabled, validated
from services.ingest.connectors.mapping import ConnectorMap, cached_mapping
from services.ingest.connectors.schemas import (
    FRESHDESK_BODY,
    HUBSPOT_BODY,
    WEBHOOK_ANSWERS,
    ZENDESK_BODY,
)
from services.ingest.deps import Context
from services.ingest.routes import _store
from shared.request_body import parse_json, read_body

router = APIRouter(prefix="/v1/connectors", tags=["connectors"])


def _secret(value: SecretStr, vendor: str, setting: str) -> str:
    """The connector's secret; 403 while it is unset (the connector is off)."""
    if not value.get_secret_value():
        raise disabled(vendor, setting)
    return value.get_secret_value()


def _mapping(ctx: Context) -> ConnectorMap:
    return cached_mapping(ctx.settings.connectors_file)


async def _accept(ctx: Context, out: Translated, now: datetime, kind: str) -> JSONResponse:
    checked = validated(out, now=now, max_future_skew=ctx.settings.max_future_skew, kind=kind)
    return await _store(ctx, checked, now, acknowledged=out.ignored)


@router.post(
    "/zendesk/webhook", status_code=202, openapi_extra=ZENDESK_BODY, responses=WEBHOOK_ANSWERS
)
async def zendesk_webhook(request: Request, ctx: Context) -> JSONResponse:
    """A Zendesk ticket webhook (trigger body or ticket event), signed by Zendesk."""
    secret = _secret(ctx.settings.zendesk_webhook_secret, "Zendesk", "ZENDESK_WEBHOOK_SECRET")
    raw = await read_body(request, ctx.settings.max_body_bytes)
    now = ctx.clock()
    signing.check_zendesk(request.headers, secret, raw, now)
    return await _accept(ctx, zendesk.translate(parse_json(raw), _mapping(ctx)), now, "ticket")


@router.post(
    "/freshdesk/webhook", status_code=202, openapi_extra=FRESHDESK_BODY, responses=WEBHOOK_ANSWERS
)
async def freshdesk_webhook(request: Request, ctx: Context) -> JSONResponse:
    """A Freshdesk automation rule's ticket webhook, with the shared secret."""
    secret = _secret(ctx.settings.freshdesk_webhook_secret, "Freshdesk", "FRESHDESK_WEBHOOK_SECRET")
    signing.check_shared_secret(request.headers, secret)
    raw = await read_body(request, ctx.settings.max_body_bytes)
    now = ctx.clock()
    out = freshdesk.translate(parse_json(raw), _mapping(ctx), now)
    return await _accept(ctx, out, now, "ticket")


@router.post(
    "/hubspot/webhook", status_code=202, openapi_extra=HUBSPOT_BODY, responses=WEBHOOK_ANSWERS
)
async def hubspot_webhook(request: Request, ctx: Context) -> JSONResponse:
    """HubSpot company property changes (v3-signed) as account facts."""
    secret = _secret(ctx.settings.hubspot_client_secret, "HubSpot", "HUBSPOT_CLIENT_SECRET")
    raw = await read_body(request, ctx.settings.max_body_bytes)
    now = ctx.clock()
    signing.check_hubspot(
        request.headers, secret, request.method, _called_uris(ctx, request), raw, now
    )
    return await _accept(ctx, hubspot.translate(parse_json(raw), _mapping(ctx)), now, "account")


def _called_uris(ctx: Context, request: Request) -> list[str]:
    """The URL HubSpot signed: the public one (behind a proxy the app sees another), or
    the one this request reached."""
    query = f"?{request.url.query}" if request.url.query else ""
    public = ctx.settings.public_url.rstrip("/") + request.url.path + query
    return [public, str(request.url)]
