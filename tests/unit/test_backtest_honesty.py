"""What a backtest says must be what its figures show (found from outside): outcomes
past the history's end are not "stayed", ties do not decide the riskiest tenth, the
summary says when the score is no better than chance or a simpler ranking, and an
account that churned before the first scored day is not called a wrong id."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest

from services.scoring.backtest import report as rpt
from services.scoring.backtest.calibration import calibrate
from services.scoring.backtest.checks import warnings
from services.scoring.backtest.metrics import top_decile_lift, top_weights
from services.scoring.backtest.outofsample import evaluate, riskiest_share
from services.scoring.backtest.replay import Replay, Snapshot
from services.scoring.model.schema import load_default_model

LAST = date(2026, 12, 5)


def snap(account: str, day: date, score: int = 50) -> Snapshot:
    return Snapshot(account, day, score, "yellow", {}, {})


def test_an_outcome_past_the_historys_end_is_left_out_not_counted_as_stayed() -> None:
    snaps = [
        snap("stays", LAST - timedelta(days=100)),  # its 90 days lie within: stayed
        snap("went", LAST - timedelta(days=95)),  # churned within its 90 days
        snap("unknown", LAST - timedelta(days=10)),  # 80 of its 90 days are to come
        # Churned already, but kept only because it did, the late days would be all
        # churn: every late day is left out alike (found in review).
        snap("goes", LAST - timedelta(days=10)),
    ]
    churn = {"went": LAST - timedelta(days=40), "goes": LAST - timedelta(days=2)}
    assert rpt.observed(snaps, churn, 90, LAST) == [True, True, False, False]
    result = Replay(snapshots=snaps, churn=churn, last_day=LAST)
    kept, labels, _ = rpt.outcomes(result, snaps, 90)
    assert [s.account_id for s in kept] == ["stays", "went"] and labels == [False, True]


def test_ties_at_the_cut_share_the_riskiest_tenth() -> None:
    """Ten observations of one risk: each is a tenth of the riskiest one, whatever the
    order; taking the first in list order gave all or nothing."""
    risk = np.full(10, 40.0)
    assert np.allclose(top_weights(risk), 0.1)
    for churned in ([True] + [False] * 9, [False] * 9 + [True]):
        labels = np.array(churned)
        assert riskiest_share(risk, labels) == 0.1
        assert top_decile_lift(risk.tolist(), churned) == 1.0


def test_the_summary_says_when_the_score_is_no_better_than_chance_or_a_baseline() -> None:
    aucs = {
        rpt.DEFAULT: {"auc": 0.539, "low": 0.484, "high": 0.606},
        "events over 28 days": {"auc": 0.675, "low": 0.58, "high": 0.77},
        "days since last event": {"auc": 0.525, "low": 0.47, "high": 0.58},
    }
    said = rpt._plainly(aucs)
    assert "holds 0.5: with these churners the score cannot be told from chance" in said
    backwards = rpt._plainly({rpt.DEFAULT: {"auc": 0.38, "low": 0.30, "high": 0.45}})
    assert "lies below 0.5: here the score ranks churn backwards" in backwards
    assert "Ranking churn better than the score here (AUC): events over 28 days (0.675)." in said
    assert "days since last event" not in said
    assert "close to perfect" not in said
    assert "`healthwatch calibrate` the same files" in said


def test_a_ranking_higher_within_its_noise_is_not_named_better() -> None:
    """Tenure alone at 0.559 (0.458–0.663) was named better than a score at 0.556 (found
    from outside): a figure within its own interval's reach of the score's is said so."""
    aucs = {
        rpt.DEFAULT: {"auc": 0.656, "low": 0.616, "high": 0.705},
        "tenure alone": {"auc": 0.659, "low": 0.558, "high": 0.763},
    }
    said = rpt._plainly(aucs)
    assert "better than the score" not in said and "calibrate" not in said
    assert "Higher than the score, within their intervals' noise: tenure alone (0.659)." in said


def test_the_summary_doubts_a_ranking_too_good_to_be_foresight() -> None:
    """On the shop shape, churn is "90 days without a purchase" and the reference ranks
    it at 0.985 from the days since the last purchase: the definition, not foresight."""
    aucs = {
        rpt.DEFAULT: {"auc": 0.757, "low": 0.736, "high": 0.778},
        rpt.REFERENCE: {"auc": 0.985, "low": 0.980, "high": 0.990},
    }
    said = rpt._plainly(aucs)
    assert "close to perfect (gradient boosting (reference), 0.985)" in said
    assert "how soon the definition is met" in said


def test_churn_before_the_first_scored_day_is_not_a_wrong_id() -> None:
    snaps = [snap("a", date(2026, 5, 8)), snap("b", date(2026, 5, 8))]
    churn = {"a": date(2026, 6, 1), "early": date(2026, 5, 1), "typo": date(2026, 6, 1)}
    result = Replay(snapshots=snaps, churn=churn, first_day=date(2026, 4, 1), last_day=LAST)
    found = {
        w["check"]: w["message"] for w in warnings(result, snaps, load_default_model(), [30], {})
    }
    assert "early" in found["churned_before_scoring"]
    assert "typo" in found["unknown_churned"] and "early" not in found["unknown_churned"]
    # Knowing which accounts the history names, an early date on an id it never names
    # is a wrong id, not an early churn.
    typo = {**churn, "typo": date(2026, 4, 1)}
    known = Replay(
        snapshots=snaps,
        churn=typo,
        first_day=date(2026, 4, 1),
        last_day=LAST,
        accounts=frozenset({"a", "b", "early"}),
    )
    named = {
        w["check"]: w["message"] for w in warnings(known, snaps, load_default_model(), [30], {})
    }
    assert "typo" in named["unknown_churned"] and "typo" not in named["churned_before_scoring"]
    # Named by the history but in no figure at a horizon (churned late: every day of its
    # before the churn has its window run past the end): not a wrong id.
    late = Replay(
        snapshots=snaps,
        churn={**churn, "late": date(2026, 6, 1)},
        first_day=date(2026, 4, 1),
        last_day=LAST,
        accounts=frozenset({"a", "b", "early", "late"}),
    )
    said = {w["check"]: w["message"] for w in warnings(late, snaps, load_default_model(), [90], {})}
    assert "late" not in said["unknown_churned"] and "typo" in said["unknown_churned"]
    assert (
        "1 churned account(s) of the history count in no figure at 90 days (first: late)"
        in (said["churned_unjudged"])
    )


def test_a_horizon_whose_test_part_holds_only_churn_is_not_judged() -> None:
    """Nine months of history: every test account-day whose 90 days are known churned
    (the rest run past the end). The summary said the riskiest tenth "held 10%"."""
    oos = {
        "riskiest_10pct_share": {rpt.DEFAULT: 0.1},
        "test_observations": 144,
        "test_churn_observations": 144,
        "auc": {rpt.DEFAULT: {"auc": None, "low": None, "high": None}},
    }
    (line,) = rpt.summary([{"horizon_days": 90, "out_of_sample": oos}])
    assert line.startswith("Every account-day of the test period") and "held" not in line


def test_a_horizon_past_the_whole_history_is_nothing_to_judge_or_calibrate() -> None:
    """Every window runs past the history's end: the out-of-sample figures say there is
    nothing to judge, and calibrate says what to change (both raised IndexError)."""
    nothing = evaluate([], [], 90)
    assert (nothing["cut"], nothing["test_observations"], nothing["auc"]) == (None, 0, {})
    snaps = [snap("a", LAST - timedelta(days=30)), snap("b", LAST - timedelta(days=20))]
    result = Replay(snapshots=snaps, churn={}, last_day=LAST)
    with pytest.raises(ValueError, match="next 90 days within the history"):
        calibrate(result, 90, load_default_model(), "v")
