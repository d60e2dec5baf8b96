"""What the connectors share: a translation's events and refusals, and the checks that
follow it (the event contracts, as for every ingest route)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from services.ingest.validation import Checked, Rejection, check_events
from shared.web import ClientError


@dataclass
class Translated:
    """Our raw events, each with the index of the vendor item it came from, the items
    refused before validation, and the items that are nothing for us (a property no
    fact maps, a HubSpot subscription we do not read): acknowledged, not stored."""

    events: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    ignored: int = 0

    def refuse(self, index: int, fieldname: str, message: str) -> None:
        self.rejected.append(Rejection(index, None, [{"field": fieldname, "message": message}]))


def validated(out: Translated, *, now: datetime, max_future_skew: timedelta, kind: str) -> Checked:
    """The translated events through the contracts; refusals report the vendor item's
    index, in order."""
    checked = check_events(
        [raw for _, raw in out.events], now=now, max_future_skew=max_future_skew, kinds=(kind,)
    )
    for rejection in checked.rejected:
        rejection.index = out.events[rejection.index][0]
    checked.rejected = sorted([*out.rejected, *checked.rejected], key=lambda r: r.index)
    return checked


def ticket_event(
    vendor: str, ticket: dict[str, str], account: str, updated_at: str, *, answered: bool
) -> dict[str, Any]:
    """Our raw ticket event from a vendor's ticket in our terms (``ticket``: id, status,
    priority, type, created_at, requester, subject; empty text for none). The update
    time identifies the update: a resent delivery gets the same event id, counted once.

    ``answered``: the vendor's status says an agent has answered (waiting on the
    customer, solved). The helpdesks' webhooks carry no first-reply time, so the first
    reply is at the latest this update (the scoring keeps the earliest any update gave:
    ``state._upsert_tickets``). Without it every connector's ticket stayed unanswered
    and breached its SLA once the target passed, solved or not (found from outside). A
    ticket on hold or waiting on a third party is not answered."""
    ticket_id, status = ticket["id"], ticket["status"]
    raw: dict[str, Any] = {
        "kind": "ticket",
        "event_id": f"{vendor}:{ticket_id}:{status}:{updated_at}",
        "account_id": account,
        "ticket_id": f"{vendor}:{ticket_id}" if ticket_id else "",
        "status": status,
        "priority": ticket["priority"],
        "type": ticket["type"],
        "created_at": ticket["created_at"] or updated_at,
        "occurred_at": updated_at,
    }
    if status in ("solved", "closed"):
        raw["solved_at"] = updated_at
    if answered:
        raw["first_reply_at"] = updated_at
    # Bounded like their fields (Label, Subject): a long text is cut, not refused.
    if ticket["requester"]:
        raw["requester"] = ticket["requester"][:200]
    if ticket["subject"]:
        raw["subject"] = ticket["subject"][:500]
    return raw


def text(value: Any) -> str:
    """A vendor's scalar as text ('' for none); objects and lists are no scalar."""
    if value is None or isinstance(value, dict | list):
        return ""
    return str(value).strip()


def unknown_payload(vendor: str, expected: str) -> ClientError:
    return ClientError(
        400,
        "unknown_payload",
        "This is not a {vendor} payload healthwatch reads: expected {expected} (docs/connectors.md"
        " has the webhook's JSON body to configure).",
        values={"vendor": vendor, "expected": expected},
    )


def disabled(vendor: str, setting: str) -> ClientError:
    return ClientError(
        403,
        "webhook_disabled",
        "The {vendor} connector is off: the server has no HEALTHWATCH_{setting} configured.",
        values={"vendor": vendor, "setting": setting},
    )
