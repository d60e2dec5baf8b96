"""The demo's traffic (``services/simulate.py``: ``make demo``'s simulator, same seed):
account facts, 8 days of history, then ``live_seconds`` of live ticks, captured from the
simulator's HTTP client and scored in process, in the order they were sent."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import httpx

from alerts_volume.harness import scoring
from services.simulate import Simulator
from shared.alerting.schema import worse
from shared.contracts.alerts import AlertEvent, Severity
from shared.contracts.events import EVENT_ADAPTER, Event

Batch = tuple[datetime, list[Event]]


async def capture(
    accounts: int, seed: int, start: datetime, live_seconds: int
) -> tuple[Simulator, list[Batch]]:
    """What the simulator posts: (wall-clock time, events) per request."""
    now = [start]
    batches: list[Batch] = []
    stop = asyncio.Event()

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        items = body.get("accounts") or body.get("events") or []
        if request.url.path == "/v1/accounts":
            items = [{"kind": "account", **item} for item in items]
        batches.append((now[0], [EVENT_ADAPTER.validate_python(item) for item in items]))
        return httpx.Response(202, json={})

    def ticked(stage: str, done: int, total: int) -> None:
        if stage == "live":
            now[0] += timedelta(seconds=1)
            if now[0] >= start + timedelta(seconds=live_seconds):
                stop.set()

    sim = Simulator("http://sim", "key", accounts, seed=seed, clock=lambda: now[0], progress=ticked)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        await sim.send_history(client)
        await sim.live(client, stop, interval_s=0)
    return sim, batches


async def run_demo(
    accounts: int, seed: int, start: datetime, live_seconds: int, alerting: str
) -> dict[str, Any]:
    sim, batches = await capture(accounts, seed, start, live_seconds)
    first_use: dict[str, datetime] = {}
    async with scoring(start, alerting) as run:
        for at, events in batches:
            await run.feed(events, at)
            for e in events:
                if e.kind == "usage":
                    first_use.setdefault(e.account_id, e.occurred_at)
        await run.sweep.run_once()
        alerts = run.keeper.alerts
    csm = {a.account_id: f"csm{a.csm}" for a in sim.accounts}
    return figures(alerts, accounts, csm, first_use)


def figures(
    alerts: list[AlertEvent], accounts: int, csm: dict[str, str], first_use: dict[str, datetime]
) -> dict[str, Any]:
    latest: dict[str, AlertEvent] = {}
    for a in alerts:
        latest[a.alert_id] = a
    opened = [a for a in alerts if a.status == "firing" and a.revision == 0]
    open_now = [a for a in latest.values() if a.status == "firing"]
    per_account = Counter(a.account_id for a in open_now)
    before_use = [
        a for a in opened if a.account_id not in first_use or a.fired_at < first_use[a.account_id]
    ]
    per_csm = Counter(csm.get(a.account_id, "none") for a in open_now)
    return {
        "accounts": accounts,
        "alerts_opened": len(opened),
        "alert_messages": len(alerts),
        "updates": sum(1 for a in alerts if a.status == "firing" and a.revision > 0),
        "updates_told": rises(alerts),
        "open_at_end": len(open_now),
        "accounts_with_open_alert": len(per_account),
        "accounts_with_2_or_more_open": sum(1 for n in per_account.values() if n >= 2),
        "most_open_on_one_account": max(per_account.values(), default=0),
        "opened_before_first_usage": dict(Counter(a.rule for a in before_use).most_common()),
        "open_per_csm": dict(sorted(per_csm.items())),
        "open_by_rule": dict(Counter(a.rule for a in open_now).most_common()),
        "open_by_severity": dict(Counter(a.severity.value for a in open_now).most_common()),
        "open_with_symptoms_attached": sum(
            1 for a in open_now if len(a.details.get("symptoms", [])) > 1
        ),
        "opened_by_rule": dict(Counter(a.rule for a in opened).most_common()),
    }


def rises(alerts: list[AlertEvent]) -> int:
    """Updates the alerts service tells people about: a rise in severity (before issue
    15 every update was told; the JSON's ``updates`` counts those)."""
    last: dict[str, Severity] = {}
    told = 0
    for a in alerts:
        if a.status == "firing" and a.alert_id in last and worse(a.severity, last[a.alert_id]):
            told += 1
        last[a.alert_id] = a.severity
    return told
