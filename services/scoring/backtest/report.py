"""Backtest results: how well the score predicted churn, as text, JSON and HTML."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray

from services.scoring.backtest.checks import warnings
from services.scoring.backtest.directions import MEASURE_RESAMPLES, Columns, rate_measures
from services.scoring.backtest.metrics import (
    by_band,
    median_or_none,
    roc_auc,
    roc_curve,
    top_decile_lift,
)
from services.scoring.backtest.outofsample import MIN_TRAIN, WEAK_REFERENCE_CHURN
from services.scoring.backtest.outofsample import evaluate as out_of_sample
from services.scoring.backtest.replay import Firing, Replay, Snapshot
from services.scoring.model.schema import HealthModel

BANDS = ("red", "yellow", "green")
BASELINE = "days_since_last_use"
# Lead time counts the red scores within this many days before churn.
LEAD_WINDOW_DAYS = 180


def _labels(snapshots: Sequence[Snapshot], churn: dict[str, Any], horizon: int) -> list[bool]:
    """Per snapshot: whether its account churned within ``horizon`` days after it."""
    out = []
    for snapshot in snapshots:
        gone = churn.get(snapshot.account_id)
        out.append(
            gone is not None and snapshot.day < gone <= snapshot.day + timedelta(days=horizon)
        )
    return out


def observed(
    snapshots: Sequence[Snapshot], churn: dict[str, Any], horizon: int, last_day: date | None
) -> list[bool]:
    """Per snapshot: whether its whole window of ``horizon`` days lies within the history
    (to ``last_day``), churned or not. Counted as "stayed", a snapshot whose window ran
    past the history's end made the long horizons measure churn before the history
    ended; kept only when it churned, it would fill them with churn."""
    if last_day is None:
        return [True] * len(snapshots)
    window = timedelta(days=horizon)
    return [snapshot.day + window <= last_day for snapshot in snapshots]


def outcomes(
    result: Replay, scored: Sequence[Snapshot], horizon: int
) -> tuple[list[Snapshot], list[bool], NDArray[np.bool_]]:
    """The snapshots whose outcome over ``horizon`` is known, their labels, and which of
    ``scored`` they are."""
    keep = np.array(observed(scored, result.churn, horizon, result.last_day), dtype=bool)
    snaps = [snapshot for snapshot, known in zip(scored, keep, strict=True) if known]
    return snaps, _labels(snaps, result.churn, horizon), keep


def _risk(snapshot: Snapshot) -> float:
    return 100.0 - (snapshot.score if snapshot.score is not None else 50.0)


def _weighted(snapshot: Snapshot, weights: dict[str, float]) -> float:
    """The risk the snapshot's group scores give under other group weights."""
    present = {
        group: value for group, value in snapshot.groups.items() if weights.get(group, 0) > 0
    }
    total = sum(weights[group] for group in present)
    weighted = sum(weights[group] * value for group, value in present.items())
    return 100.0 - (weighted / total if total else 50.0)


