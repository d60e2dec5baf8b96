"""One batch of records → one database transaction (state + offsets + outgoing messages)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.scoring import danger, explain, history
from services.scoring import score as inputs
from services.scoring.measures import Measures, load_measures
from services.scoring.metrics import ScoringMetrics
from services.scoring.model.evaluate import Evaluation, evaluate
from services.scoring.model.store import ModelStore
from services.scoring.state import apply_events
from shared.bus.base import OutMessage, Producer, Record
from shared.bus.factory import ALERTS_TOPIC, DEADLETTER_TOPIC
from shared.clock import Clock, utcnow
from shared.config import Settings
from shared.contracts.alerts import AlertEvent, Severity
from shared.contracts.events import KINDS, Event, Owner
from shared.contracts.wire import UndecodableRecord, decode_event, encode_event
from shared.storage.db import insert_ignore, upsert
from shared.storage.offsets import next_offsets, save_offsets
from shared.storage.tables import account_health, accounts, processed_events, rule_state

log = logging.getLogger(__name__)


class ScoringProcessor:
    def __init__(
        self,
        engine: AsyncEngine,
        producer: Producer,
        settings: Settings,
        metrics: ScoringMetrics,
        *,
        models: ModelStore | None = None,
        clock: Clock = utcnow,
    ):
        self._models = models or ModelStore()
        self._engine = engine
        self._producer = producer
        self._settings = settings
        self._metrics = metrics
        self._clock = clock
        self._kind_of_topic = {settings.topic(k): k for k in KINDS}

    async def handle(self, records: Sequence[Record]) -> None:
        """Apply ``records`` exactly once: state, offsets and outgoing alerts and
        dead letters commit together, or not at all (the caller then rewinds)."""
        if not records:
            return
        started = time.perf_counter()
        events, dead = self._decode(records)
        now = self._clock()
        async with self._engine.begin() as conn:
            fresh = await self._drop_duplicates(conn, events, now)
            applied = await apply_events(
                conn,
                fresh,
                window_days=self._settings.window_days,
                grace_days=self._settings.late_grace_days,
                now=now,
                tz=self.zone,
            )
            alerts = await self.rescore(conn, applied.accounts, now)
            outgoing = dead + self.alert_messages(alerts)
            if outgoing:
                # Before the commit: if the bus fails, the whole batch is retried, and
                # a replayed alert carries the same id, so the alerts service stores it once.
                await self._producer.send_many(outgoing, conn)
            await save_offsets(conn, self._settings.consumer_group_scoring, next_offsets(records))
        m = self._metrics
        m.batch_seconds.observe(time.perf_counter() - started)
        for e in fresh:
            m.events.labels(e.kind, "scored").inc()
        m.events.labels("any", "duplicate").inc(len(events) - len(fresh))
        m.late_events.inc(applied.late_events)
        m.dead_letters.inc(len(dead))
        for a in alerts:
            m.alerts.labels(a.rule).inc()
            log.info("alert %s: %s", a.alert_id, a.title)
        if fresh:
            log.debug(
                "scored %d events (%d duplicates) for %d accounts",
                len(fresh),
                len(events) - len(fresh),
                len(applied.accounts),
            )

    def _decode(self, records: Sequence[Record]) -> tuple[list[Event], list[OutMessage]]:
        events: list[Event] = []
        dead: list[OutMessage] = []
        for r in records:
            try:
                events.append(decode_event(r.value, self._kind_of_topic.get(r.topic)))
            except UndecodableRecord as exc:
                log.warning("dead-lettering %s[%d]@%d: %s", r.topic, r.partition, r.offset, exc)
                dead.append(
                    OutMessage(
                        self._settings.topic(DEADLETTER_TOPIC),
                        r.key,
                        r.value or b"",
                        {
                            "reason": str(exc)[:1000],
                            "source_topic": r.topic,
                            "source_partition": str(r.partition),
                            "source_offset": str(r.offset),
                        },
                    )
                )
        return events, dead

    async def _drop_duplicates(
        self, conn: AsyncConnection, events: list[Event], now: Any
    ) -> list[Event]:
        unique: dict[str, Event] = {}
        for e in events:
            unique.setdefault(e.event_id, e)
        if not unique:
            return []
        stmt = (
            insert_ignore(conn, processed_events)
            .on_conflict_do_nothing()
            .returning(processed_events.c.event_id)
        )
        inserted = set(
            (
                await conn.execute(
                    stmt,
                    [
                        {
                            "event_id": e.event_id,
                            "kind": e.kind,
                            "account_id": e.account_id,
                            "occurred_at": e.occurred_at,
                            "processed_at": now,
                        }
                        for e in unique.values()
                    ],
                )
            ).scalars()
        )
        return [e for e in unique.values() if e.event_id in inserted]

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    @property
    def zone(self) -> ZoneInfo:
        """The zone whose calendar days activity is counted in."""
        return self._settings.zone

    @property
    def group_id(self) -> str:
        """The consumer group whose offsets this processor commits."""
        return self._settings.consumer_group_scoring

    def alert_messages(self, alerts: Sequence[AlertEvent]) -> list[OutMessage]:
        topic = self._settings.topic(ALERTS_TOPIC)
        return [OutMessage(topic, a.account_id.encode(), encode_event(a)) for a in alerts]

    async def rescore(
        self, conn: AsyncConnection, ids: set[str], now: Any, as_of: date | None = None
    ) -> list[AlertEvent]:
        """Score ``ids`` as of their newest event (or ``as_of``); record what changed and
        return the alerts that fired. An unchanged score writes nothing."""
        measures = await load_measures(conn, ids, as_of, self.zone)
        if not measures:
            return []
        facts = {
            r.account_id: r
            for r in await conn.execute(select(accounts).where(accounts.c.account_id.in_(ids)))
        }
        states = {
            r.account_id: r
            for r in await conn.execute(
                select(rule_state).where(
                    rule_state.c.account_id.in_(ids),
                    rule_state.c.rule == inputs.LOW_ACTIVITY_RULE,
                )
            )
        }
        earlier = await history.load_previous(conn, ids)
        days = {m.account_id: m.as_of for m in measures}
        past = await history.load_past_inputs(conn, days)
        model, _ = await self._models.current(conn)
        names = explain.labels(model)
        health_rows, daily_rows, band_rows, state_rows, alerts = [], [], [], [], []
        for m in measures:
            raw = inputs.model_inputs(m, model.depth, model.sla)
            s = evaluate(model, raw, inputs.segment_of(m))
            risk = danger.assess(m, raw, model.danger)
            shown = {
                "score": s.value,
                "active_users_7d": m.active_users_7d,
                "events_7d": m.events_7d,
                **raw,
                "danger": [c["code"] for c in risk["causes"]],
            }
            before = earlier.get(m.account_id)
            why = explanation(s)
            why["danger"] = risk
            why["changes"] = {
                "since_previous": explain.changes(shown, before.inputs if before else None, names),
                **{
                    f"since_{back}d": explain.changes(shown, past.get((m.account_id, back)), names)
                    for back in history.LOOKBACK_DAYS
                },
            }
            unchanged = before is not None and before.inputs == shown and before.score == s.value
            change = (
                None
                if unchanged
                else history.band_change(m.account_id, m.as_of_time, before, s.band, s.value)
            )
            if change is not None:
                band_rows.append(change)
                if before is not None:
                    log.info(
                        "%s: health %s → %s (%s → %s)",
                        m.account_id,
                        before.score,
                        s.value,
                        before.band,
                        s.band,
                    )
            if not unchanged:
                health_rows.append(
                    {
                        "account_id": m.account_id,
                        "active_users_7d": m.active_users_7d,
                        "active_users_30d": m.active_users_30d,
                        "events_7d": m.events_7d,
                        "open_tickets": m.open_tickets,
                        "score": s.value,
                        "band": s.band,
                        "danger_level": risk["level"],
                        "inputs": shown,
                        "components": why,
                    }
                )
                daily_rows.append(
                    {
                        "account_id": m.account_id,
                        "day": m.as_of,
                        "score": s.value,
                        "band": s.band,
                        "inputs": shown,
                        "explanation": why,
                    }
                )
            firing = inputs.low_activity(m, self._settings.low_activity_ratio)
            previous = states.get(m.account_id)
            if previous is not None and previous.firing == firing:
                continue
            count = (previous.fire_count if previous else 0) + (1 if firing else 0)
            state_rows.append(
                {
                    "account_id": m.account_id,
                    "rule": inputs.LOW_ACTIVITY_RULE,
                    "firing": firing,
                    "fire_count": count,
                    "changed_at": now,
                }
            )
            if firing:
                alerts.append(self._low_activity_alert(m, s, count, facts.get(m.account_id)))
        if health_rows:
            # One executemany (pipelined by the driver), not a statement per account.
            columns = [k for k in health_rows[0] if k != "account_id"]
            await conn.execute(
                account_health.update()
                .where(account_health.c.account_id == bindparam("p_account_id"))
                .values({c: bindparam(f"p_{c}") for c in columns}),
                [{f"p_{k}": v for k, v in r.items()} for r in health_rows],
            )
        await history.record(conn, daily_rows, band_rows)
        await upsert(
            conn,
            rule_state,
            state_rows,
            keys=["account_id", "rule"],
            update=["firing", "fire_count", "changed_at"],
        )
        return alerts

    def _low_activity_alert(self, m: Measures, s: Evaluation, count: int, facts: Any) -> AlertEvent:
        seats = m.seats_purchased or 0
        share = m.active_users_7d / seats if seats else 0.0
        name = (facts.name if facts is not None else None) or m.account_id
        owner = None
        if facts is not None and (facts.owner_email or facts.owner_slack_id):
            owner = Owner(email=facts.owner_email, slack_id=facts.owner_slack_id)
        threshold = self._settings.low_activity_ratio
        return AlertEvent(
            alert_id=f"{m.account_id}:{inputs.LOW_ACTIVITY_RULE}:{count}",
            account_id=m.account_id,
            account_name=name,
            rule=inputs.LOW_ACTIVITY_RULE,
            severity=Severity.critical,
            title=f"{name}: only {share:.0%} of seats active this week — edge of churn",
            summary=(
                f"{m.active_users_7d} of {seats} purchased seats were active in the 7 days "
                f"to {m.as_of.isoformat()} ({share:.0%}, threshold {threshold:.0%}). "
                f"Health score {s.value} ({s.band})."
            ),
            score=s.value,
            band=s.band,
            owner=owner,
            fired_at=self._clock(),
            details={
                "active_users_7d": m.active_users_7d,
                "seats_purchased": seats,
                "active_share_7d": round(share, 4),
                "threshold": threshold,
                "as_of": m.as_of.isoformat(),
                "health": explanation(s),
            },
        )


def explanation(s: Evaluation) -> dict[str, Any]:
    """What the score is made of, stored with it and sent with alerts."""
    return {
        "model_version": s.model_version,
        "profile": s.profile,
        "groups": {g: round(v, 1) for g, v in s.groups.items()},
        "capped_by": s.capped_by,
        "missing": s.missing,
        "components": [c.as_dict() for c in s.components],
    }
