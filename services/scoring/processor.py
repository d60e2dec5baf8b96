"""One batch of records → one database transaction (state + offsets + outgoing messages)."""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Row, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.scoring import history
from services.scoring.as_of import measures_as_of
from services.scoring.measures import load_measures
from services.scoring.metrics import ScoringMetrics
from services.scoring.model.store import ModelStore
from services.scoring.plans.hook import step_plans
from services.scoring.plans.store import plan_names
from services.scoring.plans.templates import PlanTemplates, plan_templates
from services.scoring.rules import RuleState
from services.scoring.state import Applied, Health, apply_events, drop_duplicates, write_applied
from services.scoring.step import (
    AccountContacts,
    AccountHistory,
    Fired,
    ModelAndRules,
    ScoredAccount,
    alert_event,
    score_account,
)
from services.scoring.usage import DEDUP_HOURS
from services.scoring.usage_store import StateKeeper, Usage, UsageCache
from services.scoring.workload.records import record_relationship
from shared.alerting.store import AlertingStore, alerting_store
from shared.bus.base import OutMessage, Producer, Record
from shared.bus.deadletter import dead_letter_message
from shared.bus.factory import ALERTS_TOPIC, DEADLETTER_TOPIC
from shared.bus.offsets import next_offsets, save_offsets
from shared.bus.outbox import MessageOutbox
from shared.clock import Clock, from_epoch, utcnow
from shared.config import Settings
from shared.contracts.alerts import AlertEvent
from shared.contracts.events import KINDS, Event, Owner, future_times
from shared.contracts.wire import UndecodableRecord, decode_event, encode_event
from shared.people import stored_owner
from shared.storage.db import among, upsert
from shared.storage.tables import account_health, accounts, rule_state
from shared.worker import describe, is_transient

log = logging.getLogger(__name__)

# The pseudo-topic of an import's file is this and the file's name ("import:usage.ndjson").
IMPORT_TOPIC = "import:"


# Records decoded and applied at a time within a batch. A batch is one transaction (its
# states, offsets and messages commit together) and rescores each account it touched
# once, after its last slice, however many records it holds (scoring_batch_max); the
# slices bound the events decoded at once: a decoded usage event holds about 1.7 KB
# (tracemalloc, the scoring bench's events), so a slice about 17 MB.
APPLY_SLICE = 10_000


def batch_span(settings: Settings) -> timedelta:
    """The event time one batch of a history (an import's, a backtest's) may span.
    Batching is part of the scoring step's meaning: a slice's newest event decides which
    of its usage events are too late to count (the late grace), and an id repeated
    within a slice counts once however far apart. So a batch spans no more than the
    dedup window (48 hours) or the late grace, whichever is shorter, and counts what the
    stream counts, which receives its batches within seconds. Not less: the accounts'
    states are loaded and saved once a batch (batches of a day at most took a 4.5 M-event
    backtest from 11 to 16 minutes, when the states were also written once a batch)."""
    return min(timedelta(hours=DEDUP_HOURS), settings.late_grace)


