"""The message catalogs and the choice of language."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from shared.i18n import (
    DASH,
    LANGUAGES,
    catalog,
    format_money,
    format_num,
    format_pct,
    format_when,
    known_zone,
    negotiate,
    translate,
)


def test_translates_to_chinese_and_keeps_english() -> None:
    assert translate("zh-CN", "Sign out") == "退出登录"
    assert translate("en", "Sign out") == "Sign out"


def test_untranslated_text_stays_english_with_its_values() -> None:
    assert (
        translate("zh-CN", "{n} accounts, never translated", n=3) == "3 accounts, never translated"
    )


def test_every_language_but_english_has_a_catalog() -> None:
    for language in LANGUAGES[1:]:
        assert catalog(language), language


def test_choice_then_browser_then_default() -> None:
    assert negotiate("zh-CN", "en-US", "en") == "zh-CN"
    assert negotiate(None, "fr-FR, zh;q=0.8", "en") == "zh-CN"
    assert negotiate("klingon", "en-GB,zh-CN;q=0.5", "zh-CN") == "en"
    assert negotiate(None, None, "zh-CN") == "zh-CN"
    assert negotiate(None, "fr", "xx") == "en"


def test_moments_in_the_readers_language_and_zone() -> None:
    moment = datetime(2026, 12, 1, 16, 30, tzinfo=UTC)
    assert format_when("en", moment, UTC) == "Dec 1, 2026 16:30"
    assert format_when("zh-CN", moment, ZoneInfo("Asia/Shanghai")) == "2026年12月2日 00:30"
    assert format_when("zh-CN", date(2026, 12, 2), UTC) == "2026年12月2日"
    assert format_when("en", None, UTC) == DASH


def test_money_with_its_currency_and_numbers_grouped() -> None:
    assert format_money("en", 1_200_000, "CNY") == "CN¥1,200,000"
    assert format_money("zh-CN", 1_200_000, "CNY") == "¥1,200,000"
    assert format_money("en", 5000.4, "usd") == "$5,000"
    assert format_money("zh-CN", None, "CNY") == DASH
    assert format_pct("en", 0.1234) == "12%" and format_pct("zh-CN", 0.1234, 1) == "12.3%"
    assert format_num("en", 1234.0) == "1,234" and format_num("en", 2.346, 2) == "2.35"
    assert format_num("en", 7, 0) == "7" and format_num("en", None) == DASH


def test_only_known_zone_names() -> None:
    assert known_zone("Asia/Shanghai") == ZoneInfo("Asia/Shanghai")
    for name in (None, "", "localtime", "../../etc/passwd", "/etc/localtime", "Mars/Base"):
        assert known_zone(name) is None
