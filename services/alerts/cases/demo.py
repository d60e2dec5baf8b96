"""The demo's case work (``make demo``): what CSMs would do with the risk cases the
simulated accounts' high-danger alerts open, so the case board shows plans and reviews.
Through the cases API, as a person would, with the simulator's key.
"""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import datetime, timedelta
from typing import Any

import httpx

from shared.clock import pause
from shared.i18n import DEFAULT_LANGUAGE, N_, translate

log = logging.getLogger(__name__)

# The cases worked on: a handful, as one team would have in hand; the rest stay as the
# alerts opened them (planless), which the board shows too.
WORKED = 8
# The demo's alerts arrive seconds after its history; give up after this long.
WAIT_S = 180.0
POLL_S = 2.0
# In the demo's language (``healthwatch dev``'s, as its pages): the team's own words.
PLANS = (
    (N_("Meet the decision maker together with the sales manager"), 3),
    (N_("Re-run the onboarding workshop for the new users"), 10),
    (N_("Agree on success criteria for the next quarter"), 14),
    (N_("Escalate the open tickets to the product team"), -2),  # already late: overdue
)
REVIEWS = (
    (
        N_("Reviewed with sales and implementation: usage is recovering after the workshop."),
        "normal",
    ),
    (N_("The new decision maker wants a re-evaluation; executive meeting set."), "high"),
    (N_("Tickets resolved, the champion is engaged again."), "mild"),
)
LESSON = N_("Meet the decision maker every quarter, not only the IT contact.")


async def work_cases(
    client: httpx.AsyncClient,
    url: str,
    headers: dict[str, str],
    rng: random.Random,
    now: datetime,
    stop: asyncio.Event,
    lang: str = DEFAULT_LANGUAGE,
) -> int:
    """Once the alerts have opened cases: a plan for a few, reviews for some, one closed
    with its lesson. How many cases it worked on (0 if none opened in time)."""
    try:
        cases = await _opened(client, url, headers, stop)
        for n, case in enumerate(cases[:WORKED]):
            base = f"{url}/v1/cases/{case['case_id']}"
            await _work(client, base, headers, rng, now, n, lang)
    except httpx.HTTPError as exc:  # the demo goes on without its case work
        log.warning("simulator: case work stopped: %s", exc)
        return 0
    log.info("simulator: worked on %d risk cases", min(len(cases), WORKED))
    return min(len(cases), WORKED)


async def _work(
    client: httpx.AsyncClient,
    base: str,
    headers: dict[str, str],
    rng: random.Random,
    now: datetime,
    n: int,
    lang: str,
) -> None:
    """The n-th case: two plan steps; a review for every other one; the last closed."""
    for title, days in rng.sample(PLANS, 2):
        due = (now + timedelta(days=days)).isoformat()
        body = {"title": translate(lang, title), "due": due}
        await client.post(f"{base}/tasks", json=body, headers=headers)
    if n % 2 == 0:
        notes, level = REVIEWS[n // 2 % len(REVIEWS)]
        body = {"notes": translate(lang, notes), "danger_after": level}
        await client.post(f"{base}/reviews", json=body, headers=headers)
    if n == WORKED - 1:
        body = {"outcome": "saved", "lesson": translate(lang, LESSON)}
        await client.post(f"{base}/close", json=body, headers=headers)


async def _opened(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], stop: asyncio.Event
) -> list[dict[str, Any]]:
    """The open cases, once at least WORKED are open (or the wait is over)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    cases: list[dict[str, Any]] = []
    while not stop.is_set() and loop.time() < deadline:
        answer = await client.get(f"{url}/v1/cases", headers=headers)
        if answer.status_code == 200:
            cases = list(answer.json()["cases"])
            if len(cases) >= WORKED:
                break
        await pause(stop, POLL_S)
    return cases
