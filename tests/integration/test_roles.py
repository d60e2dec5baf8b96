"""Roles, endpoint by endpoint: each role gets exactly what it should, and a CSM cannot
reach another CSM's account or alerts by any route. Every route of the app must be in
the table, so a new endpoint cannot ship without deciding who may call it."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from sqlalchemy import select

from services.admin_keys import router as keys_routes
from services.alerts.api import router as alerts_routes
from services.alerts.cases.actions import NewCase, open_case
from services.alerts.cases.api import router as case_routes
from services.alerts.opportunities import router as opportunity_routes
from services.alerts.silences_api import router as silence_routes
from services.dashboard.activity_page import router as activity_page_routes
from services.dashboard.admin_pages import router as admin_page_routes
from services.dashboard.alerts_page import router as alerts_page_routes
from services.dashboard.cases_page import router as case_page_routes
from services.dashboard.export_page import router as export_page_routes
from services.dashboard.import_page import router as import_page_routes
from services.dashboard.nps_page import router as nps_page_routes
from services.dashboard.plans_page import router as plan_page_routes
from services.dashboard.renewals_page import router as renewal_page_routes
from services.dashboard.reports_page import router as report_page_routes
from services.dashboard.routes import router as dashboard_routes
from services.dashboard.saved_views import router as saved_view_routes
from services.dashboard.workload_page import router as workload_page_routes
from services.ingest.connectors.routes import router as connector_routes
from services.ingest.routes import router as ingest_routes
from services.reports.api import router as report_routes
from services.scoring.api import router as health_routes
from services.scoring.export import router as export_routes
from services.scoring.plans.api import router as plan_routes
from services.scoring.portfolio import router as portfolio_routes
from services.scoring.retention.api import router as retention_routes
from services.scoring.workload.api import router as workload_routes
from shared.auth import Role, Scope, create_key, role_scopes
from shared.config import Settings
from shared.storage.tables import account_notes, alerts, api_keys
from tests.support.alerting import alerting_toml, write_alerting
from tests.support.harness import (
    Harness,
    add_account,
    alert_stored,
    running,
    send,
    ticket,
    usage,
)

pytestmark = pytest.mark.integration

ALL = frozenset(Role)
READERS = frozenset({Role.admin, Role.cs_lead, Role.csm})
ADMIN = frozenset({Role.admin})
INGEST = frozenset({Role.admin, Role.ingest})
# Account facts set owners and tiers: a crm key, never the ingest key browsers carry.
CRM = frozenset({Role.admin, Role.crm})
OPS = frozenset({Role.admin, Role.ops})
LEADS = frozenset({Role.admin, Role.cs_lead})
NOBODY: frozenset[Role] = frozenset()


ANNA_FACTS = {
    "event_id": "anna-facts",
    "account_id": "anna-co",
    "seats_purchased": 10,
    "occurred_at": "2026-01-01T00:00:00+00:00",
}


@dataclass(frozen=True)
class Case:
    method: str
    path: str  # {account} and {alert} are filled with Anna's or Carl's
    allowed: frozenset[Role]
    body: Any = None
    # Per account: a CSM key on Carl's account must get 404.
    scoped: bool = False
    # No key needed (probes) or a signature instead of a key (webhooks).
    open_: bool = False


# Segment's calls, long and short: their preflight answers anyone (services/ingest/browser.py).
SEGMENT_PATHS = ("batch", "track", "identify", "group", "page", "screen", *"btigps")
CASES = [
    Case("POST", "/v1/events", INGEST, {"events": [usage("anna-co", "u9")]}),
    Case("POST", "/v1/events", CRM, {"events": [{"kind": "account", **ANNA_FACTS}]}),
    Case("POST", "/v1/accounts", CRM, ANNA_FACTS),
    Case("POST", "/v1/batch", INGEST, {"batch": []}),
    Case("POST", "/v1/track", INGEST, {"userId": "u1", "event": "x", "messageId": "m"}),
    Case("POST", "/v1/identify", INGEST, {"userId": "u1", "messageId": "m2"}),
    Case("POST", "/v1/group", INGEST, {"userId": "u1", "groupId": "g", "messageId": "m3"}),
    Case("POST", "/v1/page", INGEST, {"userId": "u1", "messageId": "m4"}),
    Case("POST", "/v1/screen", INGEST, {"userId": "u1", "messageId": "m5"}),
    # Segment's browser SDKs' short paths; their preflight answers anyone (browser.py).
    Case("POST", "/v1/b", INGEST, {"batch": []}),
    Case("POST", "/v1/t", INGEST, {"userId": "u1", "event": "x", "messageId": "m6"}),
    Case("POST", "/v1/i", INGEST, {"userId": "u1", "messageId": "m7"}),
    Case("POST", "/v1/g", INGEST, {"userId": "u1", "groupId": "g", "messageId": "m8"}),
    Case("POST", "/v1/p", INGEST, {"userId": "u1", "messageId": "m9"}),
    Case("POST", "/v1/s", INGEST, {"userId": "u1", "messageId": "m10"}),
    *(Case("OPTIONS", f"/v1/{path}", frozenset(Role), open_=True) for path in SEGMENT_PATHS),
    Case("POST", "/v1/tickets/webhook", NOBODY, {}, open_=True),
    Case("POST", "/v1/connectors/zendesk/webhook", NOBODY, {}, open_=True),
    Case("POST", "/v1/connectors/freshdesk/webhook", NOBODY, {}, open_=True),
    Case("POST", "/v1/connectors/hubspot/webhook", NOBODY, [], open_=True),
    Case("GET", "/v1/export/scores", READERS),
    Case("GET", "/v1/accounts", READERS),
    Case("GET", "/v1/aggregates", READERS),
    # Risk cases and tasks: read with a read key, changed with a respond key, a CSM's own
    # only. Case 1 is Anna's (two_portfolios opens it); 999999 is nobody's.
    Case("GET", "/v1/cases", READERS),
    Case("GET", "/v1/cases/1", READERS),
    Case("GET", "/v1/cases/999999", READERS),
    Case(
        "POST",
        "/v1/cases",
        READERS,
        {"account_id": "anna-co", "danger_level": "mild", "summary": "s"},
    ),
    Case("POST", "/v1/alerts/{alert}/case", READERS, {}, scoped=True),
    Case("POST", "/v1/cases/1/tasks", READERS, {"title": "t", "due": "2027-01-01T00:00:00Z"}),
    Case("POST", "/v1/cases/1/tasks/999999/complete", READERS),
    Case("POST", "/v1/cases/1/reviews", READERS, {"notes": "n", "danger_after": "mild"}),
    Case("POST", "/v1/cases/1/close", READERS, {"outcome": "saved", "lesson": "l"}),
    Case("GET", "/v1/tasks", READERS),
    Case("POST", "/v1/tasks/999999/complete", READERS),
    # Success plans: read with a read key, changed with a respond key, a CSM's own only.
    Case("GET", "/v1/accounts/{account}/plan", READERS, scoped=True),
    Case("POST", "/v1/accounts/{account}/plan", READERS, {"template": "onboarding"}, scoped=True),
    Case(
        "POST",
        "/v1/accounts/{account}/plan/milestones",
        READERS,
        {"title": "t", "due_on": "2027-01-01"},
        scoped=True,
    ),
    Case("PATCH", "/v1/accounts/{account}/plan/milestones/t", READERS, {"title": "u"}, scoped=True),
    Case("DELETE", "/v1/accounts/{account}/plan/milestones/t", READERS, scoped=True),
    Case("DELETE", "/v1/accounts/{account}/plan", READERS, scoped=True),
    Case("GET", "/v1/plans", READERS),
    Case("GET", "/v1/plan-templates", READERS),
    # Every account's health on a date: a CSM's answer holds their own portfolio only.
    Case("GET", "/v1/health", READERS),
    # Renewals and retention: a CSM's answer holds their own portfolio only.
    Case("GET", "/v1/renewals", READERS),
    Case("GET", "/v1/retention?from=2026-01-01&to=2026-04-01", READERS),
    Case("GET", "/v1/opportunities", READERS),
    # Silences: a CSM on their own accounts (the account is a body field or a parameter).
    Case("GET", "/v1/silences", READERS),
    Case(
        "PUT",
        "/v1/silences",
        READERS,
        {"account_id": "anna-co", "rule": "ticket_backlog", "for": "1d"},
    ),
    Case("DELETE", "/v1/silences?account_id=anna-co&rule=ticket_backlog", READERS),
    # CSM workload and NPS: a CSM's answer holds their own portfolio; reassigning takes a
    # lead's or an admin's key (here Anna's account to Anna: nothing changes).
    Case("GET", "/v1/capacity", READERS),
    Case("GET", "/v1/touchpoints/due", READERS),
    Case(
        "POST",
        "/v1/accounts/reassign",
        LEADS,
        {"account_ids": ["anna-co"], "to_owner": "anna@example.com"},
    ),
    Case("GET", "/v1/nps", READERS),
    Case("GET", "/v1/accounts/{account}/nps", READERS, scoped=True),
    Case("GET", "/v1/advocates", READERS),
    Case("GET", "/v1/accounts/{account}", READERS, scoped=True),
    Case("GET", "/v1/accounts/{account}/health", READERS, scoped=True),
    Case("GET", "/v1/accounts/{account}/health/history", READERS, scoped=True),
    Case("GET", "/v1/accounts/{account}/metrics", READERS, scoped=True),
    Case("GET", "/v1/accounts/{account}/timeline", READERS, scoped=True),
    Case("GET", "/v1/accounts/{account}/reports/qbr", READERS, scoped=True),
    Case("GET", "/v1/health-model", READERS),
    Case("PUT", "/v1/health-model", ADMIN, b"not toml ["),
    Case("GET", "/v1/alerts", READERS),
    Case("GET", "/v1/alerts/{alert}", READERS, scoped=True),
    Case("POST", "/v1/alerts/{alert}/comments", READERS, {"text": "hi"}, scoped=True),
    Case("POST", "/v1/alerts/{alert}/snooze", READERS, {"for": "1h"}, scoped=True),
    Case("POST", "/v1/alerts/{alert}/unsnooze", READERS, scoped=True),
    Case("POST", "/v1/alerts/{alert}/not-useful", READERS, {}, scoped=True),
    Case("POST", "/v1/alerts/{alert}/acknowledge", READERS, scoped=True),
    Case("POST", "/v1/alerts/{alert}/resolve", READERS, {}, scoped=True),
    Case("GET", "/v1/deliveries", ADMIN),
    Case("POST", "/v1/deliveries/999999/retry", ADMIN),
    Case("GET", "/v1/alert-rules", READERS),
    Case("PUT", "/v1/alert-rules", ADMIN, b"not toml ["),
    Case("GET", "/v1/alert-rules/quality", READERS),
    Case("POST", "/v1/slack/interactions", NOBODY, b"payload=%7B%7D", open_=True),
    Case("GET", "/v1/keys", ADMIN),
    Case("POST", "/v1/keys", ADMIN, {"name": "made-by-test", "role": "ingest"}),
    Case("DELETE", "/v1/keys/000000000000", ADMIN),
    Case("GET", "/metrics", OPS),
    Case("GET", "/healthz", ALL, open_=True),
    Case("GET", "/readyz", ALL, open_=True),
]
# The dashboard: a key signs in once (readers only), then a session cookie is the
# credential. Each route with the roles whose session may use it; sign-in itself is open.
UI_CASES = [
    Case("GET", "/ui/", READERS),
    Case("GET", "/ui/lead", READERS),
    Case("GET", "/ui/renewals", READERS),
    Case("GET", "/ui/retention", READERS),
    Case("GET", "/ui/opportunities", READERS),
    # Downloads of the viewer's portfolio (a CSM's page must not name carl-co).
    Case("GET", "/ui/renewals.csv", READERS),
    Case("GET", "/ui/portfolio.csv", READERS),
    Case("GET", "/ui/retention.csv", READERS),
    Case("GET", "/ui/export/accounts", READERS),
    Case("GET", "/ui/workload", READERS),  # a CSM sees their own line, no reassign form
    Case("POST", "/ui/workload/reassign", LEADS),
    Case("GET", "/ui/nps", READERS),
    Case("GET", "/ui/accounts/{account}", READERS, scoped=True),
    Case("GET", "/ui/accounts/{account}/reports/qbr", READERS, scoped=True),
    Case("POST", "/ui/alerts/{alert}/acknowledge", READERS, scoped=True),
    Case("GET", "/ui/alerts", READERS),
    Case("GET", "/ui/alerts/{alert}", READERS, scoped=True),
    Case("POST", "/ui/alerts", READERS, scoped=True),  # the alert is a form field
    Case("POST", "/ui/alerts/bulk", READERS, scoped=True),  # the ticked alerts too
    Case("POST", "/ui/alerts/silence", READERS, scoped=True),  # the alert is a form field
    Case("POST", "/ui/silences/end", READERS, scoped=True),  # the account too
    Case("GET", "/ui/accounts/{account}/log", READERS, scoped=True),
    Case("POST", "/ui/accounts/{account}/log", READERS, scoped=True),
    Case("POST", "/ui/views", READERS),  # the viewer's own views only
    Case("GET", "/ui/cases", READERS),  # the viewer's portfolio's cases only
    Case("GET", "/ui/cases/1", READERS),  # Anna's
    Case("POST", "/ui/cases", READERS),  # the alert or account is a form field
    Case("POST", "/ui/cases/1", READERS),
    Case("GET", "/ui/tasks", READERS),
    Case("POST", "/ui/tasks", READERS),  # the task is a form field
    Case("GET", "/ui/plans", READERS),  # the viewer's portfolio's plans only
    Case("POST", "/ui/plans/create", READERS, scoped=True),  # the account is a form field
    Case("POST", "/ui/plans/milestones", READERS, scoped=True),
    Case("POST", "/ui/plans/milestone", READERS, scoped=True),
    # Account facts from a CRM export: owners and tiers for everyone, so an admin or a lead.
    Case("GET", "/ui/import", frozenset({Role.admin, Role.cs_lead})),
    Case("POST", "/ui/import", frozenset({Role.admin, Role.cs_lead})),
    Case("GET", "/ui/admin", ADMIN),
    Case("GET", "/ui/admin/keys", ADMIN),
    Case("POST", "/ui/admin/keys", ADMIN),
    Case("POST", "/ui/admin/keys/000000000000/revoke", ADMIN),
    Case("GET", "/ui/admin/model", ADMIN),
    Case("GET", "/ui/admin/rules", ADMIN),
    Case("POST", "/ui/admin/rules", ADMIN),
    Case("GET", "/ui/admin/deliveries", ADMIN),
    Case("POST", "/ui/admin/deliveries/999999/retry", ADMIN),
    # Sets a language cookie and redirects to a dashboard path: nothing to protect.
    Case("GET", "/ui/language/zh-CN", ALL, open_=True),
    Case("GET", "/ui/login", ALL, open_=True),
    Case("POST", "/ui/login", READERS, open_=True),
    Case("POST", "/ui/logout", ALL, open_=True),
]
# Routes whose answer for an allowed caller may be 404 for reasons other than scoping.
MAY_BE_ABSENT = {
    "/v1/deliveries/999999/retry",
    # The first allowed role ended the silence (admin, before the lead and the CSM).
    "/v1/silences?account_id=anna-co&rule=ticket_backlog",
    "/v1/keys/000000000000",
    # The first allowed role removed it (on Carl's account: admin did, before the lead).
    "/v1/accounts/anna-co/plan/milestones/t",
    "/v1/accounts/carl-co/plan/milestones/t",
}
TEMPLATE = {
    "/v1/deliveries/999999/retry": "/v1/deliveries/{delivery_id}/retry",
    "/v1/silences?account_id=anna-co&rule=ticket_backlog": "/v1/silences",
    "/v1/keys/000000000000": "/v1/keys/{key_id}",
    "/v1/accounts/{account}/plan/milestones/t": (
        "/v1/accounts/{account}/plan/milestones/{milestone_key}"
    ),
    "/v1/retention?from=2026-01-01&to=2026-04-01": "/v1/retention",
    "/v1/export/scores": "/v1/export/{kind}",
    "/v1/accounts/{account}/reports/qbr": "/v1/accounts/{account}/reports/{kind}",
    "/ui/accounts/{account}": "/ui/accounts/{account_id:path}",
    "/ui/accounts/{account}/reports/qbr": "/ui/accounts/{account_id:path}/reports/{kind}",
    "/ui/alerts/{alert}/acknowledge": "/ui/alerts/{alert_id:path}/{action}",
    "/ui/alerts/{alert}": "/ui/alerts/{alert_id:path}",
    "/ui/accounts/{account}/log": "/ui/accounts/{account_id:path}/log",
    "/ui/admin/keys/000000000000/revoke": "/ui/admin/keys/{key_id}/revoke",
    "POST /ui/admin/rules": "/ui/admin/{kind}",
    "/ui/admin/deliveries/999999/retry": "/ui/admin/deliveries/{delivery_id}/retry",
    "/ui/language/zh-CN": "/ui/language/{choice}",
    "/ui/export/accounts": "/ui/export/{kind}",
}

# Risk cases: ids nobody has, and the templates of the paths with ids.
MAY_BE_ABSENT |= {
    "/v1/cases/999999",
    "/v1/cases/1/tasks/999999/complete",
    "/v1/tasks/999999/complete",
}
TEMPLATE |= {
    "/v1/cases/1": "/v1/cases/{case_id}",
    "/v1/cases/999999": "/v1/cases/{case_id}",
    "/v1/cases/1/tasks": "/v1/cases/{case_id}/tasks",
    "/v1/cases/1/tasks/999999/complete": "/v1/cases/{case_id}/tasks/{task_id}/complete",
    "/v1/cases/1/reviews": "/v1/cases/{case_id}/reviews",
    "/v1/cases/1/close": "/v1/cases/{case_id}/close",
    "/v1/tasks/999999/complete": "/v1/tasks/{task_id}/complete",
    "/ui/cases/1": "/ui/cases/{case_id}",
    "/v1/alerts/{alert}/case": "/v1/alerts/{alert_id}/case",
}


def test_every_route_is_in_the_table() -> None:
    routes = {
        (method, route.path)
        for router in (
            ingest_routes,
            connector_routes,
            export_routes,
            health_routes,
            portfolio_routes,
            alerts_routes,
            case_routes,
            opportunity_routes,
            silence_routes,
            retention_routes,
            renewal_page_routes,
            export_page_routes,
            report_routes,
            keys_routes,
            dashboard_routes,
            report_page_routes,
            alerts_page_routes,
            case_page_routes,
            activity_page_routes,
            import_page_routes,
            admin_page_routes,
            saved_view_routes,
            plan_routes,
            plan_page_routes,
            workload_routes,
            workload_page_routes,
            nps_page_routes,
        )
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    }
    routes |= {("GET", "/metrics"), ("GET", "/healthz"), ("GET", "/readyz")}
    table = {
        (
            c.method,
            TEMPLATE.get(f"{c.method} {c.path}", TEMPLATE.get(c.path, c.path))
            .replace("{account}", "{account_id}")
            .replace("{alert}", "{alert_id}"),
        )
        for c in CASES + UI_CASES
    }
    assert routes - table == set(), "routes without a decision on who may call them"


@asynccontextmanager
async def two_portfolios(
    settings: Settings, tmp_path: Path
) -> AsyncIterator[tuple[Harness, dict[Role, str]]]:
    """Anna's and Carl's accounts, each with a firing alert, and a key per role (the CSM
    key is Anna's)."""
    settings = settings.model_copy(
        update={
            "alerting_file": write_alerting(tmp_path / "a.toml", alerting_toml(["ticket_backlog"]))
        }
    )
    async with running(settings) as hw:
        for account, owner in (("anna-co", "anna@example.com"), ("carl-co", "carl@example.com")):
            await add_account(hw, account, seats=10, email=owner)
            await send(hw, [ticket(account, n, "open", n) for n in range(1, 6)])
            await alert_stored(hw, f"{account}:ticket_backlog:1")
        keys = {}
        for role in Role:
            email = "anna@example.com" if role == Role.csm else None
            keys[role] = await create_key(hw.rt.engine, role.value, role_scopes(role, email), email)
        async with hw.rt.engine.begin() as conn:  # case 1: Anna's account's
            new = NewCase("anna-co", "normal", "Backlog", "test")
            await open_case(conn, new, hw.rt.settings, datetime.now(UTC))
        yield hw, keys


async def test_each_role_gets_exactly_what_it_should(
    embedded_settings: Settings, tmp_path: Path
) -> None:
    async with two_portfolios(embedded_settings, tmp_path) as (hw, keys):
        failures = []
        async with httpx.AsyncClient(base_url=hw.url, timeout=30) as client:
            for case in CASES:
                for role in Role:
                    for whose in ("anna", "carl") if case.scoped else ("anna",):
                        path = case.path.format(
                            account=f"{whose}-co", alert=f"{whose}-co:ticket_backlog:1"
                        )
                        status = await _call(client, case, path, keys[role])
                        expected = _expected(case, role, whose, path)
                        if not expected(status):
                            failures.append(f"{role.value} {case.method} {path} → {status}")
                if not case.open_:
                    status = await _call(
                        client,
                        case,
                        case.path.format(account="anna-co", alert="anna-co:ticket_backlog:1"),
                        None,
                    )
                    if status != 401:
                        failures.append(f"no key {case.method} {case.path} → {status}")
            # A key made with the respond scope alone (raw scopes allowed it before they
            # were checked) acted as a lead's on every account: it is refused whatever
            # wants a key.
            respond_only = await create_key(hw.rt.engine, "respond only", [Scope.respond])
            for case in CASES:
                if not case.open_ and not case.path.startswith("/ui/"):
                    path = case.path.format(account="carl-co", alert="carl-co:ticket_backlog:1")
                    if (status := await _call(client, case, path, respond_only)) != 403:
                        failures.append(f"respond only {case.method} {path} → {status}")
            # Lists are scoped too: Anna's CSM key sees Anna's account and alert only.
            anna = {"Authorization": f"Bearer {keys[Role.csm]}"}
            listed = (await client.get("/v1/accounts", headers=anna)).json()["accounts"]
            alerts = (await client.get("/v1/alerts?status=any", headers=anna)).json()["alerts"]
            totals = (await client.get("/v1/aggregates", headers=anna)).json()
            lead = {"Authorization": f"Bearer {keys[Role.cs_lead]}"}
            everyone = (await client.get("/v1/accounts", headers=lead)).json()["accounts"]
    assert failures == []
    assert [a["account_id"] for a in listed] == ["anna-co"]
    assert {a["account_id"] for a in alerts} == {"anna-co"}
    assert totals["accounts"] == 1
    assert {"anna-co", "carl-co"} <= {a["account_id"] for a in everyone}


async def _call(client: httpx.AsyncClient, case: Case, path: str, key: str | None) -> int:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if isinstance(case.body, bytes):
        r = await client.request(case.method, path, content=case.body, headers=headers)
    elif case.body is not None:
        r = await client.request(case.method, path, json=case.body, headers=headers)
    else:
        r = await client.request(case.method, path, headers=headers)
    return r.status_code


def _expected(case: Case, role: Role, whose: str, path: str) -> Any:
    if case.open_ and not case.allowed:
        return lambda s: s in (401, 403)  # a signature, not a key, is what counts
    if role not in case.allowed:
        return lambda s: s == 403
    if case.scoped and role == Role.csm and whose == "carl":
        return lambda s: s == 404
    # Allowed: an answer about the request itself (2xx, or 4xx for the table's
    # deliberately invalid bodies), never a refusal and never a server error.
    if path in MAY_BE_ABSENT:
        return lambda s: s < 500 and s not in (401, 403)
    return lambda s: s < 500 and s not in (401, 403, 404)


async def test_the_dashboard_gives_each_role_exactly_what_it_should(
    embedded_settings: Settings, tmp_path: Path
) -> None:
    anna_alert, carl_alert = "anna-co:ticket_backlog:1", "carl-co:ticket_backlog:1"
    pages = [c for c in UI_CASES if c.method == "GET" and not c.open_]
    async with two_portfolios(embedded_settings, tmp_path) as (hw, keys):
        for role in Role:
            async with httpx.AsyncClient(base_url=hw.url, timeout=30) as browser:
                form = await browser.get("/ui/login")
                signed = await browser.post(
                    "/ui/login",
                    data={"csrf": _field(form.text, "csrf"), "key": keys[role], "next": "/ui/"},
                )
                if role not in READERS:
                    assert signed.status_code == 403, (role, signed.status_code)
                    for case in pages:  # no session: back to the sign-in page
                        r = await browser.get(_ui_path(case.path, "anna"))
                        assert r.status_code == 303, (role, case.path, r.status_code)
                        assert r.headers["location"].startswith("/ui/login?"), (role, case.path)
                    continue
                assert signed.status_code == 303, (role, signed.status_code)
                for case in pages:
                    await _page_as(browser, case, role)
                if role != Role.admin:
                    await _admin_actions_refused(browser, role)
                if role == Role.csm:
                    await _csm_actions(browser, anna_alert, carl_alert)
        async with hw.rt.engine.connect() as conn:
            status = dict((await conn.execute(select(alerts.c.alert_id, alerts.c.status))).all())
            q = select(alerts.c.alert_id).where(alerts.c.not_useful)
            useless = {a for (a,) in await conn.execute(q)}
            noted = {a for (a,) in await conn.execute(select(account_notes.c.account_id))}
            key_names = {n for (n,) in await conn.execute(select(api_keys.c.name))}
    # Anna's CSM acknowledged her own alert and noted her own account; Carl's alert and
    # account were out of reach and are untouched; no reader made a key.
    assert status[anna_alert] == "acknowledged" and status[carl_alert] == "firing", status
    assert useless == {anna_alert}, useless  # the bulk action reached Anna's alert alone
    assert noted == {"anna-co"}, noted
    assert "made-by-a-reader" not in key_names


def _ui_path(path: str, whose: str) -> str:
    return path.format(
        account=f"{whose}-co", alert=urllib.parse.quote(f"{whose}-co:ticket_backlog:1")
    )


async def _page_as(browser: httpx.AsyncClient, case: Case, role: Role) -> None:
    """Each page as a signed-in reader: 403 outside its roles, 404 for a CSM on another
    CSM's account or alert, and no page of a CSM's names another CSM's account."""
    scoped = "{account}" in case.path or "{alert}" in case.path
    for whose in ("anna", "carl") if scoped else ("anna",):
        r = await browser.get(_ui_path(case.path, whose))
        if role not in case.allowed:
            expected = {403}
        elif role == Role.csm and whose == "carl":
            expected = {404}
        else:  # /ui/admin redirects to its first page
            expected = {200, 303}
        assert r.status_code in expected, (role, case.path, whose, r.status_code)
        if role == Role.csm and whose == "anna":  # (a 404 page links its own path)
            assert "carl-co" not in r.text, (role, case.path)


async def _admin_actions_refused(browser: httpx.AsyncClient, role: Role) -> None:
    """A reader's session with a valid CSRF token still cannot act as an admin."""
    csrf = _field((await browser.get("/ui/")).text, "csrf")
    forms = {
        "/ui/admin/keys": {"name": "made-by-a-reader", "role": "admin"},
        "/ui/admin/rules": {"toml": "not toml ["},
        "/ui/admin/keys/000000000000/revoke": {},
        "/ui/admin/deliveries/999999/retry": {},
    }
    for path, data in forms.items():
        r = await browser.post(path, data={"csrf": csrf, **data})
        assert r.status_code == 403, (role, path, r.status_code)


async def _csm_actions(browser: httpx.AsyncClient, anna_alert: str, carl_alert: str) -> None:
    """Anna's CSM acts on her own alert and account; on Carl's nothing happens."""
    csrf = _field((await browser.get("/ui/")).text, "csrf")
    for alert, done in ((carl_alert, "gone"), (anna_alert, "acknowledged")):
        r = await browser.post(
            f"/ui/alerts/{urllib.parse.quote(alert)}/acknowledge",
            data={"csrf": csrf, "next": "/ui/"},
        )
        assert r.status_code == 303, (alert, r.status_code)
        assert f"done={done}" in r.headers["location"], (alert, r.headers)
    # The alert page's form names the alert in its body: Carl's is gone, not touched.
    for action in ("comment", "resolve"):
        r = await browser.post(
            "/ui/alerts",
            data={"csrf": csrf, "alert_id": carl_alert, "action": action, "text": "x"},
        )
        assert r.status_code == 303 and "done=gone" in r.headers["location"], (action, r)
    # Ticked with her own (already acknowledged): Carl's is counted out, not resolved.
    r = await browser.post(
        "/ui/alerts/bulk",
        data={"csrf": csrf, "pick-1": carl_alert, "pick-2": anna_alert, "action": "not_useful"},
    )
    assert r.status_code == 303 and "n=1&of=2" in r.headers["location"], r.headers
    for whose, status in (("carl", 404), ("anna", 303)):
        r = await browser.post(
            f"/ui/accounts/{whose}-co/log", data={"csrf": csrf, "kind": "note", "text": "hi"}
        )
        assert r.status_code == status, (whose, r.status_code)


def _field(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no hidden field {name!r}"
    return found.group(1)