@dataclass
class _Batch:
    """What a batch's slices have built up: the states they loaded (and changed), what
    they changed, the dead letters, and the events decoded and counted."""

    usage: Usage = field(default_factory=dict)
    locked: set[str] = field(default_factory=set)  # of ``usage``, those read locked
    health: Health = field(default_factory=dict)  # written once, after the last slice
    applied: Applied = field(default_factory=Applied)
    dead: list[OutMessage] = field(default_factory=list)
    decoded: Counter[str] = field(default_factory=Counter)  # events decoded, by kind
    kinds: Counter[str] = field(default_factory=Counter)  # counted (not duplicates)


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
        states: StateKeeper | None = None,
        wall_clock: Clock = utcnow,
    ):
        """``states``: where the usage states live between batches (default: the
        database, with a cache of ``state_cache_accounts``; ``HeldStates`` for a
        throwaway replay). ``wall_clock``: what a record's own receipt time may not be
        later than; ``clock`` is a replay's simulated day in a backtest, whose lines
        were received after it."""
        self._wall_clock = wall_clock
        self._models = models or ModelStore()
        # Daily rows of days scored before, dropped to score them again (an import's
        # later files on earlier days): its summary says how many.
        self.days_rescored = 0
        self._alerting = alerting or alerting_store(settings)
        self._engine = engine
        self._producer = producer
        self._settings = settings
        self._metrics = metrics
        # Usage events too late to count since this processor began (the late grace):
        # an import says how many of its events were left out.
        self.late_events = 0
        self._clock = clock
        self._kind_of_topic = {settings.topic(kind): kind for kind in KINDS}
        self._plans: PlanTemplates = plan_templates(settings)
        self._states = states or UsageCache(settings.state_cache_accounts)

    async def handle(
        self,
        records: Sequence[Record],
        also: Callable[[AsyncConnection], Awaitable[None]] | None = None,
        *,
        score: bool = True,
        counted: Callable[[Event], None] | None = None,
        receipts_from: datetime | None = None,
    ) -> int:
        """Apply ``records`` exactly once: state, offsets and outgoing alerts and
        dead letters commit together, or not at all (the caller then rewinds).
        ``also``: the caller's own writes, first in the same transaction (an import
        forgets the rejections of the records it reads again). ``score`` False: the
        events are applied and their accounts left unscored (an import and a backtest
        score every account on its days themselves, with ``rescore``). ``counted``: told
        each event counted (decoded, and not seen before within the dedup window), in
        order, as its slice is applied: before the batch commits, so a caller that goes
        on after a failed batch must forget what it was told (the backtest, its one
        caller, stops). ``receipts_from``: the earliest receipt a later batch may hold,
        when earlier than this batch's (an import reading a file out of time order), so
        the dedup window keeps what it may repeat (``import_ahead``). Returns how many
        were counted.

        The records are decoded and applied a slice at a time (APPLY_SLICE), and each
        account they touched is rescored once, after the last slice."""
        if not records:
            return 0
        started = time.perf_counter()
        now = self._clock()
        batch = _Batch()
        async with self._engine.begin() as conn:
            if also is not None:
                await also(conn)
            for at in range(0, len(records), APPLY_SLICE):
                await self._apply_slice(
                    conn, records[at : at + APPLY_SLICE], now, batch, counted, receipts_from
                )
            usage, applied = batch.usage, batch.applied
            settings = self._settings
            await write_applied(
                conn,
                usage,
                batch.health,
                kept=(settings.window_days, settings.history_days),
                now=now,
                tz=self.zone,
            )
            alerts = await self.rescore(conn, applied.accounts, now, usage=usage) if score else []
            await self._states.save(conn, usage, now)
            outgoing = batch.dead + self.alert_messages(alerts)
            if outgoing:
                # In the transaction: into the outbox (Kafka) or the bus's own table
                # (embedded), so the messages commit with the state and the offsets.
                await self._producer.send_many(outgoing, conn)
            await save_offsets(conn, self._settings.consumer_group_scoring, next_offsets(records))
        self._states.keep(usage)  # committed: current as of their new versions
        if outgoing:
            await self.relay()
        fresh = sum(batch.kinds.values())
        metrics = self._metrics
        metrics.batch_seconds.observe(time.perf_counter() - started)
        for kind, count in batch.kinds.items():
            metrics.events.labels(kind, "scored").inc(count)
        for kind, count in (batch.decoded - batch.kinds).items():
            metrics.events.labels(kind, "duplicate").inc(count)
        metrics.late_events.inc(applied.late_events)
        self.late_events += applied.late_events
        metrics.dead_letters.inc(len(batch.dead))
        for alert in alerts:
            metrics.alerts.labels(alert.rule).inc()
            log.info("alert %s: %s", alert.alert_id, alert.title)
        if fresh:
            log.debug(
                "%s %d events (%d duplicates) for %d accounts",
                "scored" if score else "applied",
                fresh,
                batch.decoded.total() - fresh,
                len(applied.accounts),
            )
        return fresh

    async def _apply_slice(
        self,
        conn: AsyncConnection,
        records: Sequence[Record],
        now: datetime,
        batch: _Batch,
        counted: Callable[[Event], None] | None,
        receipts_from: datetime | None,
    ) -> None:
        """Decode ``records`` and apply their events to the batch's states (loading
        those of accounts new to the batch, locked), adding to what ``batch`` holds."""
        events, dead = self._decode(records, now)
        batch.dead += dead
        batch.decoded.update(event.kind for event in events)
        usage = batch.usage
        # Locked once per batch. An account read unlocked by an earlier slice (a ticket
        # moved away from it: its backlog changed, not its usage) is read again, locked.
        new = {event.account_id for event in events} - batch.locked
        if new:
            usage.update(await self._states.load(conn, new, for_update=True))
            batch.locked |= new
        fresh = drop_duplicates(usage, events, receipts_from)
        applied = await apply_events(
            conn,
            fresh,
            window_days=self._settings.window_days,
            history_days=self._settings.history_days,
            grace_days=self._settings.late_grace_days,
            now=now,
            tz=self.zone,
            usage=usage,
            health=batch.health,
        )
        await record_relationship(conn, fresh)
        batch.applied.accounts |= applied.accounts
        batch.applied.late_events += applied.late_events
        batch.kinds.update(event.kind for event in fresh)
        if counted is not None:
            for event in fresh:
                counted(event)

    def _decode(
        self, records: Sequence[Record], now: datetime
    ) -> tuple[list[Event], list[OutMessage]]:
        """The records' events (``now``: the receipt time of those without one, read once
        per batch) and the dead letters of those that are none."""
        events: list[Event] = []
        dead: list[OutMessage] = []
        for record in records:
            try:
                event = decode_event(record.value, self._kind_of_topic.get(record.topic))
                event = self._received(event, record, now)
            except UndecodableRecord as exc:
                # An import's rejected lines are reported by the import, by line (from
                # 1); its record numbers here count from 0 and read as off by one.
                log.log(
                    logging.DEBUG if record.topic.startswith(IMPORT_TOPIC) else logging.WARNING,
                    "dead-lettering %s[%d]@%d: %r",
                    record.topic,
                    record.partition,
                    record.offset,
                    exc,
                )
                dead.append(
                    dead_letter_message(record, str(exc), self._settings.topic(DEADLETTER_TOPIC))
                )
                continue
            events.append(event)
        return events, dead

    def _received(self, event: Event, record: Record, now: datetime) -> Event:
        """``event`` with its receipt time: ingest's, else the bus's time of the record
        (produced to the bus directly; the dedup window counts from it). Refused
        (``UndecodableRecord``) with a time past its receipt + ``max_future_skew``, as
        ingest refuses it: an import's lines, or a producer that skipped ingest."""
        received = event.received_at
        if received is None and record.timestamp is not None:
            received = from_epoch(record.timestamp)  # None: as if it had none
            if received is not None:
                event = event.model_copy(update={"received_at": received})
        skew = self._settings.max_future_skew
        # A receipt is never later than now: an import line's own received_at far ahead
        # would let its times be too, and its dedup window forget everything before it.
        if received is not None and received > self._wall_clock() + skew:
            raise UndecodableRecord(
                f"received_at is more than {skew} in the future; check the sender's clock"
            )
        errors = future_times(event, min(received or now, now) + skew, skew)
        if errors:
            raise UndecodableRecord("; ".join(f"{e['field']} {e['message']}" for e in errors))
        return event

    @property
    def latest_event_time(self) -> datetime:
        """The latest event time an event received now may carry."""
        return self._clock() + self._settings.max_future_skew

    async def relay(self) -> None:
        """Publish what the outbox holds, right after a commit that added to it. The bus
        down is no failure of the batch (it committed): the periodic relay retries."""
        if not isinstance(self._producer, MessageOutbox):
            return
        try:
            await self._producer.relay()
        except Exception as exc:
            # Never raised: the batch committed, and a raise would have it bisected and
            # applied again. What stays in the outbox goes with the next relay.
            level = logging.WARNING if is_transient(exc) else logging.ERROR
            log.log(level, "outbox relay failed (%s); the next relay retries", describe(exc))

    def wall_now(self) -> datetime:
        """The real time now (``wall_clock``), whatever day a replay is on."""
        return self._wall_clock()

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    @property
    def settings(self) -> Settings:
        return self._settings

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
        return [
            OutMessage(topic, alert.account_id.encode(), encode_event(alert)) for alert in alerts
        ]

    async def rescore(
        self,
        conn: AsyncConnection,
        ids: set[str],
        now: Any,
        as_of: date | None = None,
        *,
        past_day: bool = False,
        usage: Usage | None = None,
        swept_on: date | None = None,
    ) -> list[AlertEvent]:
        """Score ``ids`` as of their newest event (or ``as_of``); record what changed and
        return the alerts that fired. An unchanged score writes nothing. ``past_day``: the day
        lies in the past (an import scoring its days), so facts and tickets are read as
        they were then, not now. ``usage``: the usage states the caller holds.
        ``swept_on``: the quiet-account sweep's day, marked on every account of ``ids``
        (whose rows the sweep has locked already, in the same order).

        The reading and writing are here; what a score is and which rules fire is the pure
        per-account ``score_account``."""
        if swept_on is None:
            await _lock_accounts(conn, ids)
        if usage is not None:
            return await self._rescore(conn, ids, now, as_of, past_day, usage, swept_on)
        # Read only here (a sweep, an import's days), through the cache, and lent while
        # they are scored (``UsageCache.read``).
        read = await self._states.read(conn, ids)
        try:
            return await self._rescore(conn, ids, now, as_of, past_day, read, swept_on)
        finally:
            self._states.give_back(ids)

    def _rescoring(self, rows: int) -> None:
        self.days_rescored += rows

    async def _rescore(
        self,
        conn: AsyncConnection,
        ids: set[str],
        now: Any,
        as_of: date | None,
        past_day: bool,
        usage: Usage,
        swept_on: date | None,
    ) -> list[AlertEvent]:
        if past_day and as_of is not None:
            measures = await measures_as_of(conn, ids, as_of, self.zone, usage)
        else:
            measures = await load_measures(conn, ids, as_of, self.zone, usage=usage)
        if not measures:
            if swept_on is not None:
                await mark_swept(conn, ids, swept_on)
            return []
        alerting, _ = await self._alerting.current(conn)
        model, _ = await self._models.current(conn)
        using = ModelAndRules(model=model, rules=alerting.rules)
        rule_states = await _load_rule_states(conn, ids)
        names = await plan_names(conn, ids)
        previous: dict[str, history.Previous | None] = {**(await history.load_previous(conn, ids))}
        behind: Mapping[str, history.Previous | None] = {}
        if past_day:  # days ahead of it, scored before, are scored again from it
            behind = await history.rewind(
                conn,
                {account.account_id: (account.as_of, account.tz) for account in measures},
                self._rescoring,
            )
            previous.update(behind)
        days = {account.account_id: account.as_of for account in measures}
        past = _by_account(await history.load_past_inputs(conn, days, using.lookbacks))
        results = [
            score_account(
                account,
                using,
                AccountHistory(
                    previous.get(account.account_id),
                    past.get(account.account_id, {}),
                    rule_states.get(account.account_id, {}),
                    names.get(account.account_id, frozenset()),
                    card_behind=account.account_id in behind,
                ),
                now=now,
                swept=as_of is not None,
            )
            for account in measures
        ]
        for result in results:
            _log_band_change(result)
        alerts = await _alerts(conn, [fired for result in results for fired in result.fired])
        # Success plans: templates for new accounts, milestones' progress and alerts.
        alerts += await step_plans(conn, measures, results, self._plans, account_contacts, now)
        written = await _record(conn, results, now, swept_on, rewound=past_day)
        if swept_on is not None and len(written) < len(ids):
            await mark_swept(conn, ids - written, swept_on)
        return alerts


