"""The earliest receipt still ahead in an import's file (``import_ahead``)."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import orjson
import pytest

from services.scoring.history_files import Unreadable
from services.scoring.import_ahead import (
    REACH,
    Ahead,
    ahead_of,
    earliest_ahead,
    out_of_order,
    receipt_of,
    receipts,
)


def _line(**fields: object) -> bytes:
    return orjson.dumps({"kind": "usage", "account_id": "a", **fields})


def _at(day: int) -> float:
    return datetime(2026, 11, day, tzinfo=UTC).timestamp()


def _none(number: int) -> bool:
    return False


def test_each_record_knows_the_earliest_receipt_from_it_on() -> None:
    lines = [
        _line(occurred_at="2026-11-05T00:00:00+00:00"),
        _line(occurred_at="2026-11-09T00:00:00+00:00"),
        _line(occurred_at="2026-11-02T00:00:00+00:00"),  # imported before: skipped
        b"",
        Unreadable(b"bytes not UTF-8"),
        _line(occurred_at="2026-11-07T00:00:00+00:00"),
    ]
    ahead = _ahead(lines, lambda number: number == 2)
    assert ahead.tolist() == [_at(5), _at(7), _at(7), _at(7), _at(7), _at(7), math.inf]


def test_the_receipt_is_received_at_when_a_line_has_one() -> None:
    received = _line(occurred_at="2026-11-01T00:00:00+00:00", received_at=1_794_000_000)
    assert receipt_of(received) == 1_794_000_000
    assert receipt_of(_line(occurred_at="2026-11-03T00:00:00+00:00")) == _at(3)
    # What the step rejects brings no receipt to the window.
    assert receipt_of(_line(occurred_at="2026-11-03T00:00:00")) == math.inf  # naive
    assert receipt_of(_line(occurred_at="0001-01-01T00:00:00+00:00")) == math.inf
    assert receipt_of(b"[1, 2]") == receipt_of(b"{") == receipt_of(_line()) == math.inf


def test_the_earliest_ahead_is_taken_over_the_files_from_their_next_record() -> None:
    one = _ahead([_line(occurred_at=f"2026-11-{d:02d}T00:00:00+00:00") for d in (4, 8)], _none)
    two = _ahead([_line(occurred_at="2026-11-06T00:00:00+00:00")], _none)
    assert earliest_ahead([(one, 0), (two, 0)], _at(8)) == datetime(2026, 11, 4, tzinfo=UTC)
    assert earliest_ahead([(one, 1), (two, 0)], _at(8)) == datetime(2026, 11, 6, tzinfo=UTC)
    assert earliest_ahead([(one, 1), (two, 1)], _at(8)) == datetime(2026, 11, 8, tzinfo=UTC)
    assert earliest_ahead([(one, 2), (two, 5)], _at(8)) is None
    assert earliest_ahead([], math.inf) is None
    # Never more than REACH behind the newest receipt read: one stray old line ahead
    # would keep every id of the import.
    far = _at(4) + REACH.total_seconds() + 86_400
    assert earliest_ahead([(one, 0)], far) == datetime.fromtimestamp(far, UTC) - REACH


@pytest.mark.parametrize(
    "line",
    [
        b"[" * 5000 + b"]" * 5000,  # nested past what JSON parsers take
        b'{"occurred_at": 1e308}',
        b'{"occurred_at": -1e308}',
        b'{"occurred_at": "NaN"}',
        b'{"occurred_at": "\\u0000"}',
        b'{"received_at": [1, 2], "occurred_at": "2026-11-01T00:00:00Z"}',
        b"\xff\xfe",
    ],
)
def test_a_hostile_line_brings_no_receipt(line: bytes) -> None:
    """What the step rejects neither raises here nor holds the window back."""
    assert receipt_of(line) == math.inf
    assert earliest_ahead([(_ahead([line], _none), 0)], math.inf) is None


def test_records_out_of_time_order_are_counted_past_a_batchs_span() -> None:
    """A file sorted by account, not time, is read in batches of a few lines, a hundred
    times slower or more, without a word (found from outside): the import counts the
    records that come after one more than a batch's span newer, and warns."""
    hour = 3600.0
    at = np.array([0, 10, 20, 5, 100, 40, 60, 101, math.inf], dtype=np.float64) * hour
    assert out_of_order(at, 48 * hour) == 1  # 40 after 100; 5 and 60 within 48 h of 20, 100
    assert out_of_order(np.array([math.inf]), 48 * hour) == 0
    assert out_of_order(np.sort(at), 48 * hour) == 0


def _ahead(lines: list[bytes], skipped: Callable[[int], bool]) -> Ahead:
    return ahead_of(receipts(lines, skipped))
