"""The data export on the real stack: accounts, current scores and daily history as CSV
and Parquet, read back; a CSM key exports only its own portfolio; the CLI writes the
same file; bad asks are 422s with a code."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from services.cli import app as cli
from services.scoring import export
from shared.auth import Role, create_key, role_scopes
from shared.config import Settings
from shared.storage.tables import health_daily
from tests.support.harness import Harness, add_account, running, send, signed_in, usage

pytestmark = pytest.mark.integration


async def _get(hw: Harness, path: str, key: str | None = None) -> tuple[int, bytes]:
    async with hw.client() as c:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        answer = await c.get(path, headers=headers)
        return answer.status_code, answer.content


async def test_export_accounts_scores_and_history(
    kafka_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One row per partition: several Parquet row groups, as a large portfolio writes.
    monkeypatch.setattr(export, "PARTITION_ROWS", 1)
    async with running(kafka_settings, alerts=False) as hw:
        for who in ("anna", "carl"):
            await add_account(hw, f"{who}-co", seats=10, email=f"{who}@example.com", arr=1200)
        await send(hw, [usage(a, "u1", days_ago=d) for a in ("anna-co", "carl-co") for d in (0, 2)])

        status, body = await _get(hw, "/v1/export/accounts")
        # The API's CSV is for programs: no byte-order mark (the dashboard's has one).
        assert not body.startswith("\ufeff".encode())
        rows = list(csv.DictReader(io.StringIO(body.decode())))
        assert status == 200 and [r["account_id"] for r in rows] == ["anna-co", "carl-co"]
        assert rows[0]["owner_email"] == "anna@example.com" and float(rows[0]["arr"]) == 1200

        status, body = await _get(hw, "/v1/export/scores?format=parquet")
        scores = pq.ParquetFile(io.BytesIO(body))
        assert status == 200 and scores.metadata.num_row_groups == 2
        table = scores.read().to_pylist()
        assert [r["account_id"] for r in table] == ["anna-co", "carl-co"]
        assert all(isinstance(r["score"], int) and r["band"] for r in table)
        # The day the figures are as of, beside the newest event they read (found from
        # outside: as_of alone read as their date).
        assert all(r["day"] == datetime.now(UTC).date() for r in table), table

        today = datetime.now(UTC).date()
        span = f"from={today - timedelta(days=5)}&to={today + timedelta(days=1)}"
        status, body = await _get(hw, f"/v1/export/history?format=parquet&{span}")
        history = pq.read_table(io.BytesIO(body)).to_pylist()
        first = today - timedelta(days=5)
        async with hw.rt.engine.connect() as conn:
            q = select(func.count()).where(health_daily.c.day >= first)
            stored = (await conn.execute(q)).scalar()
        assert status == 200 and sum(r["recorded"] for r in history) == stored > 0
        # One row per account and day, from its first score to today (not tomorrow); the
        # days without a stored row carry the score before them (they had been left out).
        for account in ("anna-co", "carl-co"):
            days = [r["day"] for r in history if r["account_id"] == account]
            assert days == [days[0] + timedelta(days=n) for n in range(len(days))]
            assert days[-1] == today and first <= days[0] <= today - timedelta(days=2)

        email = "anna@example.com"
        anna = await create_key(hw.rt.engine, "anna", role_scopes(Role.csm, email), email)
        status, body = await _get(hw, "/v1/export/scores", key=anna)
        assert [r["account_id"] for r in csv.DictReader(io.StringIO(body.decode("utf-8-sig")))] == [
            "anna-co"
        ]
        await _dashboard(hw, anna, span)

        for bad in (
            "/v1/export/secrets",
            "/v1/export/scores?format=xlsx",
            f"/v1/export/history?from={today}&to={today - timedelta(days=1)}",
        ):
            status, body = await _get(hw, bad)
            assert status == 422 and b'"code"' in body, bad

        out = tmp_path / "history.parquet"
        argv = [
            "export",
            "history",
            "--format",
            "parquet",
            "--out",
            str(out),
            "--from",
            str(today - timedelta(days=5)),
        ]
        env = {"HEALTHWATCH_DATABASE_URL": kafka_settings.database_url}
        result = await asyncio.to_thread(CliRunner().invoke, cli, argv, env=env)
        assert result.exit_code == 0, result.output
        assert pq.read_table(out).num_rows == len(history)


async def _dashboard(hw: Harness, csm: str, span: str) -> None:
    """The dashboard's links (/ui/export/{kind}) stream the same files to a signed-in
    person, a CSM's holding their own portfolio only; without a session: the sign-in."""
    async with signed_in(hw, csm) as browser:
        r = await browser.get("/ui/export/accounts")
        # For a spreadsheet: UTF-8 with a BOM, so Excel reads Chinese names right.
        assert r.content.startswith("\ufeff".encode())
        rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
        assert r.status_code == 200 and [row["account_id"] for row in rows] == ["anna-co"]
        assert "attachment" in r.headers["content-disposition"]
        r = await browser.get(f"/ui/export/history?format=parquet&{span}")
        table = pq.read_table(io.BytesIO(r.content))
        assert r.status_code == 200 and table.schema == export.SCHEMAS["history"]
        assert set(table.column("account_id").to_pylist()) == {"anna-co"}
        r = await browser.get("/ui/export/scores?format=xlsx")
        # The dashboard's own error page naming the parameter (was the API's JSON).
        assert r.status_code == 400 and "cannot read format in its address" in r.text
    async with httpx.AsyncClient(base_url=hw.url) as stranger:
        r = await stranger.get("/ui/export/scores")
        assert r.status_code == 303 and r.headers["location"].startswith("/ui/login?")
