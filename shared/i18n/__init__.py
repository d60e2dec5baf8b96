"""Languages of the surfaces people read: message catalogs and locale-aware formatting.

Every text a person reads on the dashboard, in a report or a notice is written in
English in the code and wrapped in ``_()``; the Chinese for it lives in a gettext
catalog. Catalogs are the ``*.po`` files under ``locale/<language>/``, read at start
with Babel and merged (one file per area, so the dashboard, reports and notices keep
their own). A text without a translation shows in English, never as an id.

Pure: no request, no settings object. Callers pass the language and the zone.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path

from babel.messages.pofile import read_po

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


def negotiate(requested: str | None, accept_language: str | None, default: str) -> str:
    """The language to answer in: the one the person chose, else the first of their
    browser's languages we have, else the service's default."""
    if requested in LANGUAGES:
        return requested
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower()
        for language in LANGUAGES:
            if tag == language.lower() or (tag == "zh" and language == "zh-CN"):
                return language
        if tag.startswith("en"):
            return "en"
    return default if default in LANGUAGES else DEFAULT_LANGUAGE
