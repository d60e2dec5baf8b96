"""The long history: days that leave an account's usage window are kept (a value per
month, ``usage_archive``) and read back by as-of measures, exactly; beyond the history's
retention an as-of read answers 422, never zeros."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import msgspec
import pytest
import zstandard
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scoring import usage_store
from services.scoring.as_of import check_retention, measures_as_of, oldest_as_of
from services.scoring.state import apply_events
from services.scoring.usage import UNKNOWN, AccountUsage, decode
from services.scoring.usage_measures import activity_of, name_use_of
from shared.contracts.events import EVENT_ADAPTER, Event
from shared.storage.tables import activity_daily, usage_archive
from shared.web import ClientError

START = datetime(2026, 1, 1, 12, tzinfo=UTC)
DAYS = 220
USERS = [f"u{n}" for n in range(6)]
NAMES = ["login", "report", "export", "share"]


@pytest.fixture
def engine(engine_either: AsyncEngine) -> AsyncEngine:
    return engine_either


def history() -> list[list[Event]]:
    """220 days of one account's use, a day per batch: a few users, names that come and
    go (``share`` only in the first months), quiet stretches."""
    rng = random.Random(7)
    days: list[list[Event]] = []
    for n in range(DAYS):
        at = START + timedelta(days=n)
        quiet = 100 <= n < 112
        names = NAMES if n < 80 else NAMES[:3]
        days.append(
            [
                EVENT_ADAPTER.validate_python(
                    {
                        "kind": "usage",
                        "event_id": f"e{n}-{k}",
                        "account_id": "acme",
                        "user_id": rng.choice(USERS[: 2 + n % 5]),
                        "event": rng.choice(names),
                        "occurred_at": (at + timedelta(minutes=k)).isoformat(),
                        "duration_s": 30,
                    }
                )
                for k in range(0 if quiet else rng.randrange(1, 6))
            ]
        )
    return days


def whole(days: list[list[Event]]) -> AccountUsage:
    """Every event in one state that never drops a day: what the as-of reads must match."""
    state = AccountUsage()
    for batch in days:
        for e in batch:
            assert e.kind == "usage"
            state.add(e.occurred_at.date(), e.user_id, 30.0, [("event", e.event, 1)])
    return state


async def stream(engine: AsyncEngine, days: list[list[Event]], history_days: int) -> None:
    for batch in days:
        if batch:
            async with engine.begin() as conn:
                await apply_events(
                    conn,
                    batch,
                    window_days=90,
                    history_days=history_days,
                    now=batch[-1].occurred_at,
                )


async def test_as_of_reads_beyond_the_window_are_exact(engine: AsyncEngine) -> None:
    days = history()
    await stream(engine, days, history_days=730)
    truth = whole(days)
    last = (START + timedelta(days=DAYS - 1)).date()
    async with engine.connect() as conn:
        state = (await usage_store.load(conn, ["acme"]))["acme"]
        months = (await conn.execute(select(usage_archive.c.month))).scalars().all()
        kept_daily = (await conn.execute(select(activity_daily.c.day))).scalars().all()
        # The state holds its window (and at most a week more); the rest is archived.
        assert last.toordinal() - 96 <= state.kept_from <= last.toordinal() - 89
        assert min(state.days) >= state.kept_from
        assert len(months) >= 4
        assert min(kept_daily) == START.date()  # the daily history is kept too
        for back in (0, 60, 100, 130, 150, DAYS - 30):
            day = last - timedelta(days=back)
            [m] = await measures_as_of(conn, {"acme"}, day, UTC)
            expected = activity_of(truth, day)
            got = {key: getattr(m, key) for key in expected}
            assert got == expected, day
            names = {key: use for key, use in name_use_of(truth, day).items() if use.days_90}
            events = {
                key: use for key, use in m.name_use.items() if use.days_90 and key[0] == "event"
            }
            assert events == names, day
        # Nothing was dropped: answered back to the retention's month (two years).
        kept_from = (last - timedelta(days=729)).replace(day=1)
        assert await oldest_as_of(conn, "acme", (90, 730), UTC) == kept_from + timedelta(days=29)
    # The state in memory is not changed by an as-of read (the merge is a copy).
    assert state.days.keys() == (await _state(engine)).days.keys()


async def _state(engine: AsyncEngine) -> AccountUsage:
    async with engine.connect() as conn:
        return (await usage_store.load(conn, ["acme"]))["acme"]


async def test_beyond_the_retention_answers_422(engine: AsyncEngine) -> None:
    await stream(engine, history(), history_days=120)
    last = (START + timedelta(days=DAYS - 1)).date()
    async with engine.connect() as conn:
        oldest = await oldest_as_of(conn, "acme", (90, 120), UTC)
        months = (await conn.execute(select(usage_archive.c.month))).scalars().all()
        first_daily = min((await conn.execute(select(activity_daily.c.day))).scalars().all())
    assert oldest is not None
    # Kept from the first day of the month 120 days back (whole months are dropped).
    kept_from = (last - timedelta(days=119)).replace(day=1)
    assert min(months) == kept_from and first_daily >= kept_from
    assert oldest == kept_from + timedelta(days=29)
    check_retention("acme", oldest, oldest, 120)
    with pytest.raises(ClientError) as refused:
        check_retention("acme", oldest - timedelta(days=1), oldest, 120)
    assert (refused.value.status, refused.value.code) == (422, "as_of_beyond_retention")
    assert "HEALTHWATCH_HISTORY_DAYS" in refused.value.message


def test_a_state_written_before_the_long_history() -> None:
    """A format-1 value does not know what it dropped before: whole from its oldest day
    once it drops days again."""
    state = AccountUsage()
    first = date(2026, 3, 2)
    for n in (0, 3, 9):
        state.add(first + timedelta(days=n), "u", 1.0, [("event", "x", 1)])
    old = decode(bytes([1]) + _format_one(state))
    assert (old.kept_from, old.whole_from) == (first.toordinal(), UNKNOWN)
    part = old.prune_before(first + timedelta(days=5))
    assert part is not None and sorted(part.days) == [first.toordinal(), first.toordinal() + 3]
    assert (old.kept_from, old.whole_from) == (
        (first + timedelta(days=5)).toordinal(),
        first.toordinal(),
    )


def _format_one(state: AccountUsage) -> bytes:
    """The state's body as format 1 wrote it: its days as maps, and without the long
    history's two fields."""
    body = [state.users, state.first_active, state.days, {}, state.events_seen, state.names]
    return zstandard.ZstdCompressor().compress(msgspec.msgpack.encode(body))
