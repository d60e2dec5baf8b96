"""What the services log is safe to ship (issue 11, item 15): a real ``healthwatch dev``
run whose database URL has a password, whose webhooks carry their tokens in the URL, and
which raises and delivers an alert for an account named with CR/LF. Every record is one
line, and no password or webhook token appears."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import sys
from pathlib import Path

import httpx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from devservices import free_port
from services.cli.logs import REPEATS_KEPT, OneLineFormatter, RepeatFilter, redacted_url
from shared.auth import Scope, create_key
from shared.storage.db import create_engine, migrate
from shared.storage.tables import accounts
from tests.support.alerting import alerting_toml, write_alerting
from tests.support.harness import facts, ticket, wait_for
from tests.support.standins import SlackStandIn

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "Pg-Pass-7f3a"
WEBHOOK_TOKEN = "whk-token-91c2"
# Text that would pass for a record of its own if a line break let it start a line.
FORGED = "2026-01-01 00:00:00,000 INFO    healthwatch: forged record"
EVIL_NAME = f"Evil Inc\r\n{FORGED}"
RECORD_START = re.compile(
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) "
)


def _with_password(url: str) -> str:
    """The test server trusts local connections, so any password connects."""
    scheme, rest = url.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user.split(':')[0]}:{PASSWORD}@{host}"


async def test_dev_logs_one_line_per_record_and_no_secret(
    database_url: str, tmp_path: Path
) -> None:
    url = _with_password(database_url)
    engine = create_engine(url)
    await migrate(engine)
    key = await create_key(engine, "admin", [Scope.admin])
    port = free_port()
    async with SlackStandIn().running() as slack:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "HEALTHWATCH_DATABASE_URL": url,
            "HEALTHWATCH_KAFKA_BOOTSTRAP": "",
            "HEALTHWATCH_INGEST_PORT": str(port),
            "HEALTHWATCH_LOG_LEVEL": "INFO",
            "HEALTHWATCH_BUS_POLL_INTERVAL_S": "0.1",
            "HEALTHWATCH_SLACK_MIN_INTERVAL_S": "0",
            "HEALTHWATCH_ALERTING_FILE": write_alerting(
                tmp_path / "a.toml", alerting_toml(["ticket_backlog"])
            ),
            "HEALTHWATCH_SLACK_WEBHOOK_URL": slack.webhook_url,
            "HEALTHWATCH_WEBHOOK_URL": f"http://127.0.0.1:{slack.port}/hook?token={WEBHOOK_TOKEN}",
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.cli", "dev",
            cwd=tmp_path, env=env, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            await _raise_an_alert(f"http://127.0.0.1:{port}", key, engine, slack)
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
            await engine.dispose()
    log = err.decode()
    assert proc.returncode == 0, log[-3000:]
    # The run did see the name, the URLs and the unsigned webhook.
    assert "Evil Inc\\r\\n" in log
    assert "database postgresql+asyncpg://postgres:***@" in log
    assert "go out unsigned" in log
    for secret in (PASSWORD, WEBHOOK_TOKEN, slack.webhook_url.rsplit("/", 3)[1]):
        assert secret not in log
    assert "HTTP Request" not in log
    assert "Invalid HTTP request received" in log
    lines = log.splitlines()
    strays = [ln for ln in lines if not RECORD_START.match(ln) and not ln.startswith("    ")]
    assert strays == [], strays[:5]
    assert not any(ln.startswith(FORGED) for ln in lines)


async def _raise_an_alert(base: str, key: str, engine: AsyncEngine, slack: SlackStandIn) -> None:
    headers = {"Authorization": f"Bearer {key}"}

    async def up() -> bool:
        try:
            async with httpx.AsyncClient() as c:
                return (await c.get(f"{base}/healthz")).status_code == 200
        except httpx.TransportError:
            return False

    await wait_for(up, timeout=60, what="healthwatch dev to listen")
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as c:
        r = await c.post("/v1/accounts", json=facts("evil-co", seats=10, email="a@example.com"))
        assert r.status_code == 202, r.text

        async def stored() -> bool:
            # A name from before ingest refused control characters: stored as is.
            async with engine.begin() as conn:
                done = await conn.execute(
                    update(accounts)
                    .where(accounts.c.account_id == "evil-co")
                    .values(name=EVIL_NAME)
                )
                return bool(done.rowcount)

        await wait_for(stored, timeout=60, what="the account stored")
        events = [ticket("evil-co", n, "open", n) for n in range(1, 6)]
        assert (await c.post("/v1/events", json={"events": events})).status_code == 202

    # Garbage instead of HTTP: the server's own warning goes through the same formatter.
    reader, writer = await asyncio.open_connection("127.0.0.1", int(base.rsplit(":", 1)[1]))
    writer.write(b"NOT HTTP\r\nforged: line\r\n\r\n")
    await writer.drain()
    await reader.read()
    writer.close()

    async def delivered() -> bool:
        return "/hook" in {r.path for r in slack.delivered()}

    await wait_for(delivered, timeout=90, what="the alert delivered to the webhook")


def test_the_formatter_escapes_controls_and_hides_passwords() -> None:
    record = logging.LogRecord(
        "x",
        logging.INFO,
        __file__,
        1,
        "name %s url %s",
        (EVIL_NAME + "\x1b[2J\u2028", "postgresql://u:pw@h/db"),
        None,
    )
    line = OneLineFormatter("%(levelname)s %(message)s").format(record)
    assert "\n" not in line and "\r" not in line and "\x1b" not in line and "\u2028" not in line
    assert line.endswith("url postgresql://u:***@h/db") and "\\r\\n" + FORGED in line
    assert (
        redacted_url("postgresql+asyncpg://u:pw@h:5432/d") == "postgresql+asyncpg://u:***@h:5432/d"
    )


def test_a_warning_said_again_within_a_minute_is_counted_not_written() -> None:
    """A broker outage had aiokafka log "Unable connect to node" thousands of times a
    second: one line a minute, then how many were left out."""
    now = [0.0]
    repeats = RepeatFilter(window_s=60, clock=lambda: now[0])

    def record(level: int, msg: str, *args: object) -> logging.LogRecord:
        return logging.LogRecord("aiokafka", level, __file__, 1, msg, args, None)

    unable = "Unable connect to node with id %s: %s"
    assert repeats.filter(record(logging.ERROR, unable, 1, "refused"))
    for _ in range(4_000):
        now[0] += 0.01  # 40 s of them
        assert not repeats.filter(record(logging.ERROR, unable, 1, "refused"))
    assert repeats.filter(record(logging.ERROR, unable, 2, "refused"))  # another text
    assert repeats.filter(record(logging.INFO, "delivered %s", "a"))  # info: always
    assert repeats.filter(record(logging.INFO, "delivered %s", "a"))
    now[0] += 21
    again = record(logging.ERROR, unable, 1, "refused")
    assert repeats.filter(again)
    assert again.getMessage() == (
        "Unable connect to node with id 1: refused (4000 more like it in the last 60 s not shown)"
    )


def test_different_errors_under_one_message_are_each_written() -> None:
    """Every unhandled request error logs "Exception in ASGI application": the first
    one of a minute hid every other bug. Errors raised at another line are written."""
    repeats = RepeatFilter(window_s=60, clock=lambda: 0.0)

    def failed(exc: Exception) -> logging.LogRecord:
        try:
            raise exc
        except Exception:
            info = sys.exc_info()
        return logging.LogRecord(
            "uvicorn.error", logging.ERROR, __file__, 1, "Exception in ASGI application", (), info
        )

    def other() -> Exception:
        return KeyError("x")

    assert repeats.filter(failed(ValueError("one")))
    assert not repeats.filter(failed(ValueError("one")))  # the same raise: counted
    assert repeats.filter(failed(other()))  # another error type
    assert repeats.filter(_raised_elsewhere())  # the same type raised at another line


def _raised_elsewhere() -> logging.LogRecord:
    try:
        int("not a number")
    except ValueError:
        info = sys.exc_info()
    return logging.LogRecord(
        "uvicorn.error", logging.ERROR, __file__, 1, "Exception in ASGI application", (), info
    )


def test_many_distinct_warnings_all_pass_and_are_tracked_boundedly() -> None:
    """One line per bad record (``dead-lettering …@offset``) is distinct each time: all
    are written, and the filter tracks at most REPEATS_KEPT of them."""
    repeats = RepeatFilter(window_s=60, clock=lambda: 0.0)
    for offset in range(3 * REPEATS_KEPT):
        record = logging.LogRecord(
            "services", logging.WARNING, __file__, 1, "dead-lettering @%d", (offset,), None
        )
        assert repeats.filter(record)
    assert len(repeats._seen) == REPEATS_KEPT
