"""The language of the commands' messages, and their words in it."""

from __future__ import annotations

import os

from rich.markup import escape

from shared.config import Settings
from shared.i18n import DEFAULT_LANGUAGE, Refusal, translate


def cli_language() -> str:
    """The language of the commands' messages: HEALTHWATCH_LANGUAGE (or its line in
    .env) when set, as the services read it; else the terminal's locale (LC_ALL,
    LC_MESSAGES, LANG, as gettext reads them: zh_CN.UTF-8 reads Chinese); else English.
    Never fails: a setting that does not read is reported by ``main``."""
    try:
        settings = Settings()
        if "language" in settings.model_fields_set:
            return settings.language
    except (ValueError, OSError):  # a setting that does not read; an unreadable .env
        pass
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        if value := os.environ.get(name):
            return "zh-CN" if value.lower().startswith("zh") else DEFAULT_LANGUAGE
    return DEFAULT_LANGUAGE


def t(text: str, **values: object) -> str:
    """``text`` in the commands' language (``cli_language``), its fields filled from
    ``values``. The English is the catalog's key (shared/i18n/locale/zh_CN/cli.po); rich's
    markup stays in both."""
    return translate(cli_language(), text, **values)


def worded(exc: BaseException) -> str:
    """An exception's message for the terminal, in the commands' language when it is a
    ``Refusal`` (a template with values), else as it is; escaped for rich."""
    return escape(exc.worded(cli_language()) if isinstance(exc, Refusal) else str(exc))
