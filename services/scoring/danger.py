"""The handbook's danger level (high / normal / mild) with cause codes (DG-05…DG-07)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from services.scoring.measures import Measures
from services.scoring.model.schema import DangerRules

LEVELS = ("high", "normal", "mild")
# Each cause's level (DG-05…DG-07): the account's level is its worst cause's.
CAUSE_LEVELS = {
    "wrong_fit": "high",
    "decision_maker_change": "high",
    "unclear_value": "high",
    "slow_go_live": "normal",
    "long_unresolved_tickets": "normal",
    "champion_change": "mild",
    "unmet_requests": "mild",
}
# The depth level counts uses over 28 days against fixed thresholds (HL-03): an account
# with less use than that cannot have shown its depth yet, so "busy but shallow" (DG-15,
# judged months into a contract) waits until the window is full. Before, a busy account
# a week into its use read as level 1 and its green score came with a "high" danger.
DEPTH_WINDOW_DAYS = 28


def _within(m: Measures, moment: datetime | None, days: int) -> bool:
    return moment is not None and 0 <= (m.as_of - m.day_of(moment)).days <= days


def _used_for(m: Measures, days: int) -> bool:
    """The account's first use is at least ``days`` days back (the day itself counts)."""
    return m.first_seen is not None and (m.as_of - m.first_seen).days >= days - 1


def assess(m: Measures, inputs: dict[str, float | None], rules: DangerRules) -> dict[str, Any]:
    """``{"level": worst level or None, "causes": [{code, level, text}]}``."""
    codes: list[str] = []
    if m.icp_fit is False:
        codes.append("wrong_fit")
    if _within(m, m.decision_maker_changed_at, rules.people_change_days):
        codes.append("decision_maker_change")
    share, depth = inputs.get("active_user_share_7d"), inputs.get("depth_level")
    if (
        share is not None
        and depth is not None
        and share >= rules.busy_active_share
        and depth <= rules.shallow_depth_level
        and _used_for(m, DEPTH_WINDOW_DAYS)
    ):
        codes.append("unclear_value")
    if inputs.get("not_live_after_90d") == 1:
        codes.append("slow_go_live")
    oldest = inputs.get("oldest_open_ticket_days")
    if oldest is not None and oldest > rules.unresolved_ticket_days:
        codes.append("long_unresolved_tickets")
    if _within(m, m.champion_changed_at, rules.people_change_days):
        codes.append("champion_change")
    request = m.oldest_open_request_at
    if request is not None and (m.as_of - m.day_of(request)).days > rules.unmet_request_days:
        codes.append("unmet_requests")
    level = next((lv for lv in LEVELS if any(CAUSE_LEVELS[c] == lv for c in codes)), None)
    causes = [cause_of(code, cause_text(code, inputs, rules)) for code in codes]
    return {"level": level, "causes": causes}


# The causes whose sentence names no number.
_SENTENCES = {
    "wrong_fit": "sold outside the ideal customer profile",
    "decision_maker_change": "the customer's decision maker changed",
    "slow_go_live": "not live 3 months after purchase",
    "champion_change": "the customer's champion changed",
}


def cause_text(code: str, inputs: Mapping[str, Any], rules: DangerRules) -> str | None:
    """A cause's sentence from the inputs of the day it was found (``assess``'s, or a
    score history row's: the history keeps codes only); None for a code it does not
    know (one a later version dropped)."""
    if code == "unclear_value":
        share, depth = inputs.get("active_user_share_7d"), inputs.get("depth_level")
        if not isinstance(share, int | float) or not isinstance(depth, int | float):
            return None
        return f"busy but shallow: {share:.0%} of seats active, depth level {depth:g}"
    if code == "long_unresolved_tickets":
        oldest = inputs.get("oldest_open_ticket_days")
        if not isinstance(oldest, int | float):
            return None
        return f"a ticket has been open {oldest:g} days"
    if code == "unmet_requests":
        return f"a feature request has been open over {rules.unmet_request_days} days"
    return _SENTENCES.get(code)


def cause_code(stored: Any) -> str:
    """A cause as a score history row keeps it: its code (rows written before the
    history kept codes only hold the whole cause)."""
    return str(stored.get("code")) if isinstance(stored, dict) else str(stored)


def cause_of(code: str, text: str | None = None) -> dict[str, Any]:
    """A cause as answers show it: code, level and (when known) the text that day."""
    cause: dict[str, Any] = {"code": code, "level": CAUSE_LEVELS.get(code)}
    return cause | {"text": text} if text is not None else cause
