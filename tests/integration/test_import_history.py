"""`healthwatch import` of a history: one score row per account per day (quiet days
included), and the alerts still true at the end opened without a notice, through
the real alerts service (Kafka, PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select

from services.scoring.backfill import import_files
from services.scoring.metrics import ScoringMetrics
from services.scoring.processor import ScoringProcessor
from shared.config import Settings
from shared.storage.tables import alerts, deliveries, health_daily, import_alerts
from tests.support.harness import alert_stored, running, wait_for

pytestmark = pytest.mark.integration

DAYS = 20
# The history's last day: three days ago, so the import's sweep adds today apart.
LAST = datetime.now(UTC).date() - timedelta(days=3)
FIRST = LAST - timedelta(days=DAYS - 1)
ANNA, CARL = "anna@example.com", "carl@example.com"


def day(n: int) -> date:
    return FIRST + timedelta(days=n)


def _at(n: int, hour: int = 10) -> str:
    return datetime.combine(day(n), datetime.min.time(), UTC).replace(hour=hour).isoformat()


def history() -> list[dict[str, Any]]:
    """Three accounts over DAYS days, in time order:
    - low: 2 of 50 seats active every day (low activity from its first week to the end);
    - was: 1 of 10 seats for 10 days (low activity), then 8 (recovered by the end);
    - fine: 3 users of 3 seats, 4 from day 12 (a later fact), enterprise from day 12;
      ticket T1 open from day 5 to day 15. It also says nothing on days 16-17 (quiet)."""
    events: list[dict[str, Any]] = [
        _facts("low", 0, seats_purchased=50, owner={"email": ANNA}, tier="strategic"),
        _facts("was", 0, seats_purchased=10, owner={"email": ANNA}),
        _facts("fine", 0, seats_purchased=3, owner={"email": CARL}, tier="non-focus"),
    ]
    for n in range(DAYS):
        events += [_use("low", u, n) for u in range(2)]
        events += [_use("was", u, n) for u in range(1 if n < 10 else 8)]
        if n not in (16, 17):
            events += [_use("fine", u, n) for u in range(3)]
        if n == 5:
            events.append(_ticket("fine", "T1", "open", n))
        if n == 12:
            events.append(_facts("fine", n, seats_purchased=4, tier="enterprise"))
        if n == 15:
            events.append(_ticket("fine", "T1", "solved", n, solved_at=_at(n, 11)))
    return events


def _facts(account: str, n: int, **fields: Any) -> dict[str, Any]:
    return {
        "kind": "account",
        "event_id": f"f-{account}-{n}",
        "account_id": account,
        "name": f"{account} Inc",
        "occurred_at": _at(n, 8),
        **fields,
    }


def _use(account: str, user: int, n: int) -> dict[str, Any]:
    return {
        "kind": "usage",
        "event_id": f"u-{account}-{user}-{n}",
        "account_id": account,
        "user_id": f"{account}-u{user}",
        "event": "login",
        "occurred_at": _at(n),
    }


def _ticket(account: str, ticket_id: str, status: str, n: int, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "ticket",
        "event_id": f"t-{ticket_id}-{n}",
        "account_id": account,
        "ticket_id": ticket_id,
        "status": status,
        "priority": "normal",
        "created_at": _at(5, 11),
        "occurred_at": _at(n, 11),
        **extra,
    }


def write_history(tmp_path: Path, *, split: bool = False) -> list[Path]:
    """The history as one file, or (``split``) as a usage file and a CRM and tickets
    file, each in time order, as exports from two systems come."""
    events = history()
    parts = {"history": events}
    if split:
        parts = {
            "usage": [e for e in events if e["kind"] == "usage"],
            "crm": [e for e in events if e["kind"] != "usage"],
        }
    paths = []
    for name, part in parts.items():
        path = tmp_path / f"{name}.ndjson"
        path.write_bytes(b"\n".join(orjson.dumps(e) for e in part) + b"\n")
        paths.append(path)
    return paths


async def test_import_scores_every_day_and_opens_what_is_still_true(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    async with running(kafka_settings, ingest=False, scoring=False) as hw:
        metrics = ScoringMetrics(CollectorRegistry())
        report = await import_files(
            write_history(tmp_path),
            lambda sink: ScoringProcessor(hw.rt.engine, sink, kafka_settings, metrics),
            batch_size=40,  # several batches: days are scored as the history is read
            alerts_to=hw.rt.bus.producer,
        )
        assert report.rejected == [] and report.days_scored == 3 * DAYS
        async with hw.rt.engine.connect() as conn:
            h = health_daily.c
            rows = await conn.execute(
                select(h.account_id, func.count(), func.count(h.day.distinct()))
                .where(h.day.between(FIRST, LAST))
                .group_by(h.account_id)
            )
            assert {a: (n, d) for a, n, d in rows} == {
                a: (DAYS, DAYS) for a in ("low", "was", "fine")
            }
            # The sweep brought every account to today besides.
            today = await conn.execute(select(func.count()).where(h.day > LAST))
            assert today.scalar() == 3

        # What was true at the end is open; what fired and recovered in the past is not.
        opened = {(a.account_id, a.rule) for a in report.alerts.values() if a.status == "firing"}
        assert ("low", "low_activity") in opened and ("was", "low_activity") not in opened
        assert any(a.account_id == "was" for a in report.alerts.values())  # it had fired
        assert report.alerts_opened == len(opened)
        still = {a.alert_id: a for a in report.alerts.values() if a.status == "firing"}
        for alert_id in still:
            await alert_stored(hw, alert_id)
        low = next(i for i, a in still.items() if (a.account_id, a.rule) == ("low", "low_activity"))
        async with hw.rt.engine.connect() as conn:
            row = (await conn.execute(select(alerts).where(alerts.c.alert_id == low))).one()
            assert row.status == "firing" and row.payload["imported"] is True
            # Nobody is told of the past: no notice queued for any opened alert.
            assert (await conn.execute(select(func.count()).select_from(deliveries))).scalar() == 0


class _Stopped(Exception):
    """The import's process ends here (a crash, Ctrl-C)."""


