"""A notice: one message to people about one or more alerts, as the alerts service
stores it in its outbox (``deliveries.payload``) and the webhook channel sends it.

Its key is stable (the alert and which notification of it): receivers fold the rare
duplicate a crash between sending and recording causes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

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
    # Risk cases and tasks (issue 16): ``Notice.case`` says which; ``alerts`` is empty.
    case_opened = "case_opened"  # a case was opened for an account
    review_due = "review_due"  # a case's review is due (its cadence by danger level)
    review_overdue = "review_overdue"  # a review is past due: the lead hears
    task_due = "task_due"  # a task is due: its owner hears
    task_overdue = "task_overdue"  # a task is past due: the lead hears
    case_closed = "case_closed"  # a case was closed with an outcome
    # Accounts became someone's (a lead's reassignment, the CRM's new owner):
    # ``Notice.handover`` lists them; ``alerts`` is empty.
    handover = "handover"


class CaseNote(BaseModel):
    """What a case or task notice is about, as the channels render it."""

    model_config = ConfigDict(extra="forbid")

    case_id: int | None = None
    task_id: int | None = None
    account_id: str
    account_name: str | None = None
    danger_level: str | None = None
    causes: list[str] = Field(default_factory=list)  # cause codes
    # The causes in words (English; notices show them in the reader's language): codes
    # had been shown as they are, "原因 competitor, unclear_value" (found from outside).
    cause_labels: list[str] = Field(default_factory=list)
    title: str  # the case's summary, or the task's title
    due: datetime | None = None  # the task's due date, or the review's
    owner_email: str | None = None
    outcome: str | None = None
    lesson: str | None = None

    @property
    def ref(self) -> str:
        """Its key in the outbox (``deliveries.alert_id``): ``task:7`` or ``case:3``."""
        return f"task:{self.task_id}" if self.task_id is not None else f"case:{self.case_id}"


class HandedAccount(BaseModel):
    """One account a handover notice lists, as it was when the notice was put."""

    model_config = ConfigDict(extra="forbid")

    account_id: str
    account_name: str | None = None
    previous_owner: str | None = None  # who had it (an email), if anyone
    score: int | None = None
    band: str | None = None
    open_alerts: int = 0
    case_danger: str | None = None  # the danger of its open risk case, if one is open


class HandoverNote(BaseModel):
    """Accounts that became ``owner_email``'s: the new owner hears which, and how they
    stand, in one notice (a lead moving 40 accounts sends one message, not 40)."""

    model_config = ConfigDict(extra="forbid")

    owner_email: str
    accounts: list[HandedAccount]  # the first ``HANDOVER_LISTED``, worst first
    total: int  # every account handed over in this notice

    @property
    def ref(self) -> str:
        """Its key in the outbox (``deliveries.alert_id``, 300 characters)."""
        return f"handover:{self.owner_email}"[:300]


# A handover notice lists this many accounts and counts the rest: a whole portfolio
# moved at once stays one readable message (and one stored payload of a few KB).
HANDOVER_LISTED = 50


@dataclass(frozen=True)
class Notice:
    kind: NoticeKind
    alerts: list[AlertEvent]
    key: str
    case: CaseNote | None = None
    handover: HandoverNote | None = None
    # A group's notices' own kinds, one per alert (an escalation or a reminder among
    # them says so); empty: each alert's is ``kind``. Made when sending, never stored.
    kinds: tuple[NoticeKind, ...] = ()
    # A group's notices' own keys, in order; empty: ``key`` alone. Made when sending,
    # never stored: a channel marks its message with them (``SlackChannel.posted``).
    parts: tuple[str, ...] = ()
    # The language of the one person this copy goes to, as they chose it; None: the
    # team's (``HEALTHWATCH_LANGUAGE``), as for a channel several people read.
    language: str | None = None

    def __post_init__(self) -> None:
        # Stored payloads and callers give the kind as its string value.
        object.__setattr__(self, "kind", NoticeKind(self.kind))

    @property
    def keys(self) -> tuple[str, ...]:
        """The keys of the notices this one says (a group's, or its own)."""
        return self.parts or (self.key,)

    @property
    def about_work(self) -> bool:
        """A case, task or handover notice: about people's work, not alerts (``alerts``
        is empty); it goes alone, never in a group of alerts."""
        return self.case is not None or self.handover is not None

    @property
    def first(self) -> AlertEvent:
        return self.alerts[0]

    def each(self) -> list[tuple[AlertEvent, NoticeKind]]:
        """Each alert with the kind of notice it comes in."""
        kinds = self.kinds or (self.kind,) * len(self.alerts)
        return list(zip(self.alerts, kinds, strict=True))

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "key": self.key,
            "alerts": [a.model_dump(mode="json") for a in self.alerts],
            **({"case": self.case.model_dump(mode="json")} if self.case else {}),
            **({"handover": self.handover.model_dump(mode="json")} if self.handover else {}),
            **({"language": self.language} if self.language else {}),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Notice:
        alerts = [AlertEvent.model_validate(a) for a in data["alerts"]]
        case = CaseNote.model_validate(data["case"]) if data.get("case") else None
        handed = data.get("handover")
        handover = HandoverNote.model_validate(handed) if handed else None
        return cls(
            NoticeKind(data["kind"]),
            alerts,
            data["key"],
            case,
            handover,
            language=data.get("language"),
        )
