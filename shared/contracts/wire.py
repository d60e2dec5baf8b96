"""Encoding of events on the bus (JSON via orjson) and decoding with a reason on failure."""

from __future__ import annotations

import orjson
from pydantic import BaseModel, ValidationError

from shared.contracts import fastwire
from shared.contracts.alerts import AlertEvent
from shared.contracts.events import EVENT_ADAPTER, KINDS, Event

# Kinds the fast decoder may take: usage, and an unknown topic's records (one failed
# msgspec decode, well under a µs, before pydantic when they are not usage events).
_FAST_KINDS = frozenset({"usage", None})


class UndecodableRecord(Exception):
    """The record cannot become an event; the message is the dead-letter reason."""


def encode_event(event: BaseModel) -> bytes:
    return orjson.dumps(event.model_dump(mode="json", exclude_none=True))


def decode_event(value: bytes | None, expected_kind: str | None = None) -> Event:
    # Usage events, the bulk of the stream, first try the fast decoder (µs figures in
    # shared/contracts/fastwire.py): it accepts only what pydantic accepts, and builds
    # the same event. A record it does not take (another kind, a non-canonical form, an
    # invalid one) goes through pydantic, which words the dead-letter reason.
    if value is not None and expected_kind in _FAST_KINDS:
        usage = fastwire.decode_usage(value)
        if usage is not None:
            return usage
    data = _load(value)
    if not isinstance(data, dict):
        # pydantic's words: "Input should be a valid dictionary or object to extract
        # fields from" (a file holding one JSON array, a list per line).
        raise UndecodableRecord(
            f"not an event: a JSON {type(data).__name__} where an object is expected (one "
            "event object per record; NDJSON holds one per line, not an array)"
        )
    if not isinstance(data.get("kind"), str) or data["kind"] not in KINDS:
        # pydantic's: "schema: : Unable to extract tag using discriminator 'kind'".
        raise UndecodableRecord(
            f"kind: {'missing' if 'kind' not in data else repr(data['kind'])[:80]}: an event "
            f"names its kind, one of {', '.join(KINDS)} (with event_id, account_id and "
            "occurred_at)"
        )
    try:
        event = EVENT_ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise UndecodableRecord(f"schema: {_first_errors(exc)}") from exc
    if expected_kind is not None and event.kind != expected_kind:
        raise UndecodableRecord(f"kind {event.kind!r} on the topic for {expected_kind!r}")
    return event


def decode_alert(value: bytes | None) -> AlertEvent:
    try:
        return AlertEvent.model_validate(_load(value))
    except ValidationError as exc:
        raise UndecodableRecord(f"schema: {_first_errors(exc)}") from exc


def _load(value: bytes | None) -> object:
    if value is None:
        raise UndecodableRecord("empty record value")
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        if (bad := not_utf8_at(value)) is not None:
            raise UndecodableRecord(
                f"not UTF-8 text (byte {bad}, 0x{value[bad]:02x}): save the file or send the "
                "record as UTF-8"
            ) from exc
        raise UndecodableRecord(f"not JSON: {exc}") from exc


def not_utf8_at(raw: bytes) -> int | None:
    """Where ``raw`` stops being UTF-8 (a byte offset), or None if it is UTF-8: orjson's
    words for it ("surrogates not allowed: line 1 column 1") name neither."""
    try:
        raw.decode()
    except UnicodeDecodeError as exc:
        return exc.start
    return None


def _first_errors(exc: ValidationError, limit: int = 5) -> str:
    """The first errors as "field: message" (an event's kind, which pydantic puts first
    in the path, left out: "usage.user_id" read as a field of a field)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in _path(e['loc']))}: {e['msg']}"
        for e in exc.errors(include_url=False)[:limit]
    )


def _path(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    return loc[1:] if len(loc) > 1 and loc[0] in KINDS else loc
