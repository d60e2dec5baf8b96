"""Languages of the surfaces people read: message catalogs and locale-aware formatting.

Every text a person reads on the dashboard, in a report or a notice is written in
English in the code and wrapped in ``_()``; the Chinese for it lives in a gettext
catalog. Catalogs are the ``*.po`` files under ``locale/<language>/``, read at start
with Babel and merged (one file per area, so the dashboard, reports and notices keep
their own). A text without a translation shows in English, never as an id.

Pure: no request, no settings object. Callers pass the language and the zone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date, datetime, tzinfo
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

from babel.dates import format_date
from babel.lists import format_list
from babel.messages.pofile import read_po
from babel.numbers import format_currency, format_decimal, format_percent, format_scientific

from shared.contracts.events import zone_names

# Tags as people and browsers write them; "zh-CN" is the handbook's readers.
LANGUAGES = ("en", "zh-CN")
DEFAULT_LANGUAGE = "en"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"


def babel_locale(language: str) -> str:
    """Babel's and gettext's spelling of a language tag ("zh-CN" -> "zh_CN")."""
    return language.replace("-", "_")


@cache
def catalog(language: str) -> Mapping[str, str]:
    """Every translated message of ``language``, merged from its ``*.po`` files."""
    messages: dict[str, str] = {}
    folder = LOCALE_DIR / babel_locale(language)
    for path in sorted(folder.glob("*.po")):
        with path.open("rb") as handle:
            for message in read_po(handle, locale=babel_locale(language)):
                if message.id and isinstance(message.id, str) and message.string:
                    messages[message.id] = str(message.string)
    return messages


def translate(language: str, text: str, **values: object) -> str:
    """``text`` in ``language`` (English when there is no translation), then
    ``str.format``'s fields filled from ``values``."""
    if language != DEFAULT_LANGUAGE:
        text = catalog(language).get(text, text)
    return text.format(**values) if values else text


class Phrase(str):
    """An English text among a message's values, worded in the message's language too
    (``Refusal``, ``shared.web.ClientError``); mark it with ``N_`` where it is written."""


class Choices(tuple[str, ...]):
    """The values one of which a message wants, among its values: listed as the
    message's language lists them, each with its name there where it has one
    ("'strategic', 'enterprise', or 'non-focus'"; "战略客户（strategic）、…或…")."""


def _listed(language: str, choices: Choices) -> str:
    if language == DEFAULT_LANGUAGE:
        items = [f"'{choice}'" for choice in choices]
    else:
        named = [(choice, translate(language, choice)) for choice in choices]
        items = [f"{name}（{choice}）" if name != choice else choice for choice, name in named]
    return format_list(items, style="or", locale=babel_locale(language))


def worded(language: str, template: str, values: Mapping[str, object] | None) -> str:
    """A message in ``language``: ``template`` translated, then filled with ``values``
    (each ``Phrase`` among them translated too, ``Choices`` listed); None: a message
    with no fields."""
    text = translate(language, template)
    if values is None:
        return text
    return text.format(**{name: _value(language, value) for name, value in values.items()})


def _value(language: str, value: object) -> object:
    if isinstance(value, Phrase):
        return translate(language, value)
    if isinstance(value, Choices):
        return _listed(language, value)
    return value


class Refusal(ValueError):
    """A command refused for its input or the state it finds: ``message`` is English and
    a ``str.format`` template of ``values``, so whoever shows it can word it in the
    reader's language (``translate``); ``str()`` gives the English."""

    def __init__(self, message: str, /, **values: object):
        super().__init__(worded(DEFAULT_LANGUAGE, message, values) if values else message)
        self.template = message
        self.values = values

    def worded(self, language: str) -> str:
        """The message in ``language`` (English where it has no translation)."""
        return worded(language, self.template, self.values or None)


def language_tag(value: str) -> str:
    """A language as a locale names it too: ``zh_CN``, ``zh``, ``zh-Hans``,
    ``zh_CN.UTF-8`` (as ``LANG`` holds it) are zh-CN, ``en_US.UTF-8`` en; anything else
    as given (for the caller to refuse). The form with an underscore had been refused
    (found from outside)."""
    tag = value.strip().split(".")[0].replace("_", "-").lower()
    if tag == "zh" or tag.startswith("zh-"):
        return "zh-CN"
    if tag == "en" or tag.startswith("en-"):
        return "en"
    return value


