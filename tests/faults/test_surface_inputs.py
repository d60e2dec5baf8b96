"""Hostile parameters on the read API, the reports, the dashboard and the configuration
documents: every answer to an authenticated caller is a 4xx naming the field, never a
5xx (issue 11, item 14). On the real stack: PostgreSQL refuses what SQLite takes (NUL
characters, out-of-range dates), so the holes show only there.
"""

from __future__ import annotations

import itertools
import re
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from services.scoring.model.schema import DEFAULT_MODEL
from shared.alerting.schema import default_alerting_source
from shared.auth import Scope, create_key
from shared.config import Settings
from tests.support.harness import Harness, facts, running, signed_in, usage, wait_for

pytestmark = pytest.mark.integration

ACCOUNT = "acme"
# Every day parameter of the read API and the reports.
DATE_PARAMS = [
    ("/v1/accounts/acme/health/history", "from"),
    ("/v1/accounts/acme/health/history", "to"),
    ("/v1/accounts/acme/timeline", "from"),
    ("/v1/accounts/acme/timeline", "to"),
    ("/v1/accounts/acme/metrics", "as_of"),
    *((f"/v1/accounts/acme/reports/{kind}", "end") for kind in ("usage", "bimonthly", "qbr")),
]
# The calendar's ends (where date arithmetic overflows) and just inside them.
EXTREME_DAYS = ["0001-01-01", "0001-01-02", "0001-12-31", "9999-12-31", "9999-12-25", "1000-06-01"]
# Values that break naive parsing, integer columns, PostgreSQL text or the arithmetic.
HOSTILE = [
    "",
    "-1",
    "0",
    str(2**63),
    str(-(2**63) - 1),
    str(2**64 * 10),
    "1e309",
    "NaN",
    "\x00",
    "a\x00b",
    "\udcff",
    "\r\nSet-Cookie: x=1",
    "../../etc/passwd",
    "' OR 1=1 --",
    "x" * 20_000,
    "🙂",
    "2026-02-30",
    *EXTREME_DAYS,
]
GET_ROUTES = {
    "/v1/accounts": [
        "band",
        "danger_level",
        "tier",
        "csm",
        "lifecycle_stage",
        "renewal_within_days",
        "sort",
        "limit",
        "offset",
    ],
    "/v1/aggregates": [
        "band",
        "danger_level",
        "tier",
        "csm",
        "lifecycle_stage",
        "renewal_within_days",
    ],
    "/v1/accounts/acme": [],
    "/v1/accounts/acme/health": [],
    "/v1/accounts/acme/health/history": ["from", "to"],
    "/v1/accounts/acme/metrics": ["as_of"],
    "/v1/accounts/acme/timeline": ["from", "to"],
    "/v1/accounts/acme/reports/usage": ["end"],
    "/v1/health-model": [],
    "/v1/keys": [],
    "/ui/": [],
    "/ui/lead": [],
    "/ui/alerts": ["state", "rule", "severity", "account", "owner", "page"],
    "/v1/alerts": ["status", "severity", "rule", "account_id", "owner", "limit", "offset"],
    "/ui/accounts/acme": [],
    "/ui/login": ["next"],
    "/v1/renewals": ["quarter", "limit", "offset", "format"],
    "/v1/retention": ["from", "to", "by", "format"],
    "/v1/export/history": ["from", "to", "format"],
    "/ui/renewals.csv": ["quarter"],
    "/ui/retention.csv": ["from", "to", "by"],
    "/ui/export/history": ["from", "to", "format"],
}
# Periods given whole (each end alone falls back to a default), at the calendar's ends.
PERIOD_ROUTES = ["/v1/retention", "/ui/retention.csv", "/v1/export/history", "/ui/export/history"]
PERIODS = [
    ("0001-01-01", "0001-01-02"),
    ("0001-01-01", "9999-12-31"),
    ("9999-12-25", "9999-12-31"),
    ("2026-07-01", "2026-01-01"),
]
FORM = {"content-type": "application/x-www-form-urlencoded"}
# Path templates whose {} takes each hostile value.
PATH_TEMPLATES = [
    "/v1/accounts/{}",
    "/v1/accounts/{}/health",
    "/v1/accounts/{}/health/history",
    "/v1/accounts/{}/metrics",
    "/v1/accounts/{}/timeline",
    "/v1/accounts/{}/reports/usage",
    "/v1/accounts/acme/reports/{}",
    "/ui/accounts/{}",
    "/v1/keys/{}",
]


