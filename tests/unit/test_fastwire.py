"""The fast usage decoder (shared/contracts/fastwire.py) against the pydantic contract: on
any record it builds the event pydantic builds, or leaves the record to pydantic, whose
dead-letter reason is then today's; and the records ingest publishes take it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.contracts import fastwire
from shared.contracts.events import EVENT_ADAPTER, MAX_DEPTH, UsageEvent
from shared.contracts.wire import UndecodableRecord, decode_event, encode_event
from tests.support.harness import usage

Outcome = UsageEvent | tuple[str, str]


def _decode(value: bytes, kind: str | None, *, fast: bool) -> Any:
    with pytest.MonkeyPatch.context() as patch:
        if not fast:
            patch.setattr(fastwire, "decode_usage", lambda value: None)
        try:
            return decode_event(value, kind)
        except UndecodableRecord as exc:
            return ("refused", str(exc))


def _same(value: bytes, kind: str | None = "usage") -> Any:
    """Decode ``value`` with and without the fast path: the same event or the same reason."""
    fast, slow = _decode(value, kind, fast=True), _decode(value, kind, fast=False)
    assert fast == slow
    if isinstance(slow, UsageEvent):
        assert fast.model_fields_set == slow.model_fields_set
        assert [type(v) for v in fast.__dict__.values()] == [
            type(v) for v in slow.__dict__.values()
        ]
        assert (
            fast.occurred_at.utcoffset(),
            fast.received_at and fast.received_at.utcoffset(),
        ) == (
            slow.occurred_at.utcoffset(),
            slow.received_at and slow.received_at.utcoffset(),
        )
        # The bus copy too: 1 and 1.0 are equal but not the same JSON.
        assert encode_event(fast) == encode_event(slow)
    return fast


# --- generated records: canonical values, with a few fields made hostile --------------

_TEXT = st.text(st.characters(codec="utf-8"), max_size=12)
_CANONICAL_TEXT = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=20
)
_HOSTILE_TEXT = st.one_of(
    _TEXT,
    st.sampled_from(
        ["", " ", "\t", "\n", "\u3000", "\xa0", "\x85", "\u2028", "\x1c", "\u200b"]
    ).flatmap(lambda pad: st.sampled_from([f"{pad}x", f"x{pad}", f"x{pad}y", f"{pad}x{pad}", pad])),
    st.text(st.characters(codec="utf-8"), min_size=195, max_size=205),
    st.sampled_from(["报表导出", "a| b", "a |b", "Ω", "😀", "x\x00"]),
    st.integers(),
    st.none(),
)


@st.composite
def _times(draw: st.DrawFn, *, hostile: bool) -> Any:
    moment = draw(st.datetimes(datetime(1999, 12, 31), datetime(2200, 1, 2)))
    if not hostile:
        return moment.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")
    digits = draw(st.integers(0, 9))
    fraction = f".{moment.microsecond:06d}{draw(st.integers(0, 999)):03d}"[: digits + 1]
    minutes = draw(st.integers(-24 * 60, 24 * 60))
    sign = "-" if minutes < 0 else "+"
    offset = (
        f"{sign}{abs(minutes) // 60:02d}{draw(st.sampled_from([':', '']))}{abs(minutes) % 60:02d}"
    )
    zone = draw(st.sampled_from(["Z", "z", "", "-00:00", "+00:00", offset, "+05:60"]))
    text = f"{moment:%Y-%m-%d}{draw(st.sampled_from('T T'))}{moment:%H:%M:%S}{fraction}{zone}"
    return draw(
        st.sampled_from(
            [text, text, text, f" {text}", text.replace(":", "", 1), str(int(moment.timestamp()))]
        )
        | st.integers(0, 2**33)
        | st.floats(0, 2e9)
        | st.none()
    )


_LEAF = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | _TEXT
)
_TREE = st.recursive(
    _LEAF, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3)
)


def _nested(depth: int) -> dict[str, Any]:
    tree: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        tree = {"k": tree}
    return tree


_CANONICAL: dict[str, st.SearchStrategy[Any]] = {
    "schema_version": st.just(1),
    "event_id": _CANONICAL_TEXT,
    "account_id": _CANONICAL_TEXT,
    "occurred_at": _times(hostile=False),
    "received_at": _times(hostile=False),
    "kind": st.just("usage"),
    "user_id": _CANONICAL_TEXT,
    "event": _CANONICAL_TEXT,
    "module": _CANONICAL_TEXT,
    "feature": _CANONICAL_TEXT,
    "platform": st.sampled_from(["pc", "app", "api"]),
    "duration_s": st.floats(0, 3600) | st.integers(0, 3600),
    "properties": st.dictionaries(_CANONICAL_TEXT, _LEAF, max_size=3),
}
_HOSTILE: dict[str, st.SearchStrategy[Any]] = {
    "schema_version": st.sampled_from([1.0, True, 2, "1", None, 0]),
    "event_id": _HOSTILE_TEXT,
    "account_id": _HOSTILE_TEXT,
    "occurred_at": _times(hostile=True),
    "received_at": _times(hostile=True),
    "kind": st.sampled_from(["ticket", "Usage", "", None]),
    "user_id": _HOSTILE_TEXT,
    "event": _HOSTILE_TEXT,
    "module": _HOSTILE_TEXT,
    "feature": _HOSTILE_TEXT,
    "platform": st.sampled_from([" pc", "PC", "web", "", 1, None]),
    "duration_s": st.sampled_from(
        ["5", "1.5", True, -0.0, -1, 30 * 86400, 30 * 86400 + 1e-9, 2**64, 2**70, None, 1e308]
    ),
    "properties": st.one_of(
        _TREE,
        st.dictionaries(_TEXT, _TREE, max_size=3),
        st.sampled_from(
            [
                _nested(MAX_DEPTH),
                _nested(MAX_DEPTH + 1),
                {"a\x00": 1},
                {"a": "x\x00"},
                {"big": 2**64},
                {"b": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["},
            ]
        ),
    ),
}


@st.composite
def _records(draw: st.DrawFn) -> bytes:
    hostile = draw(st.sets(st.sampled_from(sorted(_CANONICAL)), max_size=2))
    record = {
        name: draw(_HOSTILE[name] if name in hostile else _CANONICAL[name])
        for name in _CANONICAL
        if name in hostile
        or name in {"kind", "event_id", "account_id", "occurred_at"}
        or draw(st.booleans())
        or name in {"user_id", "event"}
    }
    for name in draw(st.sets(st.sampled_from(sorted(_CANONICAL)), max_size=1)):
        record.pop(name, None)
    record.update(
        draw(
            st.dictionaries(
                st.sampled_from(["extra", "Kind", "eventId"]), st.integers(), max_size=1
            )
        )
    )
    encoder = draw(st.sampled_from(["orjson", "ascii", "utf-8"]))
    if encoder == "orjson":
        try:
            return orjson.dumps(record)
        except orjson.JSONEncodeError:  # an integer beyond 64 bits: json writes it
            pass
    return json.dumps(record, ensure_ascii=encoder == "ascii").encode()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_records(), st.sampled_from(["usage", "usage", None, "ticket"]))
def test_fast_path_decodes_as_pydantic_does(value: bytes, kind: str | None) -> None:
    _same(value, kind)


# --- byte-level oddities JSON encoders do not write ------------------------------------

_BASE = orjson.dumps(usage("acct-1", "u-1", event_id="e-1"))[:-1]


@pytest.mark.parametrize(
    "value",
    [
        _BASE + b"}",
        b"\xef\xbb\xbf" + _BASE + b"}",  # a byte-order mark
        _BASE + b',"module":"\xff"}',  # not UTF-8
        _BASE + b',"module":"\\ud800"}',  # a lone surrogate
        _BASE + b',"module":"\\ud83d\\ude00"}',  # a pair: one emoji
        _BASE + b',"module":"a\\u0000"}',
        _BASE + b',"module":"a\\u2028"}',
        _BASE + b',"event":"a","event":" b"}',  # the last one wins, for both
        _BASE + b',"event":" b","event":"a"}',
        _BASE + b',"properties":{"n":123456789012345678901234567890}}',
        _BASE + b',"properties":{"n":1e400}}',
        _BASE + b',"properties":{"n":NaN}}',
        _BASE + b',"properties":{"k\\u0000":1}}',
        _BASE + b',"properties":{" k":1}}',  # pydantic strips a key
        _BASE + b',"properties":{" k":1,"k":2}}',
        _BASE + b',"properties":{"k":{" n ":" v "}}}',  # not below
        _BASE + b',"properties":{"k":"\\\\u0000"}}',
        _BASE + b',"properties":{"a":"x"} }',
        _BASE + b',"properties":[1]}',
        _BASE + b',"properties":null}',
        _BASE + b',"duration_s":1e400}',
        _BASE + b',"duration_s":123456789012345678901234567890}',
        _BASE + b',"duration_s":5}',
        _BASE + b"} trailing",
        _BASE + b"}\n",
        b"[]",
        b"",
    ],
)
def test_odd_bytes_decode_as_pydantic_does(value: bytes) -> None:
    _same(value)


# --- the records ingest publishes take the fast path ------------------------------------


def _published(body: dict[str, Any]) -> bytes:
    """The record ingest publishes for ``body``: validated, stamped, encoded."""
    stamp = datetime(2026, 12, 3, 8, 15, 43, 4211, tzinfo=UTC)
    return encode_event(EVENT_ADAPTER.validate_python({"received_at": stamp, **body}))


PUBLISHED = [
    usage("acct-1", "u-1"),
    usage("acct-2", "u-2", days_ago=3.5, module="reports", feature="export", platform="app"),
    usage("客户-7", "用户 3", event="报表导出", duration_s=12.5, properties={"rows": 1200}),
    usage("a", "u", occurred_at="2026-12-03T16:15:42.5+08:00", platform="api", duration_s=3),
    usage("a", "u", occurred_at="2026-12-03T08:15:42-05:30", properties={"n": {"m": [1, 2.5]}}),
    usage("a", "u", module="", properties={"p": "x y", "q": None, "r": 2**63}),
]


@pytest.mark.parametrize("body", PUBLISHED)
def test_published_records_take_the_fast_path(
    body: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    value = _published(body)
    taken: list[UsageEvent | None] = []
    decode_usage = fastwire.decode_usage

    def counted(value: bytes) -> UsageEvent | None:
        taken.append(decode_usage(value))
        return taken[-1]

    monkeypatch.setattr(fastwire, "decode_usage", counted)
    for kind in ("usage", None):
        assert decode_event(value, kind) == EVENT_ADAPTER.validate_python(orjson.loads(value))
    assert len(taken) == 2 and None not in taken
    monkeypatch.undo()
    _same(value)


def test_construct_builds_what_model_construct_builds() -> None:
    # fastwire builds the model without model_construct (5 µs); pydantic's internals
    # could change under it: the same dict, fields set, extra and private state.
    for body in (usage("a", "u"), usage("a", "u", properties={"k": 1}, received_at=None)):
        event = EVENT_ADAPTER.validate_python(body)
        values = {name: getattr(event, name) for name in event.model_fields_set}
        ours, theirs = fastwire._construct(values), UsageEvent.model_construct(**values)
        assert (ours.__dict__, ours.model_fields_set) == (theirs.__dict__, theirs.model_fields_set)
        assert (ours.__pydantic_extra__, ours.__pydantic_private__) == (None, None)
        assert (theirs.__pydantic_extra__, theirs.__pydantic_private__) == (None, None)
        assert ours.model_dump() == theirs.model_dump() == event.model_dump()


def test_times_far_out_of_range_fall_back() -> None:
    early = (datetime(2000, 1, 1, tzinfo=UTC) - timedelta(microseconds=1)).isoformat()
    for at in (early, "2200-01-01T00:00:00Z", "2000-01-01T00:00:00+00:01"):
        assert isinstance(_same(orjson.dumps(usage("a", "u", occurred_at=at))), tuple)