def negotiate(requested: str | None, accept_language: str | None, default: str) -> str:
    """The language to answer in: the one the person chose, else the first of their
    browser's languages we have, else the service's default. Every Chinese tag (``zh``,
    ``zh-Hans``, ``zh-Hans-CN``, ``zh-SG``, ``zh-TW``…) gets zh-CN, the one Chinese we
    have: browsers set script and region tags as often as ``zh-CN``, and a reader of
    Traditional Chinese reads Simplified far better than English."""
    if requested in LANGUAGES:
        return requested
    for tag in _by_preference(accept_language or ""):
        if tag == "zh" or tag.startswith("zh-"):
            return "zh-CN"
        if tag == "en" or tag.startswith("en-"):
            return "en"
    return default if default in LANGUAGES else DEFAULT_LANGUAGE


def _by_preference(accept_language: str) -> list[str]:
    """The header's language tags, lower-cased, highest ``q`` first (equal ones in the
    header's order): "en;q=0.5, zh-CN" prefers Chinese."""
    weighted = []
    for place, part in enumerate(accept_language.split(",")):
        tag, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if tag and q > 0:
            weighted.append((-q, place, tag.lower()))
    return [tag for _, _, tag in sorted(weighted)]


# What a missing value shows as, in every language.
DASH = "—"


def known_zone(name: str | None) -> ZoneInfo | None:
    """The IANA zone ``name`` (as a browser's Intl API reports it), or None for anything
    else: a cookie is the viewer's to forge, and an unknown name must not raise."""
    return ZoneInfo(name) if name and name in zone_names() else None


def format_quarter(language: str, quarter: object) -> str:
    """A quarter ("2027Q1", as addresses and the API write it) as a reader of
    ``language`` says it: "Q1 2027", "2027年第1季度"; anything else as it is."""
    year, _, number = str(quarter).partition("Q")
    if not (year.isdigit() and number.isdigit()):
        return str(quarter)
    return f"{year}年第{number}季度" if language.startswith("zh") else f"Q{number} {year}"


def format_when(language: str, value: datetime | date | None, zone: tzinfo) -> str:
    """A moment as a reader of ``language`` writes it, on the clock of ``zone``
    ("Dec 2, 2026 08:30", "2026年12月2日 08:30"); a day alone without a time."""
    if value is None:
        return DASH
    locale = babel_locale(language)
    if isinstance(value, datetime):
        moment = value.astimezone(zone)
        # CLDR's medium date, and a 24-hour clock in both languages (as CSMs write it).
        return f"{format_date(moment.date(), 'medium', locale=locale)} {moment:%H:%M}"
    return format_date(value, "medium", locale=locale)


def format_money(language: str, value: float | None, currency: str) -> str:
    """An amount with its currency, whole units ("CN¥1,200,000", "¥1,200,000", "$5,000")."""
    if value is None:
        return DASH
    return format_currency(
        value, currency.upper(), "¤#,##0", locale=babel_locale(language), currency_digits=False
    )


def format_pct(language: str, value: float | None, digits: int = 0) -> str:
    """A share (0.123) as a percentage with ``digits`` decimals ("12%", "12.3%")."""
    if value is None:
        return DASH
    pattern = "#,##0" + ("." + "0" * digits if digits > 0 else "") + "%"
    return format_percent(value, pattern, locale=babel_locale(language))


# Beyond this a value is printed in scientific notation: Babel's decimal context holds
# 28 digits, and grouping 1e30 raised (a stored value must never break a page).
HUGE = 1e18


def format_num(language: str, value: float | None, digits: int = 1) -> str:
    """A count as is, a measure with ``digits`` decimals, grouped by thousands."""
    if value is None or not math.isfinite(value):
        return DASH
    if abs(value) >= HUGE:
        return format_scientific(value, "0.###E0", locale=babel_locale(language))
    places = "" if float(value).is_integer() or digits <= 0 else "." + "0" * digits
    return format_decimal(value, "#,##0" + places, locale=babel_locale(language))


def N_(text: str) -> str:
    """Marks an English text for translation where it is defined (a constant, an
    exception's message); it is translated where it is shown, with ``translate``. The
    catalog test (tests/unit/test_i18n.py) finds the texts by this mark."""
    return text
