"""CSM capacity (SEG-10) and the tier cadences (CAD-03/08/12): pure functions."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.scoring.workload.cadence import Cadences, due_dates, next_due
from services.scoring.workload.capacity import capacity_of, load, served
from shared.config import Settings

TODAY = date(2026, 6, 30)
CADENCES = Cadences.from_settings(Settings(_env_file=None))


def at(days_ago: int) -> datetime:
    return datetime(2026, 6, 30, 10, tzinfo=UTC) - timedelta(days=days_ago)


def row(tier: str | None, stage: str = "stable") -> dict[str, object]:
    return {"tier": tier, "lifecycle_stage": stage, "owner_email": "a@x"}


def test_load_is_the_share_of_one_csms_capacity() -> None:
    capacity = capacity_of(Settings(_env_file=None))
    assert capacity == {"strategic": 15, "enterprise": 30, "non-focus": 250}
    rows = [row("strategic")] * 15
    assert load(rows, capacity)["load"] == 1.0
    mixed = load([row("strategic"), row("enterprise"), row("non-focus"), row(None)], capacity)
    assert mixed["by_tier"] == {"strategic": 1, "enterprise": 1, "non-focus": 1, "none": 1}
    assert mixed["load"] == round(1 / 15 + 1 / 30 + 2 / 250, 3)  # no tier weighs as non-focus
    assert served([row("strategic", "churned"), row("enterprise")]) == [row("enterprise")]
    custom = capacity_of(Settings(_env_file=None, capacity_strategic=10))
    assert load([row("strategic")] * 5, custom)["load"] == 0.5


@pytest.mark.parametrize(
    ("tier", "go_live_days_ago", "expected"),
    [
        ("strategic", 10, ["weekly"]),  # first month after go-live (CAD-03)
        ("strategic", 40, ["visit", "qbr"]),
        ("strategic", None, ["visit", "qbr"]),
        ("enterprise", 10, ["contact"]),  # about every two months (CAD-08)
        ("non-focus", 10, []),  # mass mailing, no visit (CAD-12)
        (None, 10, []),
    ],
)
def test_cadences_by_tier(
    tier: str | None, go_live_days_ago: int | None, expected: list[str]
) -> None:
    go_live = TODAY - timedelta(days=go_live_days_ago) if go_live_days_ago is not None else None
    assert [c.name for c in CADENCES.of(tier, go_live, TODAY)] == expected


def test_due_after_the_last_touchpoint_that_counts() -> None:
    zone = ZoneInfo("Asia/Shanghai")
    last = {"visit": at(40), "qbr": at(60), "email": at(1)}
    dues = due_dates(CADENCES.strategic, last, None, TODAY, zone)
    visit, qbr = dues
    assert visit.due_on == TODAY - timedelta(days=10) and visit.last_at == at(40)
    assert qbr.due_on == TODAY + timedelta(days=31)  # 60 days ago + 91
    assert next_due(dues) == visit
    # A QBR is a visit too (face to face); an email counts for no cadence (CAD-17).
    assert due_dates(CADENCES.strategic, {"qbr": at(5)}, None, TODAY, zone)[0].last_at == at(5)
    only_email = due_dates(
        CADENCES.enterprise, {"email": at(1)}, TODAY - timedelta(days=100), TODAY, zone
    )
    assert only_email[0].due_on == TODAY - timedelta(days=39)  # from the start, + 61
    assert due_dates(CADENCES.enterprise, {}, None, TODAY, zone)[0].due_on == TODAY
    assert next_due([]) is None


def test_the_due_day_is_on_the_accounts_calendar() -> None:
    late_evening = {"call": datetime(2026, 6, 1, 20, tzinfo=UTC)}  # 2 June in Shanghai
    shanghai = due_dates(CADENCES.enterprise, late_evening, None, TODAY, ZoneInfo("Asia/Shanghai"))
    utc = due_dates(CADENCES.enterprise, late_evening, None, TODAY, UTC)
    assert (shanghai[0].due_on - utc[0].due_on).days == 1
