"""Labels of the product-agnostic measures (services/scoring/inputs.py), for the models
`healthwatch calibrate` writes; zh-CN in shared/i18n/locale/zh_CN/measures.po."""

from __future__ import annotations

# The product-agnostic measures' labels; a per-name measure adds its event name.
GENERIC_LABELS = {
    "days_since_first_use": "days since first use",
    "active_days_28d": "active days over 28 days",
    "distinct_events_28d": "distinct events used over 28 days",
    "usage_events_7d": "events over 7 days",
    "usage_events_28d": "events over 28 days",
    "usage_events_90d": "events over 90 days",
    "usage_events_28d_per_user": "events per active user over 28 days",
    "usage_events_trend": "events trend (last 28 days ÷ the 28 before)",
    "usage_events_slope": "events slope (change per week over 4 weeks)",
    "events_7d": "uses over 7 days",
    "events_28d": "uses over 28 days",
    "events_90d": "uses over 90 days",
    "events_28d_per_user": "uses per active user over 28 days",
    "events_trend": "uses trend (last 28 days ÷ the 28 before)",
    "events_slope": "uses slope (change per week over 4 weeks)",
    "days_since_event": "days since last use",
    "value_90d": "value over 90 days",
    "value_per_event_90d": "average value over 90 days",
}


# Words for the other inputs and values an explanation or an alert's page names; apart
# from GENERIC_LABELS, whose measures are also kept per event name (``measure_names``):
# "band[login]" is no measure.
INPUT_LABELS = {
    # The inputs every account gets that the default model does not score (an
    # explanation's "what moved" named them by id: "dau rose from 0 to 2").
    "activation_rate": "users activated so far ÷ seats purchased",
    "api_calls_28d": "API calls over 28 days",
    "api_share_28d": "share of use through the API over 28 days",
    "app_share_28d": "share of use in the app over 28 days",
    "pc_share_28d": "share of use on PC over 28 days",
    "daily_login_ratio": "users active today ÷ users ever active",
    "dau": "users active today",
    "days_since_decision_maker_contact": "days since decision maker contact",
    "days_since_last_use": "days since last use",
    "nps_trend": "NPS change since the answer before",
    "sla_breaches_28d": "first replies later than the SLA over 28 days",
    "tickets_opened_28d": "tickets opened over 28 days",
    "tickets_solved_28d": "tickets solved over 28 days",
    "time_to_first_value_days": "days to first value",
    "usage_minutes_per_active_user_7d": "minutes of use per active user over 7 days",
    # What the alerting file's rules read besides the model's inputs (an alert's page
    # lists them; "band" and "days to contract end" showed as ids, found from outside).
    "score": "health score",
    "band": "health band",
    "danger_level": "danger level",
    "active_users_7d": "active users over 7 days",
    "days_since_champion_change": "days since the champion changed",
    "days_since_decision_maker_change": "days since the decision maker changed",
    "days_since_last_ticket": "days since the last ticket",
    "days_since_purchase": "days since the last purchase",
    "days_to_contract_end": "days to the contract's end",
    "quota_used_share": "share of an allowance used over 28 days",
}


def is_share(measure: str) -> bool:
    """``measure`` is a fraction people read as a percentage (a share of seats or of
    use, a share of core modules used, users activated per seat): by its own name, not
    the event's it is about ("days_since_event[share]" counts days)."""
    base = measure.partition("[")[0]
    return "share" in base or base.endswith("_use_28d") or base == "activation_rate"


def measured_name(measure: str) -> str | None:
    """The event name a per-name measure reads (``events_28d[export]``: ``export``), else
    None."""
    start = measure.find("[")
    return measure[start + 1 : -1] if start > 0 and measure.endswith("]") else None


def generic_label(measure: str) -> str:
    """``events_28d[like]`` → "uses over 28 days: like"; a declared ratio's name reads
    as words."""
    base, _, name = measure.partition("[")
    label = GENERIC_LABELS.get(base) or INPUT_LABELS.get(base) or base.replace("_", " ")
    return f"{label}: {name[:-1]}" if name else label
