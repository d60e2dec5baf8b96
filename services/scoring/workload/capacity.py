"""A CSM's load: their accounts by tier against the handbook's capacity (SEG-10).

Each account weighs the share of one CSM it takes: a strategic account 1/15, an
enterprise one 1/30, a non-focus one 1/250 (settings ``capacity_*``), so portfolios of
any mix compare: a load of 1.0 is one CSM's full capacity. An account without a tier
weighs like a non-focus one (the lightest care, CAD-11) and is counted apart as
``none``. Churned accounts take no care and are left out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from shared.config import Settings
from shared.contracts.events import LifecycleStage, Tier

NO_TIER = "none"


def capacity_of(s: Settings) -> dict[str, int]:
    """Accounts one CSM can serve, per tier."""
    return {
        Tier.strategic.value: s.capacity_strategic,
        Tier.enterprise.value: s.capacity_enterprise,
        Tier.non_focus.value: s.capacity_non_focus,
    }


def served(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The portfolio rows that take a CSM's care (churned accounts left out)."""
    return [r for r in rows if r.get("lifecycle_stage") != LifecycleStage.churned]


def by_owner(rows: Iterable[dict[str, Any]]) -> dict[str | None, list[dict[str, Any]]]:
    out: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        out[r["owner_email"]].append(r)
    return out


def load(rows: Iterable[dict[str, Any]], capacity: Mapping[str, int]) -> dict[str, Any]:
    """Accounts by tier and the load they make (the fraction of one CSM's capacity)."""
    tiers: dict[str, int] = {t: 0 for t in (*capacity, NO_TIER)}
    share = 0.0
    for r in rows:
        tier = r["tier"] if r["tier"] in capacity else NO_TIER
        tiers[tier] += 1
        share += 1 / capacity.get(tier, capacity[Tier.non_focus.value])
    return {"by_tier": tiers, "load": round(share, 3)}
