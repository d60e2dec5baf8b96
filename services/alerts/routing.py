"""Who hears about an alert, and at which address on each channel."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from services.alerts.channels import Channel
from shared.alerting.schema import Recipient, Routing
from shared.config import Settings
from shared.contracts.alerts import AlertEvent
from shared.contracts.events import Owner


def _recipient(owner: Owner | None) -> Recipient | None:
    if owner is None or not (owner.email or owner.slack_id):
        return None
    return Recipient(email=owner.email, slack=owner.slack_id, name=owner.name)


def team(routing: Routing, settings: Settings) -> Recipient:
    """The fallback for accounts without an owner; settings override the file."""
    return Recipient(
        email=settings.fallback_email or routing.team.email,
        slack=settings.slack_fallback_channel or routing.team.slack,
        name="team",
    )


def role(alert: AlertEvent, name: str, routing: Routing) -> Recipient | None:
    if name == "sales_manager":
        own = _recipient(alert.sales_owner)
        if own is not None:
            return own
    return routing.people.get(name)


def recipients(alert: AlertEvent, routing: Routing, settings: Settings) -> list[Recipient]:
    """The owner CSM (else the team), plus the roles the account's tier adds."""
    found = [_recipient(alert.owner) or team(routing, settings)]
    for name in routing.tiers.get(alert.tier or "", []):
        r = role(alert, name, routing)
        if r is not None:
            found.append(r)
    return found


def escalation_recipients(alert: AlertEvent, routing: Routing) -> list[Recipient]:
    return [r for name in routing.escalate_to if (r := role(alert, name, routing)) is not None]


def addresses(channels: Sequence[Channel], people: Iterable[Recipient]) -> list[tuple[str, str]]:
    """(channel, destination) pairs, each once; a broadcast channel gets one."""
    people = list(people)
    out: list[tuple[str, str]] = []
    for channel in channels:
        for person in people[:1] if channel.broadcast else people:
            destination = channel.address(person)
            if destination and (channel.name, destination) not in out:
                out.append((channel.name, destination))
    return out