def evaluate_horizon(
    result: Replay,
    horizon: int,
    model: HealthModel,
    *,
    intervals: bool = True,
    columns: Columns | None = None,
) -> dict[str, Any]:
    """How well the score, each measure and each group ranked the accounts that churned
    within ``horizon`` days, beside the naive baseline (days since last use).
    ``columns``: the measures of the scored snapshots, read once for every horizon."""
    scored = [snapshot for snapshot in result.snapshots if snapshot.score is not None]
    snaps, labels, keep = outcomes(result, scored, horizon)
    columns = None if columns is None else columns.only(keep)
    risks = [_risk(snapshot) for snapshot in snaps]
    baseline = [float(snapshot.inputs.get(BASELINE) or 0) for snapshot in snaps]
    model_auc = roc_auc(risks, labels)
    baseline_auc = roc_auc(baseline, labels)
    lead_times = _lead_times(result, snaps)
    group_power = _group_power(model, snaps, labels)
    return {
        "horizon_days": horizon,
        "snapshots": len(snaps),
        # Left out: their window runs past the history's end, without a churn so far.
        "censored_snapshots": len(scored) - len(snaps),
        "churn_snapshots": sum(labels),
        "roc_auc": _r(model_auc),
        "baseline_roc_auc": _r(baseline_auc),
        "auc_gain_over_baseline": _r(
            None if model_auc is None or baseline_auc is None else model_auc - baseline_auc
        ),
        "bands": [
            band.__dict__ for band in by_band([snapshot.band for snapshot in snaps], labels, BANDS)
        ],
        "top_decile_lift": _r(top_decile_lift(risks, labels)),
        "median_lead_time_days": median_or_none(lead_times),
        "churners_flagged_red": len(lead_times),
        # The false alarms beside the lead time: a red band that fires in any quiet week
        # shows a long lead (found from outside).
        **_stayers_red(result, snaps),
        "measures": rate_measures(
            snaps, labels, model, MEASURE_RESAMPLES if intervals else 0, columns
        ),
        "out_of_sample": out_of_sample(snaps, labels, horizon),
        "group_auc": {group: _r(auc) for group, auc in group_power.items()},
        "weights": _weights(model, group_power, snaps, labels),
        "_roc": {"model": roc_curve(risks, labels), "baseline": roc_curve(baseline, labels)},
    }


def _group_power(
    model: HealthModel, snaps: list[Snapshot], labels: list[bool]
) -> dict[str, float | None]:
    """group → the AUC of its own score (lower score, higher risk); None without data."""
    power: dict[str, float | None] = {}
    for group in model.groups:
        rows = [
            (100 - snapshot.groups[group], churned)
            for snapshot, churned in zip(snaps, labels, strict=True)
            if group in snapshot.groups
        ]
        power[group] = roc_auc([row[0] for row in rows], [row[1] for row in rows]) if rows else None
    return power


def _weights(
    model: HealthModel,
    group_power: dict[str, float | None],
    snaps: list[Snapshot],
    labels: list[bool],
) -> dict[str, Any]:
    """The model's group weights beside suggested ones: each group weighted by how much
    better than chance it ranked churners."""
    current = {name: group.weight for name, group in model.groups.items()}
    total = sum(current.values())
    # A group without data earns no weight; one that ranks churners backwards earns none
    # either (a weight cannot flip it: its curves need fixing, and the note says so).
    edges = {
        group: 0.0 if auc is None else max(auc - 0.5, 0.0) for group, auc in group_power.items()
    }
    backwards = sorted(group for group, auc in group_power.items() if auc is not None and auc < 0.5)
    spread = sum(edges.values())
    suggested = {
        group: round(total * edge / spread, 1) if spread else current[group]
        for group, edge in edges.items()
    }
    now_auc = roc_auc([_weighted(snap, current) for snap in snaps], labels)
    then_auc = roc_auc([_weighted(snap, suggested) for snap in snaps], labels)
    # Weights that would rank churn no better are no suggestion (they were offered with
    # "AUC 0.707 → 0.567").
    better = now_auc is not None and then_auc is not None and then_auc > now_auc
    return {
        "no_data": sorted(group for group, auc in group_power.items() if auc is None),
        "backwards": backwards,
        "current": current,
        "suggested": suggested,
        "improves": better,
        "current_roc_auc": _r(now_auc),
        "suggested_roc_auc": _r(then_auc),
        "note": "suggested only, never applied: PUT /v1/health-model to adopt them "
        "(both AUCs re-weigh the stored group scores, without caps or profiles, over the "
        "whole history: in sample)",
    }


def _stayers_red(result: Replay, snaps: list[Snapshot]) -> dict[str, int]:
    """Of the accounts scored that never churned in the history, how many were red on
    some scored day."""
    stayers = {s.account_id for s in snaps if s.account_id not in result.churn}
    red = {s.account_id for s in snaps if s.band == "red" and s.account_id in stayers}
    return {"stayers": len(stayers), "stayers_flagged_red": len(red)}


