"""NPS: promoters 9–10, detractors 0–6, % promoters − % detractors (SV-01)."""

from __future__ import annotations

from datetime import date

from services.scoring.workload.nps import category, monthly, summary


def test_categories_and_score() -> None:
    assert [category(s) for s in (0, 6, 7, 8, 9, 10)] == [
        "detractor",
        "detractor",
        "passive",
        "passive",
        "promoter",
        "promoter",
    ]
    assert summary([10, 9, 8, 3]) == {
        "responses": 4,
        "promoters": 2,
        "passives": 1,
        "detractors": 1,
        "nps": 25.0,
    }
    assert summary([0, 0])["nps"] == -100.0
    assert summary([])["nps"] is None


def test_monthly_trend_oldest_first() -> None:
    answers = [(date(2026, 3, 2), 10), (date(2026, 1, 5), 2), (date(2026, 3, 30), 6)]
    assert [(m["month"], m["nps"]) for m in monthly(answers)] == [
        ("2026-01", -100.0),
        ("2026-03", 0.0),
    ]
