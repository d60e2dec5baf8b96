"""Reading and writing the accounts' usage states (``usage.py``) inside the caller's
transaction: one SELECT for a batch's accounts, one upsert of those it changed, the
hours of their dedup windows that changed (``usage_seen``), and the daily history
(``activity_daily``) rewritten for the days it changed; the days that
leave a state's window go to the long history (``usage_archive``, a value per month)."""

from __future__ import annotations

from collections import Counter, OrderedDict, defaultdict
from collections.abc import Iterable, Mapping
from datetime import date, datetime

from sqlalchemy import and_, bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scoring import usage
from services.scoring.usage import AccountUsage
from shared.storage.db import among, bulk_upsert
from shared.storage.tables import account_usage, activity_daily, usage_archive, usage_seen

Usage = dict[str, AccountUsage]  # account id → its usage state


class UsageCache:
    """Decoded states kept between the batches of one scoring process, least recently
    used out first. A state is taken out while a batch works on it and kept again only
    after the batch committed (``keep``): a batch that fails leaves nothing half-applied
    behind. A stored version that moved (another process wrote the account) is read
    anew. A state a reader (the sweep) is scoring from is lent (``read`` until
    ``give_back``): a batch of its account gets its own copy from the database rather
    than change, uncommitted, what the reader scores."""

    def __init__(self, max_accounts: int):
        self._max = max_accounts
        self._states: OrderedDict[str, AccountUsage] = OrderedDict()
        self._lent: Counter[str] = Counter()  # account id → readers holding its state

    def take(self, account_id: str, version: int) -> AccountUsage | None:
        if self._lent[account_id]:
            return None  # left cached: the committed state, while a reader holds it
        state = self._states.pop(account_id, None)
        return state if state is not None and state.version == version else None

    def peek(self, account_id: str, version: int) -> AccountUsage | None:
        """The cached state of ``account_id`` at ``version``, left in the cache."""
        state = self._states.get(account_id)
        return state if state is not None and state.version == version else None

    def keep(self, states: Mapping[str, AccountUsage]) -> None:
        if not self._max:
            return
        for account_id, state in states.items():
            self._states[account_id] = state
            self._states.move_to_end(account_id)
        while len(self._states) > self._max:
            self._states.popitem(last=False)

    async def load(self, conn: AsyncConnection, ids: Iterable[str], *, for_update: bool) -> Usage:
        return await load(conn, ids, for_update=for_update, cache=self)

    async def read(self, conn: AsyncConnection, ids: Iterable[str]) -> Usage:
        """States to score, not to change (a sweep, an import's days): the cached ones
        where current, left where they are; the others read without their dedup windows
        (scoring never reads them) and not kept. Kept, a sweep of every account would
        push the consumer's accounts out of the cache (2,000 of them by default, while
        a sweep reads them all), and each would be read again, window included, by its
        next batch. A state read so must not be changed or saved, and is lent until
        ``give_back(ids)``: the reader awaits the database while it scores, and a batch
        in the same process may meanwhile apply events to the same accounts."""
        wanted = set(ids)
        self._lent.update(wanted)
        try:
            return await load(conn, wanted, cache=self, windows=False)
        except BaseException:
            self.give_back(wanted)
            raise

    def give_back(self, ids: Iterable[str]) -> None:
        """The reader of ``read(ids)`` is done with their states."""
        for account_id in set(ids):
            left = self._lent[account_id] - 1
            if left > 0:
                self._lent[account_id] = left
            else:
                del self._lent[account_id]

    async def save(
        self, conn: AsyncConnection, states: Mapping[str, AccountUsage], now: datetime
    ) -> None:
        await save(conn, states, now)


