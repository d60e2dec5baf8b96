"""The OpenAPI of each service, as a client reads it: docs that load without internet,
the key schemes on every route that needs a key, a schema for every request body and
for every JSON answer, and the error shape on the error answers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from services.runtime import ingest_app, mount_alerts_api, mount_health_api, open_runtime, ops_app
from shared.auth import Scope, create_key
from shared.config import Settings

# Routes under /v1 that take no key, and why: the helpdesk signs its deliveries instead.
# Signed by the sender instead (the vendors' connectors: tests/unit/test_connectors.py).
UNKEYED = {
    "/v1/tickets/webhook",
    "/v1/connectors/zendesk/webhook",
    "/v1/connectors/freshdesk/webhook",
    "/v1/connectors/hubspot/webhook",
}
# Write routes whose action is the whole request: nothing to send in a body.
BODYLESS = {
    "/v1/alerts/{alert_id}/acknowledge",
    "/v1/alerts/{alert_id}/unsnooze",
    "/v1/deliveries/{delivery_id}/retry",
    "/v1/cases/{case_id}/tasks/{task_id}/complete",
    "/v1/tasks/{task_id}/complete",
}
ERROR_REF = "#/components/schemas/ErrorBody"
BATCH_REF = "#/components/schemas/RejectedBatch"
SECRET = "helpdesk-secret"


@pytest.fixture
async def apps(embedded_settings: Settings) -> AsyncIterator[dict[str, FastAPI]]:
    """The three services' apps as ``services.runtime`` assembles them."""
    async with open_runtime(embedded_settings) as rt:
        scoring = ops_app(rt, "healthwatch scoring")
        mount_health_api(scoring, rt)
        alerts = ops_app(rt, "healthwatch alerts")
        mount_alerts_api(alerts, rt)
        yield {"ingest": ingest_app(rt), "scoring": scoring, "alerts": alerts}


def operations(app: FastAPI) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, op)
        for path, item in app.openapi()["paths"].items()
        for method, op in item.items()
    ]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_load_their_scripts_and_styles_from_the_app(
    apps: dict[str, FastAPI], page: str
) -> None:
    for name, app in apps.items():
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test"
        ) as client:
            answer = await client.get(page)
            html = answer.text
            # On the dashboard's origin: never framed, no sniffing (found from outside).
            assert answer.headers["X-Frame-Options"] == "DENY"
            assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
            assert answer.headers["X-Content-Type-Options"] == "nosniff"
            assets = re.findall(r'(?:src|href)="([^"]+)"', html)
            scripts = [a for a in assets if a.endswith((".js", ".css"))]
            assert scripts, (name, html)
            for url in assets:
                assert url.startswith("/"), f"{name}{page} loads {url} from elsewhere"
            for url in scripts:
                answer = await client.get(url)
                assert answer.status_code == 200 and len(answer.content) > 10_000, (name, url)
            assert "/openapi.json" in html


async def test_every_keyed_route_shows_the_key_schemes(apps: dict[str, FastAPI]) -> None:
    for name, app in apps.items():
        schemes = app.openapi()["components"]["securitySchemes"]
        assert (
            schemes["apiKey"]["scheme"] == "bearer" and "hwk_" in schemes["apiKey"]["bearerFormat"]
        )
        assert schemes["segmentWriteKey"]["scheme"] == "basic"
        for method, path, op in operations(app):
            if path.startswith("/v1") and path not in UNKEYED:
                assert {"apiKey": []} in op.get("security", []), (name, method, path)
                for status in ("401", "403", "503"):
                    assert op["responses"][status]["content"]["application/json"]["schema"] == {
                        "$ref": ERROR_REF
                    }, (name, method, path, status)


async def test_every_write_route_documents_its_body(apps: dict[str, FastAPI]) -> None:
    for name, app in apps.items():
        for method, path, op in operations(app):
            if method in {"post", "put", "patch"} and path not in BODYLESS:
                body = op.get("requestBody", {}).get("content", {})
                assert body, (name, method, path)
                (media,) = body.values()
                assert media.get("schema"), (name, method, path)


async def test_raw_body_routes_show_models_and_examples(apps: dict[str, FastAPI]) -> None:
    schema = apps["ingest"].openapi()
    paths = schema["paths"]
    for path in ("/v1/events", "/v1/accounts", "/v1/tickets/webhook", "/v1/batch", "/v1/track"):
        media = paths[path]["post"]["requestBody"]["content"]["application/json"]
        assert media["examples"], path
        assert "$ref" in str(media["schema"]), path
    # The referenced models are in the document: a client generator resolves them.
    for ref in re.findall(r"#/components/schemas/(\w+)", str(schema)):
        assert ref in schema["components"]["schemas"], ref
    accepted = paths["/v1/events"]["post"]["responses"]["202"]["content"]["application/json"]
    assert accepted["schema"] == {"$ref": "#/components/schemas/Accepted"}


async def test_refused_values_are_documented_in_our_error_shape(apps: dict[str, FastAPI]) -> None:
    for name, app in apps.items():
        for method, path, op in operations(app):
            invalid = op["responses"].get("422")
            if invalid:
                # ErrorBody, or a batch's RejectedBatch (ErrorBody with the items refused).
                shapes = ({"$ref": ERROR_REF}, {"$ref": BATCH_REF})
                shape = invalid["content"]["application/json"]["schema"]
                assert shape in shapes, (name, method, path)


