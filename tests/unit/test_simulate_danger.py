"""The demo's accounts show the handbook's danger levels: some churning accounts sold
outside the ideal customer profile (high), some declining ones not live three months
after purchase (normal), and no healthy or growing account with a cause. A reviewer
found every demo account without a danger level, so its filters and cases showed none."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from services import simulate
from services.scoring import danger, inputs
from services.scoring.measures import Measures
from services.scoring.model.schema import DangerRules
from shared.contracts.events import AccountFacts, TicketEvent

NOW = datetime(2026, 12, 6, 12, tzinfo=UTC)


def _level(sent: dict[str, object]) -> str | None:
    """The danger level scoring gives the account's facts, a week into its use."""
    facts = AccountFacts.model_validate(sent)
    today = NOW.date()
    m = Measures(
        account_id=facts.account_id,
        as_of=today,
        as_of_time=NOW,
        first_seen=today - timedelta(days=7),
        active_users_7d=3,
        active_users_30d=3,
        active_days_7d=5,
        events_7d=30,
        open_tickets=0,
        seats_purchased=facts.seats_purchased,
        icp_fit=facts.icp_fit,
        contract_start=facts.contract_start,
        go_live=facts.go_live,
    )
    return danger.assess(m, inputs.model_inputs(m), DangerRules())["level"]


def test_the_demo_shows_high_and_normal_danger_on_accounts_heading_for_trouble() -> None:
    assert simulate.GO_LIVE_DAYS == inputs.GO_LIVE_EXPECTED_DAYS
    rng = random.Random(7)
    levels: Counter[tuple[str, str | None]] = Counter()
    for account in simulate.make_accounts(400, rng):
        levels[(account.profile, _level(simulate.facts(account, NOW, rng)))] += 1
    assert levels[("churning", "high")] >= 5
    assert levels[("declining", "normal")] >= 5
    # Most of them keep no cause, and the healthy and growing none at all.
    assert levels[("churning", None)] > levels[("churning", "high")]
    assert {level for (profile, level) in levels if profile in ("healthy", "growing")} == {None}


def test_the_danger_facts_leave_the_demos_other_draws_as_they_were(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The demo's shared random stream draws as before (its history, traffic and the
    tests that read them stay the same): the causes come from each account's own."""

    def stream_after_facts() -> object:
        rng = random.Random(7)
        for account in simulate.make_accounts(200, rng):
            simulate.facts(account, NOW, rng)
        return rng.getstate()

    with_causes = stream_after_facts()
    monkeypatch.setattr(simulate, "danger_facts", lambda *_: {})
    assert stream_after_facts() == with_causes


def test_the_demos_helpdesk_answers_most_tickets_within_the_strictest_sla() -> None:
    """It never answered: every ticket breached its SLA, and late replies were the
    demo's most frequent alert (48 of 201 open after 7 minutes). Its
    answers are updates at the reply's time (pending or solved), as a helpdesk's
    webhook sends them, so the Zendesk connector reads the same first replies."""
    rng = random.Random(3)
    account = simulate.make_accounts(1, rng)[0]
    now = datetime(2026, 12, 7, 12, tzinfo=UTC)
    tickets = [
        TicketEvent.model_validate(simulate.ticket_event(account, now, rng)) for _ in range(2000)
    ]
    strictest = timedelta(minutes=30)  # the default model's, a strategic account's
    late = [
        t
        for t in tickets
        if t.first_reply_at is None or t.first_reply_at - t.created_at > strictest
    ]
    assert 0.05 < len(late) / len(tickets) < 0.2
    assert all(t.first_reply_at == t.occurred_at == now for t in tickets)
    assert {t.status for t in tickets} == {"pending", "solved"}
    assert all(t.solved_at == now for t in tickets if t.status == "solved")


async def test_the_live_demo_answers_its_tickets_when_their_reply_is_due() -> None:
    """A live ticket opens unanswered and is answered by a later update, at its due
    time: not before, once."""
    sim = simulate.Simulator("http://127.0.0.1:9", "hwk_x", accounts=1, seed=5)
    now = datetime(2026, 12, 7, 12, tzinfo=UTC)
    opened = [sim._open_ticket(sim.accounts[0], now) for _ in range(200)]
    assert {t["status"] for t in opened} == {"open"} and all(
        "first_reply_at" not in t for t in opened
    )
    assert sim._answers_due(now) == []
    soon = sim._answers_due(now + timedelta(minutes=30))
    assert 0.8 < len(soon) / len(opened) < 0.97
    rest = sim._answers_due(now + timedelta(days=2))
    assert len(soon) + len(rest) == len(opened) and sim._answers_due(now + timedelta(days=9)) == []
    assert {t["ticket_id"] for t in soon + rest} == {t["ticket_id"] for t in opened}
    # A restarted demo's tickets are new ones (numbered from 1 again, a new ticket took
    # an old one's first reply: found in review).
    again = simulate.Simulator("http://127.0.0.1:9", "hwk_x", accounts=1, seed=5)
    assert again._open_ticket(again.accounts[0], now)["ticket_id"] != opened[0]["ticket_id"]
