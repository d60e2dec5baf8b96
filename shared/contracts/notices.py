"""A notice: one message to people about one or more alerts, as the alerts service
stores it in its outbox (``deliveries.payload``) and the webhook channel sends it.

Its key is stable (the alert and which notification of it): receivers fold the rare
duplicate a crash between sending and recording causes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from shared.contracts.alerts import AlertEvent


class NoticeKind(StrEnum):
    """What a notice tells. The values are stored in the outbox and sent to webhooks."""

    fire = "fire"  # an alert started firing (or was released from inhibition)
    update = "update"  # a firing alert changed (a new revision from scoring)
    repeat = "repeat"  # a reminder: still firing, nobody acknowledged (or a snooze ended)
    escalate = "escalate"  # unacknowledged past its severity's deadline: the lead hears
    resolve = "resolve"  # the alert ended
    digest = "digest"  # a CSM's open alerts of the day, in one email
    group = "group"  # several notices to one Slack destination sent as one message


@dataclass(frozen=True)
class Notice:
    kind: NoticeKind
    alerts: list[AlertEvent]
    key: str

    def __post_init__(self) -> None:
        # Stored payloads and callers give the kind as its string value.
        object.__setattr__(self, "kind", NoticeKind(self.kind))

    @property
    def first(self) -> AlertEvent:
        return self.alerts[0]

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "key": self.key,
            "alerts": [a.model_dump(mode="json") for a in self.alerts],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Notice:
        alerts = [AlertEvent.model_validate(a) for a in data["alerts"]]
        return cls(NoticeKind(data["kind"]), alerts, data["key"])
