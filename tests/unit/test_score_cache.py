"""An import's ``ScoreCache`` answers what the database would: the stored score and rule
states as read back (JSON as stored, moments in UTC), and holds a past day's
``account_health`` values (each account's newest) until they are written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any, cast

import pytest

from services.scoring import score_cache
from services.scoring.history import Previous
from services.scoring.rules import RuleState
from services.scoring.score_cache import ScoreCache
from services.scoring.step import ScoredAccount

EAST = timezone(timedelta(hours=8))


def result(account_id: str, score: int | None, **states: RuleState) -> ScoredAccount:
    health = None
    if score is not None:
        health = {
            "account_id": account_id,
            "score": score,
            "band": "green",
            "inputs": {"x": (1, 2)},
        }
    return cast(
        ScoredAccount, SimpleNamespace(account_id=account_id, health=health, rule_states=states)
    )


async def test_what_the_steps_wrote_is_read_back_as_stored() -> None:
    cache = ScoreCache(10)
    since = datetime(2026, 11, 2, 20, tzinfo=EAST)
    cache.record([result("a", 71, churn=RuleState("firing", since, severity="high"))], hold=True)
    conn: Any = None  # every account asked for is known: nothing is read
    assert await cache.previous(conn, ["a"]) == {"a": Previous(71, "green", {"x": [1, 2]})}
    states = await cache.rule_states(conn, ["a"])
    assert states["a"]["churn"].since == since and states["a"]["churn"].since.tzinfo == UTC
    # A step that leaves the score and rules unchanged keeps what was known.
    cache.record([result("a", None)], hold=True)
    assert (await cache.previous(conn, ["a"]))["a"].score == 71
    assert set((await cache.rule_states(conn, ["a"]))["a"]) == {"churn"}


def test_held_values_are_each_accounts_newest_until_written() -> None:
    cache = ScoreCache(10)
    cache.record([result("a", 60), result("b", 50)], hold=True)
    cache.record([result("a", 61)], hold=True)
    cache.record([result("b", 52)], hold=False)  # written by its batch: no longer held
    assert [(row["account_id"], row["score"]) for row in cache.release()] == [("a", 61)]
    assert cache.release() == []


async def test_past_its_bound_what_is_kept_is_let_go_once_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = ScoreCache(1)
    cache.record([result("a", 60), result("b", 50)], hold=True)
    conn: Any = None
    assert set(await cache.previous(conn, ["a", "b"])) == {"a", "b"}  # held: not written yet
    assert len(cache.release()) == 2
    read: list[list[str]] = []

    async def load_previous(conn: Any, ids: list[str]) -> dict[str, Previous]:
        read.append(ids)
        return {account_id: Previous(1, "red", {}) for account_id in ids}

    monkeypatch.setattr(score_cache.history, "load_previous", load_previous)
    # Written: read again from the database, which says the same now.
    assert (await cache.previous(conn, ["a", "b"]))["a"].score == 1 and read == [["a", "b"]]
