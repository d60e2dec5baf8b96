"""Zendesk ticket webhooks in Zendesk's own shapes.

Two shapes are read (https://developer.zendesk.com/documentation/webhooks/):

- a trigger or automation webhook ("Notify active webhook") whose JSON body is the one
  docs/connectors.md gives, Zendesk's placeholders filled in::

    {"ticket": {"id": "{{ticket.id}}", "status": "{{ticket.status}}", ...}}

- a ticket event subscription (``"type": "zen:event-type:ticket.status_changed"``,
  ``"detail": {ticket fields}``; https://developer.zendesk.com/api-reference/webhooks/event-types/ticket-events).

The account is the ticket organization's ``external_id`` (set it to our account id in
Zendesk), or the organization's numeric id mapped in the connectors file
(``[zendesk.organizations]``): event payloads carry only that id. Like our own ticket
webhook, the update time identifies an update, so a retried delivery counts once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.ingest.connectors.common import Translated, text, ticket_event, unknown_payload
from services.ingest.connectors.mapping import ConnectorMap

# Zendesk's statuses (placeholders give them capitalised, events in capitals) -> ours:
# "new" is an open ticket nobody has answered, "hold" waits on a third party.
STATUSES = {
    "new": "open",
    "open": "open",
    "pending": "pending",
    "hold": "pending",
    "on-hold": "pending",
    "on hold": "pending",
    "solved": "solved",
    "closed": "closed",
}
# The statuses an agent has answered by (``common.ticket_event``'s ``answered``):
# waiting on the customer, solved or closed; not "hold" (waiting on a third party).
ANSWERED = {"pending", "solved", "closed"}
# Incidents and problems are faults reported: bugs in our terms; tasks are other work.
TYPES = {"question": "question", "incident": "bug", "problem": "bug", "task": "other"}
PRIORITIES = ("low", "normal", "high", "urgent")
EVENT_PREFIX = "zen:event-type:ticket."


def translate(body: Any, mapping: ConnectorMap) -> Translated:
    """One delivery (one ticket) as our ticket event, or 400 for an unknown shape."""
    out = Translated()
    if isinstance(body, dict) and isinstance(body.get("ticket"), dict):
        ticket = body["ticket"]
        account = text(ticket.get("organization_external_id")) or mapping.zendesk_organizations.get(
            text(ticket.get("organization_id")), ""
        )
        _ticket(out, ticket, account, text(ticket.get("requester")))
    elif (
        isinstance(body, dict)
        and text(body.get("type")).startswith(EVENT_PREFIX)
        and isinstance(body.get("detail"), dict)
    ):
        detail = body["detail"]
        account = mapping.zendesk_organizations.get(text(detail.get("organization_id")), "")
        requester = text(detail.get("requester_id"))
        _ticket(out, detail, account, f"zendesk-user:{requester}" if requester else "")
    else:
        raise unknown_payload(
            "Zendesk", 'a trigger body {"ticket": {...}} or a zen:event-type:ticket.* event'
        )
    return out


def _ticket(out: Translated, ticket: Mapping[str, Any], account: str, requester: str) -> None:
    ticket_id, updated_at = text(ticket.get("id")), text(ticket.get("updated_at"))
    raw_status = text(ticket.get("status")).lower()
    status = STATUSES.get(raw_status)
    if not account:
        organization = text(ticket.get("organization_id")) or "none"
        out.refuse(
            0,
            "organization",
            f"the ticket's organization ({organization}) has no external_id and is not in "
            "the connectors file's [zendesk.organizations]: set one of them to the account id",
        )
        return
    if status is None:
        out.refuse(0, "status", f"must be one of {', '.join(STATUSES)}")
        return
    if not updated_at:
        out.refuse(0, "updated_at", "is required: the update time identifies the update")
        return
    priority = text(ticket.get("priority")).lower()
    ours = {
        "id": ticket_id,
        "status": status,
        "priority": priority if priority in PRIORITIES else "normal",
        "type": TYPES.get(text(ticket.get("type")).lower(), "other"),
        "created_at": text(ticket.get("created_at")),
        "requester": requester,
        "subject": text(ticket.get("subject")),
    }
    answered = raw_status in ANSWERED
    out.events.append((0, ticket_event("zendesk", ours, account, updated_at, answered=answered)))
