"""Reports as real PDFs (WeasyPrint) from the API, in English and Chinese, and from the
command line, which refuses an unknown account with one line and a failing exit."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from pypdf import PdfReader
from typer.testing import CliRunner

from services.cli import app as cli
from shared.config import Settings
from tests.support.harness import add_account, low_activity_history, running, send, ticket

pytestmark = pytest.mark.integration


def pdf_pages(body: bytes) -> list[str]:
    """The text of each page of a PDF, read back with pypdf."""
    assert body.startswith(b"%PDF-"), body[:40]
    return [page.extract_text() for page in PdfReader(io.BytesIO(body)).pages]


def pdf_text(body: bytes) -> tuple[int, str]:
    """The page count and the text of a PDF."""
    pages = pdf_pages(body)
    return len(pages), "\n".join(pages)


async def test_the_api_and_the_command_line_write_real_pdfs(
    embedded_settings: Settings, tmp_path: Path
) -> None:
    renewal = date.today() + timedelta(days=45)
    async with running(embedded_settings) as hw, hw.client() as client:
        await add_account(
            hw,
            "gamma",
            seats=20,
            tier="strategic",
            plan="Enterprise",
            arr=360000,
            contract_end=renewal.isoformat(),
        )
        await send(
            hw, [*low_activity_history("gamma", active_users=6), ticket("gamma", 1, "open", 1)]
        )

        r = await client.get("/v1/accounts/gamma/reports/qbr?format=pdf")
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/pdf"
        assert 'filename="gamma-qbr-' in r.headers["content-disposition"]
        pages, text = pdf_text(r.content)
        assert pages >= 1
        assert "Quarterly business review: gamma Inc" in text
        for section in ("Goals and outcomes", "Recommendations for the next quarter", "Renewal"):
            assert section in text
        assert "CN¥360,000" in text and "strategic" not in text
        # Each chart's heading is on the page of the chart's caption (never cut apart).
        for heading, caption in (
            ("Active users per week", "Bars: people"),
            ("Health score", "0 to 100"),
        ):
            assert any(heading in p and caption in p for p in pdf_pages(r.content)), heading

        # Accept: application/pdf asks for it too; lang=zh-CN writes Chinese.
        r = await client.get(
            "/v1/accounts/gamma/reports/usage?lang=zh-CN", headers={"Accept": "application/pdf"}
        )
        assert r.headers["content-type"] == "application/pdf"
        pages, text = pdf_text(r.content)
        assert pages >= 1 and "使用报告" in text and "gamma Inc" in text

        # The HTML links to its PDF; the OpenAPI shows both answers.
        page = (await client.get("/v1/accounts/gamma/reports/bimonthly?lang=en")).text
        assert 'href="?lang=en&amp;format=pdf"' in page
        answer = (await client.get("/openapi.json")).json()["paths"][
            "/v1/accounts/{account_id}/reports/{kind}"
        ]["get"]["responses"]["200"]["content"]
        assert {"text/html", "application/pdf"} <= set(answer)

        env = {"HEALTHWATCH_DATABASE_URL": embedded_settings.database_url}
        out = tmp_path / "gamma.pdf"
        wrote = await asyncio.to_thread(
            CliRunner().invoke,
            cli,
            ["report", "gamma", "--kind", "qbr", "--out", str(out)],
            env=env,
        )
        assert wrote.exit_code == 0, wrote.output
        assert "gamma Inc" in pdf_text(out.read_bytes())[1]

        unknown = await asyncio.to_thread(
            CliRunner().invoke, cli, ["report", "gama", "--pdf"], env=env
        )
        assert unknown.exit_code == 1
        (line,) = unknown.output.strip().splitlines()
        assert line.startswith("no account 'gama' in ") and "check the id" in line


async def test_a_reports_default_day_is_today_in_the_accounts_zone(
    embedded_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 17:00 UTC it is already tomorrow on Kiritimati (UTC+14): the report of an
    account there ends on its today, as its days are counted, not on the service's
    (UTC) today; without ``lang`` it is in the language the request prefers."""
    import services.reports.api as reports_api

    monkeypatch.setattr(reports_api, "utcnow", lambda: datetime(2026, 12, 1, 17, tzinfo=UTC))
    async with running(embedded_settings) as hw, hw.client() as client:
        await add_account(hw, "kiri", seats=5, timezone="Pacific/Kiritimati")
        r = await client.get(
            "/v1/accounts/kiri/reports/usage", headers={"Accept-Language": "zh-CN,en;q=0.5"}
        )
        assert r.status_code == 200, r.text
        assert "2026年12月2日" in r.text and "2026年12月1日" not in r.text
        english = await client.get("/v1/accounts/kiri/reports/usage")
        assert "to December 2, 2026" in english.text
