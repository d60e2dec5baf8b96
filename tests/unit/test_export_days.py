"""The history export's days: one record per account and day from ``from`` to ``to``,
a day without a stored row carrying the score before it (``recorded`` false), as the
account's history does; an account's days begin with its first score. The export had
left the days without a row out (found from outside)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import NamedTuple

from services.scoring.export import _EveryDay

START, END = date(2026, 12, 1), date(2026, 12, 7)


class Row(NamedTuple):
    account_id: str
    day: date
    score: int | None
    band: str


def _days(rows: list[Row], *, split: int) -> list[tuple[str, date, int | None, bool]]:
    every = _EveryDay(START, END)
    records = every.take(rows[:split]) + every.take(rows[split:]) + every.finish()
    return [(r["account_id"], r["day"], r["score"], r["recorded"]) for r in records]


def test_every_day_of_every_account_once_whatever_the_partitions() -> None:
    rows = [
        Row("a", date(2026, 11, 20), 40, "red"),  # the newest before the range: carried
        Row("a", date(2026, 12, 3), 55, "yellow"),
        Row("b", date(2026, 12, 5), 80, "green"),  # first scored within the range
        Row("c", date(2026, 10, 1), None, "unknown"),  # scored once, long ago
    ]
    d = [START + timedelta(days=n) for n in range(7)]
    expected = [
        ("a", d[0], 40, False),
        ("a", d[1], 40, False),
        ("a", d[2], 55, True),
        *[("a", day, 55, False) for day in d[3:]],
        ("b", d[4], 80, True),
        ("b", d[5], 80, False),
        ("b", d[6], 80, False),
        *[("c", day, None, False) for day in d],
    ]
    for split in range(len(rows) + 1):
        assert _days(rows, split=split) == expected, split


def test_nothing_for_no_rows() -> None:
    assert _days([], split=0) == []