def _lead_times(result: Replay, snaps: list[Snapshot]) -> list[int]:
    """Per churned account flagged red in the months before: days from its first red
    score (within LEAD_WINDOW_DAYS) to churn."""
    red_days: dict[str, list[date]] = {}
    for snapshot in snaps:  # once, not once per churned account (5% of a large report)
        if snapshot.band == "red" and snapshot.account_id in result.churn:
            red_days.setdefault(snapshot.account_id, []).append(snapshot.day)
    lead_times = []
    for account, gone in result.churn.items():
        reds = [
            day
            for day in red_days.get(account, [])
            if gone - timedelta(days=LEAD_WINDOW_DAYS) <= day < gone
        ]
        if reds:
            lead_times.append((gone - min(reds)).days)
    return lead_times


def rule_quality(result: Replay, horizons: Sequence[int]) -> dict[str, Any]:
    """Per alert rule: how often the account churned within each horizon after the rule
    fired, beside the rate for any scored account-day (the lift is their ratio)."""
    scored = [snapshot for snapshot in result.snapshots if snapshot.score is not None]
    base: dict[int, float | None] = {}
    for horizon in horizons:
        _, labels, _ = outcomes(result, scored, horizon)
        base[horizon] = sum(labels) / len(labels) if labels else None
    by_rule: dict[str, list[Firing]] = {}
    for firing in result.firings:
        gone = result.churn.get(firing.account_id)
        if gone is None or firing.day < gone:  # firings after the account left say nothing
            by_rule.setdefault(firing.rule, []).append(firing)
    rules = []
    for rule, fired in sorted(by_rule.items(), key=lambda item: (-len(item[1]), item[0])):
        churned: dict[str, float | None] = {}
        lift: dict[str, float | None] = {}
        for horizon in horizons:
            # Firings whose window runs past the history without a churn are left out.
            known = [f for f in fired if _known(result, f, horizon)]
            share = (
                sum(_churns_within(result, f, horizon) for f in known) / len(known)
                if known
                else None
            )
            churned[str(horizon)] = None if share is None else round(share, 4)
            rate = base[horizon]
            lift[str(horizon)] = round(share / rate, 2) if rate and share is not None else None
        longest = max(horizons)
        leads = [
            float((result.churn[firing.account_id] - firing.day).days)
            for firing in fired
            if _churns_within(result, firing, longest)
        ]
        rules.append(
            {
                "rule": rule,
                "fired": len(fired),
                "accounts": len({firing.account_id for firing in fired}),
                "churned_within": churned,
                "lift": lift,
                "median_days_to_churn": median_or_none(leads),
            }
        )
    base_rate = {str(horizon): _r(rate) for horizon, rate in base.items()}
    return {"base_churn_rate": base_rate, "rules": rules}


def _known(result: Replay, firing: Firing, horizon: int) -> bool:
    """Whether the ``horizon`` days after ``firing`` lie within the history (``observed``)."""
    return result.last_day is None or firing.day + timedelta(days=horizon) <= result.last_day


def _churns_within(result: Replay, firing: Firing, horizon: int) -> bool:
    gone = result.churn.get(firing.account_id)
    return gone is not None and firing.day < gone <= firing.day + timedelta(days=horizon)


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def build(result: Replay, horizons: Sequence[int], model: HealthModel) -> dict[str, Any]:
    accounts = {snapshot.account_id for snapshot in result.snapshots}
    scored = [snapshot for snapshot in result.snapshots if snapshot.score is not None]
    columns = Columns.of(scored)
    # Measures' intervals for the first horizon only: the text shows that one.
    evaluated = [
        evaluate_horizon(result, horizon, model, intervals=k == 0, columns=columns)
        for k, horizon in enumerate(horizons)
    ]
    shares = {
        h["horizon_days"]: h["churn_snapshots"] / h["snapshots"]
        for h in evaluated
        if h["snapshots"]
    }
    return {
        "summary": summary(evaluated),
        "warnings": warnings(result, scored, model, horizons, shares),
        "model_version": model.version,
        # Events counted, as the score counts them: a resent event's lines once (the
        # figure had counted every line, found from outside).
        "events": result.events - result.repeated,
        "repeated_events": result.repeated,
        "rejected_lines": result.rejected,
        "accounts": len(accounts),
        "churned_accounts": len(set(result.churn) & accounts),
        "from": result.first_day.isoformat() if result.first_day else None,
        "to": result.last_day.isoformat() if result.last_day else None,
        "horizons": evaluated,
        "alert_rules": rule_quality(result, horizons),
    }


