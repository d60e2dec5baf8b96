"""`healthwatch calibrate`: replay the history, fit the additive model on the earlier
part of a time split, and judge it on the later part beside the handbook default, the
naive baselines and the gradient-boosting reference — the same split the backtest uses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from services.scoring.backtest.checks import warnings
from services.scoring.backtest.directions import declared_direction
from services.scoring.backtest.outofsample import (
    HANDBOOK,
    auc_interval,
    riskiest_share,
    time_split,
)
from services.scoring.backtest.outofsample import evaluate as out_of_sample
from services.scoring.backtest.replay import Replay, Snapshot
from services.scoring.backtest.report import outcomes
from services.scoring.model.calibrate import fit
from services.scoring.model.evaluate import evaluate
from services.scoring.model.schema import HealthModel, Segment

CALIBRATED = "calibrated"


def against_declared(model: HealthModel, base: HealthModel) -> list[str]:
    """The calibrated measures whose curve runs against the direction ``base`` (or the
    built-in table) declares for them: more active users scored as less healthy."""
    flipped = []
    for group in model.groups.values():
        for name in group.measures:
            declared = declared_direction(name, base)
            learned = declared_direction(name, model)
            if declared is not None and learned is not None and learned != declared:
                flipped.append(name)
    return sorted(flipped)


def calibrate(
    result: Replay, horizon: int, base: HealthModel, version: str
) -> tuple[HealthModel, str, dict[str, Any]]:
    """The calibrated model, its TOML, and its out-of-sample report."""
    scored = [snapshot for snapshot in result.snapshots if snapshot.score is not None]
    snaps, labels, _ = outcomes(result, scored, horizon)  # outcomes known within the history
    if not snaps:
        raise ValueError(
            f"no scored account-day has its next {horizon} days within the history "
            "(a shorter --horizon, or a longer history)"
        )
    split = time_split([snapshot.day for snapshot in snaps], horizon)
    train = [snaps[k].inputs for k in split.train]
    model, text = fit(train, [labels[k] for k in split.train], base, version)
    report = out_of_sample(snaps, labels, horizon)
    test = [snaps[k] for k in split.test]
    y = np.array([labels[k] for k in split.test], dtype=bool)
    risk = calibrated_risk(model, test)
    report["auc"] = {
        CALIBRATED: auc_interval(risk, y, [s.account_id for s in test]),
        **report["auc"],
    }
    held = riskiest_share(risk, y)
    report["riskiest_10pct_share"][CALIBRATED] = None if held is None else round(held, 4)
    shares = {horizon: sum(labels) / len(labels)} if labels else {}
    report["warnings"] = warnings(result, snaps, base, [horizon], shares)
    flipped = against_declared(model, base)
    if flipped:
        report["warnings"].append(
            {
                "check": "against_declared_direction",
                "message": f"{len(flipped)} measure(s) learned the opposite of their declared "
                f"direction ({', '.join(flipped[:8])}): the training part's churners had more "
                "of what should protect them, or less of what should not. Check those curves "
                "(a small or odd history teaches them) before adopting the model",
            }
        )
    worse = _worse_than_base(report["auc"][CALIBRATED], report["auc"][HANDBOOK])
    if worse is not None:
        report["warnings"].append({"check": "worse_than_default", "message": worse})
    return model, text, report


def _worse_than_base(fitted: dict[str, Any], base: dict[str, Any]) -> str | None:
    """What to say of a calibrated model ranking below the one it started from: worse
    when its interval lies below the other's figure; within the noise else (a 0.916
    against 0.929, intervals overlapping, had been told "keep that one", and did better
    on another period: found from outside)."""
    if fitted["auc"] is None or base["auc"] is None or fitted["auc"] >= base["auc"]:
        return None
    figures = f"AUC {fitted['auc']:.3f} against {base['auc']:.3f}"
    if fitted["high"] is not None and fitted["high"] < base["auc"]:
        return (
            f"the calibrated model ranks churn worse out of sample than the model it started "
            f"from ({figures}, its interval below): keep that one"
        )
    return (
        f"the calibrated model ranks churn a little lower out of sample than the model it "
        f"started from ({figures}), within the intervals' noise: compare the two on "
        "another period (`healthwatch backtest --model`) before choosing; its bands may "
        "still fit this product better (the red band's recall)"
    )


def calibrated_risk(model: HealthModel, snaps: Sequence[Snapshot]) -> Any:
    """100 minus the score the calibrated model gives each snapshot's inputs (through
    the same ``evaluate`` the service scores with)."""
    values = [evaluate(model, snapshot.inputs, Segment()).value for snapshot in snaps]
    return np.array([100.0 - (v if v is not None else 50.0) for v in values])


def text(report: dict[str, Any], horizon: int) -> str:
    lines = [f"Out of sample, churn within {horizon} days (tested from {report['cut']}):"]
    lines += [f"  ! {w['message']}" for w in report.get("warnings", [])]
    lines.append(f"  {'':<32} {'AUC':>6} {'95% interval':>14} {'top 10% held':>13}")
    for name, value in report["auc"].items():
        interval = f"{_f(value['low'])}–{_f(value['high'])}"
        held = report["riskiest_10pct_share"].get(name)
        shown = "n/a" if held is None else f"{held:.0%}"
        lines.append(f"  {name:<32} {_f(value['auc']):>6} {interval:>14} {shown:>13}")
    return "\n".join(lines) + "\n"


def _f(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
