"""Freshdesk ticket webhooks: the "Trigger webhook" action of an automation rule.

Freshdesk's simple content sends ``{"freshdesk_webhook": {"ticket_id": …,
"ticket_status": …}}`` with the placeholders chosen; the advanced (JSON) content may
send the same keys at the top level (docs/connectors.md has the body to paste).
https://support.freshdesk.com/support/solutions/articles/132589-using-webhooks-in-automation-rules

The account is ``account_id`` when the body sends one, else the company's id or name
mapped in the connectors file (``[freshdesk.companies]``). Freshdesk signs nothing: the
route checks a shared secret (``signing.check_shared_secret``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.ingest.connectors.common import Translated, text, ticket_event, unknown_payload
from services.ingest.connectors.mapping import ConnectorMap

STATUSES = {
    "open": "open",
    "pending": "pending",
    "waiting on customer": "pending",
    "waiting on third party": "pending",
    "resolved": "solved",
    "closed": "closed",
}
# The statuses an agent has answered by (``common.ticket_event``'s ``answered``): not
# "waiting on third party".
ANSWERED = {"pending", "waiting on customer", "resolved", "closed"}
# Freshdesk's priorities; its "medium" is our "normal".
PRIORITIES = {"low": "low", "medium": "normal", "high": "high", "urgent": "urgent"}
TYPES = {
    "question": "question",
    "incident": "bug",
    "problem": "bug",
    "feature request": "feature_request",
}


def translate(body: Any, mapping: ConnectorMap, now: datetime) -> Translated:
    """One delivery (one ticket) as our ticket event, or 400 for an unknown shape."""
    if isinstance(body, dict) and isinstance(body.get("freshdesk_webhook"), dict):
        body = body["freshdesk_webhook"]
    if not isinstance(body, dict) or not text(body.get("ticket_id")):
        raise unknown_payload(
            "Freshdesk", '{"freshdesk_webhook": {"ticket_id": …, "ticket_status": …}}'
        )
    out = Translated()
    account = text(body.get("account_id")) or _company_account(body, mapping)
    raw_status = text(body.get("ticket_status")).lower()
    status = STATUSES.get(raw_status)
    if not account:
        out.refuse(
            0,
            "ticket_company_name",
            f"the company ({text(body.get('ticket_company_name')) or 'none'}) is not in the "
            "connectors file's [freshdesk.companies], and the body sends no account_id",
        )
        return out
    if status is None:
        out.refuse(0, "ticket_status", f"must be one of {', '.join(STATUSES)}")
        return out
    # Without an update time the delivery stands for an update as it arrives: a retried
    # delivery then counts again (the ticket's state is the same either way).
    updated_at = text(body.get("ticket_updated_at")) or now.isoformat()
    ours = {
        "id": text(body.get("ticket_id")),
        "status": status,
        "priority": PRIORITIES.get(text(body.get("ticket_priority")).lower(), "normal"),
        "type": TYPES.get(text(body.get("ticket_type")).lower(), "other"),
        "created_at": text(body.get("ticket_created_at")),
        "requester": text(body.get("ticket_requester_email")),
        "subject": text(body.get("ticket_subject")),
    }
    answered = raw_status in ANSWERED
    out.events.append((0, ticket_event("freshdesk", ours, account, updated_at, answered=answered)))
    return out


def _company_account(body: dict[str, Any], mapping: ConnectorMap) -> str:
    for key in ("ticket_company_id", "ticket_company_name"):
        found = mapping.freshdesk_companies.get(text(body.get(key)))
        if found:
            return found
    return ""
