"""Contract histories for the live demo (``services/simulate.py``): what each account's
CRM said before today, so the renewals and retention pages have quarters to show.

Each account signed at its ``contract_start`` (a facts event then); a growing account
bought more since (expansion: it signed at 60% of today's ARR), a declining one cut
back (contraction: it signed at 125%), at a moment between. Former customers, who
churned in the last year and a half and send no usage any more, give the churn.
Deterministic by ``rng``; every event is a public ``account`` facts event.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from shared.i18n import DEFAULT_LANGUAGE, N_, translate

# ARR at signing relative to today's, by the demo's usage profile.
SIGNED_SHARE = {"growing": 0.6, "declining": 1.25}
# Former customers per live account: a churn rate of roughly 10% over 18 months.
FORMER_SHARE = 0.1

# In the demo's language, as its current customers' names (``simulate.CUSTOMER_NAME``).
FORMER_NAME = N_("Former customer {n}")


def _at(day: date) -> str:
    return datetime.combine(day, time(9), UTC).isoformat()


def contract_history(
    current: dict[str, Any], profile: str, before: datetime, rng: random.Random
) -> list[dict[str, Any]]:
    """The facts events of one account before ``before`` (its current facts' moment):
    its signing, and for a growing or declining account the change of ARR."""
    account_id, arr = current["account_id"], current["arr"]
    signed = date.fromisoformat(current["contract_start"])
    share = SIGNED_SHARE.get(profile, 1.0)
    events = [
        {
            **{k: v for k, v in current.items() if k not in ("event_id", "occurred_at")},
            "event_id": f"sim-signed-{account_id}",
            "occurred_at": _at(signed),
            "arr": round(arr * share, 2),
        }
    ]
    span = (before.date() - signed).days
    if share != 1.0 and span > 2:
        changed = signed + timedelta(days=rng.randint(1, span - 1))
        events.append(
            {
                "account_id": account_id,
                "event_id": f"sim-arr-{account_id}",
                "occurred_at": _at(changed),
                "arr": arr,
            }
        )
    return events


def former_customers(
    first: int,
    count: int,
    owners: list[dict[str, Any]],
    now: datetime,
    rng: random.Random,
    lang: str = DEFAULT_LANGUAGE,
) -> list[dict[str, Any]]:
    """``count`` accounts (numbered from ``first``) that signed one to three years ago and
    churned in the last 540 days: a signing and a churn facts event each."""
    events: list[dict[str, Any]] = []
    for i in range(first, first + count):
        account_id = f"former-{i:04d}"
        churned = (now - timedelta(days=rng.randint(20, 540))).date()
        signed = churned - timedelta(days=rng.randint(200, 700))
        seats = rng.choice([10, 20, 25, 40])
        events += [
            {
                "account_id": account_id,
                "event_id": f"sim-signed-{account_id}",
                "occurred_at": _at(signed),
                "name": translate(lang, FORMER_NAME, n=f"{i:04d}"),
                "seats_purchased": seats,
                "arr": seats * 1200.0,
                "tier": rng.choice(["strategic", "enterprise", "non-focus"]),
                "owner": owners[i % len(owners)],
                "contract_start": signed.isoformat(),
                # Left when the contract ended, having gone live: no renewal or go-live
                # alert is due for them.
                "contract_end": churned.isoformat(),
                "go_live": (signed + timedelta(days=30)).isoformat(),
                "lifecycle_stage": "stable",
            },
            {
                "account_id": account_id,
                "event_id": f"sim-churned-{account_id}",
                "occurred_at": _at(churned),
                "lifecycle_stage": "churned",
            },
        ]
    return events
