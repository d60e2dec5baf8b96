"""Product-agnostic measures (issue 13 point 1): by hand on a small state, through the
real state and measures loading, and in a calibrated model's TOML."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scoring.backtest.directions import declared_direction
from services.scoring.backtest.replay import read_churn_csv, replay
from services.scoring.inputs import MAX_NAMES, generic_inputs, model_inputs
from services.scoring.measures import load_measures
from services.scoring.model.calibrate import fit, shape_function, top_names
from services.scoring.model.evaluate import evaluate
from services.scoring.model.labels import GENERIC_LABELS, generic_label, is_share, measured_name
from services.scoring.model.schema import (
    Behaviour,
    ModelError,
    Ratio,
    Segment,
    load_default_model,
    parse_model,
)
from services.scoring.state import apply_events
from services.scoring.step import AccountHistory, ModelAndRules, score_account
from services.scoring.usage_measures import NameUse
from services.simulate_history import write_history
from shared.alerting.schema import parse_alerting
from shared.config import Settings
from shared.contracts.events import EVENT_ADAPTER, Event
from shared.i18n import translate
from shared.storage.db import create_engine, migrate
from tests.support.measures import AS_OF, measures

LIKES = NameUse(4, 12, 6, 30, (1, 3, 4, 4), AS_OF - timedelta(days=1))
DISLIKES = NameUse(0, 3, 0, 3, (2, 1, 0, 0), AS_OF - timedelta(days=15))


def test_counts_trend_slope_silence_and_ratios_by_hand() -> None:
    m = measures(
        first_seen=AS_OF - timedelta(days=200),
        active_users_30d=3,
        active_days_28d=9,
        name_use={("event", "like"): LIKES, ("event", "dislike"): DISLIKES},
    )
    ratio = Ratio(name="dislikes_per_like", numerator="dislike", denominator="like")
    raw = generic_inputs(m, Behaviour(events=["share"], ratios=[ratio]))
    assert (raw["events_7d[like]"], raw["events_28d[like]"], raw["events_90d[like]"]) == (4, 12, 30)
    assert raw["events_28d_per_user[like]"] == 4.0
    assert raw["events_trend[like]"] == round(13 / 7, 4)  # (12 + 1) / (6 + 1)
    assert raw["events_slope[like]"] == (3 * (4 - 1) + 4 - 3) / 10  # weekly least squares
    assert (raw["days_since_event[like]"], raw["days_since_event[dislike]"]) == (1, 15)
    assert raw["usage_events_28d"] == 15 and raw["distinct_events_28d"] == 2
    assert raw["active_days_28d"] == 9 and raw["days_since_first_use"] == 200
    assert raw["dislikes_per_like"] == 0.25
    # A declared name the account never used is measured as none, not left missing.
    assert raw["events_28d[share]"] == 0 and raw["days_since_event[share]"] == 90


def test_young_accounts_have_no_trend_and_accounts_without_use_no_measures() -> None:
    young = measures(first_seen=AS_OF - timedelta(days=20), name_use={("event", "like"): LIKES})
    raw = generic_inputs(young, Behaviour())
    assert raw["events_trend[like]"] is None and raw["events_slope[like]"] is None
    assert generic_inputs(measures(first_seen=None), Behaviour()) == {}
    # Beside the handbook's inputs, and a ratio without its denominator has no data.
    ratio = Ratio(name="r", numerator="like", denominator="nothing")
    assert model_inputs(young, behaviour=Behaviour(ratios=[ratio]))["r"] is None


def test_per_name_measures_for_the_most_used_names_only() -> None:
    uses = {("event", f"e{k:02d}"): NameUse(1, 1, 0, k + 1, (0, 0, 0, 1), AS_OF) for k in range(20)}
    raw = generic_inputs(measures(name_use=uses), Behaviour())
    named = {measured_name(key) for key in raw if measured_name(key)}
    assert named == {f"e{k:02d}" for k in range(20 - MAX_NAMES, 20)}


def test_labels_name_the_event_and_have_chinese() -> None:
    assert generic_label("events_28d[like]") == "uses over 28 days: like"
    assert generic_label("dislikes_per_like") == "dislikes per like"
    for label in GENERIC_LABELS.values():
        assert translate("zh-CN", label) != label


def test_ratio_names_are_checked() -> None:
    text = (
        'version = "x"\n[groups.g]\nweight = 1\n[groups.g.measures.m]\nweight = 1\n'
        "curve.points = [[0, 0], [1, 100]]\n[behaviour]\n"
    )
    assert parse_model(text + 'ratios = [{ name = "a_per_b", numerator = "a", denominator = "b" }]')
    with pytest.raises(ModelError):
        parse_model(text + 'ratios = [{ name = "a per b", numerator = "a", denominator = "b" }]')


def test_a_calibrated_model_with_per_name_measures_round_trips() -> None:
    rng = random.Random(3)
    rows: list[dict[str, Any]] = []
    labels = []
    for _ in range(1500):
        likes = rng.randint(0, 40)
        rows.append(
            {"events_28d[like]": likes, "events_90d[like]": 3 * likes, "events_90d[x y]": 1}
        )
        labels.append(rng.random() < (0.5 if likes < 10 else 0.05))
    assert top_names(rows, 1) == ["like"]
    model, text = fit(rows, labels, load_default_model(), version="cal")
    assert parse_model(text) == model
    assert model.behaviour.events == ["like"]
    measure = model.groups["behaviour"].measures["events_28d[like]"]
    assert measure.label == "uses over 28 days: like"
    healthy = evaluate(model, {"events_28d[like]": 30}, Segment()).value
    risky = evaluate(model, {"events_28d[like]": 2}, Segment()).value
    assert healthy is not None and risky is not None and healthy > risky


NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)


@pytest.fixture
async def engine(embedded_settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(embedded_settings.database_url)
    await migrate(engine)
    yield engine
    await engine.dispose()


def _use(n: int, name: str, days_ago: int, **props: Any) -> Event:
    return EVENT_ADAPTER.validate_python(
        {
            "kind": "usage",
            "event_id": f"{name}-{n}",
            "account_id": "shop",
            "user_id": "u1",
            "event": name,
            "occurred_at": (NOW - timedelta(days=days_ago)).isoformat(),
            "properties": props,
        }
    )


async def test_windows_and_order_values_from_the_kept_daily_counts(engine: AsyncEngine) -> None:
    events = [
        _use(1, "purchase", 80, value=20.4),
        _use(2, "purchase", 40, value=30),
        # An amount as a CSV export writes it: text that reads as a number counts (it
        # was left out, found from outside).
        _use(3, "purchase", 10, value=" 49.60 "),
        _use(4, "view", 3),
        _use(5, "view", 0, value="not a number"),
        # Text that reads as no finite number, or a number past the counters: no value.
        *[_use(6 + n, "refund", 3, value=v) for n, v in enumerate(("nan", "1e400", "-inf", 2e9))],
    ]
    async with engine.begin() as conn:
        await apply_events(conn, events, window_days=90, now=NOW)
    async with engine.connect() as conn:
        [m] = await load_measures(conn, {"shop"})
    assert m.name_use[("event", "purchase")] == NameUse(
        0, 1, 1, 3, (0, 0, 1, 0), date(2026, 11, 13)
    )
    assert m.name_use[("value", "purchase")].days_90 == 100  # 20 + 30 + 50, whole units
    assert ("value", "view") not in m.name_use and ("value", "refund") not in m.name_use
    assert m.active_days_28d == 3 and m.names[("event", "view")] == (2, 2)
    raw = model_inputs(m)
    assert raw["days_since_event[purchase]"] == 10 and raw["events_90d[purchase]"] == 3
    assert raw["value_90d[purchase]"] == 100 and raw["value_per_event_90d[purchase]"] == 33.33


def test_per_name_measures_are_rated_in_their_kind_s_declared_direction() -> None:
    model = load_default_model()
    assert declared_direction("events_28d[like]", model) is False  # more use: healthier
    assert declared_direction("days_since_event[like]", model) is True  # silence: riskier
    assert declared_direction("usage_events_trend", model) is False
    assert declared_direction("dislikes_per_like", model) is None  # a ratio: undeclared


async def test_the_service_scores_with_a_calibrated_per_name_model(tmp_path: Path) -> None:
    """Through the real scoring step: the model's declared names are measured for every
    account (here one the app never sends) and its per-name curves score them (groups and components explained)."""
    rng = random.Random(5)
    rows = [{"events_28d[export]": rng.randint(0, 40), "events_90d[export]": 1} for _ in range(800)]
    labels = [row["events_28d[export]"] < 8 and rng.random() < 0.6 for row in rows]
    _, text = fit(rows, labels, load_default_model(), version="cal")
    events, churn = tmp_path / "h.ndjson.gz", tmp_path / "churn.csv"
    write_history(
        events, churn, accounts=12, days=60, end=date(2026, 6, 30), seed=8, shape="subscription"
    )
    result = await replay([events], churn=read_churn_csv(churn), model_source=text, step_days=14)
    scored = [s for s in result.snapshots if s.score is not None]
    # "export" is a name this app never sends: declared, so measured as none everywhere.
    assert scored and all(s.inputs["events_28d[export]"] == 0 for s in scored)
    assert all(set(s.groups) == {"behaviour"} for s in scored)


def test_curves_are_monotone_in_the_direction_the_training_data_shows() -> None:
    rng = random.Random(9)
    values = [float(v) for v in range(400)]
    labels = [rng.random() < 0.5 - v / 1000 for v in range(400)]  # noisy, falling churn
    curve = shape_function(values, labels)
    assert curve is not None
    scores = [point[1] for point in curve]
    assert scores == sorted(scores) and scores[-1] == 100  # never dips on a noisy bin


@pytest.fixture
async def pg_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    await migrate(engine)
    yield engine
    await engine.dispose()


async def test_order_values_past_the_counters_range_saturate_not_fail(
    pg_engine: AsyncEngine,
) -> None:
    """A day's order values beyond 32 bits (PostgreSQL's INTEGER) neither fail the batch
    (which would dead-letter every later order of that day) nor wrap around."""
    big = [_use(n, "purchase", 1, value=999_999_999) for n in range(3)]
    for batch in (big[:1], big[1:]):  # within one batch, then across batches (the upsert)
        async with pg_engine.begin() as conn:
            await apply_events(conn, batch, window_days=90, now=NOW)
    async with pg_engine.begin() as conn:
        await apply_events(conn, [_use(9, "purchase", 1, value=5)], window_days=90, now=NOW)
    async with pg_engine.connect() as conn:
        [m] = await load_measures(conn, {"shop"})
    assert m.name_use[("value", "purchase")].days_90 == 2**31 - 1
    assert m.name_use[("event", "purchase")].days_90 == 4


def test_names_rules_and_milestones_read_are_measured_besides_the_most_used() -> None:
    """A rule or milestone on an event outside the most used reads its measures (0 when
    the event was never sent), not an empty value that never holds."""
    uses = {("event", f"e{k:02d}"): NameUse(1, 1, 0, k + 1, (0, 0, 0, 1), AS_OF) for k in range(20)}
    raw = generic_inputs(measures(name_use=uses), Behaviour(), ["e00", "export"])
    assert raw["events_28d[e00]"] == 1 and raw["events_28d[export]"] == 0
    assert "events_28d[e01]" not in raw
    rules = parse_alerting(
        """
version = "r"
[[rule]]
id = "no_export"
type = "threshold"
severity = "warning"
when = [{ measure = "events_28d[export]", op = "==", value = 0 },
        { measure = "active_days_28d", op = ">=", value = 0 }]
"""
    ).rules
    using = ModelAndRules(load_default_model(), rules)
    assert using.rule_names == ("export",)
    scored = score_account(
        measures(name_use=uses), using, AccountHistory(), now=datetime.combine(AS_OF, time(12), UTC)
    )
    assert scored.health is not None and scored.health["inputs"]["events_28d[export]"] == 0


def test_a_fraction_reads_as_a_percentage_by_the_measures_own_name() -> None:
    """One answer for explanations, milestones and an alert's page (three copies had
    differed: activation rate a percentage in one, a number in the others)."""
    for share in (
        "active_user_share_7d",
        "core_module_use_28d",
        "activation_rate",
        "app_share_28d",
    ):
        assert is_share(share), share
    for count in ("days_since_event[share]", "events_28d[share_link]", "dau", "active_days_7d"):
        assert not is_share(count), count
