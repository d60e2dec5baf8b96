"""Helper processes of a bench: the services as ``python -m services.cli``, their
environment, starting and stopping them, their logs, and the scratch directory."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from lib.console import err
from shared.config import Settings


def service_command(name: str) -> list[str]:
    """``python -m services.cli <name>``: imports ``services`` from ``sys.path``, so a
    snapshot given with ``PYTHONPATH`` is what runs (an installed entry point could
    resolve to the working tree)."""
    return [sys.executable, "-m", "services.cli", name]


def service_env(settings: Settings, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEALTHWATCH_")}
    for name in (
        "kafka_bootstrap",
        "database_url",
        "topic_prefix",
        "ingest_port",
        "scoring_port",
        "alerts_port",
        "host",
        "kafka_partitions",
        "kafka_replication",
        "consumer_group_scoring",
        "consumer_group_alerts",
        "scoring_batch_max",
        "log_level",
    ):
        env[f"HEALTHWATCH_{name.upper()}"] = str(getattr(settings, name))
    env.update(extra)
    return env


def spawn(cmd: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as fh:
        return subprocess.Popen(
            cmd,
            cwd=cwd,  # no stray .env from the caller's directory
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # graceful: the CLI stops on SIGTERM
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def scratch_dir(prefix: str, keep: bool) -> Iterator[Path]:
    """A temp dir for the broker's and cluster's data, removed afterwards unless ``keep``."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(workdir, 0o755)  # PostgreSQL runs as its own user when we are root
    try:
        yield workdir
    finally:
        if keep:
            err.print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
