"""The provisional score and rule, on hand-computed cases."""

from __future__ import annotations

import random
from datetime import date

import pytest

from services.alerts.outbox import backoff_s
from services.scoring.score import Measures, band_of, low_activity, score

AS_OF = date(2026, 11, 23)


def m(**kw: object) -> Measures:
    base: dict[str, object] = dict(
        account_id="a",
        as_of=AS_OF,
        first_seen=date(2026, 11, 1),
        active_users_7d=10,
        active_users_30d=12,
        events_7d=100,
        open_tickets=0,
        seats_purchased=50,
    )
    base.update(kw)
    return Measures(**base)  # type: ignore[arg-type]


def test_score_components_and_weights() -> None:
    s = score(m(active_users_7d=15, open_tickets=1))  # share 0.3 → 50 pts; tickets 80 pts
    assert s.value == round(0.7 * 50 + 0.3 * 80) == 59
    assert s.band == "yellow"
    names = [c["name"] for c in s.components]
    assert names == ["active_user_share_7d", "open_tickets"]
    assert sum(c["contribution"] for c in s.components) == pytest.approx(59, abs=0.1)


def test_missing_seats_spreads_weight_over_the_rest() -> None:
    s = score(m(seats_purchased=None, open_tickets=2))
    assert [c["name"] for c in s.components] == ["open_tickets"]
    assert s.components[0]["weight"] == 1.0
    assert s.value == 60


@pytest.mark.parametrize(
    ("value", "band"),
    [(0, "red"), (39, "red"), (40, "yellow"), (69, "yellow"), (70, "green"), (100, "green")],
)
def test_bands(value: int, band: str) -> None:
    assert band_of(value) == band


def test_low_activity_rule_needs_a_week_and_seats() -> None:
    assert low_activity(m(active_users_7d=9), 0.2)  # 18%
    assert not low_activity(m(active_users_7d=10), 0.2)  # exactly 20%
    assert not low_activity(
        m(active_users_7d=1, first_seen=date(2026, 11, 18)), 0.2
    )  # 6 days of history
    assert low_activity(m(active_users_7d=1, first_seen=date(2026, 11, 17)), 0.2)  # 7 days
    assert not low_activity(m(active_users_7d=0, seats_purchased=None), 0.2)


def test_backoff_grows_within_cap() -> None:
    rng = random.Random(1)
    assert all(2 <= backoff_s(1, 2, 300, rng) <= 2 for _ in range(10))
    assert all(2 <= backoff_s(5, 2, 300, rng) <= 32 for _ in range(50))
    assert all(backoff_s(30, 2, 300, rng) <= 300 for _ in range(50))
