"""HubSpot company property-change webhooks as account facts.

HubSpot posts a JSON list of events (https://developers.hubspot.com/docs/api/webhooks):
``{"subscriptionType": "company.propertyChange", "objectId": 1234, "propertyName":
"annualrevenue", "propertyValue": "120000", "occurredAt": 1764756000000, "portalId": 62515,
"eventId": …}`` (the generic ``object.propertyChange`` with ``"objectTypeId": "0-2"``
too). Each change of a property that ``[hubspot.properties]`` maps becomes one account
fact of the company ``account_prefix + objectId``; the rest (other objects, creations,
unmapped properties, a funnel stage that is no account stage) is acknowledged and left.
"""

from __future__ import annotations

from typing import Any

from services.ingest.connectors.common import Translated, text, unknown_payload
from services.ingest.connectors.mapping import ConnectorMap, mapped_facts
from services.ingest.validation import Rejection
from shared.clock import from_epoch
from shared.contracts.events import LifecycleStage, Tier

COMPANY_TYPE_ID = "0-2"  # HubSpot's object type id of companies
# Values HubSpot holds that are no account fact of ours (a lead's funnel stage): left.
CHOICES = {"lifecycle_stage": {s.value for s in LifecycleStage}, "tier": {t.value for t in Tier}}


def _company_change(event: dict[str, Any]) -> bool:
    kind = text(event.get("subscriptionType"))
    return kind == "company.propertyChange" or (
        kind == "object.propertyChange" and text(event.get("objectTypeId")) == COMPANY_TYPE_ID
    )


def translate(body: Any, mapping: ConnectorMap) -> Translated:
    """The deliveries' company property changes as raw account facts."""
    if not isinstance(body, list):
        raise unknown_payload("HubSpot", "a JSON list of webhook events")
    out = Translated()
    for index, event in enumerate(body):
        if not isinstance(event, dict):
            out.refuse(index, "(event)", "must be a JSON object")
            continue
        if not _company_change(event):
            out.ignored += 1
            continue
        prop = text(event.get("propertyName"))
        target = mapping.hubspot_properties.get(prop)
        if target is None or target == "account_id":
            out.ignored += 1
            continue
        facts, errors = mapped_facts(mapping, [(prop, target, text(event.get("propertyValue")))])
        if errors:
            out.rejected.append(Rejection(index, None, [e.as_dict() for e in errors]))
            continue
        if not facts or (target in CHOICES and facts[target] not in CHOICES[target]):
            out.ignored += 1  # cleared, or a value that is no fact of ours
            continue
        raw = _fact(event, mapping, prop, facts)
        if raw is None:
            out.refuse(index, "occurredAt", "must be the change's time in epoch milliseconds")
            continue
        out.events.append((index, raw))
    return out


def _fact(
    event: dict[str, Any], mapping: ConnectorMap, prop: str, facts: dict[str, Any]
) -> dict[str, Any] | None:
    company, at = text(event.get("objectId")), text(event.get("occurredAt"))
    occurred = (
        from_epoch(int(at) / 1000) if at.isascii() and at.isdigit() and len(at) <= 15 else None
    )
    if occurred is None:
        return None
    return {
        "kind": "account",
        # A retried delivery carries the same change: the same id, counted once.
        "event_id": f"hubspot:{text(event.get('portalId'))}:{company}:{prop}:{at}",
        "account_id": f"{mapping.hubspot_prefix}{company}",
        "occurred_at": occurred.isoformat(),
        **facts,
    }
