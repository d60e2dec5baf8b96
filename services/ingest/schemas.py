"""What the ingest routes take and answer, for the OpenAPI. The routes read their raw
bodies (each event accepted or rejected alone, gzip, size limits), so these models
document the bodies; ``services.ingest.validation`` and the event contracts check them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.contracts.events import AccountFacts, Event, TicketEvent
from shared.openapi import ErrorBody, documented_body, error_responses


class EventBatch(BaseModel):
    events: list[Event] = Field(description="Mixed events; each is accepted or rejected alone.")


class AccountBatch(BaseModel):
    accounts: list[AccountFacts] = Field(
        description="Account facts; event_id and occurred_at may be left out."
    )


class TicketBatch(BaseModel):
    tickets: list[TicketEvent] = Field(
        description="Ticket updates; updated_at (the update time) stands for occurred_at, "
        "and event_id is derived from ticket, status and update time."
    )


class SegmentCall(BaseModel):
    """One call of Segment's HTTP Tracking API (the fields healthwatch reads)."""

    model_config = ConfigDict(extra="allow")
    type: str | None = Field(None, description="track, identify, group, page or screen")
    userId: str | None = None
    anonymousId: str | None = None
    groupId: str | None = None
    event: str | None = None
    properties: dict[str, Any] | None = None
    traits: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    messageId: str | None = None
    timestamp: str | None = None
    sentAt: str | None = None


class SegmentBatch(BaseModel):
    model_config = ConfigDict(extra="allow")
    batch: list[SegmentCall]
    context: dict[str, Any] | None = None
    sentAt: str | None = None


class Rejection(BaseModel):
    index: int = Field(description="The position of the refused item in the batch")
    event_id: str | None = Field(None, description="The item's event_id, when it sent one as text")
    errors: list[dict[str, Any]] = Field(description="{field, message} per problem")


class RejectedBatch(ErrorBody):
    """422 ``invalid_events`` (Segment's endpoints: 400): the items refused, each with
    its problems; the others were stored (resending them is harmless)."""

    accepted: int = Field(description="Items stored")
    rejected: list[Rejection]


class Accepted(BaseModel):
    """202: every item stored (a batch with refused items is a 422, ``invalid_events``,
    listing them under ``rejected`` beside the ``accepted`` count)."""

    accepted: int
    rejected: list[Rejection] = []


class SegmentAccepted(BaseModel):
    """Segment's answer: its SDKs read ``success``."""

    success: bool
    accepted: int


# The examples' times: the last whole hour before the service started, in Beijing time.
# Usage older than the late grace (90 days) is refused, so a fixed date turned the
# documented examples into 422s three months on.
_HOUR = (datetime.now(UTC) - timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
_BEIJING = timezone(timedelta(hours=8))


def _at(minutes: int, zone: tzinfo = _BEIJING) -> str:
    """The example time ``minutes`` past ``_HOUR``, written in ``zone``."""
    return (_HOUR + timedelta(minutes=minutes)).astimezone(zone).isoformat()


USAGE = {
    "kind": "usage",
    "event_id": f"evt-{_HOUR:%Y-%m-%d}-0001",
    "account_id": "acme",
    "user_id": "u-17",
    "event": "report_exported",
    "module": "reports",
    "platform": "pc",
    "occurred_at": _at(15),
}
TICKET = {
    "ticket_id": "T-4821",
    "account_id": "acme",
    "status": "open",
    "priority": "high",
    "type": "bug",
    "created_at": _at(0),
    "updated_at": _at(0),
    "subject": "Export to Excel times out",
}
# In a batch of events a ticket names its id and time as every event does.
TICKET_EVENT = {
    "kind": "ticket",
    "event_id": f"ticket:T-4821:open:{_at(0)}",
    "occurred_at": _at(0),
    **{k: v for k, v in TICKET.items() if k != "updated_at"},
}
FACTS = {
    "account_id": "acme",
    "name": "Acme Trading",
    "seats_purchased": 120,
    "arr": 86000,
    "tier": "strategic",
    "owner": {"email": "li.na@example.com", "name": "Li Na"},
    "contract_end": "2027-06-30",
    "timezone": "Asia/Shanghai",
    "currency": "CNY",
}
TRACK = {
    "type": "track",
    "userId": "u-17",
    "event": "Report Exported",
    "properties": {"format": "xlsx"},
    "context": {"groupId": "acme"},
    "timestamp": _at(15, UTC),
    "messageId": "ajs-7f3c2a",
}

_STAMP = {"messageId": "ajs-9d1e4b", "timestamp": _at(16, UTC)}
# What each other call type carries (Segment's spec): who, which account, what was seen.
SEGMENT_CALLS: dict[str, dict[str, Any]] = {
    "identify": {"userId": "u-17", "traits": {"email": "wang.lei@acme.example"}},
    "group": {"userId": "u-17", "groupId": "acme", "traits": {"name": "Acme Trading"}},
    "page": {"userId": "u-17", "name": "Dashboard", "context": {"groupId": "acme"}},
    "screen": {"userId": "u-17", "name": "Orders", "context": {"groupId": "acme"}},
}

EVENTS_BODY = documented_body(
    EventBatch,
    {
        "usage (an ingest key)": {"events": [USAGE]},
        "a ticket (a crm key: your helpdesk's server)": {"events": [TICKET_EVENT]},
    },
)
ACCOUNTS_BODY = documented_body(
    AccountFacts | AccountBatch, {"one account": FACTS, "several": {"accounts": [FACTS]}}
)
TICKETS_BODY = documented_body(
    TicketEvent | TicketBatch,
    {"one delivery": TICKET},
    description="Signed: X-Healthwatch-Timestamp and X-Healthwatch-Signature headers.",
)
SEGMENT_BATCH_BODY = documented_body(SegmentBatch, {"a track call": {"batch": [TRACK]}})


def segment_body(kind: str) -> dict[str, Any]:
    """One Segment call of ``kind`` (``type`` may be left out)."""
    example = TRACK if kind == "track" else {**SEGMENT_CALLS[kind], "type": kind, **_STAMP}
    return documented_body(SegmentCall, {f"a {kind} call": example})


# The answers of a route taking a batch (its 401, 403 and 503 come with the key).
BATCH_ANSWERS: dict[int | str, dict[str, Any]] = {
    202: {"model": Accepted, "description": "Every item stored"},
    **error_responses(400, 413, 415),
    422: {"model": RejectedBatch, "description": "Some items refused, the others stored"},
}
SEGMENT_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"model": SegmentAccepted, "description": "Every call stored"},
    **error_responses(400, 413),
}