@asynccontextmanager
async def scored_account(settings: Settings) -> AsyncIterator[tuple[Harness, str]]:
    """The services with one scored account, and an admin key."""
    async with running(settings, alerts=False) as hw, hw.client() as ingest:
        admin = await create_key(hw.rt.engine, "admin", [Scope.admin])
        await ingest.post("/v1/accounts", json=facts(ACCOUNT, seats=10, email="a@example.com"))
        events = [usage(ACCOUNT, f"u{u}", days_ago=d + 0.01) for d in range(3) for u in range(3)]
        assert (await ingest.post("/v1/events", json={"events": events})).status_code == 202
        await wait_for(lambda: hw.has_usage_events(ACCOUNT, 9), timeout=60, what="acme scored")
        yield hw, admin


def _quoted(value: str) -> str:
    """%-escaped, a lone surrogate standing for the raw byte (``\\udcff`` → ``%FF``)."""
    return urllib.parse.quote(value.encode("utf-8", "surrogateescape"), safe="")


def _client(hw: Harness, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=hw.url, headers={"Authorization": f"Bearer {key}"}, timeout=60
    )


async def test_extreme_dates_are_refused_naming_the_field(kafka_settings: Settings) -> None:
    async with scored_account(kafka_settings) as (hw, admin), _client(hw, admin) as c:
        failures = []
        for (path, param), day in itertools.product(DATE_PARAMS, EXTREME_DAYS):
            r = await c.get(path, params={param: day})
            if r.status_code != 422 or param not in r.text or "1970-01-01" not in r.text:
                failures.append(f"{path}?{param}={day} → {r.status_code} {r.text[:200]}")
        # Days inside the window still answer, from the first day to the last.
        for path, param in DATE_PARAMS:
            for day in ("1970-01-01", "2100-12-31", "2026-01-15"):
                r = await c.get(path, params={param: day})
                if r.status_code >= 500 or r.status_code in (401, 403):
                    failures.append(f"{path}?{param}={day} → {r.status_code} {r.text[:200]}")
        # A range within the window but longer than one answer holds: 422, not a 5xx.
        for path in ("/v1/accounts/acme/health/history", "/v1/accounts/acme/timeline"):
            r = await c.get(path, params={"from": "1970-01-01", "to": "2100-12-31"})
            if r.status_code != 422 or r.json().get("error") != "range_too_long":
                failures.append(f"{path} 1970..2100 → {r.status_code} {r.text[:200]}")
    assert failures == []


async def test_hostile_parameters_never_get_a_server_error(kafka_settings: Settings) -> None:
    async with (
        scored_account(kafka_settings) as (hw, admin),
        _client(hw, admin) as c,
        signed_in(hw, admin) as browser,
    ):
        failures = []
        for route, (start, end) in itertools.product(PERIOD_ROUTES, PERIODS):
            client = browser if route.startswith("/ui/") else c
            r = await client.get(route, params={"from": start, "to": end})
            if r.status_code >= 500:
                failures.append(f"{route}?from={start}&to={end} → {r.status_code}")
        for (route, params), value in itertools.product(GET_ROUTES.items(), HOSTILE):
            client = browser if route.startswith("/ui/") else c
            for param in params:
                r = await client.get(f"{route}?{param}={_quoted(value)}")
                if r.status_code >= 500:
                    failures.append(f"{route}?{param}={value[:30]!r} → {r.status_code}")
        for template, value in itertools.product(PATH_TEMPLATES, HOSTILE):
            if not value:
                continue
            client = browser if template.startswith("/ui/") else c
            path = template.format(_quoted(value))
            r = await client.get(path)
            if r.status_code >= 500:
                failures.append(f"GET {template} with {value[:30]!r} → {r.status_code}")
            if template == "/v1/keys/{}":
                r = await client.delete(path)
                if r.status_code >= 500:
                    failures.append(f"DELETE {template} {value[:30]!r} → {r.status_code}")
        # The alerts list's bulk form: hostile ids ticked, a hostile reason and action.
        page = (await browser.get("/ui/alerts")).text
        csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        for value in HOSTILE:
            for action in ("snooze", "not_useful", value):
                form = {
                    "csrf": csrf,
                    "action": action,
                    "hours": "24",
                    "text": value,
                    "pick-1": value,
                }
                body = urllib.parse.urlencode(form, errors="surrogateescape")
                r = await browser.post("/ui/alerts/bulk", content=body, headers=FORM)
                if r.status_code >= 500:
                    failures.append(f"POST /ui/alerts/bulk {action[:30]!r} → {r.status_code}")
    assert failures == []


