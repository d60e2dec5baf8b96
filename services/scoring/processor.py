"""One batch of records → one database transaction (state + offsets + outgoing messages)."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.scoring import danger, explain, history, inputs, rules
from services.scoring.measures import Measures, load_measures
from services.scoring.metrics import ScoringMetrics
from services.scoring.model.evaluate import Evaluation, evaluate
from services.scoring.model.store import ModelStore
from services.scoring.rules import RuleState, Transition
from services.scoring.state import apply_events
from shared.alerting.schema import Rule
from shared.alerting.store import AlertingStore, alerting_store
from shared.bus.base import OutMessage, Producer, Record
from shared.bus.deadletter import dead_letter_message
from shared.bus.factory import ALERTS_TOPIC, DEADLETTER_TOPIC
from shared.clock import Clock, utcnow
from shared.config import Settings
from shared.contracts.alerts import AlertEvent
from shared.contracts.events import KINDS, Event, Owner
from shared.contracts.wire import UndecodableRecord, decode_event, encode_event
from shared.storage.db import bulk_insert, upsert
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
        alerting: AlertingStore | None = None,
        clock: Clock = utcnow,
    ):
        self._models = models or ModelStore()
        self._alerting = alerting or alerting_store(settings)
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
        for kind, count in Counter(e.kind for e in fresh).items():
            m.events.labels(kind, "scored").inc(count)
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
                log.warning("dead-lettering %s[%d]@%d: %r", r.topic, r.partition, r.offset, exc)
                dead.append(
                    dead_letter_message(r, str(exc), self._settings.topic(DEADLETTER_TOPIC))
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
        stmt, params = bulk_insert(
            conn,
            processed_events,
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
        stmt = stmt.on_conflict_do_nothing().returning(processed_events.c.event_id)
        inserted = set((await conn.execute(stmt, params)).scalars())
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
        if conn.dialect.name == "postgresql" and ids:
            # Another consumer may rescore one of these accounts at the same time (the old
            # owner of a ticket moved between accounts, a sweep): lock the rows, in one
            # order everywhere, so the measures below are read after its commit and
            # neither transaction writes a score computed from stale state. (SQLite
            # transactions are serialized already.)
            await conn.execute(
                select(account_health.c.account_id)
                .where(account_health.c.account_id.in_(ids))
                .order_by(account_health.c.account_id)
                .with_for_update()
            )
        measures = await load_measures(conn, ids, as_of, self.zone)
        if not measures:
            return []
        alerting, _ = await self._alerting.current(conn)
        states = {
            (r.account_id, r.rule): RuleState(
                r.status, r.since, r.cleared_at, r.severity, r.fire_count, r.revision
            )
            for r in await conn.execute(select(rule_state).where(rule_state.c.account_id.in_(ids)))
        }
        earlier = await history.load_previous(conn, ids)
        days = {m.account_id: m.as_of for m in measures}
        backs = {c.over_days for r in alerting.rules for c in r.when if c.change is not None}
        past = await history.load_past_inputs(conn, days, {*history.LOOKBACK_DAYS, *backs})
        model, _ = await self._models.current(conn)
        names = explain.labels(model)
        health_rows, daily_rows, band_rows, state_rows = [], [], [], []
        fired: list[_Fired] = []
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
            unchanged = before is not None and before.inputs == shown and before.score == s.value
            change = (
                None
                if unchanged
                else history.band_change(m.account_id, m.as_of_time, before, s.band, s.value)
            )
            if change is not None:
                band_rows.append(change)
                if before is None or before.band is None:
                    log.info("%s: first health score %s (%s)", m.account_id, s.value, s.band)
                else:
                    log.info(
                        "%s: health %s → %s (%s → %s)",
                        m.account_id,
                        before.score,
                        s.value,
                        before.band,
                        s.band,
                    )
            if not unchanged:
                # The explanation is built only for a score that will be written.
                why = explanation(s)
                why["danger"] = risk
                why["changes"] = {
                    "since_previous": explain.changes(
                        shown, before.inputs if before else None, names
                    ),
                    **{
                        f"since_{back}d": explain.changes(
                            shown, past.get((m.account_id, back)), names
                        )
                        for back in history.LOOKBACK_DAYS
                    },
                }
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
                        "explanation": history.compact(why),
                    }
                )
            values = rules.rule_values(m, shown, s.band, risk["level"])
            values["danger_text"] = ", ".join(c["text"] for c in risk["causes"]) or "no cause"
            then = {
                back: past[(m.account_id, back)] for back in backs if (m.account_id, back) in past
            }
            # Rules run in event time; a sweep scores a quiet account as of today, so its
            # clock is now (pending periods and cooldowns go on while nothing arrives).
            at = m.as_of_time if as_of is None else max(m.as_of_time, now)
            for rule in alerting.rules:
                before_state = states.get((m.account_id, rule.id), RuleState())
                after_state, told = rules.step(rule, before_state, values, then, at)
                if after_state != before_state:
                    state_rows.append(_state_row(m.account_id, rule.id, after_state, now))
                if told is not None:
                    fired.append(_Fired(m, rule, told, values, then, shown, s))
        # Alerts are rare: the account facts they name (owner, sales owner) are read
        # only for the accounts that have one.
        alerts: list[AlertEvent] = []
        if fired:
            owners = {f.measures.account_id for f in fired}
            facts = {
                r.account_id: r
                for r in await conn.execute(
                    select(accounts).where(accounts.c.account_id.in_(owners))
                )
            }
            for f in fired:
                alert = self._alert(f, facts.get(f.measures.account_id))
                # What moved over the week, in words, for the notice (top 5).
                week = past.get((f.measures.account_id, 7))
                alert.details["changes"] = explain.changes(f.shown, week, names)[:5]
                alerts.append(alert)
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
            update=[
                "status",
                "since",
                "cleared_at",
                "severity",
                "revision",
                "fire_count",
                "changed_at",
            ],
        )
        return alerts

    def _alert(self, f: _Fired, facts: Any) -> AlertEvent:
        m, rule, told, values, past, s = f.measures, f.rule, f.told, f.values, f.past, f.score
        name = (facts.name if facts is not None else None) or m.account_id
        fields = (facts.facts or {}).get("fields", {}) if facts is not None else {}
        owner = None
        if facts is not None and (facts.owner_email or facts.owner_slack_id):
            owner = Owner(email=facts.owner_email, slack_id=facts.owner_slack_id)
        sales = fields.get("sales_owner")
        context = {**values, "name": name, "change_text": rules.change_text(rule, values, past)}
        title = rules.render(rule.title or "{name}: " + (rule.description or rule.id), context)
        summary = rules.render(rule.summary or rule.description, context)
        if told.status == "resolved":
            title = f"Resolved: {title}"
        return AlertEvent(
            alert_id=rules.alert_id(m.account_id, rule.id, told.fire_count),
            revision=told.revision,
            account_id=m.account_id,
            account_name=name,
            rule=rule.id,
            severity=told.severity,
            status="resolved" if told.status == "resolved" else "firing",
            title=title,
            summary=summary,
            score=s.value,
            band=s.band,
            owner=owner,
            tier=m.tier,
            sales_owner=Owner.model_validate(sales) if isinstance(sales, dict) else None,
            fired_at=m.as_of_time,
            details={
                "rule_type": rule.type.value,
                "as_of": m.as_of.isoformat(),
                "values": {k: values.get(k) for k in sorted(rule.measures())},
                "health": explanation(s),
            },
        )


@dataclass(frozen=True)
class _Fired:
    """A rule that told something in this batch, with what its notice needs."""

    measures: Measures
    rule: Rule
    told: Transition
    values: dict[str, Any]
    past: dict[int, Any]  # over_days → inputs then
    shown: dict[str, Any]  # the score's inputs, for "what changed"
    score: Evaluation


def _state_row(account_id: str, rule_id: str, st: RuleState, now: Any) -> dict[str, Any]:
    return {
        "account_id": account_id,
        "rule": rule_id,
        "status": st.status,
        "since": st.since,
        "cleared_at": st.cleared_at,
        "severity": st.severity,
        "revision": st.revision,
        "fire_count": st.fire_count,
        "changed_at": now,
    }


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