def _log_band_change(result: ScoredAccount) -> None:
    if result.band_change is None:
        return
    before, score = result.previous, result.score
    if before is None or before.band is None:
        log.info("%s: first health score %s (%s)", result.account_id, score.value, score.band)
    else:
        log.info(
            "%s: health %s → %s (%s → %s)",
            result.account_id,
            before.score,
            score.value,
            before.band,
            score.band,
        )


async def _lock_accounts(conn: AsyncConnection, ids: set[str]) -> None:
    """Another consumer may rescore one of these accounts at the same time (the old owner
    of a ticket moved between accounts, a sweep): lock the rows, in one order everywhere,
    so the measures are read after its commit and neither transaction writes a score
    computed from stale state. (SQLite transactions are serialized already.)"""
    if conn.dialect.name == "postgresql" and ids:
        await conn.execute(
            select(account_health.c.account_id)
            .where(among(conn, account_health.c.account_id, ids))
            .order_by(account_health.c.account_id)
            .with_for_update()
        )


async def _load_rule_states(
    conn: AsyncConnection, ids: set[str]
) -> dict[str, dict[str, RuleState]]:
    """account → rule id → the rule's stored state."""
    states: dict[str, dict[str, RuleState]] = defaultdict(dict)
    rows = await conn.execute(select(rule_state).where(among(conn, rule_state.c.account_id, ids)))
    for row in rows:
        states[row.account_id][row.rule] = RuleState(
            row.status, row.since, row.cleared_at, row.severity, row.fire_count, row.revision
        )
    return states


