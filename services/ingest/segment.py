"""Segment HTTP Tracking API → healthwatch events.

``track`` / ``page`` / ``screen`` become usage events; ``group`` ties a user to an account
(and carries account traits); ``identify`` with ``context.groupId`` ties one too. The
account of a call is ``context.groupId``, else ``properties.groupId`` / ``accountId``,
else the account a previous ``group`` call tied the user to.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError

from services.ingest.validation import Rejection
from shared.contracts.events import Id, Time

_TIME = TypeAdapter(Time)
_ID = TypeAdapter(Id)
SCORED_TYPES = {"track", "page", "screen"}
LINK_TYPES = {"group", "identify"}
_MOBILE_OS = {"ios", "android", "ipados"}
# A group call may set descriptive traits only. The write key is shipped in browsers and
# apps, so anyone can send group calls: owner and sales owner route alerts, tier decides
# who else is told, seats and mrr/arr move scores and revenue at risk. Those are CRM
# facts, sent with a crm key to /v1/accounts. The name only names an account that has
# none yet: it is the text of every notice and report about the account, and anyone
# with the write key renamed a strategic account "EVIL RENAME" (found from outside); a
# crm key renames.
_ACCOUNT_TRAITS = {
    "name": "name",
    "plan": "plan",
    "industry": "industry",
    "region": "region",
}


@dataclass
class Translated:
    events: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    links: dict[str, str] = field(default_factory=dict)
    rejected: list[Rejection] = field(default_factory=list)
    acknowledged: int = 0  # identify calls with nothing to score


# The message fields Segment's spec makes objects (optional, null allowed).
OBJECT_FIELDS = ("properties", "traits", "context")


def object_field(msg: Mapping[str, Any], key: str) -> dict[str, Any]:
    """``msg[key]`` when it is an object, else an empty one (Segment fields are optional)."""
    value = msg.get(key)
    return value if isinstance(value, dict) else {}


def _identifier(value: Any) -> str | None:
    """A Segment id as text: SDKs send strings or numbers; anything else (an object, a
    list, which may nest as deep as the parser allows) counts as absent here and is
    refused by ``_bad_ids``. Stripped, as the contract reads an id: " acct-1" was looked
    up as itself, found no named account, and renamed acct-1 (found from outside)."""
    if isinstance(value, str) and (value := value.strip()):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _type(msg: Mapping[str, Any]) -> str | None:
    """The call's type when it is text (a list or an object cannot be looked up in a set)."""
    kind = msg.get("type")
    return kind if isinstance(kind, str) else None


def _id_fields(msg: Mapping[str, Any]) -> dict[str, Any]:
    context = object_field(msg, "context")
    props = object_field(msg, "properties")
    return {
        "userId": msg.get("userId"),
        "anonymousId": msg.get("anonymousId"),
        "groupId": msg.get("groupId"),
        "context.groupId": context.get("groupId"),
        "properties.groupId": props.get("groupId"),
        "properties.accountId": props.get("accountId"),
    }


def _id_problem(value: Any) -> str | None:
    """Why ``value`` is no id our contracts take (None: it is one): an id is stored, so
    one PostgreSQL cannot hold (over 200 characters, NUL) would fail the lookup."""
    text = _identifier(value)
    if text is None:
        return "must be a string (or a number)"
    try:
        _ID.validate_python(text)
    except ValidationError as exc:
        return str(exc.errors(include_url=False)[0]["msg"])
    return None


def _bad_ids(msg: Mapping[str, Any]) -> list[dict[str, str]]:
    return [
        _err(name, problem)
        for name, value in _id_fields(msg).items()
        if value not in (None, "") and (problem := _id_problem(value)) is not None
    ]


def user_of(msg: Mapping[str, Any]) -> str | None:
    return _identifier(msg.get("userId")) or _identifier(msg.get("anonymousId"))


def explicit_account(msg: Mapping[str, Any]) -> str | None:
    ids = _id_fields(msg)
    for name in ("context.groupId", "groupId", "properties.groupId", "properties.accountId"):
        if name == "groupId" and msg.get("type") == "group":
            continue
        if (account := _identifier(ids[name])) is not None:
            return account
    return None


def users_needing_lookup(messages: list[Any]) -> set[str]:
    users = set()
    for msg in messages:
        if isinstance(msg, dict) and _type(msg) in SCORED_TYPES and not explicit_account(msg):
            user = user_of(msg)
            if user and not _bad_ids(msg):  # a message with a bad id is refused unread
                users.add(user)
    return users


class BadTime(ValueError):
    def __init__(self, fieldname: str, exc: ValidationError):
        super().__init__(exc.errors(include_url=False)[0]["msg"])
        self.field = fieldname


def _time(value: Any, fieldname: str) -> datetime:
    """A time within the contract's range, so the skew arithmetic below cannot overflow."""
    try:
        return _TIME.validate_python(value)
    except ValidationError as exc:
        raise BadTime(fieldname, exc) from exc


def event_time(msg: Mapping[str, Any], received_at: datetime, batch_sent_at: Any) -> datetime:
    """Segment's rule: ``timestamp``, else ``originalTimestamp`` corrected for the clock
    skew between ``sentAt`` and our receipt, else the receipt time. Raises BadTime."""
    if msg.get("timestamp") is not None:
        return _time(msg["timestamp"], "timestamp")
    if msg.get("originalTimestamp") is not None:
        original = _time(msg["originalTimestamp"], "originalTimestamp")
        sent_raw = msg.get("sentAt", batch_sent_at)
        if sent_raw is None:
            return original
        return received_at - (_time(sent_raw, "sentAt") - original)
    return received_at


