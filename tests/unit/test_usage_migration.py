"""Migration 0009: an install's per-user and per-name rows become usage states that
give the same measures, and the old tables go."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import inspect, text

from services.scoring.measures import load_measures
from tests.support.factories import EngineFactory
from tests.support.migrations import upgrade_to

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)


async def test_old_rows_become_a_usage_state_with_the_same_measures(
    engine_factory: EngineFactory,
) -> None:
    engine = await engine_factory(migrated=False)
    days = [date(2026, 11, d) for d in (14, 18, 20)]
    async with engine.begin() as conn:
        await conn.run_sync(upgrade_to("0008"))
        await conn.execute(
            text(
                "INSERT INTO account_health (account_id, as_of, first_seen_at, last_seen_at,"
                " active_users_7d, active_users_30d, events_7d, open_tickets, updated_at)"
                " VALUES ('acme', :now, :now, :now, 0, 0, 0, 0, :now)"
            ),
            {"now": NOW},
        )
        for n, day in enumerate(days):
            await conn.execute(
                text("INSERT INTO activity_daily VALUES ('acme', :day, :events, 600.0)"),
                {"day": day, "events": 3 + n},
            )
            for user in ("u1", "u2")[: n + 1 if n < 2 else 1]:
                await conn.execute(
                    text("INSERT INTO activity_daily_users VALUES ('acme', :day, :user)"),
                    {"day": day, "user": user},
                )
            await conn.execute(
                text("INSERT INTO activity_daily_names VALUES ('acme', :day, 'event', 'login', 3)"),
                {"day": day},
            )
        await conn.execute(
            text(
                "INSERT INTO account_users VALUES ('acme', 'u1', :first), ('acme', 'u2', :second),"
                " ('acme', 'u0', :old)"
            ),
            {"first": days[0], "second": days[1], "old": date(2026, 5, 1)},
        )
        await conn.execute(
            text("INSERT INTO processed_events VALUES ('e1', 'usage', 'acme', :now, :now)"),
            {"now": NOW},
        )
        await conn.run_sync(upgrade_to("0009"))
        await conn.run_sync(upgrade_to("heads"))  # today's code reads today's schema
    async with engine.connect() as conn:
        [m] = await load_measures(conn, {"acme"})
        tables = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
        active = (
            await conn.execute(text("SELECT day, active_users FROM activity_daily ORDER BY day"))
        ).all()
    assert (m.active_users_7d, m.active_users_30d, m.active_users_today) == (2, 2, 1)
    assert m.users_ever_active == 3  # u0, active before the kept window, still counts
    assert (m.events_7d, m.active_days_7d, m.active_days_28d) == (12, 3, 3)
    assert m.usage_minutes_7d == 30.0
    assert m.name_use[("event", "login")].days_7 == 9
    assert [a for _, a in active] == [1, 2, 1]
    gone = {"processed_events", "activity_daily_users", "activity_daily_names", "account_users"}
    assert not gone & set(tables) and {"account_usage", "bus_outbox"} <= set(tables)
