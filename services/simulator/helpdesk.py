"""The simulator's live tickets as Zendesk delivers them (docs/connectors.md): the
trigger body with Zendesk's placeholders filled in, signed as Zendesk signs it, so the
demo shows the Zendesk connector at work. Pure: no service is imported."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime
from typing import Any

import orjson

ZENDESK_PATH = "/v1/connectors/zendesk/webhook"


def zendesk_delivery(
    ticket: dict[str, Any], secret: str, now: datetime
) -> tuple[bytes, dict[str, str]]:
    """A simulated ticket event (our shape) as Zendesk's signed body and headers; the
    account is the organization's external_id, as docs/connectors.md sets it up."""
    body = {
        "ticket": {
            "id": ticket["ticket_id"],
            "status": str(ticket["status"]).capitalize(),
            "priority": str(ticket["priority"]).capitalize(),
            "type": "Question",
            "created_at": ticket["created_at"],
            "updated_at": ticket["occurred_at"],
            "organization_external_id": ticket["account_id"],
        }
    }
    raw = orjson.dumps(body)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    digest = hmac.new(secret.encode(), stamp.encode() + raw, hashlib.sha256).digest()
    headers = {
        "Content-Type": "application/json",
        "X-Zendesk-Webhook-Signature-Timestamp": stamp,
        "X-Zendesk-Webhook-Signature": base64.b64encode(digest).decode(),
    }
    return raw, headers
