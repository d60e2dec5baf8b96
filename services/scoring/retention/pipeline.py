"""The renewal forecast of one account and the pipeline's totals (pure: no database).

The forecast is a transparent rule, so a CSM can say why an account sits where it does
(``reasons``) and the lead can argue with it, as Gainsight customers compare an
automated risk class with the CSM's own call (anchors-cs-platforms.md, Renewal
Center):

- **at risk**: red health, a high danger level (DG-05: "very likely to churn"), or a
  detractor's latest NPS (0–6, the standard NPS definition: the handbook's CEO
  satisfaction "may decide the renewal") — any one of them;
- **commit**: green health and none of the above — the handbook's healthy customers
  renew (RN-05);
- **likely**: everything else: yellow health, or not scored yet.

The thresholds are a ``ForecastRule``, made from the ``HEALTHWATCH_RENEWAL_*`` settings
(``ForecastRule.of``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from services.scoring.retention.metrics import DEFAULT_CURRENCY
from shared.config import Settings

FORECASTS = ("commit", "likely", "at_risk")
# The danger levels, most dangerous first (services/scoring/danger.py).
DANGER_LEVELS = ("high", "normal", "mild")


@dataclass(frozen=True)
class ForecastRule:
    """What puts a renewal in each class (defaults: the module's docstring)."""

    # Danger levels that alone put a renewal at risk.
    at_risk_danger: tuple[str, ...] = ("high",)
    # The highest NPS answer that is a detractor's (NPS: 0–6 detract, 9–10 promote).
    detractor_max_nps: int = 6

    @classmethod
    def of(cls, settings: Settings) -> ForecastRule:
        """The rule the settings give: the danger level from which a renewal is at risk
        (and every level above it), and the detractors' highest NPS answer."""
        levels = DANGER_LEVELS[: DANGER_LEVELS.index(settings.renewal_at_risk_danger) + 1]
        return cls(levels, settings.renewal_detractor_max_nps)


def forecast(row: dict[str, Any], rule: ForecastRule) -> tuple[str, list[str]]:
    """The class of a renewal row (``band``, ``danger_level``, ``nps_latest``) and the
    reasons for it, as short codes (``red``, ``danger_high``, ``detractor``, …)."""
    reasons = []
    if row.get("band") == "red":
        reasons.append("red")
    if row.get("danger_level") in rule.at_risk_danger:
        reasons.append(f"danger_{row['danger_level']}")
    nps = row.get("nps_latest")
    if nps is not None and nps <= rule.detractor_max_nps:
        reasons.append("detractor")
    if reasons:
        return "at_risk", reasons
    if row.get("band") == "green":
        return "commit", ["green"]
    return "likely", [row.get("band") or "unscored"]


def forecast_totals(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Per class: accounts, accounts with a known ARR, and ARR per currency (never
    added across currencies; ``default`` is the service's)."""
    totals: dict[str, Any] = {
        name: {"accounts": 0, "arr_accounts_known": 0, "arr_by_currency": {}} for name in FORECASTS
    }
    for row in rows:
        sums = totals[row["forecast"]]
        sums["accounts"] += 1
        if row["arr"] is None:
            continue
        sums["arr_accounts_known"] += 1
        money = sums["arr_by_currency"]
        currency = row["currency"] or DEFAULT_CURRENCY
        money[currency] = round(money.get(currency, 0.0) + row["arr"], 2)
    return totals
