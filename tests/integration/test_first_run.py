"""A new user's first run, through the CLI as they start it: every setting or startup
mistake is one line naming the fix; `dev` prints where to go and a key to sign in with;
the keys commands say which database they use and refuse a SQLite file that is not there."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devservices import free_port
from shared.auth import KeyStore, Scope
from shared.storage.db import create_engine
from tests.integration.test_dev_mode import DevProcess

pytestmark = pytest.mark.integration


def _cli(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HEALTHWATCH_")}
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        cwd=cwd,
        env={**clean, "PYTHONPATH": str(Path.cwd()), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a failed start (exit 2, no traceback)."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, (result.returncode, result.stderr)
    assert lines[0].startswith("healthwatch: ")
    return lines[0]


@pytest.fixture
def busy_port() -> Iterator[int]:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        yield port


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["keys", "list"], {"HEALTHWATCH_TIMEZONE": "Mars/Base"}, "HEALTHWATCH_TIMEZONE: unknown"),
        (["migrate"], {"HEALTHWATCH_DATABASE_URL": "nonsense"}, "HEALTHWATCH_DATABASE_URL: a"),
        (["dev"], {"HEALTHWATCH_DATABASE_URL": "postgresql://u:pw@h/db"}, "scheme 'postgresql'"),
        (["ingest"], {"HEALTHWATCH_LOG_LEVEL": "LOUD"}, "HEALTHWATCH_LOG_LEVEL: Input should be"),
        # Far past any real retention, where the prune's date arithmetic overflowed.
        (
            ["migrate"],
            {"HEALTHWATCH_HISTORY_DAYS": "800000"},
            "HEALTHWATCH_HISTORY_DAYS: Input should be less than or equal to 36500",
        ),
        (
            ["migrate"],
            {"HEALTHWATCH_WINDOW_DAYS": "3651", "HEALTHWATCH_HISTORY_DAYS": "36500"},
            "HEALTHWATCH_WINDOW_DAYS: Input should be less than or equal to 3650",
        ),
        (
            ["keys", "list"],
            {"HEALTHWATCH_DATABASE_URL": "postgresql+asyncpg://u:secret@127.0.0.1:1/db"},
            "database postgresql+asyncpg://u:***@127.0.0.1:1/db is unreachable",
        ),
        (
            ["migrate"],
            {"HEALTHWATCH_DATABASE_URL": "postgresql+asyncpg://u:secret@127.0.0.1:1/db"},
            "start it, or set HEALTHWATCH_DATABASE_URL",
        ),
        (["dev"], {"HEALTHWATCH_ALERTING_FILE": "/no/such.toml"}, "cannot open /no/such.toml"),
        (["alerts"], {"HEALTHWATCH_ALERTING_FILE": "/no/such.toml"}, "cannot open /no/such.toml"),
    ],
)
def test_a_setting_mistake_is_one_line(
    tmp_path: Path, args: list[str], env: dict[str, str], expected: str
) -> None:
    line = _one_line(_cli(tmp_path, *args, **env))
    assert expected in line and "secret" not in line


def test_an_unreadable_model_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "h.ndjson").write_text("")
    line = _one_line(_cli(tmp_path, "backtest", "h.ndjson", "--model", "nope.toml"))
    assert "cannot open nope.toml (No such file or directory)" in line


def test_import_into_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "h.ndjson").write_text("")
    url = "postgresql+asyncpg://u:secret@127.0.0.1:1/db"
    line = _one_line(_cli(tmp_path, "import", "h.ndjson", HEALTHWATCH_DATABASE_URL=url))
    assert "database postgresql+asyncpg://u:***@127.0.0.1:1/db is unreachable" in line


def test_a_file_that_is_no_sqlite_database_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "other.db").write_text("garbage")
    url = f"sqlite+aiosqlite:///{tmp_path / 'other.db'}"
    line = _one_line(_cli(tmp_path, "migrate", HEALTHWATCH_DATABASE_URL=url))
    assert "is no SQLite database" in line and "fix HEALTHWATCH_DATABASE_URL" in line


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda url: url.rsplit("/", 1)[0] + "/no_such_db", 'database "no_such_db" does not exist'),
        (lambda url: re.sub("://[^@/]*@", "://no_such_user:pw@", url), '"no_such_user" does'),
    ],
)
def test_a_database_refusing_the_connection_is_one_line(
    tmp_path: Path, postgres_url: str, change: Callable[[str], str], expected: str
) -> None:
    line = _one_line(_cli(tmp_path, "keys", "list", HEALTHWATCH_DATABASE_URL=change(postgres_url)))
    assert "refused the connection" in line and expected in line
    assert "fix HEALTHWATCH_DATABASE_URL" in line and ":pw@" not in line


@pytest.mark.parametrize("command", ["dev", "ingest", "scoring", "alerts"])
def test_a_busy_port_is_one_line(tmp_path: Path, busy_port: int, command: str) -> None:
    port = str(busy_port)
    env = {f"HEALTHWATCH_{p}_PORT": port for p in ("INGEST", "SCORING", "ALERTS")}
    line = _one_line(_cli(tmp_path, command, **env))
    assert f"cannot listen on 127.0.0.1:{port} (Address already in use)" in line
    # The setting that sets this command's port, and --port only where it is one.
    setting = (
        "HEALTHWATCH_INGEST_PORT"
        if command in ("dev", "ingest")
        else f"HEALTHWATCH_{command.upper()}_PORT"
    )
    assert f"choose another port ({setting}" in line
    assert ("--port" in line) == (command == "dev")


def test_keys_refuse_a_missing_sqlite_file_and_name_the_one_used(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for args in (["create", "--role", "cs_lead"], ["list"], ["revoke", "x"]):
        line = _one_line(_cli(elsewhere, "keys", *args))
        assert f"no database at {elsewhere / 'healthwatch.db'}" in line
        assert "run from the project folder" in line
    assert not (elsewhere / "healthwatch.db").exists()

    made = _cli(tmp_path, "migrate")  # migrate (like dev) creates the file
    assert made.returncode == 0, made.stderr
    created = _cli(tmp_path, "keys", "create", "--role", "cs_lead", "--name", "anna")
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("hwk_")
    shown = f"database sqlite+aiosqlite:///./healthwatch.db ({tmp_path / 'healthwatch.db'})"
    assert shown in created.stderr
    assert shown in _cli(tmp_path, "keys", "list").stderr


def _dev_until_sign_in(workdir: Path) -> DevProcess:
    """`healthwatch dev` started in ``workdir`` and stopped once it said how to sign in."""
    dev = DevProcess(workdir)
    try:
        dev.wait_until(lambda: "Sign in at" in "".join(dev.lines), 60, "sign-in line")
    finally:
        dev.proc.terminate()
        dev.proc.wait(30)
    return dev


async def _can_read(database: Path, key: str) -> bool:
    engine = create_engine(f"sqlite+aiosqlite:///{database}")
    try:
        found = await KeyStore(engine).verify(key)
        return found is not None and found.allows(Scope.read)
    finally:
        await engine.dispose()


def test_dev_prints_the_dashboard_and_a_sign_in_key_once(tmp_path: Path) -> None:
    first = _dev_until_sign_in(tmp_path)
    out = "".join(first.lines)
    assert f"Dashboard: {first.url}/ui/" in out and f"API docs: {first.url}/docs" in out
    (key,) = re.findall(rf"Sign in at {first.url}/ui/ with key (hwk_\S+)", out)
    # Printed on the terminal only: no log record (which a log file would keep) holds it,
    # nor the log's stream (standard error), which `dev 2>dev.log` sends to a file.
    assert [line for line in first.lines if key in line] == [
        f"Sign in at {first.url}/ui/ with key {key}\n"
    ]
    assert not [line for line in first.log_lines if key in line]
    assert first.query("SELECT name FROM api_keys") == [("demo sign-in",)]
    assert asyncio.run(_can_read(tmp_path / "healthwatch.db", key))

    again = _dev_until_sign_in(tmp_path)
    assert "healthwatch keys create --role cs_lead" in "".join(again.lines)
    assert again.query("SELECT count(*) FROM api_keys") == [(1,)]