class HeldStates:
    """The states of a throwaway replay (the backtest), held in memory and never
    written: the same interface as ``UsageCache``, and the same states as writing and
    reading them back, without encoding every changed state after every batch (a
    tenth of a full-size backtest). Not for a service: nothing survives the process,
    and a batch that fails leaves its states half-applied; nothing reads the usage
    tables (``account_usage``, ``activity_daily``, ``usage_seen``), which stay empty."""

    def __init__(self) -> None:
        self._states: Usage = {}

    async def load(self, conn: AsyncConnection, ids: Iterable[str], *, for_update: bool) -> Usage:
        held = self._states
        return {
            account_id: held.get(account_id) or AccountUsage() for account_id in sorted(set(ids))
        }

    async def read(self, conn: AsyncConnection, ids: Iterable[str]) -> Usage:
        return await self.load(conn, ids, for_update=False)

    def give_back(self, ids: Iterable[str]) -> None:
        """Nothing is lent: a replay runs one batch or one day at a time."""

    async def save(
        self, conn: AsyncConnection, states: Mapping[str, AccountUsage], now: datetime
    ) -> None:
        for state in states.values():
            state.fold_older()  # as encoding would: a day folds once a newer one begins
            state.saved()  # nothing to write: what it would write is forgotten

    def keep(self, states: Mapping[str, AccountUsage]) -> None:
        self._states.update(states)


StateKeeper = UsageCache | HeldStates


