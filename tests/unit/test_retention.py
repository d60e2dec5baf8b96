"""Retention measures, the renewal forecast and quarters: pure functions, no database."""

from __future__ import annotations

from datetime import date

import pytest

from services.scoring.retention import ForecastRule, Quarter, forecast, quarters_before, retention
from services.scoring.retention.periods import check_period
from services.scoring.retention.pipeline import forecast_totals
from shared.config import Settings
from shared.web import ClientError


def _f(arr: float | None, stage: str = "stable", **more: object) -> dict[str, object]:
    return {"arr": arr, "lifecycle_stage": stage, **more}


def test_grr_nrr_and_logo_retention_follow_the_standard_definitions() -> None:
    start = {
        "kept": _f(100, tier="enterprise"),
        "grew": _f(100, tier="enterprise"),
        "shrank": _f(100, tier="non-focus"),
        "churned": _f(100, tier="strategic"),
        "zeroed": _f(100, tier="strategic"),
        "unknown_arr": _f(None),
        "gone_before": _f(50, "churned"),
    }
    end = {
        **start,
        "grew": _f(150),
        "shrank": _f(80),
        "churned": _f(100, "churned"),
        "zeroed": _f(0),
        "gone_before": _f(50, "churned"),
        "signed_later": _f(999),
    }
    got = retention(start, end, "tier")
    # Start: five paying customers (500) and one of unknown ARR; the churned one is not.
    assert (got["accounts_start"], got["accounts_kept"], got["arr_accounts_known"]) == (6, 4, 5)
    money = got["by_currency"]["default"]
    assert (money["churned_arr"], money["contraction"], money["expansion"]) == (200, 20, 50)
    assert got["grr"] == round((500 - 200 - 20) / 500, 4)
    assert got["nrr"] == round((500 - 200 - 20 + 50) / 500, 4)
    assert got["logo_retention"] == round(4 / 6, 4)
    groups = {g["tier"]: g for g in got["groups"]}
    assert groups["strategic"]["logo_retention"] == 0.0
    assert groups["enterprise"]["nrr"] == 1.25
    assert groups["unknown"]["grr"] is None  # no ARR known: no revenue rate


def test_money_is_never_added_across_currencies() -> None:
    start = {"a": _f(100), "b": _f(10, currency="USD"), "c": _f(10, currency="USD")}
    end = {"a": _f(110), "b": _f(10, currency="USD"), "c": _f(12, currency="EUR")}
    got = retention(start, end)
    assert got["grr"] is None and got["nrr"] is None
    assert got["by_currency"]["default"]["nrr"] == 1.1
    # Re-priced in another currency: kept at its old ARR, neither grown nor shrunk.
    assert got["by_currency"]["USD"]["nrr"] == 1.0


def test_cohorts_by_contract_start_quarter_and_csm_at_the_start() -> None:
    start = {
        "a": _f(100, contract_start="2025-02-10", owner={"email": "anna@example.com"}),
        "b": _f(100, contract_start="2025-11-30"),
    }
    end = {"a": {**start["a"], "owner": {"email": "carl@example.com"}}, "b": start["b"]}
    assert [g["cohort"] for g in retention(start, end, "cohort")["groups"]] == [
        "2025Q1",
        "2025Q4",
    ]
    assert [g["csm"] for g in retention(start, end, "csm")["groups"]] == [
        "anna@example.com",
        "unknown",
    ]


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"band": "green", "danger_level": None}, ("commit", ["green"])),
        ({"band": "green", "danger_level": "mild", "nps_latest": 7}, ("commit", ["green"])),
        ({"band": "yellow"}, ("likely", ["yellow"])),
        ({"band": None}, ("likely", ["unscored"])),
        ({"band": "red"}, ("at_risk", ["red"])),
        ({"band": "green", "danger_level": "high"}, ("at_risk", ["danger_high"])),
        ({"band": "green", "nps_latest": 6}, ("at_risk", ["detractor"])),
        (
            {"band": "red", "danger_level": "high", "nps_latest": 0},
            ("at_risk", ["red", "danger_high", "detractor"]),
        ),
    ],
)
def test_forecast_classes_and_reasons(row: dict[str, object], expected: object) -> None:
    assert forecast(row, ForecastRule()) == expected


def test_forecast_thresholds_come_from_the_settings() -> None:
    rule = ForecastRule.of(Settings(renewal_at_risk_danger="normal", renewal_detractor_max_nps=-1))
    assert rule.at_risk_danger == ("high", "normal")
    assert forecast({"band": "green", "danger_level": "normal"}, rule)[0] == "at_risk"
    assert forecast({"band": "green", "nps_latest": 0}, rule)[0] == "commit"


def test_forecast_totals_per_currency() -> None:
    rows = [
        {"forecast": "commit", "arr": 100.0, "currency": None},
        {"forecast": "commit", "arr": 5.0, "currency": "USD"},
        {"forecast": "commit", "arr": None, "currency": None},
        {"forecast": "at_risk", "arr": 50.0, "currency": None},
    ]
    totals = forecast_totals(rows)
    assert totals["commit"] == {
        "accounts": 3,
        "arr_accounts_known": 2,
        "arr_by_currency": {"default": 100.0, "USD": 5.0},
    }
    assert totals["likely"]["accounts"] == 0


def test_quarters() -> None:
    q = Quarter.parse("2027q4")
    assert (q.start, q.end, str(q.next()), str(q.previous())) == (
        date(2027, 10, 1),
        date(2028, 1, 1),
        "2028Q1",
        "2027Q3",
    )
    assert Quarter.parse("2027-Q1") == Quarter.of(date(2027, 3, 31))
    assert [str(x) for x in quarters_before(Quarter(2027, 2), 3)] == ["2026Q3", "2026Q4", "2027Q1"]


@pytest.mark.parametrize("text", ["2027Q5", "2027", "Q1 2027", "9999Q1", "2027Q1x"])
def test_unreadable_quarters_are_refused(text: str) -> None:
    with pytest.raises(ClientError) as refused:
        Quarter.parse(text)
    assert (refused.value.status, refused.value.code) == (422, "bad_quarter")


@pytest.mark.parametrize(
    ("start", "end", "code"),
    [
        (date(2026, 1, 1), date(2026, 1, 1), "bad_period"),
        (date(2026, 2, 1), date(2026, 1, 1), "bad_period"),
        (date(2016, 1, 1), date(2026, 1, 2), "period_too_long"),
    ],
)
def test_bad_periods_are_refused(start: date, end: date, code: str) -> None:
    with pytest.raises(ClientError) as refused:
        check_period(start, end)
    assert refused.value.code == code
    check_period(date(2016, 1, 1), date(2026, 1, 1))  # ten years is fine
