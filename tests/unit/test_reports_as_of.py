"""A report for a past period says what a report made on its last day said: the
period's use (days that have left the usage window since, read from the long history),
the score, seats, tier, peers and tickets as they were then."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from services.reports.data import KINDS, build_report
from services.scoring import explain
from services.scoring.api import _health_as_of
from services.scoring.backfill import import_files
from services.scoring.facts_history import record_facts
from services.scoring.metrics import ScoringMetrics
from services.simulate_history import write_history
from shared.contracts.events import AccountFacts
from shared.storage.tables import account_health, accounts, tickets
from tests.support.factories import EngineFactory, ProcessorFactory

LAST = date(2026, 11, 1)
SHANGHAI = ZoneInfo("Asia/Shanghai")
REPORT_END = date(2026, 6, 20)  # 134 days before the history's end: out of the window


async def test_a_report_for_a_past_period_says_what_it_said_then(
    engine_factory: EngineFactory, processor_factory: ProcessorFactory, tmp_path: Path
) -> None:
    whole = tmp_path / "whole.ndjson"
    write_history(whole, tmp_path / "churn.csv", accounts=6, days=220, end=LAST)
    cut = datetime.combine(REPORT_END + timedelta(days=1), datetime.min.time(), UTC)
    lines = whole.read_bytes().splitlines()
    before = [
        line for line in lines if datetime.fromisoformat(orjson.loads(line)["occurred_at"]) < cut
    ]
    then = tmp_path / "then.ndjson"
    then.write_bytes(b"\n".join(before) + b"\n")

    async def imported(path: Path, name: str) -> object:
        engine = await engine_factory(f"sqlite+aiosqlite:///{tmp_path}/{name}.db")
        metrics = ScoringMetrics(CollectorRegistry())
        report = await import_files(
            [path],
            lambda sink: processor_factory(engine, producer=sink, metrics=metrics),
            sweep=False,
        )
        assert report.rejected == []
        return engine

    now_engine, then_engine = await imported(whole, "now"), await imported(then, "then")
    accounts = sorted({orjson.loads(line)["account_id"] for line in before})
    in_danger = cards_in_danger = 0
    for account in accounts:
        for kind in KINDS:
            async with now_engine.connect() as conn:  # type: ignore[attr-defined]
                late = await build_report(conn, account, kind, REPORT_END)
            async with then_engine.connect() as conn:  # type: ignore[attr-defined]
                on_time = await build_report(conn, account, kind, REPORT_END)
            assert late == on_time, (account, kind)
        async with now_engine.connect() as conn:  # type: ignore[attr-defined]
            newest = await build_report(conn, account, "qbr", LAST)
            health = await _health_as_of(conn, account, LAST, UTC)
        in_danger += bool(newest.current.get("danger_causes"))
        # The health read as of that day names the same causes, shaped as the newest
        # score's: code, level and the sentence (made again from the day's inputs; the
        # history keeps codes), the very sentences the card holds.
        causes = health["danger_causes"]
        assert [c["code"] for c in causes] == newest.current.get("danger_causes", [])
        assert all(c["level"] in ("high", "normal", "mild") for c in causes)
        async with now_engine.connect() as conn:  # type: ignore[attr-defined]
            card = (
                await conn.execute(
                    select(account_health.c.components).where(
                        account_health.c.account_id == account
                    )
                )
            ).scalar_one()
        if card[explain.DAY] == LAST.isoformat():
            assert causes == card["danger"]["causes"]
            cards_in_danger += bool(causes)
    # Accounts in danger then are reported too (their causes as stored: codes).
    assert in_danger, "no account of the history was in danger: the test misses that case"
    assert cards_in_danger, "no card as of the last day named a cause: nothing compared"


async def test_a_reports_tickets_are_dated_in_the_services_zone_for_an_account_without_one(
    engine_factory: EngineFactory, tmp_path: Path
) -> None:
    """Found from outside: with HEALTHWATCH_TIMEZONE=Asia/Shanghai the report's period was
    Shanghai days, its tickets dated in UTC (a morning ticket on the day before)."""
    engine = await engine_factory(f"sqlite+aiosqlite:///{tmp_path}/zone.db")
    created = datetime(2026, 12, 6, 22, 31, tzinfo=UTC)  # 06:31 on the 7th in Shanghai
    async with engine.begin() as conn:  # type: ignore[attr-defined]
        await conn.execute(
            accounts.insert().values(
                account_id="u5", name="U5", facts={}, facts_occurred_at=created, updated_at=created
            )
        )
        await conn.execute(
            tickets.insert().values(
                ticket_id="T-1",
                account_id="u5",
                status="open",
                priority="normal",
                type="question",
                created_at=created,
                occurred_at=created,
                event_id="t1",
            )
        )
    async with engine.connect() as conn:  # type: ignore[attr-defined]
        shanghai = await build_report(conn, "u5", "usage", date(2026, 12, 7), SHANGHAI)
        utc = await build_report(conn, "u5", "usage", date(2026, 12, 7))
    assert [t["opened"] for t in shanghai.tickets] == [date(2026, 12, 7)]
    assert [t["opened"] for t in utc.tickets] == [date(2026, 12, 6)]


async def test_a_reports_comparable_customers_are_customers(
    engine_factory: EngineFactory, tmp_path: Path
) -> None:
    """The tier's churned accounts were among the "comparable customers", their zeros
    pulling the averages down (found from outside)."""
    engine = await engine_factory(f"sqlite+aiosqlite:///{tmp_path}/peers.db")
    at = datetime(2026, 11, 1, tzinfo=UTC)
    stages = {"a": "stable", "b": "renewal", "c": "churned", "d": None}
    events = [
        AccountFacts(
            event_id=f"f-{account}",
            account_id=account,
            occurred_at=at,
            tier="enterprise",
            seats_purchased=10,
            lifecycle_stage=stage,
        )
        for account, stage in stages.items()
    ]
    async with engine.begin() as conn:  # type: ignore[attr-defined]
        for event in events:
            await conn.execute(
                accounts.insert().values(
                    account_id=event.account_id, tier="enterprise", facts={},
                    facts_occurred_at=at, updated_at=at,
                )
            )  # fmt: skip
        await record_facts(conn, events)
    async with engine.connect() as conn:  # type: ignore[attr-defined]
        report = await build_report(conn, "a", "qbr", date(2026, 11, 30))
        churned = await build_report(conn, "c", "qbr", date(2026, 11, 30))
    assert report.tier_accounts == 3  # a, b and d: not the churned c
    assert churned.tier_accounts == 4  # its own report still compares it
