"""What an import reads of a line before the scoring step decodes it: its event time
and account id (``stamp_of``, for the merge of files by event time and the calendar),
and a ticket line's ids and times (``ticket_line``, for the days it changes)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from shared.contracts.events import Time

# An import line's event time and its account id (as the line has it), or None for a
# line whose time does not read: the line parsed once, for the merge of the files by
# event time and for the calendar.
Stamp = tuple[datetime, Any] | None
_TIME: TypeAdapter[datetime] = TypeAdapter(Time)


def stamp_of(line: bytes) -> Stamp:
    try:
        event = orjson.loads(line)
        raw = event["occurred_at"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    occurred_at = moment_of(raw)
    if occurred_at is None:
        return None
    account_id = event.get("account_id")  # an object: it had "occurred_at"
    # As the contract reads it (surrounding spaces stripped).
    return occurred_at, account_id.strip() if isinstance(account_id, str) else account_id


def event_time(stamp: Stamp, before: float) -> float:
    """The record's ``occurred_at`` as a POSIX time (the merge's key), or ``before`` when
    it has none that reads (the scoring step rejects it with the reason): such a record
    keeps its place in the file."""
    if stamp is None:
        return before
    moment = stamp[0]
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def moment_of(raw: Any) -> datetime | None:
    """A line's time as the contract reads it (ISO 8601, or Unix seconds), or None."""
    try:
        return datetime.fromisoformat(raw)
    except (TypeError, ValueError):
        try:
            return _TIME.validate_python(raw)
        except ValidationError:
            return None


@dataclass(frozen=True)
class TicketLine:
    ticket_id: str
    account_id: str
    created_at: datetime
    occurred_at: datetime
    solved_at: datetime | None


def ticket_line(line: bytes) -> TicketLine | None:
    """A ticket line's ids and times; None for another kind of line, or one the scoring
    step rejects (no zone, a time that does not read)."""
    if b"ticket" not in line:  # a usage line, most of a history: not parsed again
        return None
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(event, dict) or event.get("kind") != "ticket":
        return None
    ticket_id, account_id = event.get("ticket_id"), event.get("account_id")
    created, occurred = moment_of(event.get("created_at")), moment_of(event.get("occurred_at"))
    solved = moment_of(event.get("solved_at")) if event.get("solved_at") is not None else None
    if not (isinstance(ticket_id, str) and isinstance(account_id, str) and created and occurred):
        return None
    if any(t is not None and t.tzinfo is None for t in (created, occurred, solved)):
        return None
    return TicketLine(ticket_id.strip(), account_id.strip(), created, occurred, solved)
