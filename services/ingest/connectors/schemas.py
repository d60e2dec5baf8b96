"""The vendors' webhook bodies as the OpenAPI shows them (examples in their own shapes;
the translators check them)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from services.ingest.schemas import BATCH_ANSWERS
from shared.openapi import documented_body, error_responses


class ZendeskTicket(BaseModel):
    """The trigger body's ticket (Zendesk's placeholders filled in)."""

    model_config = ConfigDict(extra="allow")
    id: str
    status: str
    priority: str | None = None
    type: str | None = None
    created_at: str | None = None
    updated_at: str
    requester: str | None = None
    subject: str | None = None
    organization_external_id: str | None = None
    organization_id: str | None = None


class ZendeskTrigger(BaseModel):
    ticket: ZendeskTicket


class ZendeskEvent(BaseModel):
    """A ticket event subscription's payload (zen:event-type:ticket.*)."""

    model_config = ConfigDict(extra="allow")
    type: str
    detail: dict[str, Any]


class FreshdeskTicket(BaseModel):
    model_config = ConfigDict(extra="allow")
    ticket_id: int | str
    ticket_status: str
    ticket_priority: str | None = None
    ticket_type: str | None = None
    ticket_subject: str | None = None
    ticket_requester_email: str | None = None
    ticket_company_name: str | None = None
    ticket_company_id: int | str | None = None
    ticket_created_at: str | None = None
    ticket_updated_at: str | None = None
    account_id: str | None = None


class FreshdeskWebhook(BaseModel):
    freshdesk_webhook: FreshdeskTicket


class HubSpotEvent(BaseModel):
    model_config = ConfigDict(extra="allow")
    subscriptionType: str
    objectId: int
    propertyName: str | None = None
    propertyValue: str | None = None
    occurredAt: int
    portalId: int | None = None
    eventId: int | None = None


ZENDESK_TRIGGER = {
    "ticket": {
        "id": "35436",
        "status": "Open",
        "priority": "High",
        "type": "Incident",
        "created_at": "2026-12-03T08:40:00Z",
        "updated_at": "2026-12-03T08:40:00Z",
        "requester": "wang.lei@acme.example",
        "subject": "Export to Excel times out",
        "organization_external_id": "acme",
    }
}
ZENDESK_EVENT = {
    "type": "zen:event-type:ticket.status_changed",
    "account_id": 12514403,
    "id": "2b24ef10-19d4-4740-93cf-8f98ec4776c0",
    "time": "2026-12-03T09:00:00Z",
    "subject": "zen:ticket:35436",
    "detail": {
        "id": "35436",
        "status": "SOLVED",
        "priority": "HIGH",
        "organization_id": "509974",
        "requester_id": "20978392",
        "created_at": "2026-12-03T08:40:00Z",
        "updated_at": "2026-12-03T09:00:00Z",
    },
    "event": {"current": "SOLVED", "previous": "OPEN"},
}
FRESHDESK = {
    "freshdesk_webhook": {
        "ticket_id": 4821,
        "ticket_status": "Open",
        "ticket_priority": "Urgent",
        "ticket_type": "Incident",
        "ticket_subject": "Export to Excel times out",
        "ticket_requester_email": "wang.lei@acme.example",
        "ticket_company_name": "Acme Trading",
        # A company field holding the account id (else [freshdesk.companies] maps the name).
        "account_id": "acme",
    }
}
HUBSPOT = [
    {
        "eventId": 100,
        "subscriptionId": 25,
        "portalId": 62515,
        "occurredAt": 1764752400000,
        "subscriptionType": "company.propertyChange",
        "attemptNumber": 0,
        "objectId": 1246965,
        "propertyName": "annualrevenue",
        "propertyValue": "86000",
        "changeSource": "CRM_UI",
    }
]

ZENDESK_BODY = documented_body(
    ZendeskTrigger | ZendeskEvent,
    # The ticket event's organization must be mapped first ([zendesk.organizations]):
    # only the trigger body works as it stands.
    {"trigger webhook": ZENDESK_TRIGGER},
    description="Signed by Zendesk: X-Zendesk-Webhook-Signature and "
    "X-Zendesk-Webhook-Signature-Timestamp.",
)
FRESHDESK_BODY = documented_body(
    FreshdeskWebhook | FreshdeskTicket,
    {"automation rule webhook": FRESHDESK},
    description="With the shared secret in X-Healthwatch-Token, or as the basic-auth password.",
)
HUBSPOT_BODY = documented_body(
    list[HubSpotEvent],
    {"company property change": HUBSPOT},
    description="Signed by HubSpot: X-HubSpot-Signature-v3 and X-HubSpot-Request-Timestamp.",
)
WEBHOOK_ANSWERS: dict[int | str, dict[str, Any]] = {
    **BATCH_ANSWERS,
    **error_responses(401, 403),
}
