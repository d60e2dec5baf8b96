"""The words of a risk case: danger levels, cause codes, outcomes, the review cadence
and the task kinds. Codes are stored; their labels are translated where shown."""

from __future__ import annotations

from datetime import timedelta

from shared.config import Settings
from shared.i18n import N_

# Scoring's danger levels, worst first (services/scoring/danger.py: LEVELS; DG-05…DG-07).
LEVELS = ("high", "normal", "mild")
LEVEL_LABELS = {
    "high": N_("High danger"),
    "normal": N_("Normal danger"),
    "mild": N_("Mild danger"),
}
# An alert's severity as a danger level: the default alerting file maps high → critical,
# normal → warning, mild → info; a case opened from an alert reads it back so.
SEVERITY_LEVEL = {"critical": "high", "warning": "normal", "info": "mild"}

# Why a customer is in danger. The first seven are the codes scoring's danger assessment
# gives (services/scoring/danger.py; tests/unit/test_cases.py checks they stay the same),
# so a case opened from an alert carries the account's measured causes; the rest are
# what people find out in the review (DG-11: "pool everyone's knowledge").
CAUSES = {
    "wrong_fit": N_("Sold outside the ideal customer profile"),  # DG-05 (1), DG-16
    "unclear_value": N_("Value unclear: busy but shallow use"),  # DG-05 (2), DG-15
    "decision_maker_change": N_("The decision maker changed"),  # DG-05 (3), DG-09
    "slow_go_live": N_("Go-live too slow"),  # DG-06 (1)
    "long_unresolved_tickets": N_("Problems unresolved for long"),  # DG-06 (2)
    "champion_change": N_("The champion changed"),  # DG-07 (1)
    "unmet_requests": N_("New needs not yet met"),  # DG-07 (2)
    "avoids_contact": N_("The decision maker avoids contact"),  # DG-04
    "product_problems": N_("Product problems"),  # DG-03, DG-06
    "competitor": N_("A competitor"),  # DG-05 (3): a new decision maker may favour one
    "budget": N_("Budget"),
    "other": N_("Other"),
}

# How a case ends (issue 16); DG-08: only acquisition or bankruptcy is unavoidable churn,
# which the lesson says.
OUTCOMES = {
    "saved": N_("Customer saved"),
    "churned": N_("Customer churned"),
    "downgraded": N_("Customer downgraded"),
}
STATES = {"open": N_("Open"), "closed": N_("Closed")}

# Task kinds: a step of a case's action plan (DG-13), an NPS detractor's follow-up (SV-04).
CASE_ACTION = "case_action"
NPS_FOLLOWUP = "nps_followup"
TASK_KINDS = {CASE_ACTION: N_("Case action"), NPS_FOLLOWUP: N_("NPS follow-up")}

# The default alerting file's detractor rule (NPS 0–6), whose firing opens a follow-up.
NPS_DETRACTOR_RULE = "nps_detractor"

TITLE_CHARS = 500  # a task's title or a case's summary: a line, not a document
TEXT_CHARS = 10_000  # review notes and lessons


def review_every(settings: Settings, level: str) -> timedelta:
    """How often a case at danger ``level`` is reviewed (DG-14: again and again until the
    danger is lifted). Settings ``case_review_days_*``; see shared/config.py for why."""
    days = {
        "high": settings.case_review_days_high,
        "normal": settings.case_review_days_normal,
        "mild": settings.case_review_days_mild,
    }
    return timedelta(days=days.get(level, settings.case_review_days_mild))
