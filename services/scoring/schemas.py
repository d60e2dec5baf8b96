"""What the health and portfolio read API answers (its ``response_model``s). Times and
days are ISO 8601 text, as the routes write them; nested rows stay open objects (their
fields follow the health model in force), and no answer drops a field it carries."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# A score or a measure: an integer stays one in the answer (no 68 -> 68.0).
Number = int | float


class Answer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class AccountHealth(Answer):
    account_id: str
    name: str | None
    tier: str | None
    as_of: str
    score: Number | None
    band: str | None = Field(description="green, yellow or red")
    depth_level: Any = Field(None, description="How deeply the product is used")
    danger_level: str | None
    danger_causes: list[Any]
    explanation: dict[str, Any] | None = Field(description="The score's components")


class HealthHistory(Answer):
    account_id: str
    from_: str = Field(alias="from")
    to: str
    days: list[dict[str, Any]] = Field(description="The score as of each day")
    band_changes: list[dict[str, Any]]


class AccountMetrics(Answer):
    account_id: str
    as_of: str
    seats_purchased: int | None
    active_users_7d: int
    active_users_30d: int
    active_days_7d: int = Field(description="Days with any use in the last 7")
    active_users_today: int = Field(description="Users active on the day asked")
    users_ever_active: int = Field(description="Users active at least once (activation)")
    activation_rate: Number | None
    usage_minutes_7d: Number | None = Field(None, description="Minutes of use in 7 days")
    events_7d: int = Field(description="Usage events in the last 7 days")
    open_tickets: int = Field(description="Tickets open on the day asked")
    depth_level: Any = Field(None, description="How deeply the product is used")
    counts: dict[str, dict[str, dict[str, int]]] = Field(
        description="dimension -> name -> {last_7d, last_28d}"
    )
    usage_quotas: list[dict[str, Any]]
    # Known by the end of the day asked (as_of): a later contact, answer or failed
    # payment does not show on an earlier day.
    last_seen_at: str | None = Field(None, description="The last use (a moment of its day)")
    last_touchpoint_at: str | None = None
    last_decision_maker_contact_at: str | None = None
    nps_latest: int | None = Field(None, description="The newest NPS answer's score")
    nps_previous: int | None = Field(None, description="The one before it")
    last_payment_failed_at: str | None = None
    decision_maker_changed_at: str | None = Field(
        None, description="When the customer's decision maker last changed (from its contacts)"
    )
    champion_changed_at: str | None = Field(
        None, description="When the customer's champion last changed (from its contacts)"
    )


class Portfolio(Answer):
    total: int = Field(description="Accounts matching the filters (before limit/offset)")
    accounts: list[dict[str, Any]] = Field(
        description="Each account's facts and score; risk_value is the ARR weighted by its "
        "risk, ARR × (100 − score) / 100 (none for a churned account), the default order"
    )


class PortfolioHealth(Answer):
    as_of: str
    total: int = Field(description="Accounts scored by that day (before limit/offset)")
    limit: int
    offset: int
    accounts: list[dict[str, Any]] = Field(
        description="Per account: the score in force that day (scored_on: its row's day), "
        "the facts then (name, tier, owner_email, seats, contract_end, lifecycle_stage) "
        "and the tickets open then"
    )


class Aggregates(Answer):
    accounts: int = Field(description="Accounts visible, churned ones included")
    churned: int = Field(description="Of them, churned (no longer customers)")
    by_band: dict[str, int] = Field(description="Customers by band (unscored: no score yet)")
    by_danger_level: dict[str, int] = Field(description="Customers by danger level (or none)")
    arr_total: Number = Field(description="ARR of the customers, whatever its currency")
    arr_at_risk: Number = Field(description="ARR of the red customers")
    arr_by_currency: dict[str, dict[str, Number]] = Field(
        description="currency -> {arr, arr_at_risk} (default: accounts naming none)"
    )
    arr_accounts_known: int = Field(description="Customers with a known ARR")
    active_users_7d: int = Field(description="Active users over 7 days, all customers")
    stably_active_share: Number | None = Field(
        description="Share of customers whose 7-day active users are a stable share of seats"
    )
    open_alerts_by_rule: dict[str, int]


class AccountDetail(Answer):
    account_id: str
    facts: dict[str, Any] = Field(description="The account facts from the CRM")
    health: dict[str, Any] | None = Field(description="The newest score, or null")
    open_alerts: list[dict[str, Any]]


class Timeline(Answer):
    account_id: str
    from_: str = Field(alias="from")
    to: str
    days: list[dict[str, Any]] = Field(
        description="Per day: usage, tickets, touchpoints, score, band changes, alerts"
    )
