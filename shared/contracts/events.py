"""Public event contracts, version 1.

Every event has a client ``event_id`` (the idempotency key) and a timezone-aware
``occurred_at`` (event time). The server stamps ``received_at``. ``kind`` selects the
model and the Kafka topic.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, EmailStr, Field, TypeAdapter

SCHEMA_VERSION = 1

Id = Annotated[str, Field(min_length=1, max_length=200)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class EventBase(Model):
    schema_version: Literal[1] = 1
    event_id: Id
    account_id: Id
    occurred_at: AwareDatetime
    received_at: AwareDatetime | None = None


class Platform(StrEnum):
    pc = "pc"
    app = "app"
    api = "api"


class UsageEvent(EventBase):
    kind: Literal["usage"] = "usage"
    user_id: Id
    event: Annotated[str, Field(min_length=1, max_length=200)]
    module: str | None = Field(None, max_length=200)
    feature: str | None = Field(None, max_length=200)
    platform: Platform = Platform.pc
    duration_s: float | None = Field(None, ge=0)
    properties: dict[str, Any] = Field(default_factory=dict)


class TicketStatus(StrEnum):
    open = "open"
    pending = "pending"
    solved = "solved"
    closed = "closed"


class TicketPriority(StrEnum):
    low = "low"
    normal = "normal"
    high = "high"
    urgent = "urgent"


class TicketType(StrEnum):
    question = "question"
    bug = "bug"
    feature_request = "feature_request"
    other = "other"


class TicketEvent(EventBase):
    kind: Literal["ticket"] = "ticket"
    ticket_id: Id
    status: TicketStatus
    priority: TicketPriority = TicketPriority.normal
    type: TicketType = TicketType.other
    created_at: AwareDatetime
    first_reply_at: AwareDatetime | None = None
    solved_at: AwareDatetime | None = None
    requester: str | None = None
    subject: str | None = Field(None, max_length=500)


class Tier(StrEnum):
    strategic = "strategic"
    enterprise = "enterprise"
    non_focus = "non-focus"


class LifecycleStage(StrEnum):
    signed = "signed"
    implementation = "implementation"
    rollout = "rollout"
    stable = "stable"
    renewal = "renewal"
    churned = "churned"


class ContactRole(StrEnum):
    decision_maker = "decision_maker"
    champion = "champion"
    user = "user"
    other = "other"


class Contact(Model):
    name: str
    email: EmailStr | None = None
    role: ContactRole = ContactRole.other


class Owner(Model):
    email: EmailStr | None = None
    slack_id: str | None = None
    name: str | None = None


class UsageQuota(Model):
    """A contracted allowance: at most ``limit`` uses of ``name`` (an event, module or
    platform, as in usage events) over a rolling 28 days, the window per-name counts
    are kept for. Nearly used up, it is an add-on conversation (EX-02)."""

    dimension: Literal["event", "module", "platform"] = "event"
    name: str = Field(min_length=1, max_length=200)
    limit: int = Field(gt=0)


class AccountFacts(EventBase):
    """Account facts from the CRM. Fields left out keep their stored value (merge upsert)."""

    kind: Literal["account"] = "account"
    name: str | None = None
    seats_purchased: int | None = Field(None, ge=0)
    plan: str | None = None
    mrr: float | None = Field(None, ge=0)
    arr: float | None = Field(None, ge=0)
    tier: Tier | None = None
    industry: str | None = None
    region: str | None = None
    owner: Owner | None = None
    # The account's sales manager (CAD-08), told about a strategic account's alerts.
    sales_owner: Owner | None = None
    contract_start: date | None = None
    contract_end: date | None = None
    go_live: date | None = None
    lifecycle_stage: LifecycleStage | None = None
    contacts: list[Contact] | None = None
    # False: sold outside the ideal customer profile (a high-danger cause, DG-05).
    icp_fit: bool | None = None
    # Contracted usage allowances (API calls, reports, …); replaced as a whole.
    usage_quotas: list[UsageQuota] | None = None


class TouchpointKind(StrEnum):
    visit = "visit"
    call = "call"
    meeting = "meeting"
    email = "email"
    qbr = "qbr"


class Touchpoint(EventBase):
    kind: Literal["touchpoint"] = "touchpoint"
    touchpoint_kind: TouchpointKind
    csm_email: EmailStr | None = None
    contact_name: str | None = None
    contact_role: ContactRole | None = None
    notes: str | None = Field(None, max_length=5000)


class NpsResponse(EventBase):
    kind: Literal["nps"] = "nps"
    user_id: Id | None = None
    score: int = Field(ge=0, le=10)
    comment: str | None = Field(None, max_length=5000)


class PaymentStatus(StrEnum):
    succeeded = "succeeded"
    failed = "failed"


class PaymentEvent(EventBase):
    kind: Literal["payment"] = "payment"
    status: PaymentStatus
    amount: float | None = Field(None, ge=0)
    currency: str | None = Field(None, min_length=3, max_length=3)
    reason: str | None = None


Event = Annotated[
    UsageEvent | TicketEvent | AccountFacts | Touchpoint | NpsResponse | PaymentEvent,
    Field(discriminator="kind"),
]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)

KINDS: tuple[str, ...] = ("usage", "ticket", "account", "touchpoint", "nps", "payment")
