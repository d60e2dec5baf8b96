"""The ``healthwatch`` command: its commands live in this package's modules (``serve``,
``keys``, ``history``, ``data``), registered on ``base.app`` when they are imported here."""

from __future__ import annotations

import importlib
import sys

from rich.text import Text

from services.cli.base import app, console
from services.cli.logs import escape_controls
from services.cli.mistakes import startup_mistake

__all__ = ["app", "main"]

# Imported in this order, which is --help's: the services, then keys, history, data, and
# the dead letters.
for _module in ("serve", "keys", "history", "data", "deadletters"):
    importlib.import_module(f"services.cli.{_module}")


def main() -> None:
    try:
        app()
    except Exception as exc:  # only the mapped mistakes: anything else is a bug, re-raised
        message = startup_mistake(exc)
        if message is None:
            raise
        console.print(Text(escape_controls(f"healthwatch: {message}")))
        sys.exit(2)
