"""Segment → healthwatch translation."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from services.ingest.segment import event_time, groups_naming, translate, users_needing_lookup

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_group_links_user_for_later_tracks_in_the_same_batch() -> None:
    out = translate(
        [
            {
                "type": "group",
                "messageId": "g",
                "userId": "ann",
                "groupId": "acme",
                "traits": {"seats": 9, "name": "Acme", "unknown": 1},
            },
            {"type": "track", "messageId": "t", "userId": "ann", "event": "Login"},
        ],
        {},
        NOW,
    )
    assert out.links == {"ann": "acme"}
    assert out.rejected == []
    kinds = [(i, e["kind"], e["account_id"]) for i, e in out.events]
    assert kinds == [(0, "account", "acme"), (1, "usage", "acme")]
    assert out.events[0][1]["name"] == "Acme"
    assert "unknown" not in out.events[0][1]


def test_group_sets_descriptive_traits_only() -> None:
    """The write key ships in browsers: a group call must not move owners or scores."""
    traits = {
        "name": "Acme",
        "plan": "pro",
        "industry": "retail",
        "region": "EU",
        "owner": {"email": "mallory@example.com"},
        "sales_owner": {"email": "mallory@example.com"},
        "tier": "strategic",
        "seats": 1,
        "seats_purchased": 1,
        "mrr": 0,
        "arr": 0,
    }
    message = {"type": "group", "messageId": "g", "groupId": "acme", "traits": traits}
    facts = translate([message], {}, NOW).events[0][1]
    kept = {k: v for k, v in facts.items() if k not in ("kind", "account_id", "event_id")}
    kept.pop("occurred_at")
    assert kept == {"name": "Acme", "plan": "pro", "industry": "retail", "region": "EU"}
    # The name names an account that has none yet: anyone with the write key renamed a
    # strategic account, whose name every notice and report carries (found from outside).
    assert groups_naming([message, {**message, "groupId": "b", "traits": {}}]) == {"acme"}
    renamed = translate([message], {}, NOW, named={"acme"}).events[0][1]
    assert "name" not in renamed and renamed["plan"] == "pro"


def test_times_out_of_range_are_rejected_by_field() -> None:
    """Year 1 with a +14:00 offset overflows on the way to UTC; a skew correction between
    far-apart sentAt and originalTimestamp would overflow too."""
    base = {"type": "track", "userId": "u", "event": "x", "context": {"groupId": "g"}}
    out = translate(
        [
            {**base, "messageId": "a", "timestamp": "0001-01-01T00:00:00+14:00"},
            {
                **base,
                "messageId": "b",
                "originalTimestamp": "0001-01-01T00:00:00Z",
                "sentAt": "9999-12-31T23:59:59Z",
            },
            {
                **base,
                "messageId": "c",
                "originalTimestamp": "2026-11-23T11:00:00Z",
                "sentAt": "9999-12-31T23:59:59Z",
            },
        ],
        {},
        NOW,
    )
    fields = {r.index: r.errors[0]["field"] for r in out.rejected}
    assert fields == {0: "timestamp", 1: "originalTimestamp", 2: "sentAt"}


def test_track_uses_context_group_then_known_links() -> None:
    msgs = [
        {
            "type": "track",
            "messageId": "a",
            "userId": "u1",
            "event": "x",
            "context": {"groupId": "g1"},
        },
        {"type": "track", "messageId": "b", "userId": "u2", "event": "x"},
        {
            "type": "page",
            "messageId": "c",
            "anonymousId": "anon",
            "name": "Home",
            "properties": {"accountId": "g3"},
        },
    ]
    assert users_needing_lookup(msgs) == {"u2"}
    out = translate(msgs, {"u2": "g2"}, NOW)
    assert [e["account_id"] for _, e in out.events] == ["g1", "g2", "g3"]
    page = out.events[2][1]
    assert page["event"] == "page" and page["feature"] == "Home" and page["user_id"] == "anon"


def test_rejections_name_the_message_and_field() -> None:
    out = translate(
        [
            {"type": "track", "userId": "u", "event": "x", "context": {"groupId": "g"}},
            {"type": "alias", "messageId": "m"},
            {"type": "track", "messageId": "n", "userId": "nobody", "event": "x"},
            {
                "type": "track",
                "messageId": "o",
                "userId": "u",
                "event": "x",
                "context": {"groupId": "g"},
                "timestamp": "2026-01-01T00:00:00",
            },
        ],
        {},
        NOW,
    )
    fields = {r.index: r.errors[0]["field"] for r in out.rejected}
    assert fields == {0: "messageId", 1: "type", 2: "context.groupId", 3: "timestamp"}


def test_fields_that_must_be_objects_and_an_identify_of_nobody_are_refused() -> None:
    """A list for properties was read as none and answered 200, and an identify without
    a user acknowledged (found from outside): each is refused, naming its field."""
    track = {"type": "track", "userId": "u", "event": "x", "context": {"groupId": "g"}}
    out = translate(
        [
            {**track, "messageId": "a", "properties": [1, 2]},
            {**track, "messageId": "b", "context": "g"},
            {"type": "group", "messageId": "c", "groupId": "g", "traits": "Acme"},
            {"type": "identify", "messageId": "d", "traits": {"name": "Li"}},
            {**track, "messageId": "e", "properties": None},
        ],
        {},
        NOW,
    )
    fields = {r.index: [e["field"] for e in r.errors] for r in out.rejected}
    assert fields == {0: ["properties"], 1: ["context"], 2: ["traits"], 3: ["userId"]}
    assert [index for index, _ in out.events] == [4]


def test_identify_with_group_context_links_and_is_acknowledged() -> None:
    out = translate(
        [{"type": "identify", "messageId": "i", "userId": "u", "context": {"groupId": "g"}}],
        {},
        NOW,
    )
    assert out.links == {"u": "g"} and out.acknowledged == 1 and out.events == []


def test_original_timestamp_is_corrected_for_device_clock_skew() -> None:
    # The device clock runs 10 minutes fast: sentAt and originalTimestamp share the skew.
    msg = {"originalTimestamp": "2026-11-23T12:05:00Z", "sentAt": "2026-11-23T12:10:00Z"}
    assert event_time(msg, NOW, None) == datetime(2026, 11, 23, 11, 55, tzinfo=UTC)
    assert (
        event_time({"timestamp": "2026-11-20T00:00:00+08:00"}, NOW, None).isoformat()
        == "2026-11-20T00:00:00+08:00"
    )
    assert event_time({}, NOW, None) == NOW


def test_platform_from_device() -> None:
    out = translate(
        [
            {
                "type": "track",
                "messageId": "m",
                "userId": "u",
                "event": "x",
                "context": {"groupId": "g", "os": {"name": "iOS"}},
            }
        ],
        {},
        NOW,
    )
    assert out.events[0][1]["platform"] == "app"


def test_platform_names_that_are_no_text_count_as_absent() -> None:
    """A name nested hundreds of lists deep (the parser allows it, in 3 KB) must not
    reach str(): it raised RecursionError, a 500 on a write key browsers carry."""
    deep: Any = []
    for _ in range(5000):
        deep = [deep]
    out = translate(
        [
            {
                "type": "track",
                "messageId": "m",
                "userId": "u",
                "event": "x",
                "context": {"groupId": "g", "os": {"name": deep}, "library": {"name": deep}},
            }
        ],
        {},
        NOW,
    )
    assert out.events[0][1]["platform"] == "pc"
