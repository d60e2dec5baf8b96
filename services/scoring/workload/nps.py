"""Net Promoter Score: the share of promoters minus the share of detractors, in points.

The handbook asks one question scored "1–10" (SV-01); the service takes the usual 0–10
(an answer of 0 is a detractor like 1) with the usual bands: promoters 9–10, passives
7–8, detractors 0–6. NPS runs from −100 (all detractors) to +100 (all promoters).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date
from typing import Any

PROMOTER_MIN = 9
DETRACTOR_MAX = 6
SCALE = "0–10: promoters 9–10, passives 7–8, detractors 0–6; NPS = % promoters − % detractors"


def category(score: int) -> str:
    if score >= PROMOTER_MIN:
        return "promoter"
    return "detractor" if score <= DETRACTOR_MAX else "passive"


def summary(scores: Iterable[int]) -> dict[str, Any]:
    """Responses, promoters, passives, detractors and the NPS (None without answers)."""
    counts = {"promoter": 0, "passive": 0, "detractor": 0}
    for s in scores:
        counts[category(s)] += 1
    n = sum(counts.values())
    value = round(100 * (counts["promoter"] - counts["detractor"]) / n, 1) if n else None
    return {
        "responses": n,
        "promoters": counts["promoter"],
        "passives": counts["passive"],
        "detractors": counts["detractor"],
        "nps": value,
    }


def monthly(answers: Iterable[tuple[date, int]]) -> list[dict[str, Any]]:
    """The NPS of each calendar month with answers, oldest first (``month``: YYYY-MM)."""
    months: dict[str, list[int]] = defaultdict(list)
    for day, score in answers:
        months[day.strftime("%Y-%m")].append(score)
    return [{"month": m, **summary(months[m])} for m in sorted(months)]
