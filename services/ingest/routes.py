"""Ingest routes: native events, account facts, the ticket webhook and Segment's API."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select

from services.ingest import browser, segment
from services.ingest.browser import SegmentKey
from services.ingest.deps import Context, EventsKey, require_kinds, sendable_kinds
from services.ingest.schemas import (
    ACCOUNTS_BODY,
    BATCH_ANSWERS,
    EVENTS_BODY,
    SEGMENT_ANSWERS,
    SEGMENT_BATCH_BODY,
    TICKETS_BODY,
    segment_body,
)
from services.ingest.validation import Checked, check_events, require_list
from shared.auth import DB_DOWN, ApiKey, KeyStore, same_secret
from shared.bus.base import BusUnavailable, MessageTooLarge, OutMessage
from shared.contracts.events import KINDS, MAX_EVENT_BYTES, AccountFacts, Event
from shared.openapi import error_responses
from shared.people import known_owners, owner_to_fill
from shared.request_body import parse_json, read_body, read_json
from shared.storage.db import among, unstorable_value, upsert
from shared.storage.tables import accounts, user_accounts
from shared.web import ClientError

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["ingest"])

SIGNATURE_HEADER = "x-healthwatch-signature"
TIMESTAMP_HEADER = "x-healthwatch-timestamp"
# A signed webhook older (or further ahead) than this is refused: Slack's window, wide
# enough for clock drift and a helpdesk's retry queue, short enough to stop replays.
WEBHOOK_TOLERANCE_S = 300
MAX_ID_CHARS = 200  # an event id's length (``shared.contracts.events.Id``)
T = TypeVar("T")


@router.post("/events", status_code=202, openapi_extra=EVENTS_BODY, responses=BATCH_ANSWERS)
async def post_events(request: Request, ctx: Context, key: EventsKey) -> JSONResponse:
    """A batch of mixed events: ``{"events": [...]}``; each is accepted or rejected alone.
    Usage and NPS answers need an ingest key; account facts, touchpoints, payments and
    tickets (your own systems' records) a crm key. A batch of none but events the key
    may not send gets a 403; one that holds others too, a 422 rejecting those events
    alone (the others are stored: a whole batch refused for one of them was lost, as
    clients do not resend a 4xx)."""
    body = await read_json(request, ctx.settings.max_body_bytes)
    items = require_list(body, "events", ctx.settings.max_batch_events)
    allowed, refusal = sendable_kinds(key)
    refused = {kind for item in items if (kind := _kind(item)) in KINDS and kind not in allowed}
    if refused and all(_kind(item) in refused for item in items):
        require_kinds(key, refused)
    now = ctx.clock()
    checked = check_events(
        items,
        now=now,
        max_future_skew=ctx.settings.max_future_skew,
        kinds=allowed,
        wrong_kind=refusal,
        max_usage_age=ctx.settings.late_grace,
    )
    return await _store(ctx, checked, now)


def _kind(item: Any) -> str | None:
    """An item's kind when it names one as text (a list or an object there is
    validation's to refuse, and cannot be looked up in a set of kinds)."""
    kind = item.get("kind") if isinstance(item, dict) else None
    return kind if isinstance(kind, str) else None


@router.post("/accounts", status_code=202, openapi_extra=ACCOUNTS_BODY, responses=BATCH_ANSWERS)
async def post_accounts(request: Request, ctx: Context, key: EventsKey) -> JSONResponse:
    """Upsert account facts: one object or ``{"accounts": [...]}``. Omitted fields are kept.
    A crm key (an ingest key gets a 403 saying so)."""
    require_kinds(key, {"account"})
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

    # Account facts only: a crm key sends no usage (and kind in the body cannot change it).
    checked = check_events(
        items,
        now=now,
        max_future_skew=ctx.settings.max_future_skew,
        prepare=prepare,
        kinds=("account",),
    )
    return await _store(ctx, checked, now)


@router.post(
    "/tickets/webhook",
    status_code=202,
    openapi_extra=TICKETS_BODY,
    responses={**BATCH_ANSWERS, **error_responses(401, 403)},
)
async def ticket_webhook(request: Request, ctx: Context) -> JSONResponse:
    """Ticket events from a helpdesk, signed ``X-Healthwatch-Signature: sha256=<hex>``:
    HMAC-SHA256 with the shared secret of ``<X-Healthwatch-Timestamp>.<raw body>``."""
    secret = ctx.settings.ticket_webhook_secret.get_secret_value()
    if not secret:
        raise ClientError(
            403,
            "webhook_disabled",
            "The ticket webhook is off: the server has no "
            "HEALTHWATCH_TICKET_WEBHOOK_SECRET configured.",
        )
    raw = await read_body(request, ctx.settings.max_body_bytes)
    now = ctx.clock()
    _check_webhook_signature(request, secret, raw, now)
    items = _one_or_many(parse_json(raw), "tickets", ctx.settings.max_batch_events)

    def prepare(item: dict[str, Any]) -> dict[str, Any]:
        item = {"kind": "ticket", **item}
        # The update time identifies the update: required, so that a replayed or resent
        # body gets the same event id and counts once.
        updated_at = item.pop("updated_at", None)
        if updated_at is not None:
            item.setdefault("occurred_at", updated_at)
        parts = [_scalar(item.get(k)) for k in ("ticket_id", "status", "occurred_at")]
        # Always derived: a helpdesk that sent its ticket's id as ``event_id`` had every
        # later update of the ticket dropped as a resend after a 202 (found from
        # outside). An id it sends is kept within the derived one, so updates it tells
        # apart in the same second stay apart.
        sent = item.pop("event_id", None)
        if sent is not None:
            parts.insert(0, _scalar(sent))
        derived = "ticket:" + ":".join(parts)
        if len(derived) > MAX_ID_CHARS:  # long ids: their digest, not a refusal of a field
            derived = "ticket:" + hashlib.blake2b(derived.encode(), digest_size=16).hexdigest()
        item["event_id"] = derived
        return item

    checked = check_events(
        items,
        now=now,
        max_future_skew=ctx.settings.max_future_skew,
        prepare=prepare,
        kinds=("ticket",),
    )
    sent_updated_at = {
        index
        for index, item in enumerate(items)
        if isinstance(item, dict) and "updated_at" in item and "occurred_at" not in item
    }
    _ask_for_update_time(checked, sent_updated_at)
    return await _store(ctx, checked, now)


def _ask_for_update_time(checked: Checked, sent_updated_at: set[int]) -> None:
    """A helpdesk sends ``updated_at`` (our occurred_at): errors name the field sent
    (at indexes ``sent_updated_at``), and name it when it is missing."""
    for rejection in checked.rejected:
        for error in rejection.errors:
            if error["field"] != "occurred_at":
                continue
            if rejection.index in sent_updated_at:
                error["field"] = "updated_at"
            elif error["message"] == "Field required":
                error["field"] = "updated_at"
                error["message"] = (
                    "is required: the ticket's update time identifies the update, so a "
                    "resent or replayed delivery counts once"
                )


def _scalar(value: Any) -> str:
    """Text for an event id: a value that is no text (an object, a list) is refused by
    validation anyway, and printing a deeply nested one would overflow."""
    return str(value) if isinstance(value, str | int | float) else "?"


def _check_webhook_signature(request: Request, secret: str, raw: bytes, now: datetime) -> None:
    """401 unless the body is signed with a timestamp within WEBHOOK_TOLERANCE_S of now
    (the scheme of healthwatch's own outgoing webhooks and of Slack's requests)."""
    stamp = request.headers.get(TIMESTAMP_HEADER, "")
    if not stamp and SIGNATURE_HEADER not in request.headers:
        # Unsigned: said so, not "stale timestamp" (found from outside).
        raise ClientError(
            401,
            "unsigned",
            "The delivery is not signed: send X-Healthwatch-Timestamp (Unix seconds) and "
            "X-Healthwatch-Signature: sha256=<hex> of HMAC-SHA256 over "
            "'<timestamp>.<raw body>' with the shared secret.",
        )
    # At most 12 digits: int() of thousands of digits is slow, and refused past 4,300.
    well_formed = stamp.isascii() and stamp.isdigit() and len(stamp) <= 12
    if not well_formed or abs(now.timestamp() - int(stamp)) > WEBHOOK_TOLERANCE_S:
        raise ClientError(
            401,
            "stale_timestamp",
            "X-Healthwatch-Timestamp must be the current Unix time in seconds (within {seconds} s "
            "of the server's clock); sign each delivery afresh.",
            values={"seconds": WEBHOOK_TOLERANCE_S},
        )
    signed = stamp.encode() + b"." + raw
    expected = "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    if not same_secret(request.headers.get(SIGNATURE_HEADER, ""), expected):
        raise ClientError(
            401,
            "bad_signature",
            "X-Healthwatch-Signature does not match: sign '<X-Healthwatch-Timestamp>.<raw "
            "body>' with HMAC-SHA256 and the shared secret, as 'sha256=<hex>'.",
        )


# --- Segment HTTP Tracking API ------------------------------------------------------------


@router.post(
    "/batch", tags=["segment"], openapi_extra=SEGMENT_BATCH_BODY, responses=SEGMENT_ANSWERS
)
async def segment_batch(request: Request, ctx: Context, key: SegmentKey) -> JSONResponse:
    """Segment ``batch``: ``{"batch": [...], "sentAt": …, "context": {...}}``."""
    return await browser.readable(_segment_batch(request, ctx, key))


async def _segment_batch(request: Request, ctx: Context, key: ApiKey | None) -> JSONResponse:
    body = await read_json(request, ctx.settings.max_body_bytes)
    await browser.key_of(request, key, body)
    messages = require_list(body, "batch", ctx.settings.max_batch_events)
    shared_context = segment.object_field(body, "context")
    if shared_context:
        messages = [_with_context(m, shared_context) for m in messages]
    return await _segment(ctx, messages, body.get("sentAt"))


async def _segment_single(
    request: Request, ctx: Context, key: ApiKey | None, kind: str
) -> JSONResponse:
    body = await read_json(request, ctx.settings.max_body_bytes)
    if not isinstance(body, dict):
        raise ClientError(
            400, "bad_envelope", "Send one {kind} call as a JSON object.", values={"kind": kind}
        )
    await browser.key_of(request, key, body)
    body.setdefault("type", kind)
    return await _segment(ctx, [body], body.get("sentAt"))


@router.post(
    "/track", tags=["segment"], openapi_extra=segment_body("track"), responses=SEGMENT_ANSWERS
)
async def segment_track(request: Request, ctx: Context, key: SegmentKey) -> JSONResponse:
    return await browser.readable(_segment_single(request, ctx, key, "track"))


@router.post(
    "/identify", tags=["segment"], openapi_extra=segment_body("identify"), responses=SEGMENT_ANSWERS
)
async def segment_identify(request: Request, ctx: Context, key: SegmentKey) -> JSONResponse:
    return await browser.readable(_segment_single(request, ctx, key, "identify"))


@router.post(
    "/group", tags=["segment"], openapi_extra=segment_body("group"), responses=SEGMENT_ANSWERS
)
async def segment_group(request: Request, ctx: Context, key: SegmentKey) -> JSONResponse:
    return await browser.readable(_segment_single(request, ctx, key, "group"))


@router.post(
    "/page", tags=["segment"], openapi_extra=segment_body("page"), responses=SEGMENT_ANSWERS
)
async def segment_page(request: Request, ctx: Context, key: SegmentKey) -> JSONResponse:
    return await browser.readable(_segment_single(request, ctx, key, "page"))


@router.post(
    "/screen", tags=["segment"], openapi_extra=segment_body("screen"), responses=SEGMENT_ANSWERS
)
async def segment_screen(request: Request, ctx: Context, key: SegmentKey) -> JSONResponse:
    return await browser.readable(_segment_single(request, ctx, key, "screen"))


def _browser_paths() -> None:
    """Segment's browser SDKs post to the short paths, and ask first (``browser.py``)."""
    calls = {
        "track": segment_track,
        "identify": segment_identify,
        "group": segment_group,
        "page": segment_page,
        "screen": segment_screen,
        "batch": segment_batch,
    }
    short = {**browser.SHORT_PATHS, "batch": browser.BATCH_SHORT_PATH}
    for call_type, endpoint in calls.items():
        path = f"/{short[call_type]}"
        router.add_api_route(path, endpoint, methods=["POST"], include_in_schema=False)
        for preflighted in (path, f"/{call_type}"):
            router.add_api_route(
                preflighted, browser.preflight, methods=["OPTIONS"], include_in_schema=False
            )


_browser_paths()


async def _segment(ctx: Context, messages: list[Any], sent_at: Any) -> JSONResponse:
    now = ctx.clock()
    lookup = segment.users_needing_lookup(messages)
    known: dict[str, str] = {}
    if lookup:
        known = await _database(ctx, lambda: _accounts_of(ctx, lookup))
    naming = segment.groups_naming(messages)
    named: set[str] = set()
    if naming:
        named = await _database(ctx, lambda: _named(ctx, naming))
    translated = segment.translate(messages, known, now, sent_at, named)
    if translated.links:
        await _database(ctx, lambda: _link(ctx, translated.links, now))
    checked = check_events(
        [raw for _, raw in translated.events],
        now=now,
        max_future_skew=ctx.settings.max_future_skew,
        max_usage_age=ctx.settings.late_grace,
    )
    # Report rejections by the index of the Segment message, not of the translated event.
    for rejection in checked.rejected:
        rejection.index = translated.events[rejection.index][0]
    checked.rejected = sorted([*translated.rejected, *checked.rejected], key=lambda r: r.index)
    return await _store(ctx, checked, now, acknowledged=translated.acknowledged, segment_style=True)


async def _named(ctx: Context, ids: set[str]) -> set[str]:
    """Those of ``ids`` whose account has a name."""
    async with ctx.engine.connect() as conn:
        rows = await conn.execute(
            select(accounts.c.account_id).where(
                among(conn, accounts.c.account_id, ids), accounts.c.name.is_not(None)
            )
        )
        return {r.account_id for r in rows}


async def _accounts_of(ctx: Context, users: set[str]) -> dict[str, str]:
    async with ctx.engine.connect() as conn:
        rows = await conn.execute(
            select(user_accounts.c.user_id, user_accounts.c.account_id).where(
                user_accounts.c.user_id.in_(users)
            )
        )
        return {r.user_id: r.account_id for r in rows}


async def _link(ctx: Context, links: dict[str, str], now: datetime) -> None:
    async with ctx.engine.begin() as conn:
        await upsert(
            conn,
            user_accounts,
            [{"user_id": u, "account_id": a, "updated_at": now} for u, a in links.items()],
            keys=["user_id"],
            update=["account_id", "updated_at"],
        )


async def _database(ctx: Context, work: Callable[[], Awaitable[T]]) -> T:
    """``work`` on the database; 503 with Retry-After while it is down or hangs (as long
    as a key check waits: KeyStore.LOOKUP_TIMEOUT_S). Nothing is stored then: the user
    links are written before any event is published."""
    try:
        async with asyncio.timeout(KeyStore.LOOKUP_TIMEOUT_S):
            return await work()
    except DB_DOWN as exc:
        if unstorable_value(exc):  # a value of the request, not an outage: no retry helps
            raise
        raise _unavailable(
            ctx,
            "The database is unavailable ({reason}); nothing was stored: retry later.",
            type(exc).__name__,
        ) from exc


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
    raise ClientError(
        400, "bad_envelope", 'Send one JSON object or {{"{key}": [ ... ]}}.', values={"key": key}
    )


async def _store(
    ctx: Context,
    checked: Checked,
    received_at: datetime,
    *,
    acknowledged: int = 0,
    segment_style: bool = False,
) -> JSONResponse:
    """Publish the valid events, then answer: 2xx only once the bus has them all."""
    if any(isinstance(e, AccountFacts) and owner_to_fill(e) for e in checked.valid):
        checked.valid = await _database(ctx, lambda: _with_known_owners(ctx, checked.valid))
    if checked.valid:
        await _publish(ctx, checked, ctx.publisher.encode(checked.valid, received_at))
    for event in checked.valid:
        ctx.metrics.events.labels(event.kind, "accepted").inc()
    if checked.rejected:
        for rejection in checked.rejected:
            ctx.metrics.events.labels(rejection.kind, "rejected").inc()
        # Raised, not returned: the answer's message in the request's language.
        raise ClientError(
            400 if segment_style else 422,
            "invalid_events",
            "{rejected} event(s) rejected, {accepted} accepted and stored: fix the rejected "
            "ones and resend them (resending accepted ones is harmless).",
            values={"rejected": len(checked.rejected), "accepted": len(checked.valid)},
            extra={
                "accepted": len(checked.valid) + acknowledged,
                "rejected": [r.as_dict() for r in checked.rejected],
            },
        )
    accepted = len(checked.valid) + acknowledged
    if segment_style:
        return JSONResponse({"success": True, "accepted": accepted}, status_code=200)
    return JSONResponse({"accepted": accepted, "rejected": []}, status_code=202)


async def _with_known_owners(ctx: Context, events: list[Event]) -> list[Event]:
    """``events``, their account facts' owners named by email alone given the Slack id
    and name known for them (``shared.people.known_owners``)."""
    facts = [e for e in events if isinstance(e, AccountFacts)]
    async with ctx.engine.connect() as conn:
        filled = iter(await known_owners(conn, facts))
    return [next(filled) if isinstance(e, AccountFacts) else e for e in events]


async def _publish(ctx: Context, checked: Checked, messages: list[OutMessage]) -> None:
    """Send, or raise: 413 for an event that can never fit on the bus (nothing stored),
    503 while the bus is down."""
    too_large = [i for i, m in enumerate(messages) if len(m.value) > MAX_EVENT_BYTES]
    if too_large:
        raise _too_large(checked, too_large[0], len(messages[too_large[0]].value))
    try:
        await ctx.publisher.publish(messages)
    except MessageTooLarge as exc:
        # The bus's own limit is below ours (a topic created elsewhere): retrying the
        # same request never helps, so the client must hear it as too large.
        raise _too_large(checked, None, max(len(m.value) for m in messages)) from exc
    except BusUnavailable as exc:
        for event in checked.valid:
            ctx.metrics.events.labels(event.kind, "unavailable").inc()
        # Not "nothing was stored": a broker that stopped answering may have taken some
        # of them (a fault review found one counted after its 503). A resend is safe:
        # each event counts once by its id.
        raise _unavailable(
            ctx,
            "The event bus did not confirm the events ({reason}); some may have been "
            "stored: send the same request again later (an event counts once by its "
            "event_id).",
            exc,
        ) from exc


def _too_large(checked: Checked, index: int | None, size: int) -> ClientError:
    if index is None:
        return ClientError(
            413,
            "event_too_large",
            "An event encodes to {size} bytes, more than the {limit} bytes the event bus carries "
            "per event; nothing was stored: send smaller properties.",
            values={"size": size, "limit": MAX_EVENT_BYTES},
            extra={"event_id": None},
        )
    event_id = checked.valid[index].event_id
    return ClientError(
        413,
        "event_too_large",
        "Event {event_id!r} encodes to {size} bytes, more than the {limit} bytes the event bus "
        "carries per event; nothing was stored: send smaller properties.",
        values={"event_id": event_id, "size": size, "limit": MAX_EVENT_BYTES},
        extra={"event_id": event_id},
    )


# A 503 (the bus or the database unavailable) is logged at most this often per
# process: a client retrying every second would otherwise write a line a request, and
# one line in ten seconds says the outage began and goes on (the count is on /metrics).
UNAVAILABLE_LOG_EVERY_S = 10.0
_unavailable_logged = [float("-inf")]  # when the last such line was written (monotonic)


def _unavailable(ctx: Context, message: str, reason: object) -> ClientError:
    """A 503 the client retries after ``retry_after_s`` (``message``: a template of the
    ``reason``, saying what of the request was stored). Logged, at most every
    UNAVAILABLE_LOG_EVERY_S: ingest answered 503 for minutes without a line (found
    from outside)."""
    now = time.monotonic()
    if now - _unavailable_logged[0] >= UNAVAILABLE_LOG_EVERY_S:
        _unavailable_logged[0] = now
        log.warning("ingest: answering 503: %s", message.format(reason=reason))
    return ClientError(
        503,
        "unavailable",
        message,
        values={"reason": str(reason)},
        headers={"Retry-After": str(ctx.settings.retry_after_s)},
    )