async def test_an_import_stopped_halfway_still_opens_what_is_true_at_its_end(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    """`low` fires low_activity in its first week, in the first half of the file; the run
    that finishes the import never sees it fire, yet opens it at the end."""
    async with running(kafka_settings, ingest=False, scoring=False) as hw:
        metrics = ScoringMetrics(CollectorRegistry())
        paths = write_history(tmp_path)
        half = len(history()) // 2

        def stop_halfway(name: str, lines: int, total: int) -> None:
            assert total == len(history())
            if lines >= half:
                raise _Stopped

        def processor(sink: Any) -> ScoringProcessor:
            return ScoringProcessor(hw.rt.engine, sink, kafka_settings, metrics)

        with pytest.raises(_Stopped):
            await import_files(
                paths, processor, batch_size=40, progress=stop_halfway, alerts_to=hw.rt.bus.producer
            )
        async with hw.rt.engine.connect() as conn:
            ids = (await conn.execute(select(import_alerts.c.alert_id))).scalars().all()
        assert any(alert_id.startswith("low:") for alert_id in ids)  # held when it stopped
        resumed: list[tuple[int, int]] = []
        report = await import_files(
            paths,
            processor,
            batch_size=40,
            alerts_to=hw.rt.bus.producer,
            progress=lambda name, lines, total: resumed.append((lines, total)),
        )
        assert report.skipped_already_imported >= half
        # The bar starts where the import resumes, not at 0.
        assert resumed[0][0] >= half and resumed[-1] == (len(history()), len(history()))
        assert not any(
            (a.account_id, a.rule) == ("low", "low_activity") for a in report.alerts.values()
        )  # this run did not see it fire
        low = select(alerts).where(alerts.c.account_id == "low", alerts.c.rule == "low_activity")

        async def opened() -> bool:
            async with hw.rt.engine.connect() as conn:
                return (await conn.execute(low)).first() is not None

        await wait_for(opened, timeout=60, what="low's alert opened")
        async with hw.rt.engine.connect() as conn:
            row = (await conn.execute(low)).one()
            assert row.status == "firing" and row.payload["imported"] is True
            assert (await conn.execute(select(func.count()).select_from(deliveries))).scalar() == 0
            held = await conn.execute(select(func.count()).select_from(import_alerts))
            assert held.scalar() == 0  # let go once published
