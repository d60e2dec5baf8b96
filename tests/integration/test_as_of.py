"""As-of reads after an imported history: the facts and tickets as they were that day
(the health and metrics API, a report ending that day), 422 beyond the kept daily
counts, and the whole portfolio's health on a date in one request (paged, CSV, a CSM
sees its own accounts); the contacts, NPS answers, failed payments and use known by
that day. PostgreSQL."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client import CollectorRegistry

from services.reports.data import build_report
from services.scoring.backfill import import_files
from services.scoring.metrics import ScoringMetrics
from services.scoring.processor import ScoringProcessor
from services.scoring.queries import scores_as_of
from shared.auth import Scope, create_key
from shared.config import Settings
from tests.integration.test_import_history import ANNA, LAST, day, write_history
from tests.support.harness import running

pytestmark = pytest.mark.integration


async def test_as_of_reads(kafka_settings: Settings, tmp_path: Path) -> None:
    async with running(kafka_settings, scoring=False, alerts=False) as hw:
        metrics = ScoringMetrics(CollectorRegistry())
        # Usage first, then the CRM's facts and the tickets: the days the second file
        # touches are scored again, with its facts and tickets.
        await import_files(
            write_history(tmp_path, split=True),
            lambda sink: ScoringProcessor(hw.rt.engine, sink, kafka_settings, metrics),
            batch_size=100,
        )
        anna = await create_key(hw.rt.engine, "anna", [Scope.read], csm_email=ANNA)
        then = day(10).isoformat()  # fine: 3 seats, non-focus, ticket T1 open
        async with hw.rt.engine.connect() as conn:
            rows = await scores_as_of(conn, day(10), ["fine"])
            assert rows["fine"].day == day(10) and rows["fine"].inputs["open_tickets"] == 1
        async with hw.client() as c:
            now = (await c.get("/v1/accounts/fine/metrics")).json()
            assert (now["seats_purchased"], now["open_tickets"]) == (4, 0)
            past = (await c.get("/v1/accounts/fine/metrics", params={"as_of": then})).json()
            assert (past["seats_purchased"], past["open_tickets"]) == (3, 1)
            assert past["active_users_7d"] == 3

            health = (await c.get("/v1/accounts/fine/health", params={"as_of": then})).json()
            assert (health["as_of"], health["scored_on"], health["tier"]) == (
                then,
                then,
                "non-focus",
            )
            newest = (await c.get("/v1/accounts/fine/health")).json()
            assert newest["tier"] == "enterprise"
            # The newest score's shape (the day's had answered the history's compact
            # one, found from outside): components as a list, causes, moves in words.
            assert set(health) == set(newest) | {"scored_on"}
            assert set(health["explanation"]) == set(newest["explanation"])
            part = health["explanation"]["components"][0]
            assert set(part) == set(newest["explanation"]["components"][0])
            assert part["raw"] is not None and part["label"] and part["group"]
            moved = health["explanation"]["changes"]
            assert set(moved) == {"since_previous", "since_7d", "since_30d"}
            assert moved["since_7d"] and moved["since_previous"]
            assert all("text" in entry for entries in moved.values() for entry in entries)
            chinese = await c.get(
                "/v1/accounts/fine/health",
                params={"as_of": then},
                headers={"Accept-Language": "zh-CN"},
            )
            worded = [e["text"] for e in chinese.json()["explanation"]["changes"]["since_7d"]]
            assert all(not text.isascii() for text in worded), worded
            before = {"as_of": (day(0) - timedelta(days=1)).isoformat()}
            assert (await c.get("/v1/accounts/fine/health", params=before)).status_code == 404

            # The daily counts reach back HEALTHWATCH_HISTORY_DAYS (730) before the newest
            # event, from that month's first day; measures over 30 days are answered from
            # 29 days after it, not older.
            oldest = (LAST - timedelta(days=729)).replace(day=1) + timedelta(days=29)
            ok = await c.get("/v1/accounts/fine/metrics", params={"as_of": oldest.isoformat()})
            assert ok.status_code == 200
            gone = await c.get(
                "/v1/accounts/fine/metrics",
                params={"as_of": (oldest - timedelta(days=1)).isoformat()},
            )
            assert gone.status_code == 422
            assert gone.json()["code"] == "as_of_beyond_retention"
            assert gone.json()["oldest_as_of"] == oldest.isoformat()
            assert "HEALTHWATCH_HISTORY_DAYS" in gone.json()["message"]

            bulk = (await c.get("/v1/health", params={"as_of": then})).json()
            assert bulk["total"] == 3 and [r["account_id"] for r in bulk["accounts"]] == [
                "fine",
                "low",
                "was",
            ]
            fine = bulk["accounts"][0]
            assert (fine["seats_purchased"], fine["tier"], fine["open_tickets"]) == (
                3,
                "non-focus",
                1,
            )
            assert fine["scored_on"] == then and fine["band"] in ("green", "yellow", "red")
            page = (
                await c.get("/v1/health", params={"as_of": then, "limit": 2, "offset": 2})
            ).json()
            assert page["total"] == 3 and [r["account_id"] for r in page["accounts"]] == ["was"]
            today = (await c.get("/v1/health")).json()
            assert today["total"] == 3 and today["accounts"][0]["seats_purchased"] == 4
            sheet = await c.get("/v1/health", params={"as_of": then, "format": "csv"})
            assert sheet.headers["content-type"].startswith("text/csv")
            rows = list(csv.DictReader(io.StringIO(sheet.content.decode("utf-8-sig"))))
            assert [r["account_id"] for r in rows] == ["fine", "low", "was"]
            assert rows[0]["open_tickets"] == "1" and sheet.headers["x-total-count"] == "3"
            assert (await c.get("/v1/health", params={"as_of": "1900-01-01"})).status_code == 422
            # A day to come has no score yet anywhere: 422, not yesterday's score.
            ahead = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
            for path in ("/v1/health", "/v1/accounts/fine/health"):
                refused = await c.get(path, params={"as_of": ahead})
                assert (refused.status_code, refused.json()["code"]) == (422, "as_of_in_future")

        # A report ending on a past day: the facts and the tickets open at its end.
        async with hw.rt.engine.connect() as conn:
            old = await build_report(conn, "fine", "usage", day(10))
            new = await build_report(conn, "fine", "usage", LAST)
        assert (old.figures.seats, old.tier, [t["ticket_id"] for t in old.open_tickets]) == (
            3,
            "non-focus",
            ["T1"],
        )
        assert (new.figures.seats, new.tier, new.open_tickets) == (4, "enterprise", [])

        async with httpx.AsyncClient(
            base_url=hw.url, headers={"Authorization": f"Bearer {anna}"}, timeout=30
        ) as c:
            mine = (await c.get("/v1/health", params={"as_of": then})).json()
            assert [r["account_id"] for r in mine["accounts"]] == ["low", "was"]
            assert (
                await c.get("/v1/accounts/fine/metrics", params={"as_of": then})
            ).status_code == 404


def _relationship_history(tmp_path: Path) -> list[Path]:
    """Account rel, used every day 0-9; before day 5 (D): a decision-maker visit on day
    2, answers 9 and 6 on days 1 and 3, a failed payment on day 4, the decision maker
    changed on day 3; after D: another visit on day 7, an answer 2 and a failed payment
    on day 8, the decision maker changed again on day 7. Usage first, then the CRM
    file in one batch: every contact, answer and payment is applied before the import
    scores the days again, so a day's score shows only those known by then if as-of
    reads keep to them."""

    def at(n: int) -> str:
        return f"{day(n).isoformat()}T10:00:00+00:00"

    def line(kind: str, n: int, **fields: Any) -> dict[str, Any]:
        return (
            {"kind": kind, "event_id": f"{kind}-{n}", "account_id": "rel"}
            | fields
            | {"occurred_at": at(n)}
        )

    usage = [line("usage", n, user_id="u1", event="login") for n in range(10)]

    def boss(name: str) -> list[dict[str, str]]:
        return [{"name": name, "role": "decision_maker"}]

    crm = [
        line("account", 0, seats_purchased=5, owner={"email": ANNA}, contacts=boss("Ann")),
        line("account", 3, contacts=boss("Bob")),
        line("account", 7, contacts=boss("Eve")),
        line("nps", 1, score=9),
        line("touchpoint", 2, touchpoint_kind="visit", contact_role="decision_maker"),
        line("nps", 3, score=6),
        line("payment", 4, status="failed"),
        line("touchpoint", 7, touchpoint_kind="visit", contact_role="decision_maker"),
        line("nps", 8, score=2),
        line("payment", 8, status="failed"),
    ]
    paths = []
    for name, events in (("usage", usage), ("crm", crm)):
        path = tmp_path / f"{name}.ndjson"
        path.write_bytes(b"\n".join(orjson.dumps(e) for e in events) + b"\n")
        paths.append(path)
    return paths


async def test_contacts_answers_and_payments_as_of_a_day(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    async with running(kafka_settings, scoring=False, alerts=False) as hw:
        metrics = ScoringMetrics(CollectorRegistry())
        await import_files(
            _relationship_history(tmp_path),
            lambda sink: ScoringProcessor(hw.rt.engine, sink, kafka_settings, metrics),
        )
        moment = "T10:00:00+00:00"
        async with hw.client() as c:
            now = (await c.get("/v1/accounts/rel/metrics")).json()
            then = (
                await c.get("/v1/accounts/rel/metrics", params={"as_of": day(5).isoformat()})
            ).json()
        assert {k: now[k] for k in RELATIONSHIP} == {
            "last_seen_at": day(9).isoformat() + moment,
            "last_touchpoint_at": day(7).isoformat() + moment,
            "last_decision_maker_contact_at": day(7).isoformat() + moment,
            "nps_latest": 2,
            "nps_previous": 6,
            "last_payment_failed_at": day(8).isoformat() + moment,
            "decision_maker_changed_at": day(7).isoformat() + moment,
        }
        assert {k: then[k] for k in RELATIONSHIP} == {
            "last_seen_at": day(5).isoformat() + "T00:00:00+00:00",  # the day is what counts
            "last_touchpoint_at": day(2).isoformat() + moment,
            "last_decision_maker_contact_at": day(2).isoformat() + moment,
            "nps_latest": 6,
            "nps_previous": 9,
            "last_payment_failed_at": day(4).isoformat() + moment,
            "decision_maker_changed_at": day(3).isoformat() + moment,
        }
        # The import's score of day 5 read the same (its days are scored as of each day).
        async with hw.rt.engine.connect() as conn:
            inputs = (await scores_as_of(conn, day(5), ["rel"]))["rel"].inputs
        assert {k: inputs[k] for k in SCORED} == {
            "days_since_last_use": 0,
            "days_since_touchpoint": 3,
            "days_since_decision_maker_contact": 3,
            "nps_latest": 6,
            "nps_trend": -3,
            "payment_failed_30d": 1,
        }


RELATIONSHIP = (
    "last_seen_at",
    "last_touchpoint_at",
    "last_decision_maker_contact_at",
    "nps_latest",
    "nps_previous",
    "last_payment_failed_at",
    "decision_maker_changed_at",
)
SCORED = (
    "days_since_last_use",
    "days_since_touchpoint",
    "days_since_decision_maker_contact",
    "nps_latest",
    "nps_trend",
    "payment_failed_30d",
)
