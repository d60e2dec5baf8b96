"""Schemathesis against every service's OpenAPI, on the real stack: no 5xx, ever.

Ingest, scoring and alerts run apart, as in production, each on its own port; the
schemathesis CLI (a separate process, so the services keep this event loop) generates
cases from each service's /openapi.json with an admin key, which reaches every route,
and checks that none answers a server error.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from shared.auth import Role, Scope, create_key, role_scopes
from shared.config import Settings
from tests.support.harness import running, running_apart

pytestmark = pytest.mark.integration

# Cases per operation in the fuzzing phase (the coverage phase adds its own boundary
# cases): about 60 operations over the three services make a few thousand requests,
# a minute or two on two cores.
EXAMPLES = 40
# A fixed seed: a failure names a case that the next run repeats.
SEED = 20261203
# Schemathesis must finish; a hung service is a failure too, not a CI time-out.
RUN_TIMEOUT_S = 600


async def schemathesis(url: str, key: str, report: Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{url}/openapi.json",
        "--checks",
        "not_a_server_error",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(EXAMPLES),
        "--seed",
        str(SEED),
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--header",
        f"Authorization: Bearer {key}",
        "--report",
        "junit",
        "--report-junit-path",
        str(report),
        "--output-truncate",
        "true",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT_S)
    return proc.returncode or 0, out.decode(errors="replace")


async def test_no_operation_of_any_service_answers_5xx(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    async with running_apart(kafka_settings) as (hw, settings):
        admin = await create_key(hw.rt.engine, "schemathesis", [Scope.admin])
        # A CSM's key takes the portfolio-scoped paths of the read and alert routes.
        email = "csm@example.com"
        csm = await create_key(hw.rt.engine, "st-csm", role_scopes(Role.csm, email), email)
        failures = []
        for name, port, key in (
            ("ingest", settings.ingest_port, admin),
            ("scoring", settings.scoring_port, admin),
            ("alerts", settings.alerts_port, admin),
            ("scoring-csm", settings.scoring_port, csm),
            ("alerts-csm", settings.alerts_port, csm),
        ):
            code, out = await schemathesis(
                f"http://127.0.0.1:{port}", key, tmp_path / f"{name}.xml"
            )
            # The summary names how many cases ran: a run that tested nothing proves nothing.
            assert "test cases" in out or "passed" in out, out[-3000:]
            if code != 0:
                failures.append(f"--- {name} (exit {code}) ---\n{out[-6000:]}")
        assert not failures, "\n".join(failures)


async def test_embedded_mode_answers_no_5xx_either(
    embedded_settings: Settings, tmp_path: Path
) -> None:
    """The one-process default on SQLite, whose driver fails differently (an int beyond
    64 bits raises OverflowError there, not a DataError)."""
    async with running(embedded_settings) as hw:
        admin = await create_key(hw.rt.engine, "schemathesis", [Scope.admin])
        code, out = await schemathesis(hw.url, admin, tmp_path / "embedded.xml")
        assert "test cases" in out or "passed" in out, out[-3000:]
        assert code == 0, out[-6000:]
