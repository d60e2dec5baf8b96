"""Simulated customers: account facts, a week of history, then live usage and tickets,
sent over HTTP to an ingest URL like any product would.

Profiles follow the handbook: most accounts are healthy, some decline, some sit at
the edge of churn (few of their seats active), a few grow fast.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx

from services.alerts.cases.demo import work_cases
from services.scoring.plans.demo import make_plans
from services.simulator.contracts import FORMER_SHARE, contract_history, former_customers
from services.simulator.helpdesk import ZENDESK_PATH, zendesk_delivery
from services.simulator.relationship import relationship_events
from shared.clock import pause
from shared.i18n import DEFAULT_LANGUAGE, N_, translate

log = logging.getLogger(__name__)

MODULES = ["contacts", "opportunities", "quotes", "workflow", "reports", "api", "custom_objects"]
CORE_EVENTS = [
    ("login", None),
    ("view", "contacts"),
    ("create", "opportunities"),
    ("run", "reports"),
]
# (profile, share of accounts, share of seats active on a given day)
PROFILES = [
    ("healthy", 0.6, (0.45, 0.8)),
    ("declining", 0.15, (0.2, 0.35)),
    ("churning", 0.15, (0.02, 0.12)),
    ("growing", 0.1, (0.7, 0.95)),
]
TIERS = ["strategic", "enterprise", "non-focus"]
# Enough history for the weekly rules (they need 7 days) without a long warm-up.
HISTORY_DAYS = 8
BATCH = 500


@dataclass
class SimAccount:
    account_id: str
    name: str
    seats: int
    profile: str
    active_share: tuple[float, float]
    csm: int

    def users(self) -> list[str]:
        """The account's regular users: the same people come back day after day."""
        regulars = max(1, round(self.seats * self.active_share[1]))
        return [f"{self.account_id}-u{i}" for i in range(regulars)]


def make_accounts(n: int, rng: random.Random, lang: str = DEFAULT_LANGUAGE) -> list[SimAccount]:
    accounts = []
    weights = [p[1] for p in PROFILES]
    for i in range(n):
        profile, _, share = rng.choices(PROFILES, weights)[0]
        accounts.append(
            SimAccount(
                account_id=f"acct-{i:04d}",
                name=translate(lang, CUSTOMER_NAME, n=f"{i:04d}"),
                seats=rng.choice([10, 20, 25, 40, 50]),
                profile=profile,
                active_share=share,
                csm=i % 5,
            )
        )
    return accounts


# The demo CRM's values as a team writing in the demo's language would keep them (data,
# not words of healthwatch's: a Chinese demo showed 套餐 pro, 行业 manufacturing).
CRM_VALUES = {
    "zh-CN": {
        "pro": "专业版",
        "manufacturing": "制造业",
        "retail": "零售",
        "software": "软件",
        "finance": "金融",
        "north": "华北",
        "east": "华东",
        "south": "华南",
        "west": "西部",
        "CSM {n}": "客户成功经理 {n}",
    }
}


def facts(
    a: SimAccount, now: datetime, rng: random.Random, lang: str = DEFAULT_LANGUAGE
) -> dict[str, Any]:
    words = CRM_VALUES.get(lang, {})

    def said(value: str) -> str:
        return words.get(value, value)

    start = (now - timedelta(days=rng.randint(30, 700))).date()
    return {
        "account_id": a.account_id,
        "event_id": f"sim-facts-{a.account_id}",
        "occurred_at": (now - timedelta(days=HISTORY_DAYS + 1)).isoformat(),
        "name": a.name,
        "seats_purchased": a.seats,
        "plan": said("pro"),
        "arr": a.seats * 1200.0,
        "tier": rng.choice(TIERS),
        "industry": said(rng.choice(["manufacturing", "retail", "software", "finance"])),
        "region": said(rng.choice(["north", "east", "south", "west"])),
        "owner": {
            "email": f"csm{a.csm}@example.com",
            "slack_id": f"U0CSM{a.csm}",
            "name": said("CSM {n}").format(n=a.csm),
        },
        "contract_start": start.isoformat(),
        "contract_end": (start + timedelta(days=365 * 2)).isoformat(),
        "go_live": (start + timedelta(days=rng.randint(20, 80))).isoformat(),
        "lifecycle_stage": "stable",
        # A metered API allowance, so the add-on signal (EX-02) has something to watch.
        "usage_quotas": [{"dimension": "platform", "name": "api", "limit": a.seats * 30}],
        **danger_facts(a, start, now),
    }


