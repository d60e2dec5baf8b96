"""Checks before trusting a model: what in the history makes a backtest (or a score)
say less than it seems to. Each warning names what to fix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.scoring.backtest.replay import WARM_UP_DAYS, Replay, Snapshot
from services.scoring.model.evaluate import has_data
from services.scoring.model.schema import HealthModel

# Fewer churned accounts than this, or a smaller share of observations followed by
# churn, and neither a fitted model nor an AUC interval means much.
MIN_CHURNED_ACCOUNTS = 20
MIN_CHURN_SHARE = 0.01


def warnings(
    result: Replay,
    snaps: Sequence[Snapshot],
    model: HealthModel,
    horizons: Sequence[int],
    churn_shares: dict[int, float],
) -> list[dict[str, str]]:
    """Every check's warnings, in the order a reader should fix them."""
    found = _history_checks(result, snaps, horizons, churn_shares)
    found += _measure_checks(snaps, model)
    if result.go_live_accounts == 0 and snaps:
        found.append(
            _warn(
                "no_go_live",
                "no account ever sent a go-live date: 'not live 90 days after purchase' "
                "has no data (send go_live in the account facts if the product has one)",
            )
        )
    return found


def _history_checks(
    result: Replay, snaps: Sequence[Snapshot], horizons: Sequence[int], shares: dict[int, float]
) -> list[dict[str, str]]:
    found = []
    span = (
        (result.last_day - result.first_day).days + 1 if result.first_day and result.last_day else 0
    )
    for horizon in horizons:
        if span < WARM_UP_DAYS + 2 * horizon:
            found.append(
                _warn(
                    "short_history",
                    f"the history spans {span} days: a {horizon}-day horizon needs at least "
                    f"{WARM_UP_DAYS + 2 * horizon} ({WARM_UP_DAYS} warm-up, then {horizon} to "
                    "train and as many to test after the embargo)",
                )
            )
    seen = {snapshot.account_id for snapshot in snaps}
    first_scored = min((snapshot.day for snapshot in snaps), default=None)
    unscored = sorted(set(result.churn) - seen)
    # Gone before the first day the replay scored: in the history but never scored, so
    # in no figure; not a wrong id. An id no event names is one, whatever its date (it
    # was called "churned before the first day scored", found from outside).
    named = result.accounts or frozenset(unscored)  # not known: as before
    early = [
        a
        for a in unscored
        if a in named and first_scored is not None and result.churn[a] <= first_scored
    ]
    # In the history but in no figure at this horizon (``snaps`` are a horizon's own, for
    # calibrate): churned late, so every day of theirs before the churn has its window
    # run past the history's end. Called "not in the history: check the ids" before
    # (found from outside).
    unjudged = [a for a in unscored if a in result.accounts and a not in early]
    unknown = [a for a in unscored if a not in early and a not in unjudged]
    if unjudged:
        first = ", ".join(unjudged[:5])
        why = (
            f"at {horizons[0]} days (first: {first}): none of their scored days before the "
            f"churn has its next {horizons[0]} days within the history"
            if len(horizons) == 1
            else f"(first: {first}): none was scored before its churn"
        )
        found.append(
            _warn(
                "churned_unjudged",
                f"{len(unjudged)} churned account(s) of the history count in no figure {why}",
            )
        )
    if early:
        found.append(
            _warn(
                "churned_before_scoring",
                f"{len(early)} account(s) churned on or before the first day scored "
                f"({first_scored}; first: {', '.join(early[:5])}): no figure counts them",
            )
        )
    if unknown and snaps:
        found.append(
            _warn(
                "unknown_churned",
                f"{len(unknown)} churned account(s) are not in the history (first: "
                f"{', '.join(unknown[:5])}): check the churn file's ids",
            )
        )
    if result.first_day and result.last_day:
        outside = sorted(
            account
            for account, day in result.churn.items()
            if account in seen and not result.first_day <= day <= result.last_day
        )
        if outside:
            found.append(
                _warn(
                    "churn_outside_history",
                    f"{len(outside)} churn date(s) lie outside the history "
                    f"({result.first_day} to {result.last_day}; first: "
                    f"{', '.join(outside[:5])}): they cannot be predicted from it",
                )
            )
    churned = len(set(result.churn) & seen)
    low = [h for h, share in shares.items() if share < MIN_CHURN_SHARE]
    if churned < MIN_CHURNED_ACCOUNTS or low:
        found.append(
            _warn(
                "low_churn",
                f"{churned} scored accounts churned"
                + (
                    f"; under {MIN_CHURN_SHARE:.0%} of observations within {low[0]} days"
                    if low
                    else ""
                )
                + ": too little churn to learn from or to judge a model by (wide intervals)",
            )
        )
    return found


def _measure_checks(snaps: Sequence[Snapshot], model: HealthModel) -> list[dict[str, str]]:
    """Scored measures with no data anywhere, and those the same for every account."""
    found = []
    for group in model.groups.values():
        for name, measure in group.measures.items():
            values = {
                snapshot.inputs[name]
                for snapshot in snaps
                if snapshot.inputs.get(name) is not None
                and has_data(snapshot.inputs, measure.needs)
            }
            if not values:
                found.append(
                    _warn("no_data", f"{name} has no data in any scored account-day: unscored")
                )
            elif len(values) == 1 and len(snaps) > 1:
                found.append(
                    _warn(
                        "constant",
                        f"{name} is {_show(values.pop())} for every account: it ranks nobody "
                        "and only shifts every score",
                    )
                )
    return found


def _show(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _warn(check: str, message: str) -> dict[str, str]:
    return {"check": check, "message": message}