REFERENCE = "gradient boosting (reference)"
# The model the backtest ran (the handbook's unless --model named another).
DEFAULT = "the score"
# An out-of-sample AUC at or above this is rarer in churn prediction than a churn
# definition that follows from the inputs (a shop's "90 days without a purchase" seen by
# its days since the last purchase): the summary says so rather than boast of it.
TOO_GOOD = 0.95


def summary(horizons: Sequence[dict[str, Any]]) -> list[str]:
    """Plain sentences before the statistics: how much churn the riskiest tenth held."""
    lines = []
    for horizon in horizons:
        oos = horizon["out_of_sample"]
        days, held = horizon["horizon_days"], oos["riskiest_10pct_share"]
        if not oos["test_observations"]:
            lines.append(
                f"No account-day of the test period has its next {days} days within the "
                "history: nothing to judge at this horizon; a longer history would tell."
            )
            continue
        if held.get(DEFAULT) is None:
            lines.append(f"No churn within {days} days in the test period: nothing to judge.")
            continue
        if oos["test_churn_observations"] == oos["test_observations"]:
            lines.append(
                f"Every account-day of the test period whose next {days} days the history "
                "shows was followed by churn (the others' windows run past its end): "
                "nothing to judge at this horizon; a longer history would tell."
            )
            continue
        line = (
            f"The riskiest 10% of account-days by the score held {held[DEFAULT]:.0%} of the "
            f"churn in the next {days} days (chance: 10%)"
        )
        if held.get(REFERENCE) is not None:
            line += f"; by the gradient-boosting reference, {held[REFERENCE]:.0%}"
        model = oos["auc"][DEFAULT]
        red = oos["red"]
        lines.append(
            f"{line}. Out of sample (from {oos['cut']}) the score's AUC is "
            f"{_f(model['auc'])} (95% {_f(model['low'])}–{_f(model['high'])}); "
            + _red_sentence(red)
            + _plainly(oos["auc"])
        )
    return lines


# A red band holding fewer of the churners than this warns nobody in time: the summary
# says so, and how to move the band lines (the ranking may still be good).
RED_RECALL_LOW = 0.1


def _red_sentence(red: dict[str, Any]) -> str:
    """What the red band caught, with the counts behind the shares (older reports,
    without them, as shares alone)."""
    if "red" not in red:
        return (
            f"its red band caught {_pct(red['recall'])} of churn, "
            f"{_pct(red['precision'])} of red were right."
        )
    said = (
        f"its red band caught {_pct(red['recall'])} of churn ({red['red_churned']} of "
        f"{red['churned']} account-days followed by churn), and {_pct(red['precision'])} "
        f"of red account-days were followed by churn ({red['red_churned']} of {red['red']})."
    )
    if red["churned"] and (red["recall"] or 0) < RED_RECALL_LOW:
        said += (
            " The red band is nearly empty for this product: the ranking can be good while "
            "the band lines (40 and 70) sit below its scores; `healthwatch calibrate` moves "
            "them with the weights."
        )
    return said


