"""The connectors on the real stack: Zendesk, Freshdesk and HubSpot webhooks in the
vendors' own shapes and signatures, and a CRM export imported with the CLI, all reaching
scoring through Kafka; wrong signatures, stale timestamps and unknown shapes refused."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from pydantic import SecretStr
from sqlalchemy import select
from typer.testing import CliRunner

from services.cli import app as cli
from services.ingest.connectors.schemas import FRESHDESK, HUBSPOT, ZENDESK_EVENT, ZENDESK_TRIGGER
from shared.auth import Role, create_key, role_scopes
from shared.config import Settings
from shared.storage.tables import accounts, tickets
from tests.support.harness import Harness, running, wait_for

pytestmark = pytest.mark.integration
SECRET = "vendor-secret"


def _mac(message: bytes) -> str:
    return base64.b64encode(hmac.new(SECRET.encode(), message, hashlib.sha256).digest()).decode()


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


async def _rows(hw: Harness, table: Any, account: str) -> list[Any]:
    async with hw.rt.engine.connect() as conn:
        return list(await conn.execute(select(table).where(table.c.account_id == account)))


async def _zendesk(hw: Harness, body: dict[str, Any], *, stamp: str | None = None) -> Any:
    raw = orjson.dumps(body)
    stamp = stamp or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    headers = {
        "X-Zendesk-Webhook-Signature-Timestamp": stamp,
        "X-Zendesk-Webhook-Signature": _mac(stamp.encode() + raw),
        "Content-Type": "application/json",
    }
    async with hw.client() as c:
        return await c.post("/v1/connectors/zendesk/webhook", content=raw, headers=headers)


async def _hubspot(hw: Harness, body: list[dict[str, Any]], *, tamper: bool = False) -> Any:
    raw = orjson.dumps(body)
    stamp = str(int(time.time() * 1000))
    uri = hw.url + "/v1/connectors/hubspot/webhook"
    signature = _mac(b"POST" + uri.encode() + raw + stamp.encode())
    headers = {
        "X-HubSpot-Request-Timestamp": stamp,
        "X-HubSpot-Signature-v3": signature,
        "Content-Type": "application/json",
    }
    async with hw.client() as c:
        return await c.post(
            "/v1/connectors/hubspot/webhook",
            content=raw + (b" " if tamper else b""),
            headers=headers,
        )


def _mapping(tmp_path: Path) -> str:
    path = tmp_path / "connectors.toml"
    path.write_text(
        '[owners]\n"Anna Li" = "anna@example.com"\n'
        '[zendesk.organizations]\n"509974" = "acme"\n'
        '[freshdesk.companies]\n"Acme Trading" = "acme"\n'
        '[hubspot]\naccount_prefix = "hs-"\n'
    )
    return str(path)


async def test_vendor_webhooks_and_a_crm_export_reach_scoring(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    settings = kafka_settings.model_copy(
        update={
            "zendesk_webhook_secret": SecretStr(SECRET),
            "freshdesk_webhook_secret": SecretStr(SECRET),
            "hubspot_client_secret": SecretStr(SECRET),
            "connectors_file": _mapping(tmp_path),
        }
    )
    async with running(settings, alerts=False) as hw:
        # public_url names the ingest port only now: HubSpot signs the URL it calls.
        hw.rt.settings.public_url = hw.url
        trigger = {"ticket": {**ZENDESK_TRIGGER["ticket"], "updated_at": _now_iso()}}
        assert (await _zendesk(hw, trigger)).status_code == 202
        assert (await _zendesk(hw, trigger)).status_code == 202  # a retry: counted once
        event = {
            **ZENDESK_EVENT,
            "detail": {**ZENDESK_EVENT["detail"], "id": "9", "updated_at": _now_iso()},
        }
        assert (await _zendesk(hw, event)).status_code == 202
        async with hw.client() as c:
            fresh = await c.post(
                "/v1/connectors/freshdesk/webhook",
                json=FRESHDESK,
                auth=("freshdesk", SECRET),
            )
            assert fresh.status_code == 202, fresh.text
        hub = [{**HUBSPOT[0], "occurredAt": int(time.time() * 1000)}]
        answer = await _hubspot(hw, [*hub, {**hub[0], "propertyName": "favourite_colour"}])
        assert answer.json() == {"accepted": 2, "rejected": []}

        async def three_tickets() -> bool:
            return len(await _rows(hw, tickets, "acme")) == 3

        await wait_for(three_tickets, timeout=30, what="the three vendors' tickets")
        found = {(r.ticket_id, r.status) for r in await _rows(hw, tickets, "acme")}
        assert found == {
            ("zendesk:35436", "open"),
            ("zendesk:9", "solved"),
            ("freshdesk:4821", "open"),
        }

        async def hubspot_fact() -> bool:
            rows = await _rows(hw, accounts, "hs-1246965")
            return bool(rows) and rows[0].facts["fields"].get("arr") == 86000.0

        await wait_for(hubspot_fact, timeout=30, what="HubSpot's annual revenue")
        await _refusals(hw, trigger)
        await _cli_import(hw, tmp_path)
        await _dashboard_import(hw)


async def _refusals(hw: Harness, trigger: dict[str, Any]) -> None:
    bad_stamp = await _zendesk(hw, trigger, stamp="2020-01-01T00:00:00Z")
    assert (bad_stamp.status_code, bad_stamp.json()["code"]) == (401, "stale_timestamp")
    unknown = await _zendesk(hw, {"ticket": "no"})
    assert (unknown.status_code, unknown.json()["code"]) == (400, "unknown_payload")
    tampered = await _hubspot(hw, HUBSPOT, tamper=True)
    assert (tampered.status_code, tampered.json()["code"]) == (401, "bad_signature")
    async with hw.client() as c:
        no_secret = await c.post("/v1/connectors/freshdesk/webhook", json=FRESHDESK)
    assert (no_secret.status_code, no_secret.json()["code"]) == (401, "bad_token")


async def _cli_import(hw: Harness, tmp_path: Path) -> None:
    export = tmp_path / "hubspot-companies.csv"
    export.write_text(
        "Record ID,Company name,Company owner,Annual Revenue\n"
        "hs-1,Delta Ltd,Anna Li,50000\n"
        "hs-2,Echo Ltd,Nobody Known,x\n"
    )
    crm = await create_key(hw.rt.engine, "crm", role_scopes(Role.crm, None))
    argv = ["accounts", "import", str(export), "--format", "hubspot", "--url", hw.url]
    env = {"HEALTHWATCH_CONNECTORS_FILE": str(tmp_path / "connectors.toml")}
    result = await asyncio.to_thread(
        CliRunner().invoke, cli, argv, env={**env, "HEALTHWATCH_KEY": crm}
    )
    assert result.exit_code == 1, result.output  # one row refused, said by row and column
    assert "imported 1 of 2 rows" in result.output
    assert "row 3, Company owner" in result.output and "row 3, Annual Revenue" in result.output

    async def delta() -> bool:
        rows = await _rows(hw, accounts, "hs-1")
        return bool(rows) and rows[0].owner_email == "anna@example.com"

    await wait_for(delta, timeout=30, what="the imported company")
    ingest = await create_key(hw.rt.engine, "ingest", role_scopes(Role.ingest, None))
    refused = await asyncio.to_thread(
        CliRunner().invoke, cli, argv, env={**env, "HEALTHWATCH_KEY": ingest}
    )
    assert refused.exit_code == 1 and "crm key" in refused.output


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]*)"', html)
    assert found, "no CSRF field"
    return found.group(1)


async def _signed_in(hw: Harness, browser: httpx.AsyncClient, key: str) -> None:
    form = await browser.get("/ui/login")
    signed = await browser.post(
        "/ui/login", data={"csrf": _csrf(form.text), "key": key, "next": "/ui/"}
    )
    assert signed.status_code == 303


async def _dashboard_import(hw: Harness) -> None:
    """A lead uploads a CSV of our own columns: the preview names the row and column of
    each error, the import publishes the good rows, and a CSM may not import."""
    lead = await create_key(hw.rt.engine, "lead", role_scopes(Role.cs_lead, None))
    # The CRM named Foxtrot's owner with her Slack id; the export names her by email alone
    # and had erased it, stopping her Slack notices (found from outside).
    anna = {"email": "anna@example.com", "slack_id": "U0ANNA"}
    async with httpx.AsyncClient(base_url=hw.url, timeout=30) as api:
        known = {"account_id": "ui-1", "tier": "enterprise", "owner": anna}
        sent = await api.post(
            "/v1/accounts", json=known, headers={"Authorization": f"Bearer {hw.key}"}
        )
        assert sent.status_code == 202, sent.text

    async def slack_known() -> bool:
        rows = await _rows(hw, accounts, "ui-1")
        return bool(rows) and rows[0].owner_slack_id == "U0ANNA"

    await wait_for(slack_known, timeout=30, what="Foxtrot's owner with her Slack id")
    upload = b"account_id,name,tier,owner_email\nui-1,Foxtrot,strategic,anna@example.com\nui-2,Golf,gold,\n"
    async with httpx.AsyncClient(base_url=hw.url, timeout=30) as browser:
        await _signed_in(hw, browser, lead)
        csrf = _csrf((await browser.get("/ui/import")).text)
        fields = {"csrf": csrf, "step": "preview", "format": "csv"}
        preview = await browser.post("/ui/import", data=fields, files={"file": ("a.csv", upload)})
        assert preview.status_code == 200
        assert (
            "1 of 2 rows can be imported" in preview.text
            and "<td>3</td><td>tier</td>" in preview.text
        )
        done = await browser.post(
            "/ui/import", data={**fields, "step": "import"}, files={"csv": (None, upload)}
        )
        assert done.status_code == 200 and 'id="import-done"' in done.text
        bad = await browser.post("/ui/import", data=fields, files={"file": ("b.csv", b"name\nx\n")})
        assert bad.status_code == 422 and "account_id" in bad.text

    async def foxtrot() -> bool:
        rows = await _rows(hw, accounts, "ui-1")
        return bool(rows) and rows[0].tier == "strategic"

    await wait_for(foxtrot, timeout=30, what="the account imported on the dashboard")
    assert (await _rows(hw, accounts, "ui-1"))[0].owner_slack_id == "U0ANNA"
    assert await _rows(hw, accounts, "ui-2") == []
    email = "anna@example.com"
    csm = await create_key(hw.rt.engine, "anna", role_scopes(Role.csm, email), email)
    async with httpx.AsyncClient(base_url=hw.url, timeout=30) as browser:
        await _signed_in(hw, browser, csm)
        assert (await browser.get("/ui/import")).status_code == 403