def groups_naming(messages: list[Any]) -> set[str]:
    """The accounts the batch's ``group`` calls give a name (``translate``'s ``named``
    are those of them that have one already)."""
    return {
        str(group)
        for msg in messages
        if isinstance(msg, dict)
        and _type(msg) == "group"
        and "name" in object_field(msg, "traits")
        and (group := _identifier(msg.get("groupId"))) is not None
    }


def translate(
    messages: list[Any],
    known_links: Mapping[str, str],
    received_at: datetime,
    batch_sent_at: Any = None,
    named: Collection[str] = (),
) -> Translated:
    """The messages as our events; ``named``: accounts that have a name, which a group
    call does not change (``_ACCOUNT_TRAITS``)."""
    out = Translated()
    # Links from this batch count for the tracks that follow them in it.
    links = dict(known_links)
    for index, msg in enumerate(messages):
        if not isinstance(msg, dict):
            out.rejected.append(Rejection(index, None, [_err("(message)", "must be an object")]))
            continue
        message_id = msg.get("messageId")
        kind = _type(msg)
        errors = _bad_ids(msg)
        if not isinstance(message_id, str) or not message_id:
            errors.append(_err("messageId", "is required: it is the idempotency key"))
        if kind not in SCORED_TYPES | LINK_TYPES:
            what = repr(kind[:50]) if kind is not None else "this"
            errors.append(
                _err("type", f"{what} is not one of track, page, screen, identify, group")
            )
        try:
            occurred_at = event_time(msg, received_at, batch_sent_at)
        except BadTime as exc:
            errors.append(_err(exc.field, str(exc)))
        # An object where Segment's spec has one: a list was read as no properties at
        # all and answered 200 (found from outside).
        errors += [
            _err(name, "must be an object")
            for name in OBJECT_FIELDS
            if msg.get(name) is not None and not isinstance(msg[name], dict)
        ]
        user = user_of(msg)
        if kind == "identify" and user is None:  # Segment's own API refuses it too
            errors.append(_err("userId", "is required (or anonymousId): whom it identifies"))
        if errors:
            out.rejected.append(Rejection(index, _str(message_id), errors))
            continue
        common = {"event_id": message_id, "occurred_at": occurred_at.isoformat()}
        if kind == "group":
            group = _identifier(msg.get("groupId"))
            if group is None:
                out.rejected.append(Rejection(index, message_id, [_err("groupId", "is required")]))
                continue
            if user:
                links[user] = out.links[user] = str(group)
            traits = object_field(msg, "traits")
            # A null trait clears nothing here: browsers send what a page happens to hold,
            # and the write key is public (AccountFacts.cleared is for the CRM's nulls).
            facts = {
                _ACCOUNT_TRAITS[k]: v
                for k, v in traits.items()
                if k in _ACCOUNT_TRAITS and v is not None
            }
            if str(group) in named:
                facts.pop("name", None)
            # Facts from the public write key are dated no later than their receipt: a
            # field's newest fact wins, and one dated up to the skew (an hour) ahead
            # had beaten the CRM's facts sent meanwhile (found from outside).
            dated = min(occurred_at, received_at).isoformat()
            out.events.append(
                (
                    index,
                    {"kind": "account", "account_id": str(group), **common, **facts}
                    | {"occurred_at": dated},
                )
            )
        elif kind == "identify":
            account = explicit_account(msg)
            if user and account:
                links[user] = out.links[user] = account
            out.acknowledged += 1
        else:
            account = explicit_account(msg) or (links.get(user) if user else None)
            if not user or not account:
                out.rejected.append(Rejection(index, message_id, [_no_account(user)]))
                continue
            out.events.append(
                (
                    index,
                    {
                        "kind": "usage",
                        "account_id": account,
                        "user_id": user,
                        **common,
                        **_usage(msg),
                    },
                )
            )
    return out


def _usage(msg: Mapping[str, Any]) -> dict[str, Any]:
    props = object_field(msg, "properties")
    kind = msg["type"]
    name = msg.get("event") if kind == "track" else kind
    feature = props.get("feature") if kind == "track" else (msg.get("name") or props.get("name"))
    usage: dict[str, Any] = {
        "event": name,
        "module": props.get("module"),
        "feature": feature,
        "platform": _platform(msg, props),
        "properties": props,
    }
    if isinstance(props.get("duration"), int | float):
        usage["duration_s"] = props["duration"]
    return usage


def _platform(msg: Mapping[str, Any], props: Mapping[str, Any]) -> str:
    if props.get("platform") in ("pc", "app", "api"):
        return str(props["platform"])
    context = object_field(msg, "context")
    # Names that are no text count as absent: str() of a list nested hundreds deep
    # (the parser allows it, in a 3 KB body) raises RecursionError.
    os_name = _str(object_field(context, "os").get("name")) or ""
    library = _str(object_field(context, "library").get("name")) or ""
    if os_name.lower() in _MOBILE_OS or "ios" in library or "android" in library:
        return "app"
    return "pc"


def _no_account(user: str | None) -> dict[str, str]:
    if not user:
        return _err("userId", "is required (or anonymousId)")
    return _err(
        "context.groupId",
        f"no account for user {user!r}: set context.groupId or send a group call first",
    )


def _err(fieldname: str, message: str) -> dict[str, str]:
    return {"field": fieldname, "message": message}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None
