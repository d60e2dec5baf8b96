"""Steady state: months of simulated history (``services/simulate_history.py``, as
``healthwatch simulate --history-out``) replayed by the backtest
(``services/scoring/backtest``), which keeps every alert's first firing. Alerts per
account per week are counted after the first ``skip_days`` (the backlog a new
installation finds on its first day is the demo's figure, not this one).

The per-rule precision is the backtest's, from a second replay of the same history
with the shipped rules ungrouped (their ``family`` lines taken out): grouped, a rule
that joins an open alert is not that alert's first firing, and the backtest would not
see it. Rules are judged alone, alerts as people get them.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from services.scoring.backtest.replay import read_churn_csv, replay
from services.scoring.backtest.report import rule_quality
from services.simulate_history import write_history

HORIZONS = (30, 60, 90)
# The replay scores every account and steps its rules on its evaluation days only: daily
# here, as the live service scores a quiet account once a day (the backtest's default,
# weekly, would open fewer alerts than live scoring, dated up to six days late).
STEP_DAYS = 1


def ungrouped(source: str) -> str:
    """The alerting file without its families: every rule alerts alone."""
    return re.sub(r'(?m)^family = "[a-z0-9_]+"\n', "", source)


@contextmanager
def alerting_file(path: Path) -> Iterator[None]:
    """The replay's scoring reads this alerting file (its settings come from the
    environment)."""
    before = os.environ.get("HEALTHWATCH_ALERTING_FILE")
    os.environ["HEALTHWATCH_ALERTING_FILE"] = str(path)
    try:
        yield
    finally:
        if before is None:
            del os.environ["HEALTHWATCH_ALERTING_FILE"]
        else:
            os.environ["HEALTHWATCH_ALERTING_FILE"] = before


async def run_steady(
    accounts: int, days: int, seed: int, end: date, skip_days: int, alerting: str
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="healthwatch-alerts-volume-") as tmp:
        events, churn_csv = Path(tmp) / "h.ndjson.gz", Path(tmp) / "churn.csv"
        write_history(events, churn_csv, accounts=accounts, days=days, end=end, seed=seed)
        churn = read_churn_csv(churn_csv)
        grouped, alone = Path(tmp) / "grouped.toml", Path(tmp) / "ungrouped.toml"
        grouped.write_text(alerting, encoding="utf-8")
        alone.write_text(ungrouped(alerting), encoding="utf-8")
        with alerting_file(grouped):
            result = await replay([events], churn=churn, step_days=STEP_DAYS)
        with alerting_file(alone):
            ungrouped_replay = await replay([events], churn=churn, step_days=STEP_DAYS)
            quality = rule_quality(ungrouped_replay, HORIZONS)
    start = end - timedelta(days=days - 1) + timedelta(days=skip_days)
    counted = [f for f in result.firings if f.day >= start]
    # Account-weeks the accounts were customers (a churned account stops counting).
    account_days = sum(
        max(0, ((churn.get(f"hist-{n:04d}") or end + timedelta(days=1)) - start).days)
        for n in range(accounts)
    )
    weeks = account_days / 7
    return {
        "accounts": accounts,
        "days": days,
        "counted_from": start.isoformat(),
        "churned": len(churn),
        "alerts_opened": len(counted),
        "alerts_per_account_week": round(len(counted) / weeks, 3) if weeks else None,
        "alerts_per_40_accounts_day": round(len(counted) / weeks / 7 * 40, 2) if weeks else None,
        "opened_by_rule": dict(Counter(f.rule for f in counted).most_common()),
        "base_churn_rate": quality["base_churn_rate"],
        "rule_precision": {
            r["rule"]: {
                "fired": r["fired"],
                "churned_within": r["churned_within"],
                "lift": r["lift"],
            }
            for r in quality["rules"]
        },
    }