def _by_account(
    past: dict[tuple[str, int], dict[str, Any]],
) -> dict[str, dict[int, dict[str, Any]]]:
    """(account, days back) → inputs, regrouped as account → days back → inputs."""
    grouped: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    for (account_id, back), inputs_then in past.items():
        grouped[account_id][back] = inputs_then
    return grouped


async def _alerts(conn: AsyncConnection, fired: list[Fired]) -> list[AlertEvent]:
    """The alerts of the rules that told something. Alerts are rare: the account facts
    they name (owner, sales owner) are read only for the accounts that have one."""
    if not fired:
        return []
    contacts = await account_contacts(conn, {told.measures.account_id for told in fired})
    return [alert_event(told, contacts.get(told.measures.account_id)) for told in fired]


async def account_contacts(conn: AsyncConnection, ids: set[str]) -> dict[str, AccountContacts]:
    """account → what its alerts name (the accounts with facts only)."""
    return {
        row.account_id: _contacts(row)
        for row in await conn.execute(
            select(accounts).where(among(conn, accounts.c.account_id, ids))
        )
    }


def _contacts(row: Row[Any]) -> AccountContacts:
    """What an alert names, from the account's row: its name, owner and sales owner."""
    fields = (row.facts or {}).get("fields", {})
    owner = stored_owner(row.owner_email, row.owner_slack_id, row.facts)
    sales = fields.get("sales_owner")
    return AccountContacts(
        name=row.name,
        owner=owner,
        sales_owner=Owner.model_validate(sales) if isinstance(sales, dict) else None,
    )


