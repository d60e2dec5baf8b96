"""A usage state's days in columns (``day_columns.py``) and the usage measures of a chunk
of states worked out at once (``measure_usage``), against what they must equal: a plain
model of the days built beside the state, and the per-state definitions
(``activity_of``, ``name_use_of``)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from services.scoring import usage
from services.scoring.usage import COUNT_MAX, DIMENSIONS, AccountUsage, decode, encode
from services.scoring.usage_measures import activity_of, measure_usage, name_use_of

START = date(2026, 1, 1)
# A day's canonical form: events, seconds, user ids, name key → uses.
Day = tuple[int, float, frozenset[str], dict[str, int]]

event = st.tuples(
    st.integers(0, 100),  # day
    st.integers(0, 12),  # user
    # Seconds with many digits: a sum in another order then shows in the minutes.
    st.sampled_from([0.0, 0.5]) | st.floats(0, 5000, allow_nan=False, allow_subnormal=False),
    st.sampled_from(["event", "module", "platform", "value"]),
    st.integers(0, 6),  # name
    st.sampled_from([1, 2, -3, COUNT_MAX - 5, -COUNT_MAX + 5]),  # uses
)
# What happens after an event: nothing, a fold, a round trip through the stored value
# (or through a value of format 2, as written before the columns), the days more than
# ten days before the event's pruned.
step = st.sampled_from(["add", "add", "add", "add", "fold", "store", "store", "store2", "prune"])
# In any order, or in day order as a live account's events mostly come: a state of
# folded days and its newest day unfolded, the path the service runs most.
history = st.lists(st.tuples(event, step), max_size=60) | st.lists(
    st.tuples(event, step), max_size=60
).map(lambda events: sorted(events, key=lambda e: e[0][0]))


def build(events: list[Any], prune: int | None) -> tuple[AccountUsage, dict[int, Day]]:
    """A state of ``events``, folded and stored on the way as the steps say, and the
    days it must hold, worked out in plain Python."""
    state = AccountUsage()
    model: dict[int, list[Any]] = {}
    for (day, user, seconds, dimension, name, uses), how in events:
        at = START + timedelta(days=day)
        state.add(at, f"u{user}", seconds, [(dimension, f"n{name}", uses)])
        held = model.setdefault(at.toordinal(), [0, 0.0, set(), {}])
        held[0] += 1
        held[1] += seconds
        held[2].add(f"u{user}")
        key = f"{DIMENSIONS[dimension]}:n{name}"
        held[3][key] = max(-COUNT_MAX, min(COUNT_MAX, held[3].get(key, 0) + uses))
        if how == "fold":
            state.fold()
        elif how == "store":
            state = decode(encode(state))
        elif how == "store2":
            state = decode(_format_two(state))
        elif how == "prune":
            cutoff = at - timedelta(days=10)
            state.prune_before(cutoff)
            model = {o: d for o, d in model.items() if o >= cutoff.toordinal()}
    if prune is not None:
        cutoff = START + timedelta(days=prune)
        state.prune_before(cutoff)
        model = {o: d for o, d in model.items() if o >= cutoff.toordinal()}
    return state, {o: (d[0], d[1], frozenset(d[2]), d[3]) for o, d in sorted(model.items())}


def _format_two(state: AccountUsage) -> bytes:
    """The state as format 2 stored it: its days as maps."""
    body = [state.users, state.first_active, state.days, {}, state.events_seen, state.names]
    body += [state.kept_from, state.whole_from]
    return bytes([2]) + usage._COMPRESSOR.compress(msgspec.msgpack.encode(body))


def canonical(state: AccountUsage) -> dict[int, Day]:
    return {
        ordinal: (
            use.events,
            use.seconds,
            frozenset(state.users[user] for user in use.users),
            {state.names[name]: uses for name, uses in use.names.items()},
        )
        for ordinal, use in state.days.items()
    }


@settings(max_examples=150, deadline=None)
@given(history, st.none() | st.integers(0, 90))
def test_the_columns_hold_what_the_days_held(events: list[Any], prune: int | None) -> None:
    """Folded, unfolded again by later events, stored and read back, pruned: a state
    holds the days its events made, each once, in day order."""
    state, model = build(events, prune)
    assert canonical(state) == model
    assert state.ordinals() == list(model)
    again = decode(encode(state))
    assert canonical(again) == model and again.ordinals() == list(model)
    # Encoding folded every day but the newest, which events may still come for.
    assert len(state.unfolded) <= 1 and state.unfolded_are_newest()
    assert not state.unfolded or max(state.unfolded) == max(model)
    for ordinal, (events_, seconds, users, _) in model.items():
        assert state.day_totals(ordinal) == (events_, seconds, len(users))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(history, st.integers(-5, 130), st.booleans()), min_size=1, max_size=6),
    st.none() | st.integers(0, 60),
)
def test_a_chunk_measures_as_each_state_alone(chunk: list[Any], prune: int | None) -> None:
    """``measure_usage`` on a chunk of states, each as of its own day (before, within
    and after its days), equals ``activity_of`` and ``name_use_of`` of each, floats
    included; folded or not beforehand."""
    states, days = [], []
    for events, offset, folded in chunk:
        state, _ = build(events, prune)
        if folded:
            state.fold()
        states.append(state)
        days.append(START + timedelta(days=offset))
    expected = [(activity_of(s, d), name_use_of(s, d)) for s, d in zip(states, days, strict=True)]
    measured = measure_usage(states, days)
    for (activity, name_use), got in zip(expected, measured, strict=True):
        assert got.activity == activity
        assert got.name_use == name_use
        assert got.names == {k: (u.days_7, u.days_28) for k, u in name_use.items() if u.days_28}
        assert list(got.name_use) == list(name_use)  # the same order too


@settings(max_examples=60, deadline=None)
@given(history, history, st.integers(30, 130))
def test_a_copy_with_its_long_history_measures_as_itself(
    recent: list[Any], older: list[Any], offset: int
) -> None:
    """An as-of read's copy of a state with months of its long history counted in
    (``with_history``, ``absorb``) measures in a chunk as the definitions say."""
    state, _ = build(recent, None)
    month, _ = build(older, None)
    day = START + timedelta(days=offset)
    copy = state.with_history([month], day - timedelta(days=89), day)
    [got] = measure_usage([copy], [day])
    assert got.activity == activity_of(copy, day) and got.name_use == name_use_of(copy, day)


def test_a_weeks_seconds_add_up_oldest_day_first() -> None:
    """Two days in the arrays and the newest unfolded: the chunk adds their seconds in
    day order, as ``activity_of`` does; added the newest first, the minutes differ."""
    state = AccountUsage()
    for day, seconds in ((0, 1565.4), (1, 678.2)):
        state.add(START + timedelta(days=day), "u", seconds, [("event", "x", 1)])
    state.fold()
    state.add(START + timedelta(days=2), "u", 426.1, [("event", "x", 1)])
    day = START + timedelta(days=2)
    [got] = measure_usage([state], [day])
    assert got.activity == activity_of(state, day)
    assert got.activity["usage_minutes_7d"] == 44.5
    assert round((0.0 + 426.1 + 1565.4 + 678.2) / 60, 2) == 44.49  # the order matters


def test_an_empty_chunk_and_empty_states() -> None:
    assert measure_usage([], []) == []
    [got] = measure_usage([AccountUsage()], [START])
    assert got.activity == activity_of(AccountUsage(), START) and got.name_use == {}
