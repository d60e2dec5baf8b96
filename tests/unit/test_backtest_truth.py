"""The honest backtest: the time split and its embargo, AUC intervals, measures rated in
their declared direction, weights that never reward a group without data or one that
ranks backwards, the history baselines, and the checks before trusting a model."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest

from services.scoring.backtest import report as rpt
from services.scoring.backtest.baselines import history_baselines
from services.scoring.backtest.checks import warnings
from services.scoring.backtest.directions import declared_direction, rate_measures
from services.scoring.backtest.outofsample import (
    _resampled_aucs,
    _resampled_aucs_one_by_one,
    auc,
    auc_interval,
    calibration,
    riskiest_share,
    time_split,
)
from services.scoring.backtest.replay import Replay, Snapshot
from services.scoring.model.schema import load_default_model
from shared.contracts.events import AccountFacts, UsageEvent

D0 = date(2026, 1, 1)


@pytest.mark.parametrize("horizon", [7, 30, 60])
def test_time_split_keeps_train_and_test_apart_by_an_embargo(horizon: int) -> None:
    days = [D0 + timedelta(days=7 * week) for week in range(40) for _ in range(3)]
    split = time_split(days, horizon)
    assert split.train and split.test
    assert not set(split.train) & set(split.test)  # no observation in both
    assert all(days[k] >= split.cut for k in split.test)
    # Every training observation's churn window closes before the first test day.
    assert all(days[k] + timedelta(days=horizon) < split.cut for k in split.train)
    # Only the embargo is left out: everything before it trains, everything after tests.
    skipped = set(range(len(days))) - set(split.train) - set(split.test)
    assert all(split.cut - timedelta(days=horizon + 1) < days[k] < split.cut for k in skipped)


def test_auc_and_its_interval() -> None:
    labels = np.array([False, False, True, True] * 10)
    risk = np.array([1.0, 2.0, 3.0, 4.0] * 10)
    accounts = [f"a{k // 4}" for k in range(40)]
    assert auc(risk, labels) == 1.0 and auc(-risk, labels) == 0.0
    assert auc(np.array([1.0, 2.0, 2.0, 3.0]), np.array([False, False, True, True])) == 0.875
    assert auc(risk, np.ones(40, dtype=bool)) is None
    assert auc_interval(risk, labels, accounts) == {"auc": 1.0, "low": 1.0, "high": 1.0}
    rng = np.random.default_rng(1)
    noisy = risk + rng.normal(0, 1.5, 40)
    interval = auc_interval(noisy, labels, accounts)
    assert interval["low"] <= interval["auc"] <= interval["high"] and interval["low"] < 1
    assert riskiest_share(risk, labels, 0.25) == 0.5  # the top 10 of 40 hold 10 of 20 churners


def test_the_bootstrap_draws_are_those_of_ranking_every_draw() -> None:
    """Weighting the observations by how often a draw holds their account gives the AUCs
    of concatenating the draw's rows and ranking them, value for value: ties, accounts of
    unequal sizes, and draws holding one class only (left out) included."""
    rng = np.random.default_rng(3)
    for size, accounts_n in ((60, 7), (500, 40), (12, 3)):
        risk = rng.integers(0, 6, size).astype(float)  # many ties
        labels = rng.random(size) < 0.2
        accounts = [f"a{rng.integers(0, accounts_n)}" for _ in range(size)]
        for seed in (0, 5):
            fast = _resampled_aucs(risk, labels, accounts, seed, 100)
            slow = _resampled_aucs_one_by_one(risk, labels, accounts, seed, 100)
            assert fast == slow and fast
    with_nan = np.array([1.0, np.nan, 2.0, 3.0])
    nan_labels = np.array([False, True, False, True])
    np.testing.assert_array_equal(  # NaN equal to NaN
        _resampled_aucs(with_nan, nan_labels, ["a", "b", "c", "d"], 0, 10),
        _resampled_aucs_one_by_one(with_nan, nan_labels, ["a", "b", "c", "d"], 0, 10),
    )


def _snap(account: str, day: date, churner: bool, **inputs: float) -> Snapshot:
    return Snapshot(account, day, 30 if churner else 70, "red" if churner else "green", inputs, {})


def test_measures_are_rated_in_their_declared_direction_and_flagged_when_backwards() -> None:
    model = load_default_model()
    assert declared_direction("active_days_7d", model) is False  # rising curve: more is healthier
    assert declared_direction("open_tickets", model) is True
    assert declared_direction("days_since_last_use", model) is True
    assert declared_direction("pc_share_28d", model) is None
    snaps, labels = [], []
    for n in range(40):
        churner = n % 4 == 0
        # Churners here are MORE active: the model's reading is backwards on this data.
        snaps.append(
            _snap(f"a{n}", D0, churner, active_days_7d=6 if churner else 2, pc_share_28d=n)
        )
        labels.append(churner)
    rated = rate_measures(snaps, labels, model)
    assert rated["active_days_7d"]["auc"] == 0.0 and rated["active_days_7d"]["backwards"]
    assert rated["active_days_7d"]["higher_is_riskier"] is False
    assert not rated["pc_share_28d"]["declared"]
    quick = rate_measures(snaps, labels, model, resamples=0)  # later horizons: no interval
    assert quick["active_days_7d"]["low"] is None and quick["active_days_7d"]["backwards"]


def test_suggested_weights_never_reward_no_data_or_a_backwards_group() -> None:
    model = load_default_model()
    snaps = [
        Snapshot(
            f"a{n}",
            D0,
            50,
            "yellow",
            {},
            {"activity": 90 - 80 * (n % 2), "depth": 20 + 60 * (n % 2)},
        )
        for n in range(20)
    ]
    labels = [n % 2 == 1 for n in range(20)]  # low activity churns; high depth churns (backwards)
    power = rpt._group_power(model, snaps, labels)
    weights = rpt._weights(model, power, snaps, labels)
    assert weights["suggested"]["support"] == 0 and "support" in weights["no_data"]
    assert weights["suggested"]["depth"] == 0 and weights["backwards"] == ["depth"]
    assert weights["suggested"]["activity"] == sum(weights["current"].values())


def test_history_baselines_from_the_raw_events() -> None:
    def at(day: int) -> datetime:
        return datetime(2026, 1, 1, 12, tzinfo=UTC) + timedelta(days=day)

    events = [
        AccountFacts(
            event_id="f", account_id="a", occurred_at=at(0), contract_start=date(2025, 12, 2)
        ),
        *(
            UsageEvent(event_id=f"u{d}", account_id="a", user_id="x", event="e", occurred_at=at(d))
            for d in (1, 2, 2, 40)
        ),
    ]
    days = [(("a"), D0 + timedelta(days=d)) for d in (45, 3, 0)]
    out = history_baselines(events, days)
    assert out[0] == {"days_since_last_event": 5.0, "events_28d": 1.0, "tenure_days": 75.0}
    assert out[1] == {"days_since_last_event": 1.0, "events_28d": 3.0, "tenure_days": 33.0}
    # Facts are not the customer doing something: no event yet on day 0.
    assert out[2]["events_28d"] == 0.0


def test_checks_warn_before_a_model_is_trusted() -> None:
    model = load_default_model()
    snaps = [
        _snap(
            f"a{n}", D0 + timedelta(days=7 * w), False, payment_failed_30d=0, active_days_7d=n % 5
        )
        for n in range(30)
        for w in range(4)
    ]
    result = Replay(
        snapshots=snaps,
        churn={"a1": D0 + timedelta(days=30)},
        first_day=D0,
        last_day=D0 + timedelta(days=40),
    )
    found = warnings(result, snaps, model, [30], {30: 0.005})
    checks = {w["check"]: w["message"] for w in found}
    assert set(checks) == {"short_history", "low_churn", "no_data", "constant", "no_go_live"}
    messages = " ".join(w["message"] for w in found)
    assert (
        "open_tickets has no data" in messages and "payment_failed_30d is 0 for every" in messages
    )
    assert "1 scored accounts churned" in checks["low_churn"]
    healthy = Replay(
        snapshots=snaps,
        churn={f"a{n}": D0 for n in range(25)},
        first_day=D0,
        last_day=D0 + timedelta(days=300),
        go_live_accounts=3,
    )
    assert {w["check"] for w in warnings(healthy, snaps, model, [30], {30: 0.2})} == {
        "no_data",
        "constant",
    }


def test_calibration_bins_run_from_the_safest_to_the_riskiest() -> None:
    risk = np.arange(100, dtype=float)  # risk 0..99: scores 100..1
    labels = risk >= 80  # the riskiest fifth churns
    bins = calibration(risk, labels)
    assert [b["observations"] for b in bins] == [10] * 10
    assert [b["churn_rate"] for b in bins] == [0.0] * 8 + [1.0, 1.0]
    assert bins[0]["score"] > bins[-1]["score"]
    probabilities = calibration(risk / 100, labels, probabilities=True)
    assert probabilities[-1]["predicted"] == 0.945 and "score" not in probabilities[0]


def test_weights_that_rank_churn_no_better_are_no_suggestion() -> None:
    """ "Suggested group weights … AUC 0.707 → 0.567" was offered (found from outside)."""
    weights = {
        "suggested": {"activity": 60.0, "depth": 40.0},
        "improves": False,
        "current_roc_auc": 0.707,
        "suggested_roc_auc": 0.567,
        "no_data": [],
        "backwards": [],
    }
    said = "\n".join(rpt._measures_text({"horizon_days": 30, "measures": {}, "weights": weights}))
    assert "No group weights suggested" in said and "0.707 → 0.567" in said
    assert "Suggested group weights" not in said
