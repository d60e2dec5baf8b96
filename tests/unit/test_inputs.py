"""Model inputs and the low-activity rule, on hand-computed cases."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from services.alerts.outbox import backoff_s
from services.scoring.inputs import model_inputs, segment_of
from services.scoring.model.evaluate import evaluate
from services.scoring.model.schema import load_default_model
from tests.support.measures import measures

m = measures


def test_model_inputs() -> None:
    raw = model_inputs(
        m(
            last_touchpoint_at=datetime(2026, 11, 3, 9, tzinfo=UTC),
            nps_latest=7,
            last_payment_failed_at=datetime(2026, 10, 30, tzinfo=UTC),
        )
    )
    assert raw["active_user_share_7d"] == 0.2
    assert raw["active_user_share_30d"] == 0.24
    assert raw["days_since_touchpoint"] == 20
    assert raw["payment_failed_30d"] == 1.0
    assert raw["nps_latest"] == 7
    bare = model_inputs(
        m(seats_purchased=None, last_payment_failed_at=datetime(2026, 9, 1, tzinfo=UTC))
    )
    assert bare["active_user_share_7d"] is None and bare["days_since_touchpoint"] is None
    assert bare["payment_failed_30d"] == 0.0  # older than a month


def test_an_account_nothing_is_known_of_is_not_scored() -> None:
    """An account the CRM sent alone (no use, no tickets, no failed payment) scored 100
    (green) on "no payment failed" alone (found from outside): that says nothing of it."""
    nothing = m(first_seen=None, seats_purchased=None, active_users_7d=0, active_users_30d=0,
                active_days_7d=0, events_7d=0)  # fmt: skip
    raw = model_inputs(nothing)
    assert raw["payment_failed_30d"] is None
    failed = model_inputs(
        replace(nothing, last_payment_failed_at=datetime(2026, 11, 20, tzinfo=UTC))
    )
    assert failed["payment_failed_30d"] == 1.0  # a failure is news of anyone
    model = load_default_model()
    assert evaluate(model, raw, segment_of(nothing)).value is None
    assert evaluate(model, failed, segment_of(nothing)).value == 0


def test_segment_tenure() -> None:
    seg = segment_of(
        m(tier="strategic", lifecycle_stage="stable", contract_start=date(2026, 11, 1))
    )
    assert (seg.tier, seg.lifecycle_stage, seg.tenure_days) == ("strategic", "stable", 22)


def test_backoff_grows_within_cap() -> None:
    rng = random.Random(1)
    assert all(backoff_s(1, 2, 300, rng) == 2 for _ in range(10))
    assert all(2 <= backoff_s(5, 2, 300, rng) <= 32 for _ in range(50))
    assert all(backoff_s(30, 2, 300, rng) <= 300 for _ in range(50))


def test_depth_measures_from_28_day_name_counts() -> None:
    from services.scoring.inputs import depth_level
    from services.scoring.model.schema import Depth, DepthLevel

    depth = Depth(
        core_modules=["quotes", "workflow"],
        workflow=DepthLevel(modules=["workflow"], min_uses=5),
        integrated=DepthLevel(platforms=["api"], min_uses=20),
        customised=DepthLevel(modules=["custom_objects"], min_uses=3),
    )
    names = {
        ("event", "login"): (10, 40),
        ("module", "contacts"): (5, 30),
        ("module", "workflow"): (1, 6),
        ("platform", "pc"): (10, 30),
        ("platform", "api"): (10, 19),
        ("module", "custom_objects"): (0, 0),
    }
    record = m(names=names)
    assert depth_level(record, depth) == 2  # workflow 6 >= 5; api 19 < 20
    raw = model_inputs(record, depth)
    assert raw["module_breadth_28d"] == 2
    assert raw["core_module_use_28d"] == 0.5
    assert raw["api_calls_28d"] == 19
    assert raw["customisation_uses_28d"] == 0
    deep = m(names={**names, ("module", "custom_objects"): (3, 3)})
    assert depth_level(deep, depth) == 4
    assert model_inputs(deep, depth)["customisation_uses_28d"] == 3
    assert depth_level(m(names={}), depth) is None
    # Use without any module (a product that has none): module measures have no data.
    no_modules = model_inputs(m(names={("event", "like"): (3, 9)}), depth)
    assert no_modules["module_breadth_28d"] is None
    assert no_modules["core_module_use_28d"] is None


def test_28_day_use_by_dimension_is_worked_out_once() -> None:
    record = m(
        names={
            ("event", "login"): (10, 40),
            ("module", "workflow"): (1, 6),
            ("module", "custom_objects"): (0, 0),  # not used over the 28 days
            ("platform", "api"): (10, 19),
        }
    )
    assert dict(record.used_28d("module")) == {"workflow": 6}
    assert dict(record.used_28d("event")) == {"login": 40}
    assert dict(record.used_28d("value")) == {}
    # The model's inputs ask several times a score: worked out once, then shared.
    assert record.used_28d("module") is record.used_28d("module")
    with pytest.raises(TypeError):  # the empty one is shared by every Measures
        record.used_28d("value")["login"] = 1  # type: ignore[index]
    # A copy with other names works them out again (replace builds a new instance).
    changed = replace(record, names={("module", "workflow"): (2, 9)})
    assert dict(changed.used_28d("module")) == {"workflow": 9}
    assert dict(changed.used_28d("event")) == {}


def test_support_and_commercial_inputs() -> None:
    raw = model_inputs(
        m(
            oldest_open_ticket_at=datetime(2026, 11, 3, tzinfo=UTC),
            last_ticket_at=datetime(2026, 11, 20, tzinfo=UTC),
            open_tickets=2,
            open_high_priority_tickets=1,
            contract_start=date(2026, 6, 1),
            contract_end=date(2027, 5, 31),
        )
    )
    assert raw["oldest_open_ticket_days"] == 20
    assert raw["days_since_last_ticket"] == 3
    assert raw["open_high_priority_tickets"] == 1
    assert raw["days_to_contract_end"] == 189
    assert raw["days_since_purchase"] == 175
    # No go-live date but in use, 175 days in: no data, not "not live" (issue 13: many
    # products never send a go-live date; the old 1 penalised every one of them).
    assert raw["not_live_after_90d"] is None
    dormant = model_inputs(m(contract_start=date(2026, 6, 1), first_seen=None))
    assert dormant["not_live_after_90d"] == 1.0  # no go-live and never used: not live
    live = model_inputs(m(contract_start=date(2026, 6, 1), go_live=date(2026, 8, 1)))
    assert live["not_live_after_90d"] == 0.0
    early = model_inputs(m(contract_start=date(2026, 10, 1), first_seen=None))
    assert early["not_live_after_90d"] == 0.0  # 53 days: still within the 90
    assert model_inputs(m())["not_live_after_90d"] is None
    assert model_inputs(m())["oldest_open_ticket_days"] == 0


def test_sla_breaches_by_tier() -> None:
    from services.scoring.inputs import sla_breaches_28d
    from services.scoring.model.schema import Sla

    t0 = datetime(2026, 11, 20, 9, tzinfo=UTC)
    replies = [
        (t0, t0 + timedelta(minutes=20)),  # within 30 minutes
        (t0, t0 + timedelta(minutes=45)),  # strategic breach, fine for enterprise
        (t0, None),  # still unanswered 3 days later: a breach for every tier
        (datetime(2026, 10, 1, tzinfo=UTC), None),  # older than 28 days: not counted
    ]
    assert sla_breaches_28d(m(tier="strategic", ticket_replies=replies), Sla()) == 2
    assert sla_breaches_28d(m(tier="enterprise", ticket_replies=replies), Sla()) == 1
    assert model_inputs(m(ticket_replies=replies))["sla_breaches_28d"] == 1  # default 8 hours


def test_one_working_day_skips_the_weekend_and_days_have_their_real_length() -> None:
    from zoneinfo import ZoneInfo

    from services.scoring.inputs import sla_breaches_28d, working_time
    from services.scoring.model.schema import Sla, load_default_model

    berlin = ZoneInfo("Europe/Berlin")
    friday = datetime(2026, 10, 23, 12, tzinfo=berlin)  # DST ends on Sunday the 25th
    monday = datetime(2026, 10, 26, 12, tzinfo=berlin)
    weekdays = {1, 2, 3, 4, 5}
    assert working_time(friday, monday, berlin, weekdays) == timedelta(hours=24)
    assert working_time(friday, monday, berlin, weekdays | {6, 7}) == timedelta(hours=73)
    assert working_time(friday, monday, berlin, None) == timedelta(hours=73)
    # Counting stops past a limit: four weeks unanswered stop at the first working day
    # that takes the time past it (Monday), not after walking every day.
    later = friday + timedelta(days=27)
    assert working_time(friday, later, berlin, weekdays) == timedelta(days=19)
    assert working_time(friday, later, berlin, weekdays, past=timedelta(hours=13)) == timedelta(
        hours=36
    )
    # A non-focus ticket opened on Friday noon, answered on Monday at 11:00: 23 working
    # hours, within one working day; the same for a strategic account breaches 30 minutes.
    reply = [(friday, monday - timedelta(hours=1))]
    late = [(friday, monday + timedelta(hours=1))]
    at = {"as_of": date(2026, 10, 26), "as_of_time": monday, "tz": berlin}
    sla = load_default_model().sla  # working days for enterprise and non-focus
    assert sla_breaches_28d(m(tier="non-focus", ticket_replies=reply, **at), sla) == 0
    assert sla_breaches_28d(m(tier="non-focus", ticket_replies=late, **at), sla) == 1
    assert sla_breaches_28d(m(tier="strategic", ticket_replies=reply, **at), sla) == 1
    # A model that names no working-day tiers (one stored before they existed) counts
    # every hour: 71 real hours is late for one day.
    assert sla_breaches_28d(m(tier="non-focus", ticket_replies=reply, **at), Sla()) == 1
