"""Per-event validation with field-level messages.

Batches are accepted per event: valid events are stored, invalid ones are reported
by index and field. Event ids make re-sending a whole batch harmless.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import TypeAdapter, ValidationError

from shared.contracts.events import (
    EVENT_ADAPTER,
    EVENT_TIMES,
    KINDS,
    AccountFacts,
    Event,
    Time,
    UsageEvent,
    backwards_contract,
    future_time,
    future_times,
)
from shared.web import ClientError


@dataclass
class Rejection:
    index: int
    event_id: str | None
    errors: list[dict[str, str]]
    kind: str = "unknown"  # the event's kind, when it names a known one (a metric label)

    def as_dict(self) -> dict[str, Any]:
        quoted = None if self.event_id is None else _quoted_id(self.event_id)
        return {"index": self.index, "event_id": quoted, "errors": self.errors}


@dataclass
class Checked:
    valid: list[Event] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)

    def reject(self, index: int, raw: Any, errors: list[dict[str, str]]) -> None:
        event_id = raw.get("event_id") if isinstance(raw, dict) else None
        kind = raw.get("kind") if isinstance(raw, dict) else None
        self.rejected.append(
            Rejection(
                index,
                event_id if isinstance(event_id, str) else None,
                errors,
                kind if isinstance(kind, str) and kind in KINDS else "unknown",
            )
        )


# How much of a refused event's id the answer quotes (``Rejection.as_dict``, every route
# and connector's): an id of 100,000 characters came back whole (found from outside);
# the longest an id may be is 200 (``Id``).
QUOTED_ID_CHARS = 210


def _quoted_id(event_id: str) -> str:
    """The id, or its start and "…" when it is too long to be one."""
    return event_id if len(event_id) <= QUOTED_ID_CHARS else event_id[:QUOTED_ID_CHARS] + "…"


def pydantic_errors(exc: ValidationError) -> list[dict[str, str]]:
    out = []
    for err in exc.errors(include_url=False):
        loc = [str(p) for p in err["loc"]]
        # Drop the union tag pydantic puts first on discriminated unions ("usage.…").
        if len(loc) > 1 and loc[0] in KINDS:
            loc = loc[1:]
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc = ["kind"]
        out.append({"field": ".".join(loc) or "(event)", "message": err["msg"]})
    return out


def check_events(
    items: Sequence[Any],
    *,
    now: datetime,
    max_future_skew: timedelta,
    prepare: Callable[[Any], Any] | None = None,
    kinds: Collection[str] = KINDS,
    wrong_kind: str = "",
    max_usage_age: timedelta | None = None,
) -> Checked:
    """Validate each item; ``prepare`` may fill defaults (for example a missing event_id);
    events of a kind outside ``kinds`` are refused (an endpoint for one kind, a key for
    some), told ``wrong_kind`` (default: the kinds the endpoint takes). Usage older than
    ``max_usage_age`` is refused too (``too_old``)."""
    checked = Checked()
    # (account, kind, event id) → the batch's first accepted event of it: ids are the
    # account's and the kind's
    first: dict[tuple[str, str, str], Event] = {}
    for index, raw in enumerate(items):
        if not isinstance(raw, dict):
            checked.reject(index, raw, [{"field": "(event)", "message": "must be a JSON object"}])
            continue
        prepared = prepare(raw) if prepare else raw
        if not isinstance(prepared.get("kind", ""), str):
            # Refused before pydantic, which would try to print a deeply nested tag.
            message = f"must be one of {', '.join(KINDS)}"
            checked.reject(index, raw, [{"field": "kind", "message": message}])
            continue
        if prepared.get("kind") in KINDS and prepared["kind"] not in kinds:
            # Refused as the wrong kind, not checked as that kind: a usage event sent to
            # /v1/accounts was told "user_id: Field required" (found from outside).
            message = wrong_kind or f"must be {' or '.join(kinds)} on this endpoint"
            checked.reject(index, raw, [{"field": "kind", "message": message}])
            continue
        try:
            event = EVENT_ADAPTER.validate_python(prepared)
        except ValidationError as exc:
            errors = pydantic_errors(exc)
            latest = now + max_future_skew
            errors += _future_raw_times(prepared, latest, max_future_skew, errors)
            checked.reject(index, raw, errors)
            continue
        errors = future_times(event, now + max_future_skew, max_future_skew)
        if max_usage_age is not None:
            errors += too_old(event, now, max_usage_age)
        if event.kind not in kinds:
            message = wrong_kind or f"must be {' or '.join(kinds)} on this endpoint"
            errors.append({"field": "kind", "message": message})
        if isinstance(event, AccountFacts) and (backwards := backwards_contract(event)):
            errors.append({"field": "contract_end", "message": backwards})
        if not errors:
            errors = _other_event_of_id(event, first.setdefault(_id_of(event), event))
        if errors:
            checked.reject(index, raw, errors)
            continue
        checked.valid.append(event)
    return checked


def _id_of(event: Event) -> tuple[str, str, str]:
    """An event's id as scoring deduplicates it: its account's and its kind's
    (``services/scoring/state.py: dedup_id``)."""
    return event.account_id, event.kind, event.event_id


def _other_event_of_id(event: Event, earlier: Event) -> list[dict[str, str]]:
    """An error if an earlier accepted event of the batch has ``event``'s id (in its
    account) and other values. Only one of them would be counted (an id sent again is a
    resend), yet both were answered as accepted (found from outside). The same event
    twice is a resend."""
    if earlier is event or earlier == event:
        return []
    return [
        {
            "field": "event_id",
            "message": "is also the id of an earlier event of this batch of the same kind "
            "for the same account, with other values: only one of them would be counted "
            "(an id sent again is a resend)",
        }
    ]


_TIME: TypeAdapter[datetime] = TypeAdapter(Time)


def _future_raw_times(
    raw: dict[str, Any], latest: datetime, skew: timedelta, reported: list[dict[str, str]]
) -> list[dict[str, str]]:
    """The times in the future of an event refused for other fields, said with them: a
    sender fixed those, resent, and only then heard of the time (found from outside)."""
    named = {error["field"] for error in reported}
    errors = []
    for name in EVENT_TIMES:
        value = raw.get(name)
        if name in named or not isinstance(value, str):
            continue
        try:
            moment = _TIME.validate_python(value)
        except ValidationError:
            continue
        if moment > latest:
            errors.append(future_time(name, skew))
    return errors


def too_old(event: Event, now: datetime, max_age: timedelta) -> list[dict[str, str]]:
    """An error for usage dated more than ``max_age`` before ``now``: scoring counts a
    late event on its day only that far back (HEALTHWATCH_LATE_GRACE_DAYS), so an older
    one was answered 202 and then ignored, or, for an account new to it, made an
    account whose only use lay years back (a device's reset clock: "nobody has used the
    product for 9471 days", critical)."""
    if not isinstance(event, UsageEvent) or event.occurred_at >= now - max_age:
        return []
    message = (
        f"is more than {max_age.days} days old: live usage counts that far back "
        "(HEALTHWATCH_LATE_GRACE_DAYS, at most the kept window); load older history with "
        "`healthwatch import`"
    )
    return [{"field": "occurred_at", "message": message}]


def require_list(body: Any, key: str, max_items: int) -> list[Any]:
    """``body[key]`` as a list, within the batch limit."""
    if not isinstance(body, dict) or not isinstance(body.get(key), list):
        raise ClientError(
            400,
            "bad_envelope",
            'Send a JSON object {{"{key}": [ ... ]}} with a list of events.',
            values={"key": key},
        )
    items: list[Any] = body[key]
    if len(items) > max_items:
        raise ClientError(
            413,
            "too_many_events",
            "{count} events in one request; the limit is {max_items}: split the batch.",
            values={"count": len(items), "max_items": max_items},
        )
    if not items:
        raise ClientError(
            400, "empty_batch", '"{key}" is empty: send at least one event.', values={"key": key}
        )
    return items