def _plainly(aucs: dict[str, dict[str, Any]]) -> str:
    """What the AUCs say of the score that the figures alone leave to the reader: an
    interval holding 0.5, and simpler rankings that beat it."""
    score = aucs[DEFAULT]
    said = ""
    if score["high"] is not None and score["high"] < 0.5:
        said += " That interval lies below 0.5: here the score ranks churn backwards."
    elif score["low"] is not None and score["low"] <= 0.5:
        # Holding 0.5 says too few churners to tell, not that the score ranks at chance:
        # "0.821 (0.153–1.000) … no better than chance" read as a verdict (found from
        # outside).
        said += (
            " That interval holds 0.5: with these churners the score cannot be told from "
            "chance (more churners, or a longer history, narrow it)."
        )
    if score["auc"] is None:
        return said
    higher = {
        name: value
        for name, value in aucs.items()
        if name != DEFAULT and value["auc"] is not None and value["auc"] > score["auc"]
    }
    # Better only when its interval lies above the score's figure: a point estimate a
    # little higher, within its noise, had been named better alike (found from outside).
    better = [name for name, value in higher.items() if (value["low"] or 0) > score["auc"]]
    within = [name for name in higher if name not in better]
    if better:
        named = ", ".join(f"{name} ({higher[name]['auc']:.3f})" for name in better)
        said += f" Ranking churn better than the score here (AUC): {named}."
    if within:
        named = ", ".join(f"{name} ({higher[name]['auc']:.3f})" for name in within)
        said += f" Higher than the score, within their intervals' noise: {named}."
    if better or (score["low"] is not None and score["low"] <= 0.5):
        said += (
            " To fit the score to this product, `healthwatch calibrate` the same files "
            "(--churn, --out model.toml), check the model with `healthwatch backtest "
            "--model model.toml` on another period, then PUT it to /v1/health-model."
        )
    near = max(
        ((value["auc"], name) for name, value in aucs.items() if value["auc"] is not None),
        default=None,
    )
    if near is not None and near[0] >= TOO_GOOD:
        said += (
            f" A ranking this close to perfect ({near[1]}, {near[0]:.3f}) usually means churn "
            "is defined by something the measures see (such as 90 days without a purchase): "
            "then these figures say how soon the definition is met, not that churn was "
            "foreseen. Define churn by a cancellation or a renewal not made if you can."
        )
    return said


def public(report: dict[str, Any]) -> dict[str, Any]:
    """The report without the plotting data."""
    return {
        **report,
        "horizons": [
            {key: value for key, value in horizon.items() if not key.startswith("_")}
            for horizon in report["horizons"]
        ],
    }


def text(report: dict[str, Any]) -> str:
    lines = [*report.get("summary", []), ""]
    if report.get("warnings"):
        lines += ["Before trusting this:", *(f"  ! {w['message']}" for w in report["warnings"]), ""]
    repeated = report.get("repeated_events")
    again = f" ({repeated} more lines repeated an event, counted once)" if repeated else ""
    lines += [
        f"Backtest of model {report['model_version']}: {report['accounts']} accounts, "
        f"{report['churned_accounts']} churned, {report['events']} events{again}, "
        f"{report['from']} → {report['to']}",
        "",
        f"{'horizon':>8} {'AUC':>6} {'baseline':>9} {'gain':>6} {'lift@10%':>9} "
        f"{'P(red)':>7} {'R(red)':>7} {'lead days (of churners)':>24}",
    ]
    for horizon in report["horizons"]:
        red = next(band for band in horizon["bands"] if band["band"] == "red")
        # How many churners the median is of: 132 days from 2 of 78 read as "warned 132
        # days ahead" (found from outside).
        lead = (
            f"{_f(horizon['median_lead_time_days'], '.0f')} "
            f"({horizon['churners_flagged_red']} of {report['churned_accounts']})"
        )
        lines.append(
            f"{horizon['horizon_days']:>7}d {_f(horizon['roc_auc']):>6} "
            f"{_f(horizon['baseline_roc_auc']):>9} "
            f"{_f(horizon['auc_gain_over_baseline'], '+.3f'):>6} "
            f"{_f(horizon['top_decile_lift'], '.2f'):>9} "
            f"{_f(red['precision']):>7} {_f(red['recall']):>7} "
            f"{lead:>24}"
        )
    if report["horizons"] and "stayers" in report["horizons"][0]:
        first = report["horizons"][0]
        lines.append(
            f"  (lead days: from a churner's first red score in the {LEAD_WINDOW_DAYS} days "
            f"before it left; red also flagged {first['stayers_flagged_red']} of the "
            f"{first['stayers']} accounts that stayed)"
        )
    for horizon in report["horizons"]:
        lines += _out_of_sample_text(horizon)
    first = report["horizons"][0] if report["horizons"] else None
    if first:
        lines += _measures_text(first)
    lines += _rules_text(report.get("alert_rules"))
    return "\n".join(lines) + "\n"


