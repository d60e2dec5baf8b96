"""Calendar quarters and periods: the pure time logic of renewals and retention.

A period is half-open, ``[start, end)``: the quarter 2027Q1 is 2027-01-01 up to (not
including) 2027-04-01, so consecutive periods neither overlap nor leave a gap, and a
retention over two quarters is the two quarters' periods joined.

>>> Quarter.parse("2027Q1").start, Quarter.parse("2027q1").end
(datetime.date(2027, 1, 1), datetime.date(2027, 4, 1))
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from shared.web import ClientError

# The longest period a retention is computed over: ten years (3,652 or 3,653 days with
# leap years). Longer asks are mistakes (a year typed wrong), and each period end is
# one read of every account's facts history.
MAX_PERIOD_DAYS = 3653
# Years a quarter may name: the read API's calendar (queries.FIRST_DAY..LAST_DAY),
# kept apart here so quarter arithmetic never nears date's year 1 or 9999.
FIRST_YEAR, LAST_YEAR = 1970, 2100
_QUARTER = re.compile(r"(\d{4})-?Q([1-4])", re.IGNORECASE)


@dataclass(frozen=True, order=True)
class Quarter:
    """A calendar quarter: ``year`` and ``number`` 1–4."""

    year: int
    number: int

    @classmethod
    def parse(cls, text: str) -> Quarter:
        """``2027Q1`` (also ``2027-Q1``, ``2027q1``); 422 ``bad_quarter`` otherwise."""
        found = _QUARTER.fullmatch(text.strip())
        if found is None or not FIRST_YEAR <= int(found[1]) <= LAST_YEAR:
            raise ClientError(
                422,
                "bad_quarter",
                "Name a quarter as YYYYQn, e.g. 2027Q1, with a year from {first} to {last} (got "
                "{text!r}).",
                values={"first": FIRST_YEAR, "last": LAST_YEAR, "text": text[:40]},
            )
        return cls(int(found[1]), int(found[2]))

    @classmethod
    def of(cls, day: date) -> Quarter:
        return cls(day.year, (day.month - 1) // 3 + 1)

    @property
    def start(self) -> date:
        return date(self.year, 3 * self.number - 2, 1)

    @property
    def end(self) -> date:
        """The first day after the quarter (the period's exclusive end)."""
        return self.next().start

    def next(self) -> Quarter:
        return Quarter(self.year + self.number // 4, self.number % 4 + 1)

    def previous(self) -> Quarter:
        return Quarter(self.year - (self.number == 1), (self.number - 2) % 4 + 1)

    def __str__(self) -> str:
        return f"{self.year}Q{self.number}"


def quarters_before(current: Quarter, count: int) -> list[Quarter]:
    """The ``count`` whole quarters before ``current``, oldest first."""
    out = [current.previous()]
    while len(out) < count:
        out.append(out[-1].previous())
    return out[::-1]


def check_period(start: date, end: date) -> None:
    """422 unless ``start`` < ``end`` and the period is at most ten years long."""
    if start >= end:
        raise ClientError(
            422, "bad_period", "'from' must be before 'to' (the period is [from, to))."
        )
    if (end - start).days > MAX_PERIOD_DAYS:
        raise ClientError(
            422, "period_too_long", "Ask for at most ten years at a time (split the period)."
        )