def _deep_documents(depth: int) -> dict[str, str]:
    return {
        "arrays": f'version = "x"\na = {"[" * depth}{"]" * depth}\n',
        "inline tables": f'version = "x"\na = {"{b = " * depth}1{"}" * depth}\n',
        "dotted keys": f'version = "x"\n{".".join(["k"] * depth)} = 1\n',
        "table header": f'version = "x"\n[{".".join(["t"] * depth)}]\nv = 1\n',
    }


@pytest.mark.parametrize("route", ["/v1/health-model", "/v1/alert-rules"])
async def test_deeply_nested_toml_is_refused(kafka_settings: Settings, route: str) -> None:
    async with scored_account(kafka_settings) as (hw, admin), _client(hw, admin) as c:
        failures = []
        for depth in (100, 1_000, 20_000):
            for shape, body in _deep_documents(depth).items():
                r = await c.put(route, content=body.encode())
                if r.status_code != 422 or "nest" not in r.text:
                    failures.append(f"{shape} x{depth} → {r.status_code} {r.text[:200]}")
        # The document in force is untouched and still served.
        assert (await c.get(route)).status_code == 200
    assert failures == []


def _hostile_models() -> dict[str, str]:
    """The shipped model with one value a validator must refuse: it would parse, and
    then fail the scoring of every event (NaN scores, dates beyond the calendar)."""
    source = DEFAULT_MODEL.read_text(encoding="utf-8").replace(
        'version = "', 'version = "hostile-', 1
    )
    weight = re.search(r"(?m)^weight = .*$", source)
    assert weight is not None and "people_change_days = 90" in source
    return {
        "infinite weight": source.replace(weight[0], "weight = inf", 1),
        "huge weight": source.replace(weight[0], "weight = 1e308", 1),
        "days beyond the calendar": source.replace(
            "people_change_days = 90", "people_change_days = 1000000000000", 1
        ),
        "integer beyond int64": source.replace(
            "people_change_days = 90", f"people_change_days = {2**64}", 1
        ),
        # Past Python's 4,300 digits an integer does not read at all: it was a 409
        # "version exists" (found from outside).
        "integer of 5,000 digits": source.replace(
            "people_change_days = 90", "people_change_days = " + "9" * 5000, 1
        ),
    }


def _hostile_alerting() -> dict[str, str]:
    source = default_alerting_source().replace('version = "', 'version = "hostile-', 1)
    assert "group_wait = " in source
    return {
        f"group_wait = {bad}": source.replace("group_wait = ", f"group_wait = {bad} #", 1)
        for bad in ('"99999999d"', "-5", "inf", "nan", "1e300", str(2**64), "9" * 5000)
    }


async def test_values_that_would_break_scoring_or_delivery_are_refused(
    kafka_settings: Settings,
) -> None:
    async with scored_account(kafka_settings) as (hw, admin), _client(hw, admin) as c:
        failures = []
        for route, documents in (
            ("/v1/health-model", _hostile_models()),
            ("/v1/alert-rules", _hostile_alerting()),
        ):
            for what, body in documents.items():
                r = await c.put(route, content=body.encode())
                if r.status_code != 422:
                    failures.append(f"{route} {what} → {r.status_code} {r.text[:200]}")
        # Scoring goes on with the model in force.
        events = [usage(ACCOUNT, "late-user", days_ago=0.01)]
        assert (await c.post("/v1/events", json={"events": events})).status_code == 202
        await wait_for(lambda: hw.has_usage_events(ACCOUNT, 10), timeout=60, what="scored")
    assert failures == []