def _out_of_sample_text(horizon: dict[str, Any]) -> list[str]:
    oos = horizon["out_of_sample"]
    if oos["cut"] is None:
        return [
            "",
            f"Out of sample, churn within {horizon['horizon_days']} days: no account-day's "
            "window lies within the history; nothing to judge",
        ]
    lines = [
        "",
        f"Out of sample, churn within {horizon['horizon_days']} days: trained before "
        f"{oos['cut']} less a {oos['embargo_days']}-day embargo ({oos['train_observations']} "
        f"observations), tested from it ({oos['test_observations']}, "
        f"{oos['test_churn_observations']} followed by churn)",
        f"  {'':<32} {'AUC':>6} {'95% interval':>14} {'top 10% held':>13}",
    ]
    for name, value in oos["auc"].items():
        interval = f"{_f(value['low'])}–{_f(value['high'])}"
        held = _pct(oos["riskiest_10pct_share"].get(name))
        lines.append(f"  {name:<32} {_f(value['auc']):>6} {interval:>14} {held:>13}")
    if REFERENCE in oos["auc"] and oos.get("train_churn_observations", WEAK_REFERENCE_CHURN) < (
        WEAK_REFERENCE_CHURN
    ):
        lines.append(
            f"  (the {REFERENCE} learned from {oos['train_observations']} observations, "
            f"{oos['train_churn_observations']} of them followed by churn: too few to be "
            "a yardstick here)"
        )
    if REFERENCE not in oos["auc"]:
        # Its absence had read as a model trained on nothing (found from outside).
        lines.append(
            f"  (no {REFERENCE}: it trains on the observations before the cut, and needs "
            f"{MIN_TRAIN} of them at least, some followed by churn and some not; "
            f"{oos['train_observations']} there)"
        )
    return lines


# How the weights' AUCs are reckoned, beside them: the stored group scores re-weighed
# without caps or profiles, so the first differs a little from the table's AUC (0.730
# against 0.733 read as a mistake, found from outside).
REWEIGHED = "in sample, the group scores re-weighed without caps or profiles"


def _measures_text(first: dict[str, Any]) -> list[str]:
    lines = [
        "",
        f"Measures in their declared direction ({first['horizon_days']}-day horizon, AUC "
        "and 95% interval; 0.5 is chance):",
    ]
    for name, power in list(first["measures"].items())[:15]:
        arrow = "↑ riskier" if power["higher_is_riskier"] else "↓ riskier"
        flag = "  RANKS BACKWARDS" if power["backwards"] else ""
        if not power["declared"]:
            flag += "  (direction not declared)"
        lines.append(
            f"  {name:<32} {power['auc']:.3f} ({_f(power['low'])}–{_f(power['high'])})  "
            f"{arrow}{flag}"
        )
    backwards = [name for name, power in first["measures"].items() if power["backwards"]]
    if backwards:
        lines.append(f"  Ranking backwards: {', '.join(backwards)}")
    weights = first["weights"]
    if not weights["improves"]:
        lines += [
            "",
            "No group weights suggested: weighing the groups by their own ranking would not "
            f"rank churn better than the model's weights (AUC {_f(weights['current_roc_auc'])} "
            f"→ {_f(weights['suggested_roc_auc'])}, {REWEIGHED})",
        ]
        return lines
    lines += [
        "",
        f"Suggested group weights (not applied): {weights['suggested']} — AUC "
        f"{_f(weights['current_roc_auc'])} → {_f(weights['suggested_roc_auc'])} ({REWEIGHED})",
    ]
    if weights["no_data"] or weights["backwards"]:
        lines.append(
            f"  no weight to groups without data ({', '.join(weights['no_data']) or 'none'}) "
            f"or ranking backwards ({', '.join(weights['backwards']) or 'none'}: fix their "
            "curves, a weight cannot flip them)"
        )
    return lines