# The handbook's danger causes (DG-05, DG-06) on some of the accounts heading for trouble,
# so the demo's danger levels, filters and risk cases have something to show: a share
# of the churning accounts were sold outside the ideal customer profile (high danger),
# a share of the declining ones are not live three months after purchase (normal).
WRONG_FIT_SHARE = 0.3
SLOW_GO_LIVE_SHARE = 0.3
GO_LIVE_DAYS = 90  # inputs.GO_LIVE_EXPECTED_DAYS: later than this is slow


def danger_facts(a: SimAccount, start: date, now: datetime) -> dict[str, Any]:
    """The facts that give ``a`` a danger cause, if it has one. Drawn from the account's
    own random stream: the demo's other draws stay as they were."""
    rng = random.Random(f"{a.account_id}:danger")
    if a.profile == "churning" and rng.random() < WRONG_FIT_SHARE:
        return {"icp_fit": False}
    bought_long_ago = (now.date() - start).days > GO_LIVE_DAYS
    if a.profile == "declining" and bought_long_ago and rng.random() < SLOW_GO_LIVE_SHARE:
        # Live only weeks from now: in use as a pilot, past the 90 days (DG-06).
        return {"go_live": (now + timedelta(days=rng.randint(14, 60))).date().isoformat()}
    return {}


def usage_event(a: SimAccount, user: str, at: datetime, rng: random.Random) -> dict[str, Any]:
    name, module = rng.choice(CORE_EVENTS)
    if rng.random() < 0.3:
        name, module = "use", rng.choice(MODULES)
    return {
        "kind": "usage",
        "event_id": str(uuid.UUID(int=rng.getrandbits(128))),
        "account_id": a.account_id,
        "user_id": user,
        "event": name,
        "module": module,
        "platform": rng.choices(["pc", "app", "api"], [0.7, 0.2, 0.1])[0],
        "duration_s": round(rng.uniform(5, 900), 1),
        "occurred_at": at.isoformat(),
    }


def day_of_usage(
    a: SimAccount, day_start: datetime, rng: random.Random, until: datetime
) -> list[dict[str, Any]]:
    users = a.users()
    share = rng.uniform(*a.active_share) / a.active_share[1]
    active = rng.sample(users, max(1, round(len(users) * share)))
    events = []
    for user in active:
        for _ in range(rng.randint(1, 2)):
            at = day_start + timedelta(seconds=rng.randint(8 * 3600, 19 * 3600))
            if at < until:
                events.append(usage_event(a, user, at, rng))
    return events


# The simulated helpdesk's first replies: most within the strictest SLA target (the
# default model's 30 minutes for a strategic account), a few late. It never answered,
# so every ticket breached its SLA and the demo's accounts filled with late-reply
# alerts (found from outside: the demo's most frequent alert, 48 of 201 after 7 minutes).
REPLY_IN_TIME_MINUTES = (2, 25)
REPLY_LATE_HOURS = (2, 30)
REPLY_LATE_SHARE = 0.1
# Tickets an account opens an hour in the live demo (busy accounts are sampled, so the
# chance of each is worked out from how many there are). At 18 an hour, a tenth of them
# late, every strategic and enterprise account had 3 late replies (the alert) in a
# quarter of an hour; at 4, in about eight hours.
LIVE_TICKETS_AN_HOUR = 4.0


