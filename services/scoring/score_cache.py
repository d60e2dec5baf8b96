"""What an import's scoring reads back of its own writes, kept in memory for the import.

An import scores each account once per day of its history (``import_days.py``). Every
day's step reads the score stored before it (``account_health``) and the rules' states
(``rule_state``), which the import itself wrote the day before; read back from the
database they cost more than a day's writes. ``ScoreCache`` keeps them as the database
would return them, read once per account and then kept current from each step's
results.

The ``account_health`` values of the days scored after the fact are held, not written
(they were a tenth of an import's time: a row with its full explanation, about 10 KB,
rewritten per account and day): each account's newest values are written with the next
batch of events (its transaction, with the offsets: the checkpoint) and at the end of the
import. So ``account_health`` is never older than the last checkpoint and is current
when the import ends; the history (``health_daily``) and the rules' states are written
day by day as before. A crash between checkpoints leaves ``account_health`` as of the
last one, which the resumed import scores on from (it scores its days again from the
first).

Valid while the import is the only writer of the accounts' scores: an import runs in
its own process, and nothing but scoring writes ``account_health``'s scores or
``rule_state``. A transaction that fails ends the import (nothing retries it), and the
cache with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scoring import history
from services.scoring.history import Previous
from services.scoring.rules import RuleState
from services.scoring.step import ScoredAccount
from shared.storage.db import among
from shared.storage.tables import rule_state


class ScoreCache:
    def __init__(self, max_accounts: int) -> None:
        # Past this many accounts known, what is kept is let go at the next write of
        # the held values (``release``), the database then saying the same: memory
        # bounded as the usage states' (the same setting, HEALTHWATCH_STATE_CACHE_ACCOUNTS).
        self._max = max_accounts
        # account → its stored score (an account without a health row yet is read
        # again: its first batch of events gives it one)
        self._previous: dict[str, Previous] = {}
        self._rules: dict[str, dict[str, RuleState]] = {}  # account → rule id → state
        self._held: dict[str, dict[str, Any]] = {}  # account → account_health values

    async def previous(self, conn: AsyncConnection, ids: Iterable[str]) -> dict[str, Previous]:
        """account → its stored score, as ``history.load_previous`` reads it."""
        missing = [account_id for account_id in ids if account_id not in self._previous]
        if missing:
            self._previous.update(await history.load_previous(conn, missing))
        return {a: known for a in ids if (known := self._previous.get(a)) is not None}

    async def rule_states(
        self, conn: AsyncConnection, ids: Iterable[str]
    ) -> dict[str, dict[str, RuleState]]:
        """account → rule id → the rule's stored state (the accounts with one)."""
        missing = [account_id for account_id in ids if account_id not in self._rules]
        if missing:
            loaded = await load_rule_states(conn, missing)
            self._rules.update({account_id: loaded.get(account_id, {}) for account_id in missing})
        return {a: states for a in ids if (states := self._rules[a])}

    def record(self, results: Sequence[ScoredAccount], *, hold: bool) -> None:
        """Learn what the steps wrote (or, ``hold``, will write: their ``account_health``
        values are held)."""
        for result in results:
            if result.rule_states:
                moved = {rule: _stored(state) for rule, state in result.rule_states.items()}
                self._rules[result.account_id] = self._rules.get(result.account_id, {}) | moved
            if result.health is None:
                continue
            health = result.health
            self._previous[result.account_id] = Previous(
                health["score"], health["band"], _stored_json(health["inputs"])
            )
            if hold:
                self._held[result.account_id] = health
            else:
                self._held.pop(result.account_id, None)  # written now, newer

    def release(self) -> list[dict[str, Any]]:
        """The held ``account_health`` values, to be written now (each account's newest)."""
        held, self._held = list(self._held.values()), {}
        if max(len(self._previous), len(self._rules)) > self._max:
            self._previous, self._rules = {}, {}
        return held


async def load_rule_states(
    conn: AsyncConnection, ids: Iterable[str]
) -> dict[str, dict[str, RuleState]]:
    """account → rule id → the rule's stored state."""
    states: dict[str, dict[str, RuleState]] = {}
    query = select(rule_state).where(among(conn, rule_state.c.account_id, ids))
    for row in await conn.execute(query):
        states.setdefault(row.account_id, {})[row.rule] = RuleState(
            row.status, row.since, row.cleared_at, row.severity, row.fire_count, row.revision
        )
    return states


def _stored(state: RuleState) -> RuleState:
    """``state`` as ``rule_state`` returns it: its moments in UTC (UTCDateTime)."""
    return RuleState(
        state.status,
        _utc(state.since),
        _utc(state.cleared_at),
        state.severity,
        state.fire_count,
        state.revision,
    )


def _utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.astimezone(UTC)


def _stored_json(value: Any) -> Any:
    """``value`` as a JSON column returns it (tuples as lists, …), encoded as the engine's
    JSON columns encode (``shared/storage/db.py``), so comparing with it is comparing
    with the stored row."""
    return orjson.loads(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS))
