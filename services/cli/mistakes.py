"""Mistakes in the settings or the surroundings, said in one line naming the fix."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

from aiokafka.errors import KafkaError
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from services import runtime
from services.cli.base import MissingDatabase, database_shown
from services.cli.text import t
from services.scoring.model.schema import ModelError
from services.scoring.plans.templates import PlanTemplateError
from shared.alerting.schema import AlertingError
from shared.bus.base import BusUnavailable
from shared.config import Settings
from shared.web import REFUSED_SIGN_IN
from shared.worker import describe, is_transient


def startup_mistake(exc: BaseException) -> str | None:
    """One line naming the fix, when ``exc`` is a mistake in the settings or the
    surroundings (not a bug): a setting, a busy port, a file, the database."""
    if isinstance(exc, BaseExceptionGroup):  # a service of `dev` failed to start
        lines = [startup_mistake(e) for e in exc.exceptions]
        return None if None in lines else "; ".join(dict.fromkeys(str(m) for m in lines))
    if isinstance(exc, ValidationError):
        return "; ".join(_setting_error(e) for e in exc.errors())
    if isinstance(exc, runtime.PortInUse | MissingDatabase):
        return str(exc)
    if isinstance(exc, OSError) and exc.filename is not None:
        return t(
            "cannot open {file} ({reason}): fix the path or its permissions",
            file=exc.filename,
            reason=exc.strerror,
        )
    if isinstance(exc, AlertingError | ModelError | PlanTemplateError):
        return " ".join(t("invalid file: {reason}", reason=exc).split())
    chain = list(_chain(exc))
    sqlite = next((e for e in chain if isinstance(e, sqlite3.DatabaseError)), None)
    if sqlite is not None and str(sqlite) in SQLITE_FILE_ERRORS:
        return t(
            "the SQLite file {file} {problem}: fix HEALTHWATCH_DATABASE_URL, or create the "
            "file's folder",
            file=_database_shown(),
            problem=t(SQLITE_FILE_ERRORS[str(sqlite)]),
        )
    refused = (e for e in chain if str(getattr(e, "sqlstate", ""))[:2] in REFUSED_SIGN_IN)
    refusal = next(refused, None)
    if refusal is not None:
        return t(
            "the database {url} refused the connection ({reason}): fix "
            "HEALTHWATCH_DATABASE_URL (user, password, database name) or create what it names",
            url=_database_shown(),
            reason=refusal,
        )
    # The broker is no start-up condition (services start without it): a bus error
    # reaching this edge is no database outage, and is not dressed up as one.
    if is_transient(exc) and not any(isinstance(e, KafkaError | BusUnavailable) for e in chain):
        return t(
            "the database {url} is unreachable ({reason}): start it, or set "
            "HEALTHWATCH_DATABASE_URL",
            url=_database_shown(),
            reason=describe(exc),
        )
    return None


# SQLite's words for a file that cannot be the database, and what they mean to a person
# (translated where they are said).
SQLITE_FILE_ERRORS = {
    "file is not a database": "is no SQLite database (another file at that path?)",
    "unable to open database file": "cannot be opened (its folder missing, or not writable)",
}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps: SQLAlchemy's ``orig`` (the driver's error), else the cause."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__


def _setting_error(error: ErrorDetails) -> str:
    # Only the location and message: pydantic's input_value would show a password.
    name = "HEALTHWATCH_" + "_".join(str(part) for part in error["loc"]).upper()
    return f"{name}: {error['msg'].removeprefix('Value error, ')}"


def _database_shown() -> str:
    try:
        return database_shown(Settings().database_url)
    except ValidationError:  # cannot happen after a start that got this far
        return "(HEALTHWATCH_DATABASE_URL)"
