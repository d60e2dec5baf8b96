"""Which measures moved a score (``services/scoring/model/attribution.py``): Shapley
values under the model, on the default model and the shapes the account page meets."""

from __future__ import annotations

import pytest

from services.scoring.model import attribution
from services.scoring.model.attribution import pulls
from services.scoring.model.evaluate import evaluate_as
from services.scoring.model.schema import load_default_model


def test_the_model_says_which_measure_moved_the_score_when_data_arrives() -> None:
    """The account page's "+6 points open tickets 0 → 1" and "−1 point active days
    5 → 7" (found from outside): support data arrived, the weights were shared out
    again, and the stored points' differences credited the wrong measures. Put back
    one at a time, more active days raise the score (or leave it at full marks) and the
    tickets' data moves it by what the support group brings."""
    model = load_default_model()
    before = {
        "active_user_share_7d": 0.4,
        "active_user_share_30d": 0.5,
        "active_days_7d": 2,
        "open_tickets": 0,
        "days_since_touchpoint": 10,
    }
    after = {
        **before,
        "active_days_7d": 4,
        "open_tickets": 1,
        "days_since_last_ticket": 0,
        "oldest_open_ticket_days": 0,
        "open_high_priority_tickets": 0,
    }
    moved = pulls(model, None, before, after)
    assert moved.measures["active_days_7d"] > 0
    assert set(moved.measures) >= {"active_days_7d", "open_tickets"}
    assert moved.labels["active_days_7d"]
    assert moved.before is not None and moved.after is not None
    # 5 → 7 days: full marks both days, so no move at all; the stored points' difference
    # said it lost points, its weight shared with the support group that came in.
    five, seven = {**before, "active_days_7d": 5}, {**after, "active_days_7d": 7}
    assert pulls(model, None, five, seven).measures["active_days_7d"] == 0
    points = [
        next(c.contribution for c in evaluate_as(model, raw, None).components if c.measure == name)
        for raw, name in ((five, "active_days_7d"), (seven, "active_days_7d"))
    ]
    assert points[1] < points[0]


def test_the_pulls_add_up_to_the_scores_move(monkeypatch: pytest.MonkeyPatch) -> None:
    """Exact (Shapley) up to EXACT_UP_TO measures moved at once; above it, the mean of
    the two one-at-a-time orders, close to it. A 30-day move from no data at all
    showed "+30, +15, +12 … and −30 the rest" one at a time."""
    model = load_default_model()
    before = {"active_user_share_30d": 0.0, "active_user_share_7d": 0.0, "module_breadth_28d": 1}
    after = {
        "active_user_share_30d": 0.7,
        "active_user_share_7d": 0.15,
        "active_days_7d": 7,
        "module_breadth_28d": 1,
        "core_module_use_28d": 0.0,
        "depth_level": 1,
        "payment_failed_30d": 0,
        "days_since_touchpoint": 3,
    }
    moved = pulls(model, None, before, after)
    assert moved.before is not None and moved.after is not None
    assert len(moved.measures) <= attribution.EXACT_UP_TO
    assert sum(moved.measures.values()) == pytest.approx(moved.after - moved.before)
    monkeypatch.setattr(attribution, "EXACT_UP_TO", 2)
    rough = pulls(model, None, before, after)
    assert sum(rough.measures.values()) == pytest.approx(moved.after - moved.before, abs=5)
    assert rough.measures.keys() == moved.measures.keys()


def test_measures_that_move_nothing_leave_the_rest_exact() -> None:
    """Days since a touchpoint and the like change every day on curves already flat:
    left out first, the measures that matter keep exact Shapley values."""
    model = load_default_model()
    flat = {"days_since_touchpoint": 400, "days_since_last_event": 400, "nps_latest": 9}
    before = {**flat, "active_user_share_7d": 0.1, "active_user_share_30d": 0.2}
    after = {
        **{name: value + 1 for name, value in flat.items()},
        "active_user_share_7d": 0.5,
        "active_user_share_30d": 0.6,
    }
    moved = pulls(model, None, before, after)
    assert moved.before is not None and moved.after is not None
    assert sum(moved.measures.values()) == pytest.approx(moved.after - moved.before)
    assert moved.measures["active_user_share_7d"] > 0
