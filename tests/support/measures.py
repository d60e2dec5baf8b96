"""A ``Measures`` for unit tests: sensible defaults, override what the test is about."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from services.scoring.measures import Measures

AS_OF = date(2026, 11, 23)


def measures(**overrides: Any) -> Measures:
    fields: dict[str, Any] = dict(
        account_id="a",
        as_of=AS_OF,
        as_of_time=datetime(2026, 11, 23, 12, tzinfo=UTC),
        first_seen=date(2026, 11, 1),
        active_users_7d=10,
        active_users_30d=12,
        active_days_7d=5,
        events_7d=100,
        open_tickets=0,
        seats_purchased=50,
    )
    fields.update(overrides)
    return Measures(**fields)
