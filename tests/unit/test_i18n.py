"""The message catalogs and the choice of language."""

from __future__ import annotations

from shared.i18n import LANGUAGES, catalog, negotiate, translate


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
