"""Texts, numbers, dates and money in the report's language (Babel's CLDR data: zh-CN
writes 2026年12月3日 and ¥1,200,000, which hand-written format strings get wrong)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from babel.dates import format_date, format_skeleton

from shared.i18n import (
    DASH,
    LANGUAGES,
    babel_locale,
    format_money,
    format_num,
    format_pct,
    translate,
)


@dataclass(frozen=True)
class Fmt:
    """One report's language and currency; every text and figure goes through it."""

    lang: str = "en"
    currency: str = "CNY"

    def __post_init__(self) -> None:
        if self.lang not in LANGUAGES:
            raise ValueError(f"language must be one of {', '.join(LANGUAGES)}")

    @property
    def locale(self) -> str:
        return babel_locale(self.lang)

    def t(self, text: str, **values: object) -> str:
        """``text`` in the report's language, its ``{fields}`` filled from ``values``."""
        return translate(self.lang, text, **values)

    def num(self, value: float | None, digits: int = 0) -> str:
        return format_num(self.lang, value, digits)

    def pct(self, value: float | None) -> str:
        return format_pct(self.lang, value)

    def day(self, value: date | None) -> str:
        """A day written out ("December 3, 2026", "2026年12月3日"): a report is read
        away from the screen, where a short form is easy to misread."""
        return DASH if value is None else format_date(value, "long", locale=self.locale)

    def tick(self, value: date) -> str:
        """A chart's axis label: month and day in digits (12/3), drawable in any font."""
        return format_skeleton("Md", value, locale=self.locale)

    def money(self, value: float | None, currency: str | None = None) -> str:
        """An amount in ``currency`` (an account's own), else the service's."""
        return format_money(self.lang, value, currency or self.currency)
