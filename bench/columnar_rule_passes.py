"""The rules' part of ``columnar_probe.py``: how many accounts a screen of the rules'
conditions could not spare the per-account step, and every rule stepped in columns
(``columnar_rules.step``) beside ``rules.step`` for every (account, rule), in passes
that reach each of ``step``'s branches: the template's own states; each account's
states meeting another account's values up to 20 days later; no state stored; and every
rule given a two-day pending period.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import columnar_rules
import numpy as np
import sweep_bench
from lib.services import database_url

from services.scoring import danger, history, inputs, rules, step
from services.scoring.measures import Measures
from services.scoring.model.evaluate import evaluate
from services.scoring.model.schema import HealthModel
from services.scoring.processor import _load_rule_states
from services.scoring.rules import RuleState
from services.scoring.step import AccountHistory, ModelAndRules
from shared.alerting.schema import Rule, default_alerting_source, parse_alerting
from shared.storage.db import create_engine


async def rule_history(
    server: str, measures: list[Measures], using: ModelAndRules
) -> tuple[dict[str, dict[str, RuleState]], dict[tuple[str, int], dict[str, Any]]]:
    """The stored rule states and the past inputs the rules compare with."""
    engine = create_engine(database_url(server, sweep_bench.TEMPLATE))
    ids = {x.account_id for x in measures}
    try:
        async with engine.connect() as conn:
            states = await _load_rule_states(conn, ids)
            days = {x.account_id: x.as_of for x in measures}
            past = await history.load_past_inputs(conn, days, using.rule_lookbacks)
            return states, past
    finally:
        await engine.dispose()


def rules_part(server: str, measures: list[Measures], model: HealthModel) -> dict[str, Any]:
    """How many accounts a columnar screen of the rules would leave to the per-account
    step: those with a rule not ok, or whose values meet a rule's conditions (where the
    step does more than keep an ok state); and that step's cost, µs an account, over
    all of them (one round: the step moves states)."""
    alerting = parse_alerting(default_alerting_source())
    using = ModelAndRules(model=model, rules=alerting.rules)
    stored, past = asyncio.run(rule_history(server, measures, using))
    steps = []
    needing = 0
    by_rule: Counter[str] = Counter()
    for x in measures:
        raw = inputs.model_inputs(x, model.depth, model.sla, model.behaviour)
        score = evaluate(model, raw, inputs.segment_of(x))
        risk = danger.assess(x, raw, model.danger)
        shown = {"score": score.value, **raw, "danger": [c["code"] for c in risk["causes"]]}
        values = rules.rule_values(x, shown, score.band, risk["level"])
        then = {
            back: past[(x.account_id, back)]
            for back in using.rule_lookbacks
            if (x.account_id, back) in past
        }
        mine = stored.get(x.account_id, {})
        busy = {rule for rule, state in mine.items() if state.status != "ok"} | {
            rule.id
            for rule in using.rules
            if rules.applies(rule, values) and rules.all_hold(rule.when, values, then)
        }
        needing += bool(busy)
        by_rule.update(busy)
        steps.append((x, AccountHistory(None, {}, mine), values, shown, score))
    started = time.perf_counter()
    for x, earlier, values, shown, score in steps:
        step._step_rules(x, using, earlier, values, shown, score, x.as_of_time)
    seconds = time.perf_counter() - started
    stored_states = [earlier.rule_states for _, earlier, *_ in steps]
    all_values = [v for _, _, v, _, _ in steps]
    backs = {c.over_days for r in using.rules for c in (*r.when, *(r.recover or ())) if c.change}
    all_then = [
        {b: past[(x.account_id, b)] for b in backs if (x.account_id, b) in past} for x, *_ in steps
    ]
    moments = [x.as_of_time for x, *_ in steps]
    columnar = rule_columns(using.rules, stored_states, all_values, all_then, moments)
    others = mixed(stored_states, all_values, all_then, moments)
    shuffled = rule_columns(using.rules, stored_states, *others)
    # No state stored yet (an account's first score).
    fresh = rule_columns(using.rules, [{} for _ in steps], *others)
    pending = pending_passes(using.rules, *others)
    return {
        "rules": len(using.rules),
        "accounts_left_to_the_step": needing,
        "share_left": round(needing / len(measures), 4),
        "step_every_rule_us": round(seconds / len(measures) * 1e6, 2),
        "accounts_by_rule": dict(by_rule.most_common()),
        "each_rule_in_columns": columnar,
        "each_rule_in_columns_mixed": shuffled,
        "each_rule_in_columns_no_state": fresh,
        "each_rule_in_columns_pending_2d": pending,
    }


def rule_columns(
    rule_list: Sequence[Rule],
    stored: Sequence[Mapping[str, RuleState]],
    values: Sequence[dict[str, Any]],
    then: Sequence[Mapping[int, Mapping[str, Any]]],
    moments: Sequence[datetime],
) -> dict[str, Any]:
    """Every rule stepped for every account by ``columnar_rules.step`` against
    ``rules.step`` (account ``i``: ``stored[i]`` stepped with ``values[i]``,
    ``then[i]`` at ``moments[i]``): µs an account (all rules; reading the values into
    columns apart), the states that moved and the transitions, and the (account, rule)
    pairs whose new state or transition differ."""
    at = np.array([columnar_rules._micros(m) for m in moments], dtype=np.int64)
    started = time.perf_counter()
    columns = columnar_rules.Values(values, then)
    for rule in rule_list:
        escalation = rule.escalate.when if rule.escalate else []
        for c in (*rule.when, *(rule.recover or ()), *escalation):
            columns.objects(c.measure)
            columns.present(c.measure)
            columns.numbers(c.measure)
            if c.op in ("in", "not in", "==", "!=") and c.value_by_tier is None:
                columns.codes(c.measure)
            if c.change:
                columns.numbers(c.measure, c.over_days)
    for name in ("tier", "lifecycle_stage"):
        columns.objects(name)
    columns.numbers("history_days")
    reading = time.perf_counter() - started
    scalar = arrays = 0.0
    differ = changed = 0
    told: Counter[str] = Counter()
    now_in: Counter[str] = Counter()  # the moved states, by where they moved
    for rule in rule_list:
        before = [states.get(rule.id, step.NEVER_FIRED) for states in stored]
        started = time.perf_counter()
        expected = [
            rules.step(rule, state, v, t, m)
            for state, v, t, m in zip(before, values, then, moments, strict=True)
        ]
        scalar += time.perf_counter() - started
        states = columnar_rules.States.of(before)
        started = time.perf_counter()
        after, tells, moved = columnar_rules.step(rule, states, columns, at)
        arrays += time.perf_counter() - started
        for i, (state, transition) in enumerate(expected):
            got = tells.transition(i) if tells.told[i] else None
            differ += state != after.state(i) or transition != got
            if got is not None:
                told[f"{got.status}, revision {min(got.revision, 1)}"] += 1
        changed += int(moved.sum())
        for code, name in columnar_rules.NAMES.items():
            now_in[name] += int((moved & (after.status == code)).sum())
        now_in["firing, cooling down"] += int(
            (moved & (after.status == columnar_rules.FIRING) & (after.cleared >= 0)).sum()
        )
    n = len(stored)
    return {
        "per_account_us": round(scalar / n * 1e6, 2),
        "columnar_read_values_us": round(reading / n * 1e6, 2),
        "columnar_arrays_us": round(arrays / n * 1e6, 2),
        "states_moved": changed,
        "moved_to": dict(now_in),
        "transitions": dict(told),
        "disagreements": differ,
    }


def pending_passes(
    rule_list: Sequence[Rule],
    values: Sequence[dict[str, Any]],
    then: Sequence[Mapping[int, Mapping[str, Any]]],
    moments: Sequence[datetime],
) -> dict[str, Any]:
    """The rules again with a pending period of two days (only one default rule has
    one, and these values never meet it): from no state, then from the states that
    leaves, a day later (still pending) and three days later (firing)."""
    pending_rules = [r.model_copy(update={"pending": timedelta(days=2)}) for r in rule_list]
    first = rule_columns(pending_rules, [{} for _ in values], values, then, moments)
    left = [
        {r.id: rules.step(r, step.NEVER_FIRED, v, t, m)[0] for r in pending_rules}
        for v, t, m in zip(values, then, moments, strict=True)
    ]
    out = {"from_no_state": first}
    for days in (1, 3):
        later = [m + timedelta(days=days) for m in moments]
        out[f"{days}_days_later"] = rule_columns(pending_rules, left, values, then, later)
    # Pending states meeting other accounts' values: those whose conditions fail reset.
    out["meeting_other_values"] = rule_columns(
        pending_rules, left, *mixed(left, values, then, moments, seed=11)
    )
    return out


def mixed(
    stored: Sequence[Mapping[str, RuleState]],
    values: Sequence[dict[str, Any]],
    then: Sequence[Mapping[int, Mapping[str, Any]]],
    moments: Sequence[datetime],
    seed: int = 7,
) -> tuple[list[dict[str, Any]], list[Mapping[int, Any]], list[datetime]]:
    """Another account's values, past and moment (up to 20 days later) for each
    account's stored states: states meet values they did not come from, so the rules
    resolve, pend, cool down and escalate, not only fire."""
    rng = random.Random(seed)
    order = list(range(len(stored)))
    rng.shuffle(order)
    later = [moments[j] + timedelta(hours=rng.randrange(0, 20 * 24)) for j in order]
    return [values[j] for j in order], [then[j] for j in order], later
