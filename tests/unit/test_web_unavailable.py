"""A database that cannot be reached is a 503 with Retry-After; a wrong query, a missing
table or a file error stays a 500 (a bug that alerting sees), not a quiet 503 telling the
client to retry for ever (found in review of the first version, which took every OSError
and every error the workers retry for an outage)."""

from __future__ import annotations

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError

from shared.auth import KeyStore
from shared.storage.db import create_engine
from shared.web import base_app, collided, unreachable


def _wrapped(orig: BaseException) -> DBAPIError:
    return DBAPIError("SELECT 1", None, orig)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("exc", "down"),
    [
        (ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)"), True),
        (OSError("Multiple exceptions: [Errno 111] …, [Errno 99] …"), True),
        (TimeoutError(), True),
        (_wrapped(asyncpg.ConnectionDoesNotExistError("closed in the middle")), True),
        (_wrapped(asyncpg.CannotConnectNowError("the database system is starting up")), True),
        (ProgrammingError("SELECT nope", None, Exception('column "nope" does not exist')), False),
        (OperationalError("SELECT", None, Exception("no such table: alerts")), False),
        (FileNotFoundError("reports/qbr.html"), False),
        (PermissionError("/var/lib/hw"), False),
        (ValueError("a bug"), False),
    ],
)
def test_only_an_unreachable_database_counts(exc: BaseException, down: bool) -> None:
    assert unreachable(exc) is down


def _app(raised: BaseException) -> FastAPI:
    app = base_app("t", KeyStore(create_engine("sqlite+aiosqlite://")))

    @app.get("/boom")
    async def boom() -> None:
        raise raised

    return app


async def test_the_answers() -> None:
    refused = ConnectionRefusedError(111, "Connect call failed")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=_app(refused)), base_url="http://t"
    ) as c:
        r = await c.get("/boom")
    assert r.status_code == 503 and r.json()["code"] == "unavailable"
    assert int(r.headers["Retry-After"]) > 0
    bug = ProgrammingError("SELECT nope", None, Exception('column "nope" does not exist'))
    transport = httpx.ASGITransport(app=_app(bug), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        assert (await c.get("/boom")).status_code == 500


@pytest.mark.parametrize(
    ("exc", "met"),
    [
        (_wrapped(asyncpg.DeadlockDetectedError("deadlock detected")), True),
        (_wrapped(asyncpg.SerializationError("could not serialize access")), True),
        (_wrapped(asyncpg.UniqueViolationError("duplicate key")), False),
        # Class 40 but no collision: retried, the first fails again, the second may have
        # been written already.
        (_wrapped(asyncpg.TransactionIntegrityConstraintViolationError("at commit")), False),
        (_wrapped(asyncpg.StatementCompletionUnknownError("unknown")), False),
        (ConnectionRefusedError(111, "Connect call failed"), False),
    ],
)
def test_only_a_transaction_aborted_for_another_is_a_collision(
    exc: BaseException, met: bool
) -> None:
    assert collided(exc) is met


async def test_a_collision_is_a_503_to_send_again() -> None:
    deadlock = _wrapped(asyncpg.DeadlockDetectedError("deadlock detected"))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=_app(deadlock)), base_url="http://t"
    ) as c:
        r = await c.get("/boom")
    assert r.status_code == 503 and r.json()["code"] == "busy"
    assert int(r.headers["Retry-After"]) >= 1
