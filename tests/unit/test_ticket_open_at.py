"""Whether a ticket was open on a past day, from its newest state (``as_of.open_at``):
the backlog of an as-of read, a report, a past day an import scores."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from services.scoring.as_of import open_at

CREATED = datetime(2026, 6, 10, 9, tzinfo=UTC)
SOLVED = datetime(2026, 6, 20, 9, tzinfo=UTC)
UPDATED = datetime(2026, 8, 20, 9, tzinfo=UTC)


def _ticket(status: str, solved_at: datetime | None) -> SimpleNamespace:
    return SimpleNamespace(
        status=status, created_at=CREATED, solved_at=solved_at, occurred_at=UPDATED
    )


def _days_open(ticket: SimpleNamespace) -> list[bool]:
    days = (CREATED - timedelta(days=1), CREATED + timedelta(days=1), SOLVED + timedelta(days=1))
    return [open_at(ticket, day) for day in (*days, UPDATED + timedelta(days=1))]


def test_a_ticket_is_open_from_its_opening_to_its_end() -> None:
    assert _days_open(_ticket("open", None)) == [False, True, True, True]
    assert _days_open(_ticket("solved", SOLVED)) == [False, True, False, False]
    # Closed without a solved time: at its last update.
    assert _days_open(_ticket("closed", None)) == [False, True, True, False]


def test_a_ticket_open_again_after_it_was_solved_is_open_from_the_update_that_says_so() -> None:
    """Open, with a solved time before its last update (reopened): it counted on no past
    day after its solving, while today's backlog held it (found from outside)."""
    assert _days_open(_ticket("open", SOLVED)) == [False, True, False, True]
    assert _days_open(_ticket("pending", SOLVED)) == [False, True, False, True]