def reply_delay(rng: random.Random) -> timedelta:
    """How long the simulated helpdesk takes to answer a ticket."""
    if rng.random() < REPLY_LATE_SHARE:
        return timedelta(hours=rng.uniform(*REPLY_LATE_HOURS))
    return timedelta(minutes=rng.uniform(*REPLY_IN_TIME_MINUTES))


def new_ticket(a: SimAccount, ticket: str, at: datetime, rng: random.Random) -> dict[str, Any]:
    """A ticket the customer opens at ``at``: open, not yet answered."""
    return {
        "kind": "ticket",
        "event_id": f"{ticket}:open:{at.isoformat()}",
        "account_id": a.account_id,
        "ticket_id": ticket,
        "status": "open",
        "priority": rng.choice(["low", "normal", "high"]),
        "created_at": at.isoformat(),
        "occurred_at": at.isoformat(),
    }


def answered(ticket: dict[str, Any], at: datetime, rng: random.Random) -> dict[str, Any]:
    """``ticket`` answered at ``at``, its first reply: waiting on the customer, or
    solved. The update is the reply, as a helpdesk's webhook sends it (the connectors
    read a pending or solved update as the first reply by then)."""
    status = rng.choices(["pending", "solved"], [0.4, 0.6])[0]
    event = {
        **ticket,
        "event_id": f"{ticket['ticket_id']}:{status}:{at.isoformat()}",
        "status": status,
        "first_reply_at": at.isoformat(),
        "occurred_at": at.isoformat(),
    }
    if status == "solved":
        event["solved_at"] = at.isoformat()
    return event


def ticket_event(a: SimAccount, at: datetime, rng: random.Random) -> dict[str, Any]:
    """A ticket of the history: opened a reply's delay before ``at`` and answered then."""
    ticket = f"{a.account_id}-t{rng.randint(1, 40)}"
    return answered(new_ticket(a, ticket, at - reply_delay(rng), rng), at, rng)


# After a stop, the time what is in flight gets to end before it is cancelled.
STOP_GRACE_S = 2.0


# The simulated customers' names, in the demo's language (its CSMs' own data).
CUSTOMER_NAME = N_("Customer {n} Ltd")


