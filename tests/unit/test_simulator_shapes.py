"""`healthwatch simulate --shape`: each product shape is deterministic by seed, valid
against the event schema, and its churn follows the behaviour it claims to simulate."""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from datetime import date, timedelta
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from services.scoring.backtest.replay import read_churn_csv
from services.simulate_history import SHAPES, generate, write_history
from services.simulator import subscription, transactional
from shared.contracts.events import EVENT_ADAPTER
from tests.support.history import load_events

END = date(2026, 6, 30)


def _items(shape: str, seed: int = 5, accounts: int = 60, days: int = 150) -> list[tuple]:
    return list(SHAPES[shape](accounts, days, end=END, seed=seed))


def test_the_crm_shape_is_unchanged_for_a_seed() -> None:
    """Other tools (alert-volume measurements) replay the CRM shape by seed: its output
    must not move when shapes are added."""
    digest = hashlib.sha256()
    for kind, item in generate(30, 90, end=END, seed=5):
        digest.update(orjson.dumps([kind, item], default=str))
    assert digest.hexdigest() == "05af5aa4ed88e6437f4685755e18509c45eadda344f77fff1c438cf61509f115"


@pytest.mark.parametrize("shape", ["subscription", "transactional"])
def test_a_shape_is_deterministic_valid_and_ends_at_churn(shape: str) -> None:
    items = _items(shape)
    assert items == _items(shape) and items != _items(shape, seed=6)
    churn = {account: day for kind, (account, day) in _pairs(items, "churn")}
    assert 5 <= len(churn) < 60  # some leave, not everybody
    last_event: dict[str, date] = {}
    for _, event in _pairs(items, "event"):
        parsed = EVENT_ADAPTER.validate_python(event)
        day = parsed.occurred_at.date()
        last_event[parsed.account_id] = max(day, last_event.get(parsed.account_id, day))
        assert END - timedelta(days=149) <= day <= END
    assert all(last_event[account] <= day for account, day in churn.items())


def _pairs(items: list[tuple], kind: str) -> list[tuple]:
    return [(k, item) for k, item in items if k == kind]


def test_subscription_has_eight_event_types_one_user_and_behaviour_driven_churn() -> None:
    events = [item for kind, item in _items("subscription") if kind == "event"]
    usage = [event for event in events if event["kind"] == "usage"]
    assert {event["event"] for event in usage} == set(subscription.BASE_RATES)
    assert all(event["user_id"] == event["account_id"] for event in usage)
    # No go-live, no modules, no seats: what the handbook's CRM model would look for is
    # absent (seats of 1 fired "seats nearly used" for every subscriber).
    assert not any(
        "go_live" in event or "module" in event or "seats_purchased" in event for event in events
    )
    busy = {"like": 60, "post": 20, "message": 20, "reply": 10, "dislike": 2}
    sour = {**busy, "dislike": 60}
    quiet = {"like": 2, "adview": 30}
    assert subscription.churn_chance(busy, 300) < subscription.churn_chance(quiet, 300)
    assert subscription.churn_chance(busy, 300) < subscription.churn_chance(sour, 300)
    assert subscription.churn_chance(busy, 300) < subscription.churn_chance(busy, 30)


def test_transactional_churn_is_ninety_days_without_a_purchase() -> None:
    items = _items("transactional", accounts=80, days=240)
    purchases: dict[str, list[date]] = defaultdict(list)
    for _, event in _pairs(items, "event"):
        if event.get("event") == "purchase":
            assert event["properties"]["value"] > 0
            purchases[event["account_id"]].append(date.fromisoformat(event["occurred_at"][:10]))
    churn = dict(item for _, item in _pairs(items, "churn"))
    assert churn
    for account, day in churn.items():
        assert (day - max(purchases[account])).days == transactional.CHURN_AFTER_DAYS
    # Buying more and spending more make giving up less likely; a return, more.
    assert transactional.give_up_chance(5, 80, 0) < transactional.give_up_chance(1, 80, 0)
    assert transactional.give_up_chance(1, 200, 0) < transactional.give_up_chance(1, 20, 0)
    assert transactional.give_up_chance(1, 80, 0) < transactional.give_up_chance(1, 80, 1)


def test_cli_writes_a_shape_in_the_history_format_the_backtest_reads(tmp_path: Path) -> None:
    from services.cli import app  # the whole CLI: imported only by the test that runs it

    events, churn = tmp_path / "sub.ndjson.gz", tmp_path / "churn.csv"
    args = ["simulate", "--history-out", str(events), "--churn-out", str(churn)]
    result = CliRunner().invoke(
        app, [*args, "--accounts", "20", "--months", "3", "--shape", "subscription"]
    )
    assert result.exit_code == 0, result.output
    loaded, rejected = load_events([events])
    assert rejected == 0 and Counter(event.kind for event in loaded)["usage"] > 1000
    assert set(read_churn_csv(churn)) <= {event.account_id for event in loaded}
    wrong = CliRunner().invoke(app, [*args, "--shape", "bakery"])
    assert wrong.exit_code != 0 and "--shape" in wrong.output


def test_write_history_takes_the_shape(tmp_path: Path) -> None:
    written, churned = write_history(
        tmp_path / "t.ndjson",
        tmp_path / "c.csv",
        accounts=30,
        days=200,
        end=END,
        shape="transactional",
    )
    assert written > 300 and churned == len(read_churn_csv(tmp_path / "c.csv"))
