"""What people do to an alert: acknowledge, snooze, resolve, comment, mark not useful.

Used by the HTTP API and by Slack's buttons; every action is recorded in
``alert_activity`` with who did it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.alerts.silences import active_silence
from shared.auth import ApiKey
from shared.i18n import Phrase, Refusal
from shared.storage.tables import alert_activity, alerts


class ActionError(Refusal):
    """The action does not fit the alert's state; the message says why."""


@dataclass(frozen=True)
class Action:
    name: str  # acknowledge / snooze / unsnooze / resolve / comment / not_useful
    actor: str
    text: str | None = None
    until: datetime | None = None


def actor_of(key: ApiKey) -> str:
    """Who an action is recorded as: the CSM's email, else the key's name (the API's,
    Slack's buttons aside, and the dashboard's, so that the two read alike)."""
    return key.csm_email or f"key:{key.name}"


async def apply_action(conn: AsyncConnection, row: Any, action: Action, now: datetime) -> None:
    """Change ``row`` (an ``alerts`` row, read in this transaction) and log the action."""
    values: dict[str, Any] = {}
    match action.name:
        case "acknowledge":
            if row.status != "firing":
                raise ActionError(
                    "The alert is {status}: only a firing alert can be acknowledged.",
                    status=Phrase(row.status),
                )
            values = {
                "status": "acknowledged",
                "acknowledged_at": now,
                "acknowledged_by": action.actor,
            }
        case "snooze" | "unsnooze" if await active_silence(conn, row.account_id, row.rule, now):
            raise ActionError(
                "This alert's rule is silenced on its account: end the silence first, or "
                "silence it for another time."
            )
        case "snooze":
            if row.status == "resolved":
                raise ActionError("The alert is resolved: there is nothing to snooze.")
            if action.until is None or action.until <= now:
                raise ActionError("Snooze needs an 'until' in the future.")
            values = {"snoozed_until": action.until, "snooze_reason": action.text}
        case "unsnooze":
            # As acknowledge and resolve answer: a 200 and an activity line for an alert
            # resolved and never snoozed said something was done (found from outside).
            if row.status == "resolved":
                raise ActionError("The alert is resolved: there is nothing to unsnooze.")
            if row.snoozed_until is None or row.snoozed_until <= now:
                raise ActionError("The alert is not snoozed.")
            values = {"snoozed_until": None, "snooze_reason": None}
        case "resolve":
            if row.status == "resolved":
                raise ActionError("The alert is resolved already.")
            values = {"status": "resolved", "resolved_at": now}
        case "not_useful":
            values = {"not_useful": True}
        case "comment":
            if not (action.text or "").strip():
                raise ActionError("A comment needs text.")
        case _:
            raise ActionError("Unknown action {action!r}.", action=action.name)
    if values:
        values["updated_at"] = now
        await conn.execute(update(alerts).where(alerts.c.alert_id == row.alert_id).values(**values))
    await conn.execute(
        alert_activity.insert().values(
            alert_id=row.alert_id,
            at=now,
            actor=action.actor,
            action=action.name,
            text=action.text if action.name != "snooze" else snooze_text(action),
        )
    )


def snooze_text(action: Action) -> str:
    """A snooze as its activity line keeps it: ``until <ISO time>: <reason>`` (the API
    shows it as it is; ``snooze_note`` reads it back for the dashboard)."""
    until = action.until.isoformat() if action.until is not None else ""
    return f"until {until}: {action.text or ''}"


def snooze_note(text: str | None) -> tuple[datetime | None, str | None]:
    """The time and the reason of a snooze's activity line (``snooze_text``); (None,
    ``text``) for a line that does not read so."""
    head, colon, reason = (text or "").partition(": ")
    if not (colon and head.startswith("until ")):
        return None, text
    try:
        until = datetime.fromisoformat(head.removeprefix("until "))
    except ValueError:
        return None, text
    return until, reason or None
