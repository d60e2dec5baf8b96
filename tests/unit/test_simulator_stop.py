"""The live simulator stops when asked, whatever ingest does: with ingest gone it sat in
its retries (30 of them, about two minutes) and ignored SIGTERM and SIGINT (found from
outside). Against an in-memory stand-in for ingest and the APIs (httpx's MockTransport)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest

from services import simulate
from services.simulate import Simulator

STOP_GRACE_S = 2.0  # services.simulate's, here so the test reads against older trees


def _stand_in(
    monkeypatch: pytest.MonkeyPatch, ingest: Callable[[httpx.Request], httpx.Response]
) -> None:
    """The simulator's HTTP client answered in memory: the plans and cases APIs as
    empty, ``ingest`` for the rest."""

    def answer(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/plan"):
            return httpx.Response(201, json={})
        if path.startswith("/v1/cases"):
            return httpx.Response(200, json={"cases": []})
        return ingest(request)

    real = httpx.AsyncClient

    def client(**kw: Any) -> httpx.AsyncClient:
        return real(transport=httpx.MockTransport(answer), **kw)

    monkeypatch.setattr(simulate.httpx, "AsyncClient", client)


async def test_a_stop_ends_the_live_traffic_while_ingest_is_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    down = asyncio.Event()  # from then on ingest answers 503, as with Kafka down
    live_posts: list[int] = []

    def ingest(request: httpx.Request) -> httpx.Response:
        if down.is_set():
            live_posts.append(1)
            return httpx.Response(503, headers={"Retry-After": "5"}, json={})
        return httpx.Response(202, json={"accepted": 1})

    _stand_in(monkeypatch, ingest)
    live = asyncio.Event()

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "live":
            live.set()

    sim = Simulator("http://ingest.test", "hwk_x", 3, seed=1, progress=progress)
    stop = asyncio.Event()
    run = asyncio.create_task(sim.run(stop))
    await asyncio.wait_for(live.wait(), timeout=30)  # history sent, a live batch too
    down.set()
    while not live_posts:  # the next live batch meets the 503 and waits to retry
        await asyncio.sleep(0.05)
    asked = time.monotonic()
    stop.set()
    await asyncio.wait_for(run, timeout=STOP_GRACE_S + 3)
    assert time.monotonic() - asked < STOP_GRACE_S + 1
    assert len(live_posts) == 1  # no retry after the stop


async def test_a_simulator_that_gives_up_stops_alone(caplog: pytest.LogCaptureFixture) -> None:
    """It gave up after minutes without ingest (an unwritable disk) and took the API,
    scoring and alerts down with it (found from outside)."""
    import logging

    from services.cli.serve import _simulate_when_up

    class GivingUp:
        accounts = ("a",)

        async def run(self, stop: asyncio.Event) -> None:
            raise RuntimeError("ingest stayed unavailable; giving up")

    log = logging.getLogger("healthwatch.dev")
    with caplog.at_level(logging.ERROR, logger="healthwatch.dev"):
        await _simulate_when_up(GivingUp(), asyncio.Event(), log)  # type: ignore[arg-type]
    assert "simulator stopped (RuntimeError: ingest stayed unavailable" in caplog.text
    assert "the services go on" in caplog.text


async def test_a_simulator_cut_off_by_the_services_stopping_is_no_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A clean stop (SIGTERM) logged "simulator stopped (ConnectError …)" at ERROR: its
    last request found the API gone (found from outside)."""
    import logging

    import httpx

    from services.cli.serve import _simulate_when_up

    class CutOff:
        accounts = ("a",)

        async def run(self, stop: asyncio.Event) -> None:
            stop.set()
            raise httpx.ConnectError("All connection attempts failed")

    log = logging.getLogger("healthwatch.dev")
    with caplog.at_level(logging.INFO, logger="healthwatch.dev"):
        await _simulate_when_up(CutOff(), asyncio.Event(), log)  # type: ignore[arg-type]
    assert "simulator stopped with the services" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_the_tickets_still_waiting_are_answered_as_the_demo_stops(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A restarted demo numbers its own tickets, so the ones left unanswered at a stop
    stayed open for ever: each restart added to the accounts' open tickets and late
    replies (left open at stop 46)."""
    posted: list[dict[str, Any]] = []

    def ingest(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/events":
            posted.extend(json.loads(request.content)["events"])
        return httpx.Response(202, json={"accepted": 1})

    _stand_in(monkeypatch, ingest)
    monkeypatch.setattr(simulate, "LIVE_TICKETS_AN_HOUR", 3600.0 * 50)  # one a tick each
    monkeypatch.setattr(simulate, "reply_delay", lambda _rng: timedelta(hours=5))
    ticks = 0

    def progress(stage: str, done: int, total: int) -> None:
        nonlocal ticks
        ticks += stage == "live"

    sim = Simulator("http://ingest.test", "hwk_x", 3, seed=1, progress=progress)
    stop = asyncio.Event()
    run = asyncio.create_task(sim.run(stop))
    while ticks < 2:
        await asyncio.sleep(0.05)
    opened = {e["ticket_id"] for e in posted if e.get("status") == "open"}
    assert opened and not any(
        e.get("first_reply_at") for e in posted if e.get("ticket_id") in opened
    )
    stop.set()
    await asyncio.wait_for(run, timeout=STOP_GRACE_S + 3)
    tickets = [e for e in posted if e.get("kind") == "ticket"]
    opened = {e["ticket_id"] for e in tickets if e["status"] == "open"}
    answers = [e for e in tickets if e["ticket_id"] in opened and e.get("first_reply_at")]
    assert sorted(e["ticket_id"] for e in answers) == sorted(opened)  # each once
