"""From an account's stored measures to the health model's inputs, and the rule.

The score itself comes from the declarative health model (``services/scoring/model``);
the rule is the handbook's "activity below 20% is the edge of churn" until the rules
engine arrives.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from services.scoring.model.schema import Segment

LOW_ACTIVITY_RULE = "low_activity"
# The rule needs a full week of history: a new account has not had time to activate.
MIN_HISTORY_DAYS = 7
# A payment failure counts against health for a month (EW-08).
PAYMENT_FAILURE_MEMORY = timedelta(days=30)


@dataclass(frozen=True)
class Measures:
    account_id: str
    as_of: date
    first_seen: date | None
    active_users_7d: int
    active_users_30d: int
    active_days_7d: int
    events_7d: int
    open_tickets: int
    seats_purchased: int | None
    last_touchpoint_at: datetime | None = None
    nps_latest: int | None = None
    last_payment_failed_at: datetime | None = None
    tier: str | None = None
    lifecycle_stage: str | None = None
    contract_start: date | None = None


def model_inputs(m: Measures) -> dict[str, float | None]:
    """The raw values the health model reads; None where there is no data."""
    seats = m.seats_purchased or None
    failed = m.last_payment_failed_at
    return {
        "active_user_share_7d": m.active_users_7d / seats if seats else None,
        "active_user_share_30d": m.active_users_30d / seats if seats else None,
        "active_days_7d": m.active_days_7d if m.first_seen else None,
        "open_tickets": m.open_tickets,
        "days_since_touchpoint": (
            (m.as_of - m.last_touchpoint_at.date()).days if m.last_touchpoint_at else None
        ),
        "nps_latest": m.nps_latest,
        "payment_failed_30d": (
            1.0 if failed and m.as_of - failed.date() <= PAYMENT_FAILURE_MEMORY else 0.0
        ),
    }


def segment_of(m: Measures) -> Segment:
    tenure = (m.as_of - m.contract_start).days if m.contract_start else None
    return Segment(tier=m.tier, lifecycle_stage=m.lifecycle_stage, tenure_days=tenure)


def low_activity(m: Measures, threshold: float) -> bool:
    """7-day active users below ``threshold`` of purchased seats, after a week of history."""
    if not m.seats_purchased or m.first_seen is None:
        return False
    if m.first_seen > m.as_of - timedelta(days=MIN_HISTORY_DAYS - 1):
        return False
    return m.active_users_7d / m.seats_purchased < threshold
