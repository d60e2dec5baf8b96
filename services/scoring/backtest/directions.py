"""Each measure rated in its declared direction — the direction the model (or the
handbook) says it points — and flagged when it ranks churners backwards. Rating each
measure in whichever direction looks best would hide a model that reads it wrongly."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from services.scoring.backtest.outofsample import auc_interval
from services.scoring.backtest.replay import Snapshot
from services.scoring.model.schema import HealthModel

# Inputs the model shows but does not score, and the history baselines: True when a
# higher value is declared riskier (the handbook's reading, or plain sense).
DECLARED: dict[str, bool] = {
    "days_since_last_use": True,
    "days_since_last_event": True,
    "days_since_last_ticket": True,  # ticket silence (DG-03)
    "days_since_decision_maker_contact": True,  # EW-14
    "days_to_contract_end": False,  # near the renewal is riskier
    "days_since_purchase": False,  # newcomers leave more often (LC-10)
    "tenure_days": False,
    "time_to_first_value_days": True,  # LC-08
    "events_7d": False,
    "events_28d": False,
    "dau": False,
    "active_users_7d": False,
    "activation_rate": False,
    "daily_login_ratio": False,
    "usage_minutes_per_active_user_7d": False,
    "api_calls_28d": False,
    "customisation_uses_28d": False,
    "tickets_opened_28d": True,
    "sla_breaches_28d": True,
    "nps_trend": False,
    # The product-agnostic measures (inputs.generic_inputs); a per-name measure
    # (``events_28d[like]``) is declared by its kind: more use healthier, a longer
    # silence riskier — a name whose use signals trouble (dislikes) shows as backwards.
    "days_since_first_use": False,
    "active_days_28d": False,
    "distinct_events_28d": False,
    **{
        f"{prefix}_{kind}": False
        for prefix in ("usage_events", "events")
        for kind in ("7d", "28d", "90d", "28d_per_user", "trend", "slope")
    },
    "days_since_event": True,
    "value_90d": False,
    "value_per_event_90d": False,
}
MEASURE_RESAMPLES = 100


def declared_direction(name: str, model: HealthModel) -> bool | None:
    """True when higher is riskier, False when lower is, None when nobody declared it.
    A scored measure's direction is its curve's: a curve that falls rewards less."""
    for group in model.groups.values():
        if name in group.measures:
            points = group.measures[name].curve.points
            return points[-1][1] < points[0][1]
    return DECLARED.get(name, DECLARED.get(name.partition("[")[0]))


@dataclass(frozen=True)
class Columns:
    """The numeric inputs and baselines of a list of snapshots, a column per name: the
    snapshots holding a number (their positions, ascending) and the numbers. Read once
    for every horizon of a report: walking a few million (snapshot, name) pairs again
    per horizon and measure was most of ``rate_measures``' time."""

    positions: dict[str, NDArray[np.intp]]
    values: dict[str, NDArray[np.float64]]
    accounts: NDArray[np.object_]  # each snapshot's account id

    @classmethod
    def of(cls, snaps: Sequence[Snapshot]) -> Columns:
        where: dict[str, list[int]] = {}
        numbers: dict[str, list[float]] = {}
        for k, snapshot in enumerate(snaps):
            history = snapshot.history  # a baseline wins a name it shares with an input
            for source, skip in ((snapshot.inputs, history), (history, {})):
                for name, value in source.items():
                    if name not in skip and _is_number(value):
                        where.setdefault(name, []).append(k)
                        numbers.setdefault(name, []).append(float(value))
        names = sorted(where.keys() - {"score"})
        return cls(
            {name: np.array(where[name], dtype=np.intp) for name in names},
            {name: np.array(numbers[name], dtype=np.float64) for name in names},
            np.array([snapshot.account_id for snapshot in snaps], dtype=object),
        )

    def only(self, keep: NDArray[np.bool_]) -> Columns:
        """The columns of the snapshots ``keep`` marks (their positions renumbered)."""
        renumber = np.cumsum(keep) - 1
        positions: dict[str, NDArray[np.intp]] = {}
        values: dict[str, NDArray[np.float64]] = {}
        for name, at in self.positions.items():
            kept = keep[at]
            if kept.any():
                positions[name] = renumber[at[kept]].astype(np.intp)
                values[name] = self.values[name][kept]
        return Columns(positions, values, self.accounts[keep])


def rate_measures(
    snaps: Sequence[Snapshot],
    labels: Sequence[bool],
    model: HealthModel,
    resamples: int = MEASURE_RESAMPLES,
    columns: Columns | None = None,
) -> dict[str, dict[str, Any]]:
    """Per numeric input and baseline: its AUC in the declared direction (higher is
    riskier when undeclared) with an interval (none with ``resamples`` 0: the bootstrap
    of every measure is the slow part of a large backtest); ``backwards`` when the
    whole interval (or, without one, the AUC) is below chance. Ordered from the most
    to the least predictive. ``columns``: ``Columns.of(snaps)``, when already read."""
    columns = columns or Columns.of(snaps)
    churned = np.array(labels, dtype=bool)
    rated: dict[str, dict[str, Any]] = {}
    for name, positions in columns.positions.items():
        declared = declared_direction(name, model)
        values = columns.values[name]
        risk = -values if declared is False else values
        interval = auc_interval(
            risk, churned[positions], columns.accounts[positions].tolist(), resamples=resamples
        )
        if interval["auc"] is None:
            continue
        rated[name] = {
            **interval,
            "higher_is_riskier": declared is not False,
            "declared": declared is not None,
            "backwards": (interval["high"] if interval["high"] is not None else interval["auc"])
            < 0.5,
            "snapshots": len(positions),
        }
    return dict(sorted(rated.items(), key=lambda item: -item[1]["auc"]))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
