"""Danger levels and their cause codes, on hand-made cases."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from services.scoring.danger import assess
from services.scoring.measures import Measures
from services.scoring.model.schema import DangerRules
from tests.support.measures import measures

RULES = DangerRules()


def m(**kw: Any) -> Measures:
    fields: dict[str, Any] = dict(
        as_of_time=datetime(2026, 11, 23, tzinfo=UTC),
        first_seen=date(2026, 1, 1),
        active_users_7d=5,
        active_users_30d=5,
        events_7d=50,
        seats_purchased=10,
    )
    return measures(**{**fields, **kw})


def codes(result: dict[str, Any]) -> list[str]:
    return [c["code"] for c in result["causes"]]


def test_healthy_account_has_no_danger() -> None:
    result = assess(
        m(), {"active_user_share_7d": 0.5, "depth_level": 2, "oldest_open_ticket_days": 0}, RULES
    )
    assert result == {"level": None, "causes": []}


def test_high_causes() -> None:
    recent = datetime(2026, 10, 1, tzinfo=UTC)
    result = assess(
        m(icp_fit=False, decision_maker_changed_at=recent),
        {"active_user_share_7d": 0.9, "depth_level": 1},
        RULES,
    )
    assert result["level"] == "high"
    assert codes(result) == ["wrong_fit", "decision_maker_change", "unclear_value"]
    assert "90% of seats active, depth level 1" in result["causes"][2]["text"]


def test_normal_and_mild_causes_and_their_windows() -> None:
    long_ago = datetime(2026, 1, 1, tzinfo=UTC)
    result = assess(
        m(
            champion_changed_at=datetime(2026, 11, 1, tzinfo=UTC),
            decision_maker_changed_at=long_ago,
            oldest_open_request_at=datetime(2026, 9, 1, tzinfo=UTC),
        ),
        {
            "not_live_after_90d": 1,
            "oldest_open_ticket_days": 45,
            "active_user_share_7d": 0.2,
            "depth_level": 1,
        },
        RULES,
    )
    assert result["level"] == "normal"
    assert codes(result) == [
        "slow_go_live",
        "long_unresolved_tickets",
        "champion_change",
        "unmet_requests",
    ]
    mild = assess(m(champion_changed_at=datetime(2026, 11, 1, tzinfo=UTC)), {}, RULES)
    assert mild["level"] == "mild"
    stale = assess(m(champion_changed_at=datetime.now(UTC) - timedelta(days=400)), {}, RULES)
    assert stale["level"] is None


def test_a_cause_reads_as_its_code_from_old_and_new_history_rows() -> None:
    """History rows kept whole causes before they kept codes: a read as of such a day
    raised (a dict is no key) on the health and report reads (found in review)."""
    from services.scoring.danger import cause_code, cause_of

    old = {"code": "champion_change", "level": "mild", "text": "the customer's champion changed"}
    assert cause_code(old) == cause_code("champion_change") == "champion_change"
    assert cause_of(cause_code(old)) == {"code": "champion_change", "level": "mild"}
