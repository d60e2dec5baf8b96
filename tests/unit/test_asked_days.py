"""The days a page's from/to ask for (``services/dashboard/asked_days.py``): a reversed
pair turned round, a long one cut, an unreadable one the default, each said."""

from __future__ import annotations

from datetime import UTC, date

from services.dashboard.asked_days import (
    BEFORE_DATA,
    EMPTY,
    FUTURE,
    FUTURE_PERIOD,
    NO_FROM,
    REVERSED,
    TOO_LATE,
    TOO_LONG,
    UNREADABLE,
    AskedDays,
    read,
)

TODAY = date(2026, 12, 7)


def test_nothing_asked_is_the_pages_default_without_a_word() -> None:
    assert read({}, TODAY, most_days=366) == AskedDays()
    assert read({"from": "", "to": ""}, TODAY, most_days=366).said("en", UTC) is None


def test_a_pair_in_order_is_shown_as_asked_and_a_future_end_is_today() -> None:
    asked = read({"from": "2026-11-01", "to": "2026-11-30"}, TODAY, most_days=366)
    assert asked == AskedDays((date(2026, 11, 1), date(2026, 11, 30)))
    later = read({"from": "2026-11-01", "to": "2027-03-01"}, TODAY, most_days=366)
    assert later.span == (date(2026, 11, 1), TODAY) and later.note is None
    assert read({"from": "2026-11-01"}, TODAY, most_days=366).span == (date(2026, 11, 1), TODAY)


def test_a_reversed_pair_is_turned_round_and_said() -> None:
    asked = read({"from": "2026-11-30", "to": "2026-11-01"}, TODAY, most_days=366)
    assert asked.span == (date(2026, 11, 1), date(2026, 11, 30)) and asked.note == REVERSED
    assert asked.said("en", UTC) == "“From” came after “to”: showing Nov 1, 2026 to Nov 30, 2026."
    assert asked.said("zh-CN", UTC) == (
        "开始日期晚于结束日期：已对调，显示 2026年11月1日 至 2026年11月30日。"
    )


def test_a_long_range_keeps_its_last_days_and_says_so() -> None:
    asked = read({"from": "2020-01-01", "to": "2026-06-30"}, TODAY, most_days=366)
    assert asked.span == (date(2025, 6, 30), date(2026, 6, 30)) and asked.note == TOO_LONG
    assert "At most 366 days" in (asked.said("en", UTC) or "")
    # Both wrong: turned round, then cut (the cut is what is said).
    both = read({"from": "2026-06-30", "to": "2020-01-01"}, TODAY, most_days=366)
    assert both.span == (date(2025, 6, 30), date(2026, 6, 30)) and both.note == TOO_LONG


def test_nothing_usable_is_the_default_saying_why() -> None:
    """Each reason in its own words: a note that called readable days unreadable, or a
    lone "from" reversed, misled (found in review)."""
    for params, note in (
        ({"from": "2026-13-01", "to": "2026-12-01"}, UNREADABLE),
        ({"from": "yesterday"}, UNREADABLE),
        ({"to": "2026-12-01"}, NO_FROM),
        ({"from": "0001-01-01", "to": "0001-01-01"}, BEFORE_DATA),
        ({"from": "2027-05-01"}, FUTURE),  # after today, no "to": not a reversed pair
        ({"from": "2027-05-01", "to": "2027-06-01"}, FUTURE),  # nothing happened yet
    ):
        asked = read(params, TODAY, most_days=366)
        assert asked.span is None and asked.note == note, params
    assert "2026-12-07" in (read({"from": "x"}, TODAY, most_days=9).said("zh-CN", UTC) or "")
    future = read({"from": "2027-05-01"}, TODAY, most_days=366)
    assert (
        future.said("en", UTC) == "“From” (May 1, 2027) is after today: nothing has happened since."
    )
    # A reversed pair wholly after today names its days as asked, not its "to" as the
    # "from" (found from outside).
    later = read({"from": "2026-12-20", "to": "2026-12-10"}, TODAY, most_days=366)
    assert later.span is None and later.note == FUTURE_PERIOD
    assert later.said("en", UTC) == (
        "The days asked for (Dec 10, 2026 to Dec 20, 2026) are after today: nothing has happened."
    )
    # A reversed pair whose "from" is in the future is turned round first.
    turned = read({"from": "2027-01-01", "to": "2026-11-01"}, TODAY, most_days=366)
    assert turned.span == (date(2026, 11, 1), TODAY) and turned.note == REVERSED


def test_a_half_open_period_needs_from_before_to_and_may_end_later() -> None:
    """The retention page's [from, to): a period ending after today is one to come."""
    asked = read(
        {"from": "2027-01-01", "to": "2026-10-01"},
        TODAY,
        most_days=3653,
        until_today=False,
        half_open=True,
    )
    assert asked.span == (date(2026, 10, 1), date(2027, 1, 1)) and asked.note == REVERSED
    same = read({"from": "2026-10-01", "to": "2026-10-01"}, TODAY, most_days=3653, half_open=True)
    assert same.span is None and same.note == EMPTY
    alone = read({"from": "2027-05-01"}, TODAY, most_days=3653, until_today=False, half_open=True)
    assert alone.span is None and alone.note == FUTURE  # not [today, from) "reversed"
    today = read({"from": TODAY.isoformat()}, TODAY, most_days=3653, half_open=True)
    assert today.note == EMPTY
    long = read(
        {"from": "2000-01-01", "to": "2026-01-01"},
        TODAY,
        most_days=3653,
        until_today=False,
        half_open=True,
    )
    assert long.span is not None and (long.span[1] - long.span[0]).days == 3653


def test_a_period_to_come_ends_by_the_latest_day_and_starts_by_today() -> None:
    """A "to" of 9999 showed ten years of the 100th century, a period wholly to come a
    retention of 100% (found from outside)."""
    quarter_end = date(2027, 1, 1)
    endless = read(
        {"from": "0001-01-01", "to": "9999-12-31"},
        TODAY,
        most_days=3653,
        until_today=False,
        half_open=True,
        latest=quarter_end,
    )
    assert endless.span is not None and endless.span[1] == quarter_end
    assert endless.note == TOO_LONG
    to_come = read(
        {"from": "2030-01-01", "to": "2031-01-01"},
        TODAY,
        most_days=3653,
        until_today=False,
        half_open=True,
        latest=quarter_end,
    )
    assert to_come.span is None and to_come.note == FUTURE
    later = read(
        {"from": "2026-01-01", "to": "9999-12-31"},
        TODAY,
        most_days=3653,
        until_today=False,
        half_open=True,
        latest=quarter_end,
    )  # cut to the quarter's end, and said (it was cut without a word: found in review)
    assert later.span == (date(2026, 1, 1), quarter_end) and later.note == TOO_LATE
