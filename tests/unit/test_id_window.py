"""The dedup window's compact form answers as a set of ids per hour would."""

from __future__ import annotations

import random
import tracemalloc

from hypothesis import given, settings
from hypothesis import strategies as st

from services.scoring import id_window
from services.scoring.id_window import IdWindow

WITHIN = 48

# An operation: ("add", id, hour) after asking, as first_sight does; ("drop", oldest);
# ("freeze",). Few ids and hours, so that ids repeat across hours and near the edges.
operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 40), st.integers(0, 150)),
        st.tuples(st.just("drop"), st.integers(0, 150)),
        st.tuples(st.just("freeze")),
    ),
    max_size=200,
)


def reference_holds(window: dict[int, set[int]], digest: int, hour: int) -> bool:
    return any(digest in ids and abs(seen - hour) <= WITHIN for seen, ids in window.items())


@settings(max_examples=300, deadline=None)
@given(operations)
def test_it_answers_as_sets_by_hour_do(ops: list[tuple[object, ...]]) -> None:
    id_window.FREEZE_MIN, saved = 3, id_window.FREEZE_MIN  # freeze often
    try:
        window, reference = IdWindow(), dict[int, set[int]]()
        for op in ops:
            if op[0] == "add":
                digest, hour = 2**63 + int(op[1]), int(op[2])  # above int64, as hashes are
                held = window.holds(digest, hour, WITHIN)
                assert held == reference_holds(reference, digest, hour)
                if not held:
                    window.add(digest, hour)
                    reference.setdefault(hour, set()).add(digest)
            elif op[0] == "drop":
                oldest = int(op[1])
                gone = {hour for hour in reference if hour < oldest}
                assert window.drop_before(oldest) == gone
                reference = {h: ids for h, ids in reference.items() if h >= oldest}
            else:
                window.freeze()
            assert window.by_hour() == reference
            assert len(window) == sum(len(ids) for ids in reference.values())
            assert window.hours() == reference.keys()
    finally:
        id_window.FREEZE_MIN = saved


def test_stored_hours_read_back_into_the_same_window() -> None:
    rng = random.Random(5)
    window = IdWindow()
    for _ in range(5000):
        window.add(rng.getrandbits(64), rng.randrange(100, 148))
    again = IdWindow()
    again.load((hour, window.pack(hour)) for hour in window.hours())
    assert again == window
    digest, hour = next((d, h) for h, ids in window.by_hour().items() for d in ids)
    assert again.holds(digest, hour + WITHIN, WITHIN)
    assert not again.holds(digest, hour + WITHIN + 1, WITHIN)


def test_an_id_costs_a_fraction_of_a_python_set_entry() -> None:
    """A set of Python ints per hour cost 109 bytes an id (tracemalloc); the frozen
    arrays 12, and the ids since the last freeze at most a quarter as many again."""
    ids = 100_000
    rng = random.Random(7)
    hashes = [rng.getrandbits(64) for _ in range(ids)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        window = IdWindow()
        for n, digest in enumerate(hashes):
            window.add(digest, 490_000 + n // 2000)
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(window) == ids
    assert used / ids < 45