class Simulator:
    def __init__(
        self,
        url: str,
        key: str,
        accounts: int,
        *,
        seed: int = 7,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        progress: Callable[[str, int, int], None] | None = None,
        zendesk_secret: str = "",
        api_url: str | None = None,
        language: str = DEFAULT_LANGUAGE,
    ):
        self._url = url.rstrip("/")
        # The plans and cases APIs: ``healthwatch web``'s in production, else ingest's
        # own port (dev mode serves everything on one).
        self._api = (api_url or url).rstrip("/")
        self._headers = {"Authorization": f"Bearer {key}"}
        self._rng = random.Random(seed)
        # Its own stream: the contract histories leave every other draw as it was.
        self._contracts = random.Random(seed + 1)
        self._clock = clock
        # The language its data is written in: names, case plans and reviews.
        self._language = language
        self.accounts = make_accounts(accounts, self._rng, language)
        self._progress = progress or (lambda stage, done, total: None)
        self.sent = 0
        # Set: live tickets go through the Zendesk connector, as Zendesk would send them.
        self._zendesk_secret = zendesk_secret
        # The live tickets not answered yet, soonest reply first: (due, number, ticket).
        self._unanswered: list[tuple[datetime, int, dict[str, Any]]] = []
        self._tickets_opened = 0
        # This run's part of its tickets' ids: a restarted demo numbers them from 1 again,
        # and a new ticket took an old one's first reply (found in review).
        self._run = uuid.uuid4().hex[:6]

    async def _post(self, client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> None:
        """POST with retries on 503 (the bus is down) and connection errors."""
        for attempt in range(30):
            try:
                response = await client.post(self._url + path, json=body, headers=self._headers)
            except httpx.TransportError as exc:
                log.warning("ingest unreachable (%s); retrying", exc)
                await asyncio.sleep(min(5, 0.5 * (attempt + 1)))
                continue
            if response.status_code == 503:
                await asyncio.sleep(float(response.headers.get("retry-after", "1")))
                continue
            if response.status_code >= 300:
                raise RuntimeError(f"ingest answered {response.status_code}: {response.text[:500]}")
            return
        raise RuntimeError("ingest stayed unavailable; giving up")

    async def send_history(self, client: httpx.AsyncClient) -> None:
        now = self._clock()
        today = now.replace(hour=0, minute=0, second=0, microsecond=0)
        total = len(self.accounts)
        for i in range(0, total, BATCH):
            chunk = self.accounts[i : i + BATCH]
            sent = [facts(a, now, self._rng, self._language) for a in chunk]
            await self._post(client, "/v1/accounts", {"accounts": sent})
            await self._send_contracts(client, chunk, sent, now)
            # Touchpoints and NPS answers: the workload and NPS pages (simulator/relationship.py).
            profiles = [a.profile for a in chunk]
            relationship = relationship_events(sent, profiles, now, self._language)
            for j in range(0, len(relationship), BATCH):
                await self._send(client, relationship[j : j + BATCH])
        pending: list[dict[str, Any]] = []
        for done, a in enumerate(self.accounts, 1):
            for back in range(HISTORY_DAYS - 1, -1, -1):
                pending += day_of_usage(a, today - timedelta(days=back), self._rng, now)
            if self._rng.random() < 0.3:
                pending.append(
                    ticket_event(a, now - timedelta(hours=self._rng.randint(1, 100)), self._rng)
                )
            while len(pending) >= BATCH:
                await self._send(client, pending[:BATCH])
                pending = pending[BATCH:]
            self._progress("history", done, total)
        if pending:
            await self._send(client, pending)

    async def _send_contracts(
        self,
        client: httpx.AsyncClient,
        chunk: list[SimAccount],
        sent: list[dict[str, Any]],
        now: datetime,
    ) -> None:
        """The accounts' earlier contract facts and a tenth as many former customers, so
        the renewals and retention pages have history (services/simulator/contracts.py)."""
        before = now - timedelta(days=HISTORY_DAYS + 1)
        events = [
            e
            for a, current in zip(chunk, sent, strict=True)
            for e in contract_history(current, a.profile, before, self._contracts)
        ]
        owners = [current["owner"] for current in sent]
        first = int(chunk[0].account_id.removeprefix("acct-"))  # ids apart per chunk
        events += former_customers(
            first,
            round(len(chunk) * FORMER_SHARE),
            owners,
            now,
            self._contracts,
            self._language,
        )
        for i in range(0, len(events), BATCH):
            await self._post(client, "/v1/accounts", {"accounts": events[i : i + BATCH]})

    async def _send(self, client: httpx.AsyncClient, events: list[dict[str, Any]]) -> None:
        await self._post(client, "/v1/events", {"events": events})
        self.sent += len(events)

    async def live(
        self, client: httpx.AsyncClient, stop: asyncio.Event, interval_s: float = 1.0
    ) -> None:
        """Every ``interval_s``: a few users of a few accounts do something."""
        busy = min(len(self.accounts), 20)
        # Each account is busy busy/len(accounts) of the ticks: so it opens about
        # LIVE_TICKETS_AN_HOUR an hour whatever the number of accounts.
        ticket_chance = LIVE_TICKETS_AN_HOUR * interval_s / 3600 * len(self.accounts) / max(1, busy)
        while not stop.is_set():
            now = self._clock()
            events = []
            for a in self._rng.sample(self.accounts, busy):
                users = a.users()
                for user in self._rng.sample(users, max(1, len(users) // 10)):
                    events.append(usage_event(a, user, now, self._rng))
                if self._rng.random() < ticket_chance:
                    events.append(self._open_ticket(a, now))
            events += self._answers_due(now)
            if self._zendesk_secret:
                events = await self._tickets_via_zendesk(client, events, now)
            await self._send(client, events)
            self._progress("live", self.sent, 0)
            await pause(stop, interval_s)
        # The tickets still waiting are answered as the demo stops: a demo started again
        # numbers its own, so no one would ever answer these, and each restart added to
        # its accounts' open tickets and late replies (within the stop's grace).
        now = self._clock()
        events = [answered(t, now, self._rng) for _, _, t in sorted(self._unanswered)]
        self._unanswered.clear()
        if self._zendesk_secret:
            events = await self._tickets_via_zendesk(client, events, now)
        if events:
            await self._send(client, events)

    def _open_ticket(self, a: SimAccount, now: datetime) -> dict[str, Any]:
        """A new ticket of ``a``, to be answered after ``reply_delay``."""
        self._tickets_opened += 1
        ticket_id = f"{a.account_id}-{self._run}-{self._tickets_opened}"
        ticket = new_ticket(a, ticket_id, now, self._rng)
        due = now + reply_delay(self._rng)
        heapq.heappush(self._unanswered, (due, self._tickets_opened, ticket))
        return ticket

    def _answers_due(self, now: datetime) -> list[dict[str, Any]]:
        """The helpdesk's answers to the live tickets whose reply is due by ``now``."""
        out = []
        while self._unanswered and self._unanswered[0][0] <= now:
            _, _, ticket = heapq.heappop(self._unanswered)
            out.append(answered(ticket, now, self._rng))
        return out

    async def _tickets_via_zendesk(
        self, client: httpx.AsyncClient, events: list[dict[str, Any]], now: datetime
    ) -> list[dict[str, Any]]:
        """Deliver the tickets among ``events`` to the Zendesk webhook; the rest back."""
        for ticket in (e for e in events if e["kind"] == "ticket"):
            raw, headers = zendesk_delivery(ticket, self._zendesk_secret, now)
            answer = await client.post(
                self._url + ZENDESK_PATH, content=raw, headers={**self._headers, **headers}
            )
            if answer.status_code != 202:
                log.warning(
                    "zendesk webhook answered %s: %s", answer.status_code, answer.text[:200]
                )
        return [e for e in events if e["kind"] != "ticket"]

    async def run(self, stop: asyncio.Event, *, live: bool = True) -> None:
        """History, then live traffic until ``stop``. A stop ends every phase: what is in
        flight gets STOP_GRACE_S to end (a live batch, a case's review), not ingest's
        retries, which last about two minutes while it is unreachable."""
        async with httpx.AsyncClient(timeout=30) as client:
            work = asyncio.create_task(self._traffic(client, stop, live))
            stopped = asyncio.create_task(stop.wait())
            try:
                await asyncio.wait({work, stopped}, return_when=asyncio.FIRST_COMPLETED)
                if not work.done():
                    await asyncio.wait({work}, timeout=STOP_GRACE_S)
            finally:
                stopped.cancel()
                if not work.done():
                    work.cancel()
                    await asyncio.wait({work})
            if work.cancelled():
                log.info("simulator: stopped (%d events sent)", self.sent)
                return
            await work  # its exception, if it failed

    async def _traffic(self, client: httpx.AsyncClient, stop: asyncio.Event, live: bool) -> None:
        await self.send_history(client)
        log.info(
            "simulator: history for %d accounts sent (%d events)", len(self.accounts), self.sent
        )
        # Success plans for some accounts, from the templates (scoring/plans/demo.py).
        ids = [a.account_id for a in self.accounts]
        today = self._clock().date()
        await make_plans(client, self._api, self._headers, ids, today, random.Random(1))
        if live:
            # Plans and reviews for the risk cases the alerts open, so the demo's case
            # board has them (a Random of its own: the traffic draws stay as they were).
            at = self._clock()
            work = work_cases(
                client, self._api, self._headers, random.Random(0), at, stop, self._language
            )
            cases = asyncio.create_task(work)
            try:
                await self.live(client, stop)
                await cases
            finally:
                cases.cancel()
                await asyncio.gather(cases, return_exceptions=True)
