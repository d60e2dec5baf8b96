"""Explanations say what moved, with the numbers."""

from __future__ import annotations

from services.scoring.explain import changes, labels, moved, with_moved_since, worded_changes
from services.scoring.model.schema import load_default_model


def test_changes_in_plain_words_largest_first() -> None:
    names = labels(load_default_model())
    moved = changes(
        {"active_users_7d": 9, "score": 35, "open_tickets": 3, "nps_latest": 8, "new": 1},
        {"active_users_7d": 42, "score": 71, "open_tickets": 0, "nps_latest": 8},
        names,
    )
    assert [c["measure"] for c in moved] == ["open_tickets", "active_users_7d", "score"]
    assert moved[1]["text"] == "active users over 7 days fell from 42 to 9, −79%"
    assert moved[1]["relative"] == -0.7857
    assert moved[0]["text"] == "Open tickets rose from 0 to 3"
    # A score moves in points: "−51%" of a score read as if half the customer were gone.
    assert moved[2]["text"] == "health score fell from 71 to 35, −36 points"
    assert changes({"x": 1}, None, names) == []


def test_a_score_stores_what_moved_as_numbers_and_its_reader_words_them() -> None:
    names = labels(load_default_model())
    now = {"active_users_7d": 9, "score": 35, "open_tickets": 3}
    then = {"active_users_7d": 42, "score": 71, "open_tickets": 0}
    stored = {
        "model_version": "v1",
        "moved": {"since_previous": moved(now, then, 2), "since_7d": [], "since_30d": []},
        "danger": {"level": None},
    }
    assert stored["moved"]["since_previous"] == [["open_tickets", 0, 3], ["active_users_7d", 42, 9]]
    read = worded_changes(stored, names)
    # In words, where the numbers were, and the same entries the sentences always had.
    assert list(read) == ["model_version", "changes", "danger"]
    assert read["changes"]["since_previous"] == changes(now, then, names, 2)
    assert read["changes"]["since_7d"] == []
    # An explanation stored before (with its sentences) is read as it is.
    older = {"model_version": "v0", "changes": {"since_previous": [{"text": "x fell"}]}}
    assert worded_changes(older, names) == older


def test_what_moved_since_days_back_is_worked_out_when_read() -> None:
    names = labels(load_default_model())
    now = {"active_users_7d": 2, "score": 35, "danger": ["D1"]}
    week_ago = {"active_users_7d": 6, "score": 35}
    stored = {"day": "2026-11-20", "moved": {"since_previous": [["score", 40, 35]]}}
    read = with_moved_since(stored, now, {7: week_ago, 30: None})
    assert read["moved"] == {
        "since_previous": [["score", 40, 35]],
        "since_7d": moved(now, week_ago, 20),
        "since_30d": [],  # nothing stored a month back: nothing to compare with
    }
    assert read["moved"]["since_7d"] == [["active_users_7d", 6, 2]]
    assert stored["moved"] == {"since_previous": [["score", 40, 35]]}  # left as stored
    worded = worded_changes(read, names)["changes"]
    assert [c["text"] for c in worded["since_7d"]] == [
        "active users over 7 days fell from 6 to 2, −67%"
    ]


def test_shares_are_shown_as_percentages() -> None:
    [c] = changes({"active_user_share_7d": 0.1}, {"active_user_share_7d": 0.5}, {})
    assert c["text"] == "active user share 7d fell from 50% to 10%, −80%"


def test_an_event_named_share_is_counted_and_a_slope_below_zero_moves_by_its_difference() -> None:
    """Found from outside: an app's "share" event read as a percentage, a slope's move
    as "−1100%", and measures without a label by their raw ids."""
    names = labels(load_default_model())
    now = {"days_since_event[share]": 6, "usage_events_slope": -2.4, "events_slope[like]": 1.5}
    then = {"days_since_event[share]": 1, "usage_events_slope": -0.2, "events_slope[like]": -0.5}
    texts = {c["measure"]: c["text"] for c in changes(now, then, names)}
    assert texts == {
        "days_since_event[share]": "days since last use: share rose from 1 to 6, +500%",
        "usage_events_slope": "events slope (change per week over 4 weeks) fell from -0.20 "
        "to -2.40, −2.20",
        "events_slope[like]": "uses slope (change per week over 4 weeks): like rose from "
        "-0.50 to 1.50, +2",
    }


def test_history_keeps_a_compact_explanation() -> None:
    from services.scoring.history import compact

    why = {
        "model_version": "v1",
        "profile": "default",
        "groups": {"activity": 40.0},
        "capped_by": None,
        "missing": ["depth_level"],
        "components": [
            {
                "group": "activity",
                "name": "active_user_share_7d",
                "label": "Active users over 7 days ÷ seats purchased",
                "raw": 0.08,
                "score": 16.0,
                "weight": 0.35,
                "contribution": 5.6,
            }
        ],
        "danger": {"level": "high", "causes": [{"code": "unclear_value", "text": "…"}]},
        "changes": {"since_previous": [{"text": "active users fell"}]},
    }
    assert compact(why) == {
        "model_version": "v1",
        "profile": "default",
        "groups": {"activity": 40.0},
        "capped_by": None,
        "missing": ["depth_level"],
        "components": {"active_user_share_7d": [16.0, 0.35, 5.6]},
        "danger": {"level": "high", "causes": ["unclear_value"]},
    }


def test_the_health_apis_sentences_follow_the_requests_language() -> None:
    """The read API's explanation and danger causes stayed English with Accept-Language:
    zh-CN (found from outside); they are worded as alerts are, numbers and ids kept."""
    from services.scoring.api import _causes_in, _changes_in

    why = worded_changes(
        {"moved": {"since_previous": [["active_users_7d", 42, 9]]}},
        labels(load_default_model()),
    )
    chinese = _changes_in("zh-CN", why)["changes"]["since_previous"][0]
    assert chinese["text"] == "近 7 天活跃用户数从 42 降至 9（−79%）"
    assert (chinese["measure"], chinese["before"], chinese["after"]) == ("active_users_7d", 42, 9)
    assert _changes_in("en", why) == why
    cause = {"code": "decision_maker_change", "text": "the customer's decision maker changed"}
    (said,) = _causes_in("zh-CN", [cause])
    assert said == {"code": "decision_maker_change", "text": "客户的决策人已更换"}