def _rules_text(quality: dict[str, Any] | None) -> list[str]:
    if not quality or not quality["rules"]:
        return []
    horizons = list(quality["base_churn_rate"])
    first = horizons[0]
    head = "".join(f"{'≤' + horizon + 'd':>8}" for horizon in horizons)
    base = ", ".join(_pct(quality["base_churn_rate"][horizon]) for horizon in horizons)
    lines = [
        "",
        "Alert rules in the replay: share of firings followed by churn within N days "
        f"(any scored account-day: {base})",
        f"  {'rule':<28} {'fired':>6} {'accts':>6}{head} {'lift@' + first + 'd':>9} {'days':>5}",
    ]
    for rule in quality["rules"]:
        shares = "".join(f"{_pct(rule['churned_within'][horizon]):>8}" for horizon in horizons)
        lines.append(
            f"  {rule['rule']:<28} {rule['fired']:>6} {rule['accounts']:>6}{shares} "
            f"{_f(rule['lift'][first], '.2f'):>9} {_f(rule['median_days_to_churn'], '.0f'):>5}"
        )
    lines += [
        "  (fired: firings before the account left; a share is of those whose N days after",
        "   lie within the history, so a late firing counts in the shorter horizons only;",
        "   lift: the share over that of any scored account-day; days: median from firing",
        "   to churn, among firings followed by churn)",
    ]
    return lines


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _f(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def _png(plt: Any, figure: Any) -> str:
    """The figure as base64 PNG; the figure is closed (pyplot keeps open ones alive)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def html_report(report: dict[str, Any]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = [
        ("Out of sample: AUC and 95% interval", oos_figure(plt, report["horizons"])),
        ("ROC curves", _roc_figure(plt, report["horizons"])),
        (
            "Calibration: churn seen per tenth of the test observations",
            _calibration_figure(plt, report["horizons"]),
        ),
        ("Churn rate by band", _band_figure(plt, report["horizons"])),
    ]
    quality = report.get("alert_rules") or {}
    if quality.get("rules"):
        images.append(("Alert rules: churn after firing", _rules_figure(plt, quality)))
    body = "".join(
        f"<h2>{html.escape(title)}</h2>"
        f"<img alt='{html.escape(title)}' src='data:image/png;base64,{image}'>"
        for title, image in images
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>healthwatch backtest</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto}"
        "pre{background:#f6f6f6;padding:1em}</style></head><body>"
        f"<h1>healthwatch backtest</h1><pre>{html.escape(text(report))}</pre>{body}</body></html>"
    )


def _roc_figure(plt: Any, horizons: list[dict[str, Any]]) -> str:
    """The model's and the baseline's ROC curves, one panel per horizon, as a PNG."""
    fig, axes = plt.subplots(1, len(horizons), figsize=(4.2 * len(horizons), 4))
    axes = axes if len(horizons) > 1 else [axes]
    for ax, horizon in zip(axes, horizons, strict=True):
        for key, label in (
            ("model", f"model (AUC {_f(horizon['roc_auc'])})"),
            ("baseline", f"days since last use ({_f(horizon['baseline_roc_auc'])})"),
        ):
            xs, ys = zip(*horizon["_roc"][key], strict=True)
            ax.plot(xs, ys, label=label)
        ax.plot([0, 1], [0, 1], "k:", linewidth=0.8)
        ax.set_title(f"churn within {horizon['horizon_days']} days")
        ax.set_xlabel("false-positive rate")
        ax.set_ylabel("true-positive rate")
        ax.legend(loc="lower right", fontsize=8)
    return _png(plt, fig)


def oos_figure(plt: Any, horizons: list[dict[str, Any]]) -> str:
    """Each scorer's out-of-sample AUC with its interval, one panel per horizon."""
    fig, axes = plt.subplots(1, len(horizons), figsize=(4.6 * len(horizons), 3.2), sharey=True)
    axes = axes if len(horizons) > 1 else [axes]
    for ax, horizon in zip(axes, horizons, strict=True):
        scored = [(n, v) for n, v in horizon["out_of_sample"]["auc"].items() if v["auc"]]
        names = [name for name, _ in reversed(scored)]
        values = [value for _, value in reversed(scored)]
        points = [v["auc"] for v in values]
        errors = [
            [p - v["low"] for p, v in zip(points, values, strict=True)],
            [v["high"] - p for p, v in zip(points, values, strict=True)],
        ]
        ax.errorbar(points, range(len(names)), xerr=errors, fmt="o", capsize=3)
        ax.axvline(0.5, color="k", linestyle=":", linewidth=0.8)
        ax.set_yticks(range(len(names)), names)
        ax.set_xlim(0.3, 1.0)
        ax.set_title(f"churn within {horizon['horizon_days']} days")
        ax.set_xlabel("AUC (0.5 = chance)")
    return _png(plt, fig)


def _calibration_figure(plt: Any, horizons: list[dict[str, Any]]) -> str:
    """Per horizon: the churn rate seen in each tenth of the test observations, from the
    safest to the riskiest by the score and by the reference (its mean predicted
    probability beside it: on the diagonal when calibrated)."""
    fig, axes = plt.subplots(1, len(horizons), figsize=(4.2 * len(horizons), 3.4))
    axes = axes if len(horizons) > 1 else [axes]
    for ax, horizon in zip(axes, horizons, strict=True):
        curves = horizon["out_of_sample"]["calibration"]
        for name, bins in curves.items():
            ax.plot(
                range(1, len(bins) + 1),
                [b["churn_rate"] for b in bins],
                "o-",
                label=f"{name}: seen",
            )
            if bins and "predicted" in bins[0]:
                ax.plot(
                    range(1, len(bins) + 1),
                    [b["predicted"] for b in bins],
                    "k:",
                    label=f"{name}: predicted",
                )
        ax.set_title(f"churn within {horizon['horizon_days']} days")
        ax.set_xlabel("tenth of observations, safest → riskiest")
        ax.set_ylabel("churn rate")
        if curves:
            ax.legend(fontsize=7)
        else:  # every window past the history's end
            ax.text(0.5, 0.5, "nothing to judge", ha="center", transform=ax.transAxes)
    return _png(plt, fig)


def _band_figure(plt: Any, horizons: list[dict[str, Any]]) -> str:
    """The share of each band's snapshots followed by churn, per horizon, as a PNG."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    width = 0.8 / len(horizons)
    for position, horizon in enumerate(horizons):
        rates = [band["precision"] or 0 for band in horizon["bands"]]
        ax.bar(
            [x + position * width for x in range(len(BANDS))],
            rates,
            width,
            label=f"{horizon['horizon_days']}d",
        )
    ax.set_xticks([x + width * (len(horizons) - 1) / 2 for x in range(len(BANDS))], BANDS)
    ax.set_ylabel("share of snapshots followed by churn")
    ax.legend()
    return _png(plt, fig)


def _rules_figure(plt: Any, quality: dict[str, Any]) -> str:
    """Each rule's share of firings followed by churn beside the base rate, as a PNG."""
    first = next(iter(quality["base_churn_rate"]))
    rules = list(reversed(quality["rules"]))
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(rules) + 1.2))
    shares = [rule["churned_within"][first] or 0 for rule in rules]  # None: none known yet
    ax.barh([rule["rule"] for rule in rules], shares)
    base = quality["base_churn_rate"][first] or 0
    ax.axvline(base, color="k", linestyle=":", label=f"any account-day ({base:.0%})")
    ax.set_xlabel(f"share of firings followed by churn within {first} days")
    ax.legend(loc="lower right", fontsize=8)
    return _png(plt, fig)
