"""Ingest routes: native events, account facts, the ticket webhook and Segment's API."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select

from services.ingest import segment
from services.ingest.body import parse_json, read_body, read_json
from services.ingest.deps import Context, IngestKey
from services.ingest.validation import Checked, check_events, require_list
from shared.bus.base import BusUnavailable
from shared.storage.db import upsert
from shared.storage.tables import user_accounts
from shared.web import ClientError

router = APIRouter(prefix="/v1", tags=["ingest"])

SIGNATURE_HEADER = "x-healthwatch-signature"


@router.post("/events", status_code=202)
async def post_events(request: Request, ctx: Context, _key: IngestKey) -> JSONResponse:
    """A batch of mixed events: ``{"events": [...]}``; each is accepted or rejected alone."""
    body = await read_json(request, ctx.settings.max_body_bytes)
    items = require_list(body, "events", ctx.settings.max_batch_events)
    now = ctx.clock()
    checked = check_events(items, now=now, max_future_skew=ctx.settings.max_future_skew)
    return await _store(ctx, checked, now)


@router.post("/accounts", status_code=202)
async def post_accounts(request: Request, ctx: Context, _key: IngestKey) -> JSONResponse:
    """Upsert account facts: one object or ``{"accounts": [...]}``. Omitted fields are kept."""
    body = await read_json(request, ctx.settings.max_body_bytes)
    items = _one_or_many(body, "accounts", ctx.settings.max_batch_events)
    now = ctx.clock()

    def prepare(raw: dict[str, Any]) -> dict[str, Any]:
        # No event id: a fresh one. Not a content hash, which would drop a change back
        # to an earlier value as a "duplicate"; resent facts merge to the same state anyway.
        return {
            "kind": "account",
            "occurred_at": now.isoformat(),
            "event_id": f"account:{uuid.uuid4().hex}",
            **raw,
        }

    checked = check_events(
        items, now=now, max_future_skew=ctx.settings.max_future_skew, prepare=prepare
    )
    return await _store(ctx, checked, now)


@router.post("/tickets/webhook", status_code=202)
async def ticket_webhook(request: Request, ctx: Context) -> JSONResponse:
    """Ticket events from a helpdesk, signed ``X-Healthwatch-Signature: sha256=<hex>``
    (HMAC-SHA256 of the raw body with the shared secret)."""
    secret = ctx.settings.ticket_webhook_secret.get_secret_value()
    if not secret:
        raise ClientError(
            403,
            "webhook_disabled",
            "The ticket webhook is off: the server has no "
            "HEALTHWATCH_TICKET_WEBHOOK_SECRET configured.",
        )
    raw = await read_body(request, ctx.settings.max_body_bytes)
    expected = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, request.headers.get(SIGNATURE_HEADER, "")):
        raise ClientError(
            401,
            "bad_signature",
            "X-Healthwatch-Signature does not match the body: sign the "
            "raw body with HMAC-SHA256 and the shared secret, as 'sha256=<hex>'.",
        )
    items = _one_or_many(parse_json(raw), "tickets", ctx.settings.max_batch_events)
    now = ctx.clock()

    def prepare(item: dict[str, Any]) -> dict[str, Any]:
        item = {"kind": "ticket", **item}
        item.setdefault("occurred_at", item.get("updated_at") or now.isoformat())
        item.pop("updated_at", None)
        # A ticket id plus its status and time identifies one helpdesk update.
        item.setdefault(
            "event_id", f"ticket:{item.get('ticket_id')}:{item.get('status')}:{item['occurred_at']}"
        )
        return item

    checked = check_events(
        items, now=now, max_future_skew=ctx.settings.max_future_skew, prepare=prepare
    )
    return await _store(ctx, checked, now)


# --- Segment HTTP Tracking API ------------------------------------------------------------


@router.post("/batch", tags=["segment"])
async def segment_batch(request: Request, ctx: Context, _key: IngestKey) -> JSONResponse:
    """Segment ``batch``: ``{"batch": [...], "sentAt": …, "context": {...}}``."""
    body = await read_json(request, ctx.settings.max_body_bytes)
    messages = require_list(body, "batch", ctx.settings.max_batch_events)
    shared_context = segment.object_field(body, "context")
    if shared_context:
        messages = [_with_context(m, shared_context) for m in messages]
    return await _segment(ctx, messages, body.get("sentAt"))


async def _segment_single(request: Request, ctx: Context, kind: str) -> JSONResponse:
    body = await read_json(request, ctx.settings.max_body_bytes)
    if not isinstance(body, dict):
        raise ClientError(400, "bad_envelope", f"Send one {kind} call as a JSON object.")
    body.setdefault("type", kind)
    return await _segment(ctx, [body], body.get("sentAt"))


@router.post("/track", tags=["segment"])
async def segment_track(request: Request, ctx: Context, _key: IngestKey) -> JSONResponse:
    return await _segment_single(request, ctx, "track")


@router.post("/identify", tags=["segment"])
async def segment_identify(request: Request, ctx: Context, _key: IngestKey) -> JSONResponse:
    return await _segment_single(request, ctx, "identify")


@router.post("/group", tags=["segment"])
async def segment_group(request: Request, ctx: Context, _key: IngestKey) -> JSONResponse:
    return await _segment_single(request, ctx, "group")


@router.post("/page", tags=["segment"])
async def segment_page(request: Request, ctx: Context, _key: IngestKey) -> JSONResponse:
    return await _segment_single(request, ctx, "page")


@router.post("/screen", tags=["segment"])
async def segment_screen(request: Request, ctx: Context, _key: IngestKey) -> JSONResponse:
    return await _segment_single(request, ctx, "screen")


async def _segment(ctx: Context, messages: list[Any], sent_at: Any) -> JSONResponse:
    now = ctx.clock()
    lookup = segment.users_needing_lookup(messages)
    known: dict[str, str] = {}
    if lookup:
        async with ctx.engine.connect() as conn:
            rows = await conn.execute(
                select(user_accounts.c.user_id, user_accounts.c.account_id).where(
                    user_accounts.c.user_id.in_(lookup)
                )
            )
            known = {r.user_id: r.account_id for r in rows}
    translated = segment.translate(messages, known, now, sent_at)
    if translated.links:
        async with ctx.engine.begin() as conn:
            await upsert(
                conn,
                user_accounts,
                [
                    {"user_id": u, "account_id": a, "updated_at": now}
                    for u, a in translated.links.items()
                ],
                keys=["user_id"],
                update=["account_id", "updated_at"],
            )
    checked = check_events(
        [raw for _, raw in translated.events],
        now=now,
        max_future_skew=ctx.settings.max_future_skew,
    )
    # Report rejections by the index of the Segment message, not of the translated event.
    for rejection in checked.rejected:
        rejection.index = translated.events[rejection.index][0]
    checked.rejected = sorted([*translated.rejected, *checked.rejected], key=lambda r: r.index)
    return await _store(ctx, checked, now, acknowledged=translated.acknowledged, segment_style=True)


def _with_context(message: Any, shared: dict[str, Any]) -> Any:
    if not isinstance(message, dict):
        return message
    own = segment.object_field(message, "context")
    return {**message, "context": {**shared, **own}}


# --- shared -----------------------------------------------------------------------------


def _one_or_many(body: Any, key: str, max_items: int) -> list[Any]:
    if isinstance(body, dict) and key in body:
        return require_list(body, key, max_items)
    if isinstance(body, dict):
        return [body]
    raise ClientError(400, "bad_envelope", f'Send one JSON object or {{"{key}": [ ... ]}}.')


async def _store(
    ctx: Context,
    checked: Checked,
    received_at: datetime,
    *,
    acknowledged: int = 0,
    segment_style: bool = False,
) -> JSONResponse:
    """Publish the valid events, then answer: 2xx only once the bus has them all."""
    if checked.valid:
        try:
            await ctx.publisher.publish(checked.valid, received_at)
        except BusUnavailable as exc:
            for event in checked.valid:
                ctx.metrics.events.labels(event.kind, "unavailable").inc()
            raise ClientError(
                503,
                "unavailable",
                f"The event bus is unavailable ({exc}); nothing was stored: retry later.",
                headers={"Retry-After": str(ctx.settings.retry_after_s)},
            ) from exc
    for event in checked.valid:
        ctx.metrics.events.labels(event.kind, "accepted").inc()
    if checked.rejected:
        ctx.metrics.events.labels("unknown", "rejected").inc(len(checked.rejected))
        return JSONResponse(
            {
                "error": "invalid_events",
                "message": f"{len(checked.rejected)} event(s) rejected, "
                f"{len(checked.valid)} accepted and stored: fix the rejected ones and "
                "resend them (resending accepted ones is harmless).",
                "accepted": len(checked.valid) + acknowledged,
                "rejected": [r.as_dict() for r in checked.rejected],
            },
            status_code=400 if segment_style else 422,
        )
    accepted = len(checked.valid) + acknowledged
    if segment_style:
        return JSONResponse({"success": True, "accepted": accepted}, status_code=200)
    return JSONResponse({"accepted": accepted, "rejected": []}, status_code=202)