async def test_the_examples_are_accepted(embedded_settings: Settings) -> None:
    """Each example of a request body is one the route takes: a reader who copies it
    from /docs gets a 2xx (the ticket webhook's signed as a helpdesk signs it)."""
    secrets = ("ticket_webhook_secret", "zendesk_webhook_secret", "freshdesk_webhook_secret")
    settings = embedded_settings.model_copy(
        update={name: SecretStr(SECRET) for name in (*secrets, "hubspot_client_secret")}
    )
    async with open_runtime(settings) as rt:
        key = await create_key(rt.engine, "docs-reader", [Scope.ingest, Scope.crm])
        app = ingest_app(rt)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test"
        ) as client:
            for method, path, op in operations(app):
                media = op.get("requestBody", {}).get("content", {}).get("application/json")
                for name, example in (media or {}).get("examples", {}).items():
                    body = json.dumps(example["value"]).encode()
                    headers = {"Content-Type": "application/json"}
                    if path in UNKEYED:
                        headers |= _vendor_signed(path, body)
                    else:
                        headers["Authorization"] = f"Bearer {key}"
                    answer = await client.request(method, path, content=body, headers=headers)
                    assert answer.is_success, (path, name, answer.text)


def _vendor_signed(path: str, body: bytes) -> dict[str, str]:
    """Signed as each sender signs (docs/connectors.md)."""
    if "zendesk" in path:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        mac = hmac.new(SECRET.encode(), stamp.encode() + body, hashlib.sha256)
        return {
            "X-Zendesk-Webhook-Signature-Timestamp": stamp,
            "X-Zendesk-Webhook-Signature": base64.b64encode(mac.digest()).decode(),
        }
    if "freshdesk" in path:
        return {"X-Healthwatch-Token": SECRET}
    if "hubspot" in path:
        stamp = str(int(time.time() * 1000))
        signed = b"POST" + f"http://test{path}".encode() + body + stamp.encode()
        mac = hmac.new(SECRET.encode(), signed, hashlib.sha256)
        return {
            "X-HubSpot-Request-Timestamp": stamp,
            "X-HubSpot-Signature-v3": base64.b64encode(mac.digest()).decode(),
        }
    return _signed(body)


def _signed(body: bytes) -> dict[str, str]:
    stamp = str(int(time.time()))
    mac = hmac.new(SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256)
    return {
        "X-Healthwatch-Timestamp": stamp,
        "X-Healthwatch-Signature": f"sha256={mac.hexdigest()}",
    }


async def test_every_json_answer_has_a_model(apps: dict[str, FastAPI]) -> None:
    """A client reads the shape of each success from the document, not from trying."""
    for name, app in apps.items():
        for method, path, op in operations(app):
            for status, answer in op["responses"].items():
                media = answer.get("content", {}).get("application/json")
                if status.startswith("2") and media is not None:
                    schema = str(media.get("schema", {}))
                    assert "$ref" in schema or "properties" in schema, (name, method, path)
            if path == "/metrics":
                assert "application/json" not in op["responses"]["200"]["content"]


async def test_every_request_body_shows_an_example(apps: dict[str, FastAPI]) -> None:
    for name, app in apps.items():
        schema = app.openapi()
        models = schema["components"]["schemas"]
        for method, path, op in operations(app):
            for media in op.get("requestBody", {}).get("content", {}).values():
                ref = media["schema"].get("$ref", "").rpartition("/")[2]
                shown = media.get("examples") or media.get("example") or models[ref]["examples"]
                assert shown, (name, method, path)


async def test_nul_refusals_and_toml_documents_are_documented(apps: dict[str, FastAPI]) -> None:
    """Schemathesis found answers the schema did not describe: the 400 for a NUL byte in
    the path or query (every route), and the model and alerting file served as TOML."""
    toml_routes = 0
    for name, app in apps.items():
        for method, path, op in operations(app):
            assert "400" in op["responses"], (name, method, path)
            if path in ("/v1/health-model", "/v1/alert-rules") and method == "get":
                assert list(op["responses"]["200"]["content"]) == ["application/toml"]
                toml_routes += 1
    assert toml_routes >= 2


async def test_an_integrator_reads_the_fields_and_every_answer(
    apps: dict[str, FastAPI], embedded_settings: Settings
) -> None:
    """Found from outside: 70 of 73 event fields without a word (``platform`` silently
    pc), the 415 and a key's 404 missing, the 422's ``rejected`` list undeclared, and
    the one-process API titled "healthwatch ingest"."""
    document = apps["scoring"].openapi()
    schemas = apps["ingest"].openapi()["components"]["schemas"]
    for model in ("UsageEvent", "TicketEvent", "AccountFacts", "Touchpoint", "NpsResponse"):
        bare = [
            name
            for name, field in schemas[model]["properties"].items()
            if name != "kind" and not field.get("description")
        ]
        assert bare == [], (model, bare)
    assert "pc when" in schemas["UsageEvent"]["properties"]["platform"]["description"] or (
        "left out, pc" in schemas["UsageEvent"]["properties"]["platform"]["description"]
    )
    events = apps["ingest"].openapi()["paths"]["/v1/events"]["post"]["responses"]
    assert "415" in events
    assert events["422"]["content"]["application/json"]["schema"]["$ref"].endswith("RejectedBatch")
    assert {"accepted", "rejected"} <= schemas["RejectedBatch"]["properties"].keys()
    assert "404" in document["paths"]["/v1/keys/{key_id}"]["delete"]["responses"]
    async with open_runtime(embedded_settings) as rt:
        assert ingest_app(rt, with_health_api=True).openapi()["info"]["title"] == "healthwatch"
