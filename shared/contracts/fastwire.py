"""A fast decoder for usage events, the high-volume kind, beside the pydantic contract.

Why: the scoring consumer decodes every record, and orjson + pydantic costs 10-12 µs per
usage event on the 2-core machine (its AfterValidators are Python calls); this path costs
5.7 µs (a minimal event) to 8.1 µs (one with module, feature, duration and properties):
`python bench/decode_bench.py`. msgspec checks types, lengths and bounds in C (0.75 µs),
a few Python checks do the rest, and the event is built without being validated again
(model_construct alone costs 5 µs). A record this path refuses costs ~3 µs more than
pydantic alone: the non-canonical ones, rare in the stream.

Exactness: this path accepts a strict subset of what ``EVENT_ADAPTER`` accepts (the
canonical form ingest publishes: nothing to strip, no numbers as strings, RFC 3339 times
with at most microseconds) and, for what it accepts, builds the ``UsageEvent`` pydantic
builds (equal values of the same types: enum members, the defaults, the fields set; times
with datetime.timezone, see _time). Anything else answers None and the caller falls back
to pydantic, which alone words the dead-letter reasons, field by field.
tests/unit/test_fastwire.py holds both paths to the same results on hostile input.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Final, Literal

import msgspec
import orjson
from pydantic.fields import FieldInfo

from shared.contracts import events
from shared.contracts.events import MAX_DURATION_S, Platform, UsageEvent


def _lengths(alias: Any) -> msgspec.Meta:
    """The length bounds of a pydantic alias (events.Id, events.Label) for msgspec."""
    (field,) = [m for m in alias.__metadata__ if isinstance(m, FieldInfo)]
    bounds = {
        name: getattr(m, name)
        for m in field.metadata
        for name in ("min_length", "max_length")
        if hasattr(m, name)
    }
    return msgspec.Meta(**bounds)


# Lengths in characters, as pydantic counts them (nothing is stripped on this path).
Id = Annotated[str, _lengths(events.Id)]
Label = Annotated[str, _lengths(events.Label)]
# JSON has no NaN or infinity, and a number beyond float's range is a msgspec error.
Duration = Annotated[float, msgspec.Meta(ge=0, le=MAX_DURATION_S)]
Unset = msgspec.UnsetType
_UNSET: Final = msgspec.UNSET


class _Usage(msgspec.Struct, forbid_unknown_fields=True):
    """UsageEvent's fields; UNSET tells a field left out (not in fields set) from null."""

    kind: Literal["usage"]
    event_id: Id
    account_id: Id
    occurred_at: str
    user_id: Id
    event: Id
    schema_version: Literal[1] | Unset = _UNSET
    received_at: str | Unset | None = _UNSET
    module: Label | Unset | None = _UNSET
    feature: Label | Unset | None = _UNSET
    platform: Platform | Unset = _UNSET
    duration_s: Duration | Unset | None = _UNSET
    # Free JSON, read by orjson as the pydantic path reads it (orjson turns an integer
    # beyond 64 bits into a float where msgspec would keep an integer).
    properties: msgspec.Raw | Unset = _UNSET


_DECODER: Final = msgspec.json.Decoder(_Usage)

# RFC 3339 as ingest writes it, every field in range. A msgspec Meta pattern would do,
# but costs 0.7 µs a field against 0.4 for this. Pydantic's other forms (a space for
# T, lowercase, timestamps, over 6 fraction digits, naive times) take the slow path.
_TIME: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(?:\.[0-9]{1,6})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)


def decode_usage(value: bytes) -> UsageEvent | None:
    """The usage event in ``value``, or None when only pydantic may decide (or refuse)."""
    try:
        return _construct(_given(_DECODER.decode(value)))
    except (msgspec.DecodeError, ValueError):
        # msgspec.ValidationError is a DecodeError. ValueError: a form pydantic may read
        # differently or refuse, a time out of range or not a date, properties too deep or
        # holding NUL, properties orjson refuses (orjson.JSONDecodeError is one).
        return None


