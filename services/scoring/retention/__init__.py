"""Renewals and retention (issue 16 point 3): the renewal pipeline per quarter with its
forecast, and gross / net revenue retention, logo retention, churn, contraction and
expansion over any period, by tier, CSM and cohort.

``periods`` (quarters, period checks), ``metrics`` and ``pipeline`` are pure;
``queries`` reads the database for the API (``api``) and the dashboard.
"""

from services.scoring.retention.metrics import DEFAULT_CURRENCY, GROUPS, UNKNOWN, retention
from services.scoring.retention.periods import (
    MAX_PERIOD_DAYS,
    Quarter,
    check_period,
    quarters_before,
)
from services.scoring.retention.pipeline import FORECASTS, ForecastRule, forecast
from services.scoring.retention.queries import renewals, retention_between, retention_by_quarter

__all__ = [
    "DEFAULT_CURRENCY",
    "FORECASTS",
    "GROUPS",
    "MAX_PERIOD_DAYS",
    "UNKNOWN",
    "ForecastRule",
    "Quarter",
    "check_period",
    "forecast",
    "quarters_before",
    "renewals",
    "retention",
    "retention_between",
    "retention_by_quarter",
]