async def mark_swept(conn: AsyncConnection, ids: set[str], day: date) -> None:
    """The sweep has scored ``ids`` on ``day`` (their own day): not due again before the
    next."""
    h = account_health
    await conn.execute(update(h).where(among(conn, h.c.account_id, ids)).values(swept_on=day))


async def _record(
    conn: AsyncConnection,
    results: list[ScoredAccount],
    now: Any,
    swept_on: date | None,
    *,
    rewound: bool = False,
) -> set[str]:
    """Write what the steps decided: health rows, daily history, band changes, rule states;
    returns the accounts whose health row was written. A sweep's mark goes into the same
    rows: a second update of each row doubled its new versions and index entries.
    ``rewound``: ``history.rewind`` dropped the rows after the day already."""
    health_rows = [result.health for result in results if result.health is not None]
    if swept_on is not None:
        for row in health_rows:
            row["swept_on"] = swept_on
    if health_rows:
        # One executemany (pipelined by the driver), not a statement per account.
        columns = [name for name in health_rows[0] if name != "account_id"]
        await conn.execute(
            account_health.update()
            .where(account_health.c.account_id == bindparam("p_account_id"))
            .values({column: bindparam(f"p_{column}") for column in columns}),
            [{f"p_{name}": value for name, value in row.items()} for row in health_rows],
        )
    await history.record(
        conn,
        [result.daily for result in results if result.daily is not None],
        [result.band_change for result in results if result.band_change is not None],
        swept=swept_on is not None,
        rewound=rewound,
    )
    await upsert(
        conn,
        rule_state,
        [
            _state_row(result.account_id, rule_id, state, now)
            for result in results
            for rule_id, state in result.rule_states.items()
        ],
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
    return {row["account_id"] for row in health_rows}


def _state_row(account_id: str, rule_id: str, state: RuleState, now: Any) -> dict[str, Any]:
    return {
        "account_id": account_id,
        "rule": rule_id,
        "status": state.status,
        "since": state.since,
        "cleared_at": state.cleared_at,
        "severity": state.severity,
        "revision": state.revision,
        "fire_count": state.fire_count,
        "changed_at": now,
    }