def _given(usage: _Usage) -> dict[str, Any]:
    """The fields ``usage`` holds (pydantic's fields set), as pydantic validates them."""
    _check_texts(usage)
    given = {
        "event_id": usage.event_id,
        "account_id": usage.account_id,
        "occurred_at": _time(usage.occurred_at),
        "kind": usage.kind,
        "user_id": usage.user_id,
        "event": usage.event,
    }
    # Field by field: a loop over the names with getattr costs twice as much.
    if usage.schema_version is not _UNSET:
        given["schema_version"] = usage.schema_version
    if usage.received_at is not _UNSET:
        received_at = usage.received_at
        given["received_at"] = received_at if received_at is None else _time(received_at)
    if usage.module is not _UNSET:
        given["module"] = usage.module
    if usage.feature is not _UNSET:
        given["feature"] = usage.feature
    if usage.platform is not _UNSET:
        given["platform"] = usage.platform
    if usage.duration_s is not _UNSET:
        given["duration_s"] = usage.duration_s
    if usage.properties is not _UNSET:
        given["properties"] = _properties(usage.properties)
    return given


# Joins the texts for one check; a text holding "| " or " |" only takes the slow path.
_JOIN: Final = "|"
_SPACED: Final = (f"{_JOIN} ", f" {_JOIN}")


def _check_texts(usage: _Usage) -> None:
    """Refuse texts pydantic would strip or refuse (no_control), all in one pass.

    A printable text holds no control character or line break (_CONTROL's characters are
    all unprintable), and of the whitespace pydantic strips only the space is printable.
    Unprintable but valid texts (a zero-width space inside) only take the slow path.
    """
    texts = [usage.event_id, usage.account_id, usage.user_id, usage.event]
    if isinstance(usage.module, str):
        texts.append(usage.module)
    if isinstance(usage.feature, str):
        texts.append(usage.feature)
    joined = _JOIN.join(texts)
    if not joined.isprintable() or joined[0] == " " or joined[-1] == " ":
        raise ValueError("a text to strip or refuse")
    if "/" in usage.account_id:  # events.AccountRef refuses it
        raise ValueError("an account id to refuse")
    if _SPACED[0] in joined or _SPACED[1] in joined:
        raise ValueError("a text to strip")


def _time(text: str) -> datetime:
    if not _TIME.fullmatch(text):
        raise ValueError("not a canonical time")
    # Equal to pydantic's datetime (same instant and offset, so same local fields), but
    # with datetime.timezone for pydantic's TzInfo: comparing or subtracting a TzInfo
    # time costs 0.5 µs against 0.1, here and in every use downstream. Nothing in the
    # code asks which tzinfo class a time has; both write the same JSON.
    return events._in_time_range(datetime.fromisoformat(text))


def _properties(raw: msgspec.Raw) -> dict[str, Any]:
    text = bytes(raw)
    if text == b"{}":  # as most events carry them (encode_event writes the default)
        return {}
    properties = orjson.loads(text)
    if type(properties) is not dict:
        raise ValueError("properties: not an object")
    for key in properties:
        # Pydantic strips the keys (str_strip_whitespace), not the values (Any) below.
        if key.strip() != key:
            raise ValueError("properties: a key to strip")
    # What orjson reads it can write back, so _bounded_tree's check holds on the text as
    # received, without encoding it again; when unsure, _bounded_tree decides.
    if not events._shallow_and_clean(text):
        events._bounded_tree(properties)
    return properties


# Defaults as pydantic gives them; properties' (a factory's) is a new dict per event.
_DEFAULTS: Final = {
    name: field.default
    for name, field in UsageEvent.model_fields.items()
    if field.default_factory is None
}
_set: Final = object.__setattr__


def _construct(given: dict[str, Any]) -> UsageEvent:
    """What ``UsageEvent.model_construct(**given)`` builds, at a third of its 5 µs.

    ``given`` holds valid values; the other fields take their defaults. The test compares
    the result with model_construct's, should pydantic's internals change.
    """
    values = _DEFAULTS | given
    if "properties" not in given:
        values["properties"] = {}
    event = UsageEvent.__new__(UsageEvent)
    _set(event, "__dict__", values)
    _set(event, "__pydantic_fields_set__", set(given))
    _set(event, "__pydantic_extra__", None)
    _set(event, "__pydantic_private__", None)
    return event
