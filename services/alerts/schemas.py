"""What the alerts API answers (its ``response_model``s). Times are ISO 8601 text with
their zone, as the routes write them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class AlertSummary(BaseModel):
    """An alert as the list and every action answer it."""

    alert_id: str
    account_id: str
    rule: str
    severity: str = Field(description="critical, warning or info")
    status: str = Field(description="firing, acknowledged or resolved")
    title: str
    owner_email: str | None = Field(
        description="its account's owner now (alerts follow the account), else the one it fired for"
    )
    fired_at: str
    stored_at: str
    acknowledged_at: str | None
    acknowledged_by: str | None
    resolved_at: str | None
    snoozed_until: str | None
    snooze_reason: str | None
    muted: bool
    not_useful: bool
    escalated_at: str | None
    family: str | None = Field(
        None, description="The account problem the alert is about (health, support, …)"
    )
    symptoms: list[str] = Field(
        default_factory=list,
        description="The rules firing in it, the lead (``rule``) first; later symptoms "
        "attach to the open alert instead of opening another",
    )


class Page(BaseModel):
    """What a list leaves out: it is never cut short silently."""

    total: int = Field(description="How many match, whatever the limit")
    limit: int
    offset: int
    truncated: bool = Field(description="Whether more match than this answer lists")


class AlertList(Page):
    alerts: list[AlertSummary]


class Activity(BaseModel):
    at: str
    actor: str | None
    action: str
    text: str | None


class Delivery(BaseModel):
    delivery_id: int
    alert_id: str
    notification: str = Field(description="fire, reminder, escalation, resolve, …")
    channel: str
    destination: str
    status: str = Field(
        description="pending, delivered, dead, or skipped (a Slack notice acted on first)"
    )
    attempts: int
    next_attempt_at: str
    delivered_at: str | None
    last_error: str | None


class AlertDetail(AlertSummary):
    alert: dict[str, Any] = Field(description="The latest alert event (shared.contracts.alerts)")
    activity: list[Activity]
    deliveries: list[Delivery]


class DeliveryList(Page):
    deliveries: list[Delivery]


class RetryAnswer(BaseModel):
    delivery_id: int
    status: str


class RuleQuality(BaseModel):
    rule: str
    fired: int
    acknowledged: int
    median_minutes_to_acknowledge: float | None
    not_useful: int
    escalated: int
    accounts: int = Field(description="Accounts the rule fired for")
    accounts_churned_since: int = Field(description="Of those, churned after it first fired")


class RuleQualityList(BaseModel):
    rules: list[RuleQuality]
