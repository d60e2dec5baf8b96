"""The demo's success plans (``make demo``): a share of the simulated accounts get a plan
from a template, started some weeks back, as CSMs would have made them, so the account
pages and the plans-at-risk list show plans on track, at risk and missed. Through the
plan API with the simulator's key, as a person would.
"""

from __future__ import annotations

import logging
import random
from datetime import date, timedelta

import httpx

log = logging.getLogger(__name__)

# A share of the accounts, at most a few dozen: a portfolio where plans are the rule for
# the accounts being worked on, not every account (and the demo starts in seconds).
SHARE = 0.4
MOST = 60
# Started 15 to 80 days back: past the first fortnight (MIN_DAYS_JUDGED), so each plan's
# pace is judged, and before the 90-day due days, so most are still open.
STARTED_DAYS = (15, 80)


async def make_plans(
    client: httpx.AsyncClient,
    url: str,
    headers: dict[str, str],
    account_ids: list[str],
    today: date,
    rng: random.Random,
) -> int:
    """Plans for some of the accounts, from the template for each one's tier and stage
    (the adoption template for the simulator's accounts in stable use). Returns how
    many were made; a refusal is logged and skipped (the demo goes on)."""
    chosen = [account_id for account_id in account_ids if rng.random() < SHARE][:MOST]
    made = 0
    for account_id in chosen:
        start = today - timedelta(days=rng.randint(*STARTED_DAYS))
        path = f"{url}/v1/accounts/{account_id}/plan"
        response = await client.post(path, json={"start_on": start.isoformat()}, headers=headers)
        if response.status_code != 201:
            log.warning("demo plan for %s refused: %s", account_id, response.text[:200])
            continue
        made += 1
    log.info("simulator: %d success plans made from the templates", made)
    return made
