"""Backtest: the metrics on hand-computed cases, and a small end-to-end replay."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.scoring.backtest import report as rpt
from services.scoring.backtest.calibration import _worse_than_base
from services.scoring.backtest.metrics import by_band, roc_auc, roc_curve, top_decile_lift
from services.scoring.backtest.replay import Firing, Replay, Snapshot, read_churn_csv, replay
from services.scoring.model.schema import load_default_model
from services.simulate_history import write_history


def test_roc_auc_by_hand() -> None:
    assert roc_auc([1, 2, 3, 4], [False, False, True, True]) == 1.0
    assert roc_auc([4, 3, 2, 1], [False, False, True, True]) == 0.0
    # One tie between a churner and a stayer counts half: (1 + 1 + 0.5 + 1) / 4.
    assert roc_auc([1, 2, 2, 3], [False, False, True, True]) == pytest.approx(0.875)
    assert roc_auc([1, 2], [True, True]) is None
    assert roc_curve([3, 1], [True, False]) == [(0.0, 0.0), (0.0, 1.0), (1.0, 1.0)]


def test_bands_and_lift() -> None:
    stats = by_band(
        ["red", "red", "green", "yellow"], [True, False, False, True], ["red", "yellow", "green"]
    )
    assert [(s.band, s.snapshots, s.churned, s.precision, s.recall) for s in stats] == [
        ("red", 2, 1, 0.5, 0.5),
        ("yellow", 1, 1, 1.0, 0.5),
        ("green", 1, 0, 0.0, 0.0),
    ]
    risks = list(range(20))
    labels = [i >= 18 for i in risks]  # the two riskiest churn
    assert top_decile_lift(risks, labels) == pytest.approx(10.0)


def test_rule_quality_by_hand() -> None:
    d = date(2026, 1, 1)
    result = Replay(
        # Four scored account-days; one (b, day 0) is followed by churn within 30 days.
        snapshots=[
            Snapshot(a, d + timedelta(days=k), 50, "yellow", {}, {})
            for a in ("a", "b")
            for k in (0, 40)
            if (a, k) != ("b", 40)
        ]
        + [Snapshot("c", d, 80, "green", {}, {})],
        firings=[
            Firing("b", "low_activity", d),  # b churns 25 days later
            Firing("a", "low_activity", d),  # a never churns
            Firing("b", "champion_changed", d + timedelta(days=20)),  # 5 days before
            Firing("b", "nps_detractor", d + timedelta(days=30)),  # after b left: ignored
        ],
        churn={"b": d + timedelta(days=25)},
    )
    q = rpt.rule_quality(result, [30])
    assert q["base_churn_rate"] == {"30": 0.25}  # 1 of 4 scored account-days
    assert q["rules"] == [
        {
            "rule": "low_activity",
            "fired": 2,
            "accounts": 2,
            "churned_within": {"30": 0.5},
            "lift": {"30": 2.0},
            "median_days_to_churn": 25.0,
        },
        {
            "rule": "champion_changed",
            "fired": 1,
            "accounts": 1,
            "churned_within": {"30": 1.0},
            "lift": {"30": 4.0},
            "median_days_to_churn": 5.0,
        },
    ]


def test_replay_of_a_simulated_history_beats_days_since_last_use(tmp_path: Path) -> None:
    events, churn_csv = tmp_path / "h.ndjson.gz", tmp_path / "churn.csv"
    written, churned = write_history(
        events, churn_csv, accounts=40, days=150, end=date(2026, 11, 1), seed=3
    )
    assert written > 10_000 and churned >= 3
    result = asyncio.run(replay([events], churn=read_churn_csv(churn_csv), step_days=14))
    assert result.rejected == 0 and result.snapshots
    # Churned accounts are not scored after they left.
    assert all(
        s.day < result.churn[s.account_id] for s in result.snapshots if s.account_id in result.churn
    )
    report = rpt.build(result, [30], load_default_model())  # 60 days: too short a history
    h = report["horizons"][0]
    assert h["roc_auc"] is not None and h["baseline_roc_auc"] is not None
    assert h["roc_auc"] > h["baseline_roc_auc"]
    assert set(h["weights"]["suggested"]) == set(h["weights"]["current"])
    assert "AUC" in rpt.text(report) and "<img" in rpt.html_report(report)
    # The median lead says of how many churners it is (132 days from 2 of 78 read as
    # "warned 132 days ahead"; found from outside).
    of = f"({h['churners_flagged_red']} of {report['churned_accounts']})"
    assert "lead days (of churners)" in rpt.text(report) and of in rpt.text(report)
    # Out of sample: the score beside every baseline and the reference, with intervals,
    # and the plain-language summary before the statistics.
    oos = h["out_of_sample"]
    assert set(oos["auc"]) >= {
        "the score",
        "days since last event",
        "events over 28 days",
        "tenure alone",
    }
    assert all(v["low"] <= v["auc"] <= v["high"] for v in oos["auc"].values() if v["auc"])
    assert rpt.text(report).startswith("The riskiest 10% of account-days by the score held")
    # A reference that could not train says why, and the rules' table its denominators
    # (found from outside: both read as unexplained).
    lacking = rpt.text({**report, "horizons": [_without_reference(h)]})
    # The red band's shares with their counts, and the false alarms beside the lead time
    # ("0% caught, 100% right" was 1 of 242; found from outside).
    red = oos["red"]
    said = rpt.text(report)
    assert f"({red['red_churned']} of {red['churned']} account-days followed by churn)" in said
    assert f"({red['red_churned']} of {red['red']})" in said
    assert f"red also flagged {h['stayers_flagged_red']} of the {h['stayers']} accounts" in said
    assert 0 < h["stayers"] <= report["accounts"]
    empty = {**red, "recall": 0.01, "red": 1, "red_churned": 1}
    assert "The red band is nearly empty" in rpt._red_sentence(empty)
    assert "nearly empty" not in rpt._red_sentence({**red, "recall": 0.5})
    assert "(no gradient boosting (reference): it trains on" in lacking
    assert "lie within the history" in rpt.text(report)
    starved = {**h, "out_of_sample": {**oos, "train_observations": 206}}
    starved["out_of_sample"]["train_churn_observations"] = 4
    weak = rpt.text({**report, "horizons": [starved]})
    assert "learned from 206 observations, 4 of them followed by churn: too few" in weak
    bins = oos["calibration"]["the score"]
    assert sum(b["observations"] for b in bins) == oos["test_observations"]
    assert all(s.history for s in result.snapshots)
    # The rules fired during the replay, each with its churn figures.
    rules = report["alert_rules"]["rules"]
    assert result.firings and rules
    before_churn = [
        f
        for f in result.firings
        if f.account_id not in result.churn or f.day < result.churn[f.account_id]
    ]
    assert sum(r["fired"] for r in rules) == len(before_churn)
    # None: every firing of the rule too near the end of the history to know what followed.
    shares = [share for r in rules for share in r["churned_within"].values()]
    assert all(share is None or 0 <= share <= 1 for share in shares)
    assert "Alert rules in the replay" in rpt.text(report)
    # A horizon longer than the history: nothing to judge, said so (it raised IndexError
    # once every window past the history's end was left out).
    beyond = rpt.build(result, [30, 180], load_default_model())
    said = rpt.text(beyond)
    assert "churn within 180 days: no account-day's window lies within the history" in said
    assert "<img" in rpt.html_report(beyond)


def _without_reference(horizon: dict[str, Any]) -> dict[str, Any]:
    """``horizon`` as a history too short to train the reference on reports it."""
    oos = horizon["out_of_sample"]
    auc = {name: v for name, v in oos["auc"].items() if name != rpt.REFERENCE}
    return {**horizon, "out_of_sample": {**oos, "auc": auc, "train_observations": 12}}


def test_a_calibrated_model_a_little_lower_within_the_noise_is_not_called_worse() -> None:
    """0.916 against 0.929, intervals overlapping, was told "keep that one" and did
    better on another period (found from outside)."""
    base = {"auc": 0.929, "low": 0.891, "high": 0.963}
    within = _worse_than_base({"auc": 0.916, "low": 0.855, "high": 0.965}, base)
    assert within is not None and "within the intervals' noise" in within
    assert "keep that one" not in within
    worse = _worse_than_base({"auc": 0.80, "low": 0.75, "high": 0.85}, base)
    assert worse is not None and "keep that one" in worse
    assert _worse_than_base({"auc": 0.95, "low": 0.9, "high": 0.99}, base) is None
