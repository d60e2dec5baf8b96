"""Who hears about an alert, and at which address on each channel."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from services.alerts.channels import Channel
from services.alerts.channels.base import WEBHOOK_DESTINATION
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


def unowned_reach(channels: Sequence[Channel], routing: Routing, settings: Settings) -> list[str]:
    """The channels an alert of an account without an owner reaches (the team fallback,
    ``team``); none: such alerts reach nobody."""
    return sorted({name for name, _ in addresses(channels, [team(routing, settings)])})


def role(alert: AlertEvent, name: str, routing: Routing) -> Recipient | None:
    return person(name, alert.sales_owner, routing)


def person(name: str, sales_owner: Owner | None, routing: Routing) -> Recipient | None:
    """The person a role names: the account's sales owner for ``sales_manager`` when
    the CRM sent one, else the alerting file's."""
    if name == "sales_manager":
        own = _recipient(sales_owner)
        if own is not None:
            return own
    return routing.people.get(name)


def recipients(alert: AlertEvent, routing: Routing, settings: Settings) -> list[Recipient]:
    """The owner CSM (else the team), plus the roles the account's tier adds."""
    return account_people(alert.owner, alert.tier, alert.sales_owner, routing, settings)


def account_people(
    owner: Owner | None,
    tier: str | None,
    sales_owner: Owner | None,
    routing: Routing,
    settings: Settings,
) -> list[Recipient]:
    """Who hears about an account: its owner CSM (else the team), plus the roles its tier
    adds (strategic: the lead and the sales owner, CAD-01/DG-10). Alerts and risk cases."""
    found = [_recipient(owner) or team(routing, settings)]
    for name in routing.tiers.get(tier or "", []):
        r = person(name, sales_owner, routing)
        if r is not None:
            found.append(r)
    return found


def escalation_recipients(
    alert: AlertEvent, routing: Routing, settings: Settings
) -> list[Recipient]:
    return escalation_people(alert.sales_owner, routing, settings)


def escalation_people(
    sales_owner: Owner | None, routing: Routing, settings: Settings
) -> list[Recipient]:
    """Who hears when nobody acted in time: ``routing.escalate_to`` (the lead); while
    none of them has an address (the shipped file leaves the lead's to fill in), the
    team, as an account without an owner: escalations had reached nobody."""
    found = [
        r for name in routing.escalate_to if (r := person(name, sales_owner, routing)) is not None
    ]
    if any(r.email or r.slack for r in found):
        return found
    return [team(routing, settings)]


def addresses(channels: Sequence[Channel], people: Iterable[Recipient]) -> list[tuple[str, str]]:
    """(channel, destination) pairs, each once; a broadcast channel gets one."""
    people = list(people)
    out: list[tuple[str, str]] = []
    for channel in channels:
        if channel.one_post:  # Slack's incoming webhook: one channel
            if people:  # nobody to tell is told nowhere (and counted unroutable)
                out.append((channel.name, _mentioned(channel, people)))
            continue
        for person in people[:1] if channel.broadcast else people:
            destination = channel.address(person)
            if destination and (channel.name, destination) not in out:
                out.append((channel.name, destination))
    return out


def languages_at(
    channels: Sequence[Channel], people: Iterable[Recipient], chosen: Mapping[str, str]
) -> dict[tuple[str, str], str]:
    """(channel, destination) → the language of the person it reaches, where one person
    (or people of one language) read it: the one the routing names for them, else the one
    they chose (``chosen``, by email). A channel many read (Slack's incoming webhook, the
    webhook) is left to the team's language."""
    spoken: dict[tuple[str, str], set[str | None]] = {}
    for channel in channels:
        if channel.one_post or channel.broadcast:
            continue
        for person in people:
            destination = channel.address(person)
            if destination:
                language = person.language or chosen.get(person.email or "")
                spoken.setdefault((channel.name, destination), set()).add(language)
    return {
        where: language
        for where, languages in spoken.items()
        if len(languages) == 1 and (language := next(iter(languages))) is not None
    }


# Within the outbox's destination column (500), whole Slack ids only.
MENTIONS_CHARS = 400


def _mentioned(channel: Channel, people: list[Recipient]) -> str:
    """One post's destination: the Slack ids of ``people`` to mention, or the webhook
    alone when none has one (posted unmentioned, not left out)."""
    users: list[str] = []
    for person in people:
        user = channel.address(person)
        if user and user not in users and len(" ".join([*users, user])) <= MENTIONS_CHARS:
            users.append(user)
    return " ".join(users) or WEBHOOK_DESTINATION