async def load(
    conn: AsyncConnection,
    ids: Iterable[str],
    *,
    for_update: bool = False,
    cache: UsageCache | None = None,
    windows: bool = True,
) -> Usage:
    """The usage states of ``ids`` (an empty one for an account never seen), from
    ``cache`` where its version is current. ``for_update``: lock the rows to commit
    (PostgreSQL), in one order everywhere, so two transactions changing the same
    account (a consumer losing its partition while the next one starts) apply one
    after the other instead of one losing the other's. ``windows`` False: to read
    only (``UsageCache.read``), cached states stay cached and the dedup windows of the
    others are not read."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    c = account_usage.c
    query = select(c.account_id, c.version).where(among(conn, c.account_id, wanted))
    if for_update and conn.dialect.name == "postgresql":
        query = query.order_by(c.account_id).with_for_update()
    states: Usage = {}
    stale: dict[str, int] = {}
    for row in await conn.execute(query):
        if cache is None:
            held = None
        elif windows:
            held = cache.take(row.account_id, row.version)
        else:
            held = cache.peek(row.account_id, row.version)
        if held is None:
            stale[row.account_id] = row.version
        else:
            states[row.account_id] = held
    if stale:
        rows = await conn.execute(
            select(c.account_id, c.state).where(among(conn, c.account_id, stale))
        )
        for row in rows:
            states[row.account_id] = state = usage.decode(row.state)
            state.version = stale[row.account_id]
        if windows:
            await _load_seen(conn, {account_id: states[account_id] for account_id in stale})
    return {account_id: states.get(account_id) or AccountUsage() for account_id in wanted}


async def _load_seen(conn: AsyncConnection, states: Usage) -> None:
    """Add the stored hours of their dedup windows to freshly decoded ``states``."""
    s = usage_seen.c
    rows = await conn.execute(
        select(s.account_id, s.hour, s.ids).where(among(conn, s.account_id, states))
    )
    stored: dict[str, list[tuple[int, bytes]]] = defaultdict(list)
    for row in rows:
        stored[row.account_id].append((row.hour, row.ids))
    for account_id, hours in stored.items():
        states[account_id].seen.load(hours)


async def complete(conn: AsyncConnection, states: Usage, ids: Iterable[str]) -> Usage:
    """``states`` with the missing ones of ``ids`` loaded (in place, and returned)."""
    missing = set(ids) - states.keys()
    if missing:
        states.update(await load(conn, missing))
    return states


async def save(conn: AsyncConnection, states: Mapping[str, AccountUsage], now: datetime) -> None:
    """Write the states that changed, and their changed days into the daily history."""
    changed = {account_id: state for account_id, state in states.items() if state.changed}
    if not changed:
        return
    for state in changed.values():
        state.version += 1
    await bulk_upsert(
        conn,
        account_usage,
        [
            {
                "account_id": account_id,
                "state": usage.encode(state),
                "version": state.version,
                "updated_at": now,
            }
            for account_id, state in sorted(changed.items())
        ],
        keys=["account_id"],
    )
    await bulk_upsert(
        conn,
        activity_daily,
        [
            {
                "account_id": account_id,
                "day": date.fromordinal(ordinal),
                "events": totals[0],
                "duration_s": totals[1],
                "active_users": totals[2],
            }
            for account_id, state in sorted(changed.items())
            for ordinal in sorted(state.touched)
            if (totals := state.day_totals(ordinal)) is not None
        ],
        keys=["account_id", "day"],
    )
    await _save_seen(conn, changed)
    for state in changed.values():
        state.saved()


async def _save_seen(conn: AsyncConnection, changed: Mapping[str, AccountUsage]) -> None:
    """Write the hours of the dedup windows that gained ids, delete those that left."""
    s = usage_seen.c
    grown = [
        {"account_id": account_id, "hour": hour, "ids": state.seen.pack(hour)}
        for account_id, state in sorted(changed.items())
        for hour in sorted(state.seen_grown)
    ]
    await bulk_upsert(conn, usage_seen, grown, keys=["account_id", "hour"])
    gone = [
        {"gone_account": account_id, "gone_hour": hour}
        for account_id, state in sorted(changed.items())
        for hour in sorted(state.seen_dropped - state.seen.hours())  # not back in it
    ]
    if gone:
        where = (s.account_id == bindparam("gone_account"), s.hour == bindparam("gone_hour"))
        await conn.execute(delete(usage_seen).where(*where), gone)


def month_of(ordinal: int) -> date:
    """The first day of the month of a day ordinal."""
    return date.fromordinal(ordinal).replace(day=1)


async def archive(
    conn: AsyncConnection,
    parts: Mapping[str, AccountUsage],
    keep_from: Mapping[str, date],
    now: datetime,
) -> None:
    """Add the days of ``parts`` (account → the days its state dropped) to each
    account's long history, month by month, and delete the months before the month of
    ``keep_from[account]`` (the retention) from it and from ``activity_daily``."""
    if not parts:
        return
    c = usage_archive.c
    wanted = {
        (account_id, month_of(o)) for account_id, part in parts.items() for o in part.ordinals()
    }
    oldest = min(month for _, month in wanted)
    found = await conn.execute(
        select(c.account_id, c.month, c.state).where(
            among(conn, c.account_id, sorted(parts)), c.month >= oldest
        )
    )
    months = {
        (row.account_id, row.month): usage.decode(row.state)
        for row in found
        if (row.account_id, row.month) in wanted
    }
    for account_id, part in parts.items():
        by_month: dict[date, list[int]] = defaultdict(list)
        for ordinal in part.ordinals():
            by_month[month_of(ordinal)].append(ordinal)
        for month, ordinals in by_month.items():
            months.setdefault((account_id, month), AccountUsage()).absorb(part, ordinals)
    rows = [
        {"account_id": a, "month": m, "state": usage.encode(state), "updated_at": now}
        for (a, m), state in sorted(months.items())
    ]
    await bulk_upsert(conn, usage_archive, rows, keys=["account_id", "month"])
    by_cutoff: dict[date, list[str]] = defaultdict(list)
    for account_id in parts:
        by_cutoff[keep_from[account_id]].append(account_id)
    for cutoff, ids in by_cutoff.items():
        for table, column in ((usage_archive, c.month), (activity_daily, activity_daily.c.day)):
            await conn.execute(
                delete(table).where(and_(among(conn, table.c.account_id, ids), column < cutoff))
            )


async def load_history(
    conn: AsyncConnection, ids: Iterable[str], first: date, last: date
) -> dict[str, list[AccountUsage]]:
    """account → the months of its long history holding days from ``first`` to ``last``."""
    c = usage_archive.c
    rows = await conn.execute(
        select(c.account_id, c.state).where(
            among(conn, c.account_id, sorted(set(ids))),
            c.month >= first.replace(day=1),
            c.month <= last,
        )
    )
    months: dict[str, list[AccountUsage]] = defaultdict(list)
    for row in rows:
        months[row.account_id].append(usage.decode(row.state))
    return dict(months)
