"""`healthwatch calibrate`: shape functions by hand, a fitted model that round-trips
through TOML and scores through the service's own evaluate, and the command end to end."""

from __future__ import annotations

import random
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.scoring.model.calibrate import fit, shape_function
from services.scoring.model.evaluate import evaluate
from services.scoring.model.schema import Segment, load_default_model, parse_model
from services.simulate_history import write_history


def test_shape_function_scores_the_lowest_churn_100() -> None:
    values = [float(v) for v in range(200)]
    labels = [v < 50 for v in range(200)]  # the lowest quarter churns
    curve = shape_function(values, labels)
    assert curve is not None
    xs, ys = [p[0] for p in curve], [p[1] for p in curve]
    assert xs == sorted(xs) and ys[0] == 0 and max(ys) == 100 and ys[-1] == 100
    assert shape_function([3.0] * 100, labels[:100]) is None  # constant: no curve
    assert shape_function(values, [False] * 200) is None  # no churn differs


def test_an_age_curve_goes_on_past_the_training_range() -> None:
    """Tenure grows with the calendar: in a time split the older accounts' test values lie
    past every training value, where a flat curve would tie them all."""
    rng = random.Random(2)
    ages = [rng.uniform(0, 120) for _ in range(2000)]
    labels = [rng.random() < (0.4 if age < 60 else 0.15) for age in ages]
    flat = shape_function(ages, labels)
    curve = shape_function(ages, labels, age=True)
    assert flat is not None and curve is not None
    assert max(p[0] for p in curve) > 4 * max(p[0] for p in flat)
    ys = [p[1] for p in curve]
    assert ys == sorted(ys) and ys[-1] == 100  # older: healthier, on and on
    assert ys[len(flat) - 1] < 100  # the last training bin no longer ties the oldest


def _rows(n: int, seed: int) -> tuple[list[dict[str, float | None]], list[bool]]:
    rng = random.Random(seed)
    rows, labels = [], []
    for _ in range(n):
        events = rng.uniform(0, 100)
        tenure = rng.uniform(0, 700)
        risk = 0.6 - events / 120 + (0.3 if tenure < 60 else 0)
        rows.append(
            {
                "events_7d": events,
                "days_since_purchase": tenure,
                "noise": rng.uniform(0, 1),
                "open_tickets": None if rng.random() < 0.5 else float(rng.randint(0, 3)),
                "score": 50.0,
            }
        )
        labels.append(rng.random() < max(0.02, risk))
    return rows, labels


def test_a_calibrated_model_round_trips_through_toml_and_ranks_churn() -> None:
    rows, labels = _rows(3000, 1)
    model, text = fit(rows, labels, load_default_model(), version="cal-1")
    assert parse_model(text) == model and model.version == "cal-1"
    weights = {
        m: measure.weight for g in model.groups.values() for m, measure in g.measures.items()
    }
    assert "score" not in weights and weights["events_7d"] == max(weights.values())
    assert all(w > 0 for w in weights.values())  # each reads "more of this curve: healthier"
    assert weights.get("noise", 0) < weights["events_7d"] / 3
    assert model.bands.red_below < model.bands.green_from
    # The base model's depth, SLA and danger settings are kept.
    base = load_default_model()
    assert (model.depth, model.sla, model.danger) == (base.depth, base.sla, base.danger)
    # Held-out rows: every score explains itself, and churners score lower.
    test, test_labels = _rows(1000, 2)
    scored = [evaluate(model, row, Segment()) for row in test]
    assert all(e.components and e.value is not None for e in scored)
    churn = [e.value for e, y in zip(scored, test_labels, strict=True) if y]
    stay = [e.value for e, y in zip(scored, test_labels, strict=True) if not y]
    assert sum(churn) / len(churn) < sum(stay) / len(stay) - 10
    with pytest.raises(ValueError, match="nothing to calibrate"):
        fit([{"x": 1.0}] * 100, [False] * 100, base)


def test_a_measure_that_repeats_another_is_weighed_once() -> None:
    """One event name: its per-name count is the account's count; kept twice, the one
    measure took two curves and two of the strongest places."""
    rows, labels = _rows(2000, 3)
    for row in rows:
        row["usage_events_7d"] = row["events_7d[post]"] = row["events_7d"]
    model, _ = fit(rows, labels, load_default_model())
    kept = {m for g in model.groups.values() for m in g.measures}
    assert len(kept & {"events_7d", "usage_events_7d", "events_7d[post]"}) == 1
    assert "events_7d[post]" not in kept  # the account-wide measure is the one kept


def test_calibrate_command_writes_a_model_the_service_accepts(tmp_path: Path) -> None:
    from services.cli import app  # the whole CLI: imported only by the test that runs it

    events, churn = tmp_path / "h.ndjson.gz", tmp_path / "churn.csv"
    write_history(
        events, churn, accounts=60, days=200, end=date(2026, 6, 30), seed=4, shape="subscription"
    )
    out = tmp_path / "model.toml"
    args = ["calibrate", str(events), "--churn", str(churn), "--out", str(out), "--step-days", "14"]
    result = CliRunner().invoke(app, [*args, "--version", "cal-test"])
    assert result.exit_code == 0, result.output
    assert "calibrated" in result.output and "the score" in result.output
    assert parse_model(out.read_text(encoding="utf-8")).version == "cal-test"


def test_a_curve_learned_against_its_declared_direction_is_named() -> None:
    """A calibrated crm model scored more active users as less healthy, under the
    handbook's own label, and nothing said so (found from outside)."""
    from services.scoring.backtest.calibration import against_declared

    base = load_default_model()
    group, measure = next((g, name) for g, grp in base.groups.items() for name in grp.measures)
    curve = base.groups[group].measures[measure].curve
    backwards = curve.model_copy(update={"points": [[x, 100 - score] for x, score in curve.points]})
    flipped_measure = base.groups[group].measures[measure].model_copy(update={"curve": backwards})
    flipped_group = base.groups[group].model_copy(
        update={"measures": {**base.groups[group].measures, measure: flipped_measure}}
    )
    learned = base.model_copy(update={"groups": {**base.groups, group: flipped_group}})
    assert against_declared(learned, base) == [measure]
    assert against_declared(base, base) == []
