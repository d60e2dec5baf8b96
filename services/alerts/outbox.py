"""The outbox: the writer puts notices in, the sender sends them.

The writer (``Outbox``) puts one delivery row per (channel, destination) in the same
transaction that decided the notice, so a notice is queued if and only if its cause
committed. The sender (``OutboxSender``) claims due deliveries with a lease, sends and
records the outcome: a crash between sending and recording never loses a notice, and
an attempt whose outcome was lost is looked for at its destination before it goes
again (Slack's Web API can look; elsewhere it causes at most one duplicate).
Deliveries to one destination go strictly in order (the oldest pending one first,
even while it waits for a retry), so an account's alerts arrive in the order they
happened; to the generic webhook and to Slack, whose destinations many accounts share
(one incoming webhook, a channel), in order per account. With grouping on, the untried
Slack deliveries waiting for one destination go as one message; a notice being retried
goes alone, so that one that keeps failing drags no other into its failures.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, case, func, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.alerts import routing
from services.alerts.channels import Channel, DeliveryError
from services.alerts.channels.base import LOOK_TIMEOUT_S, SEND_TIMEOUT_S
from services.alerts.channels.slack import MAX_GROUPED
from services.alerts.channels.text import one_line, redact_urls
from services.alerts.channels.webhook import WebhookChannel
from services.alerts.metrics import AlertsMetrics
from shared.alerting.schema import Recipient
from shared.alerting.store import AlertingStore
from shared.clock import Clock, utcnow
from shared.config import Settings
from shared.contracts.alerts import AlertEvent
from shared.contracts.notices import Notice, NoticeKind
from shared.people import chosen_languages
from shared.storage.db import insert_ignore
from shared.storage.tables import alerts, deliveries
from shared.worker import describe, log_failed

log = logging.getLogger(__name__)

CLAIM_BATCH = 20
# The start of a failed attempt's ``last_error`` when its request may have reached the
# receiver (a timeout after it went out): the next such failure, to a receiver that
# cannot be asked nor fold a copy, is the last (``_unconfirmed``).
UNANSWERED = "unanswered: "
# Failed attempts after which a notice stops holding up the ones behind it for its
# destination (waits of 2 s to 5 min: about ten minutes), and before which it is not
# given up however old.
UNBLOCK_ATTEMPTS = 12
# Lanes (a destination, or a Slack webhook's deliveries) sent side by side in a pass.
LANES_AT_ONCE = 5
# Case and task notices' ``notification`` names start so (``case.opened``): never
# grouped with alert notices into one Slack message.
CASE_NOTIFICATION = "case."
# The channels whose notices to one destination within ``group_wait`` go as one message.
# Email too: a CSM whose accounts' alerts fired together got one email each (24 in a
# minute, found from outside); a person reads one message of 24 alerts, worst first.
# Not the webhook: a receiver's own system takes each notice by its key.
GROUPED = ("slack", "email")


def backoff_s(attempts: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter after ``attempts`` failures."""
    return rng.uniform(base_s, min(cap_s, base_s * 2 ** max(0, attempts - 1)))


class Outbox:
    """The writer: puts notices into the outbox for the channels and people that
    should get them."""

    def __init__(self, channels: Sequence[Channel], settings: Settings, metrics: AlertsMetrics):
        self.channels = list(channels)
        self._settings = settings
        self._metrics = metrics
        # Set once rows put by a committed transaction are visible: the sender in this
        # process starts at once instead of at its next poll (other processes poll).
        self.queued = asyncio.Event()
        # What the current transaction put, per task (intake and timers run side by
        # side): acted on only once it commits, so a retried one counts nothing twice.
        self._tx: ContextVar[_Queued | None] = ContextVar("outbox_tx", default=None)

    @asynccontextmanager
    async def transaction(self, engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
        """``engine.begin()`` for work that puts notices; once it has committed, wake the
        sender and count the notices that had nobody to go to."""
        queued = _Queued()
        token = self._tx.set(queued)
        try:
            async with engine.begin() as conn:
                yield conn
        finally:
            self._tx.reset(token)
        for rule, key in queued.unroutable:
            log.warning("%s has nobody to tell (no owner, no team fallback)", one_line(key))
            self._metrics.deliveries.labels(rule, "none", "unroutable").inc()
        if queued.rows:
            self.queued.set()

    async def notify(
        self,
        conn: AsyncConnection,
        alert: AlertEvent,
        kind: NoticeKind,
        people: Sequence[Recipient],
        *,
        now: datetime,
        group_wait: timedelta,
        notification: str | None = None,
    ) -> int:
        """Put a notice about one alert, keyed by the alert and ``notification`` (which
        notification of it: ``repeat:3``; the kind if None). An alert opened by an import
        (still true when the history ended) gets no first notice: see
        ``services/scoring/backfill.py``."""
        if alert.imported and kind == NoticeKind.fire:
            return 0
        notification = notification or kind.value
        notice = Notice(kind, [alert], f"{alert.alert_id}/{notification}")
        return await self.put(
            conn, notice, people, notification=notification, now=now, group_wait=group_wait
        )

    async def put(
        self,
        conn: AsyncConnection,
        notice: Notice,
        people: Sequence[Recipient],
        *,
        notification: str,
        now: datetime,
        group_wait: timedelta = timedelta(0),
        only: str | None = None,
    ) -> int:
        """One row per (channel, destination); a replay of the same notification adds
        nothing. Slack rows wait ``group_wait`` so alerts close together go as one."""
        queued = self._tx.get()
        if queued is None:
            raise RuntimeError("Outbox.put outside Outbox.transaction()")
        if only is not None and all(channel.name != only for channel in self.channels):
            # Only a channel this service is not set up for (a digest by email without
            # SMTP): nobody is missed, there is no such way to tell them. Counted as
            # unroutable, it fired the shipped alert for good and logged every pass.
            return 0
        digest = notice.kind == NoticeKind.digest
        about = notice.case  # a case or task notice: keyed by it, not by an alert
        handed = notice.handover  # a handover: keyed by the new owner
        account_id: str | None
        if about is not None:
            subject, account_id = about.ref, about.account_id
        elif handed is not None:
            only_one = handed.accounts[0].account_id if handed.total == 1 else None
            subject, account_id = handed.ref, only_one
        else:
            subject = notice.key if digest else notice.first.alert_id
            account_id = None if digest else notice.first.account_id
        addressed = routing.addresses(self.channels, people)
        emails = [p.email for p in people if p.email and not p.language] if addressed else []
        chosen = await chosen_languages(conn, emails) if emails else {}
        languages = routing.languages_at(self.channels, people, chosen)
        payload = notice.to_json()
        rows = [
            {
                "alert_id": subject,
                "notification": notification,
                "account_id": account_id,
                "channel": channel,
                "destination": destination,
                "payload": _in_language(payload, languages.get((channel, destination))),
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now + (group_wait if channel in GROUPED else timedelta(0)),
                "created_at": now,
            }
            for channel, destination in addressed
            if only is None or channel == only
        ]
        if not rows and self.channels:
            queued.unroutable.append((_rule(notice), notice.key))
        if not rows:
            return 0
        await conn.execute(insert_ignore(conn, deliveries).on_conflict_do_nothing(), rows)
        queued.rows += len(rows)
        return len(rows)


@dataclass
class _Queued:
    """What one outbox transaction put."""

    rows: int = 0
    unroutable: list[tuple[str, str]] = field(default_factory=list)  # (rule, notice key)


class OutboxSender:
    """The sender. ``alerting`` is the store of the alerting file in force (whether
    Slack notices are grouped); ``wake`` is the writer's ``queued``, set when this
    process put deliveries."""

    def __init__(
        self,
        engine: AsyncEngine,
        channels: Sequence[Channel],
        settings: Settings,
        metrics: AlertsMetrics,
        *,
        alerting: AlertingStore,
        clock: Clock = utcnow,
        rng: random.Random | None = None,
        wake: asyncio.Event | None = None,
    ):
        self._engine = engine
        self._channels = {c.name: c for c in channels}
        self._settings = settings
        self._metrics = metrics
        self._clock = clock
        self._rng = rng or random.Random()
        # Per pace key (loop time): the last send, and the end of a Retry-After.
        self._last_send: dict[tuple[str, str], float] = {}
        self._held_until: dict[tuple[str, str], float] = {}
        self._alerting = alerting
        self._wake = wake

    async def run(self, stop: asyncio.Event) -> None:
        """Send due deliveries until ``stop`` is set; a send in flight completes first.
        Each channel in a loop of its own: a generic webhook hanging until its timeout
        filled every claim with its lanes and held up Slack and email for minutes (found
        from outside)."""
        # None: the channels no longer configured, whose deliveries are given up.
        kicks: dict[str | None, asyncio.Event] = {n: asyncio.Event() for n in self._channels}
        kicks[None] = asyncio.Event()
        waking = asyncio.create_task(self._wake_all(kicks, stop))
        try:
            await asyncio.gather(*(self._run_channel(n, kick, stop) for n, kick in kicks.items()))
        finally:
            waking.cancel()
            await asyncio.gather(waking, return_exceptions=True)

    async def _run_channel(
        self, channel: str | None, kick: asyncio.Event, stop: asyncio.Event
    ) -> None:
        while not stop.is_set():
            try:
                sent = await self._send_pass([channel])
            except Exception as exc:
                which = channel or "the channels not set up"  # None: theirs (it said "None")
                log_failed(log, f"outbox pass for {which} failed; retrying", exc)
                sent = 0
            if not sent:
                await self._idle(kick, stop)

    async def _wake_all(self, kicks: dict[str | None, asyncio.Event], stop: asyncio.Event) -> None:
        """Pass this process's "deliveries queued" on to every channel's loop."""
        if self._wake is None:
            return
        while not stop.is_set():
            await self._wake.wait()
            self._wake.clear()
            for kick in kicks.values():
                kick.set()

    async def _idle(self, kick: asyncio.Event, stop: asyncio.Event) -> None:
        """Until the next poll, or sooner when this process queued deliveries."""
        interval = self._settings.delivery_poll_interval_s
        waits = {asyncio.ensure_future(kick.wait()), asyncio.ensure_future(stop.wait())}
        try:
            await asyncio.wait(waits, timeout=interval, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        kick.clear()

    async def send_due(self) -> int:
        """One pass over every channel's deliveries, each channel claimed apart."""
        return await self._send_pass([*self._channels, None])

    async def _send_pass(self, channels: list[str | None]) -> int:
        """One pass over ``channels``' deliveries (None: those of channels no longer
        configured). A delivery that cannot be sent fails alone (``_deliver`` records it as its
        failed attempt); the pass goes on with the others. Deliveries sharing a pace (one
        Slack webhook) go one after another, the rest side by side, each channel with
        room of its own: a Slack that hangs until its timeout holds up no email (it held
        the whole pass)."""
        # A send begun by the deadline ends (SEND_TIMEOUT_S, after at most one look for
        # it if it is in doubt and one Slack pace wait) before the claim's lease does,
        # counted from before the claim, so no other sender takes a delivery this one
        # is still sending.
        s = self._settings
        deadline = self._clock() + timedelta(
            seconds=s.delivery_claim_lease_s
            - SEND_TIMEOUT_S
            - LOOK_TIMEOUT_S
            - s.slack_min_interval_s
        )
        claimed = [group for name in channels for group in await self._claim(name)]
        lanes: dict[Any, list[list[Any]]] = {}
        for group in claimed:
            head = group[0]
            pace = _pace_key(self._channels.get(head.channel), head.destination)
            lanes.setdefault(pace or (head.channel, head.destination), []).append(group)
        # A bounded number side by side per channel: an SMTP relay may refuse many
        # connections at once.
        rooms: dict[str, asyncio.Semaphore] = {}

        async def lane(groups: list[list[Any]]) -> None:
            room = rooms.setdefault(groups[0][0].channel, asyncio.Semaphore(LANES_AT_ONCE))
            waits = room.locked()  # behind other lanes: its first send is no longer "now"
            async with room:
                await self._send_lane(groups, deadline, first_free=not waits)

        await asyncio.gather(*(lane(groups) for groups in lanes.values()))
        return sum(len(g) for g in claimed)

    async def _send_lane(
        self, groups: list[list[Any]], deadline: datetime, *, first_free: bool = True
    ) -> None:
        """``groups`` in turn; those whose turn comes after ``deadline`` go back untried
        (the next pass takes them with a new lease). The first goes anyway when the lane
        began at once (``first_free``): it was claimed just now, whatever the lease."""
        for at, group in enumerate(groups):
            if (at or not first_free) and self._clock() > deadline:
                try:
                    await self._release([r for later in groups[at:] for r in later])
                except Exception as exc:  # the database is away: the leases run out
                    log.warning("releasing unsent deliveries failed: %s", describe(exc))
                return
            try:
                await self._deliver(group)
            except Exception as exc:
                # Recording the outcome failed (the database is away): the claim lease
                # runs out and the delivery is tried again, at most one duplicate. The
                # lane stops here: a delivery sent now could not be recorded either and
                # would go twice too (a 15 s outage re-sent four webhooks, found from
                # outside); untried, the rest go once when their leases run out.
                log_failed(log, f"recording delivery {group[0].delivery_id} failed", exc)
                return

    async def _release(self, rows: list[Any]) -> None:
        await self._set(rows, claimed_until=None)

    async def _set(self, rows: list[Any], **values: Any) -> None:
        """Write ``values`` to the deliveries of ``rows``, in one transaction."""
        async with self._engine.begin() as conn:
            await conn.execute(
                update(deliveries)
                .where(deliveries.c.delivery_id.in_([r.delivery_id for r in rows]))
                .values(**values)
            )

    async def _claim(self, channel: str | None) -> list[list[Any]]:
        """Groups of ``channel``'s rows to send (None: of the channels not configured):
        per destination the oldest pending row if
        it is due (per account for the generic webhook: ``_order_within``), plus, for
        grouped Slack, the rest waiting for that destination."""
        now = self._clock()
        d = deliveries
        free = or_(d.c.claimed_until.is_(None), d.c.claimed_until < now)
        pending = d.c.status == "pending"
        ours = (
            d.c.channel == channel
            if channel is not None
            else d.c.channel.not_in(list(self._channels))
        )
        async with self._engine.begin() as conn:
            if channel is None:  # once a pass of every loop: the depth of the whole outbox
                depth = select(func.count()).where(pending)
                self._metrics.outbox_depth.set((await conn.execute(depth)).scalar_one())
            alerting, _ = await self._alerting.current(conn)
            grouping = alerting.notify.group_wait > timedelta(0)
            # A notice that failed UNBLOCK_ATTEMPTS times is retried on its own, no longer
            # holding up those behind it (it is retried for a day: a notice the renderer or
            # one receiver refuses would otherwise hold its destination that long).
            lone = select(d.c.delivery_id).where(pending, ours, d.c.attempts >= UNBLOCK_ATTEMPTS)
            heads = (
                select(func.min(d.c.delivery_id))
                .where(pending, ours, d.c.attempts < UNBLOCK_ATTEMPTS)
                .group_by(d.c.channel, d.c.destination, _order_within())
            )
            due = (
                await conn.execute(
                    select(
                        d.c.delivery_id,
                        d.c.channel,
                        d.c.destination,
                        d.c.notification,
                        d.c.attempts,
                    )
                    .where(
                        or_(d.c.delivery_id.in_(heads), d.c.delivery_id.in_(lone)),
                        d.c.next_attempt_at <= now,
                        free,
                    )
                    .order_by(d.c.next_attempt_at)
                    .limit(CLAIM_BATCH)
                )
            ).all()
            groups: list[list[Any]] = []
            for head in due:
                ids = [head.delivery_id]
                # Untried: the notices waiting behind it go with it. Retried, it goes alone:
                # one Slack kept refusing (500) took every notice queued behind it into its
                # message and its failures, for every account (found from outside).
                if (
                    head.channel in GROUPED
                    and grouping
                    and head.attempts == 0
                    and not _case_notice(head)
                    and not _digest(head)
                ):
                    ids += await _waiting_behind(conn, head, free)
                group = await self._take(conn, ids, free, now)
                if group is not None:
                    groups.append(group)
            return groups

    async def _take(
        self, conn: AsyncConnection, ids: list[int], free: ColumnElement[bool], now: datetime
    ) -> list[Any] | None:
        """Claim rows ``ids`` for the lease and read them with their alerts; None if
        another sender (process) got any of them first: its transaction decides."""
        lease = timedelta(seconds=self._settings.delivery_claim_lease_s)
        d = deliveries
        # Conditional update: only one sender wins each row.
        won = await conn.execute(
            update(d)
            .where(d.c.delivery_id.in_(ids), d.c.status == "pending", free)
            .values(
                claimed_until=now + lease,
                # A lease that ran out unreleased: its sender died (or lost the database)
                # holding it, maybe after sending. The earliest such attempt is kept.
                doubtful_lease=func.coalesce(d.c.doubtful_lease, d.c.claimed_until),
            )
        )
        if won.rowcount != len(ids):
            return None
        rows = await conn.execute(
            select(
                d,
                alerts.c.payload.label("alert_payload"),
                alerts.c.status.label("alert_status"),
                alerts.c.snoozed_until.label("alert_snoozed_until"),
                alerts.c.not_useful.label("alert_not_useful"),
            )
            .outerjoin(alerts, alerts.c.alert_id == d.c.alert_id)
            .where(d.c.delivery_id.in_(ids))
            .order_by(d.c.delivery_id)
        )
        return list(rows)

    async def _deliver(self, group: list[Any]) -> None:
        if group[0].channel in GROUPED and (acted := [r for r in group if self._acted_on(r)]):
            await self._skip(acted)
            group = [r for r in group if r not in acted]
            if not group:
                return
        head = group[0]
        channel = self._channels.get(head.channel)
        pace = _pace_key(channel, head.destination)
        if pace is not None:
            held_s = self._held_until.get(pace, 0.0) - asyncio.get_running_loop().time()
            if held_s > 0:
                await self._defer(group, held_s)
                return
        if channel is not None:
            group = await self._out_already(channel, group)
            if not group:
                return
        rules = ["unknown"] * len(group)
        try:
            notices = [_notice(r) for r in group]
            rules = [_rule(n) for n in notices]
            if channel is None:
                raise DeliveryError(
                    f"channel {head.channel!r} is not configured any more", permanent=True
                )
            if pace is not None:
                await self._pace(pace)
            await channel.send(_one_notice(notices), head.destination)
        except DeliveryError as exc:
            if pace is not None and exc.retry_after_s is not None:
                # A 429 limits the whole Slack channel, not this message: every delivery
                # sharing the pace key waits it out, or Slack keeps refusing (and may
                # disable the webhook).
                self._held_until[pace] = asyncio.get_running_loop().time() + exc.retry_after_s
            if len(group) > 1 and exc.content:
                await self._apart(group)
                return
            await self._failed_all(group, rules, exc)
            return
        except Exception as exc:
            # Data the renderer or a client library chokes on, or a bug: a failed attempt
            # of this delivery (retried with backoff, dead after the last attempt),
            # never a failed pass that would hold up every other delivery. The trace
            # only at DEBUG: a client library's may quote the webhook URL.
            failure = DeliveryError(f"{type(exc).__name__}: {exc}")
            log.error(
                "delivery %s could not be sent: %s",
                head.delivery_id,
                _loggable(failure),
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
            if len(group) > 1:
                await self._apart(group)
                return
            await self._failed_all(group, rules, failure)
            return
        await self._delivered(group, rules)

    async def _out_already(self, channel: Channel, group: list[Any]) -> list[Any]:
        """The rows of ``group`` still to send. A row an earlier attempt may have sent
        (``doubtful_lease``) is looked for at its destination first, and recorded
        delivered if its notice is there: sent blindly again it went twice."""
        doubtful: dict[str, Any] = {}
        for r in group:
            if r.doubtful_lease is None:
                continue
            try:
                doubtful[_notice(r).key] = r
            except Exception:  # data it cannot read fails as an attempt, when sent
                continue
        if not doubtful:
            return group
        lease = timedelta(seconds=self._settings.delivery_claim_lease_s)
        began = min(r.doubtful_lease for r in doubtful.values()) - lease
        found = await channel.posted(doubtful.keys(), group[0].destination, began)
        out = [doubtful[key] for key in found or ()]
        if out:
            log.info("found already out: %s", one_line(", ".join(r.alert_id for r in out)))
            await self._delivered(out, [_rule(_notice(r)) for r in out])
        return [r for r in group if r not in out]

    def _acted_on(self, row: Any) -> bool:
        """A Slack or email notice calling for action on an alert that someone has
        acknowledged or snoozed while it waited (to be grouped, ``group_wait``, or for the
        channel to answer):
        it went out after the fact with live buttons (found from outside), or marked not
        useful. An update (its severity rose) still goes to an acknowledged alert's
        people, as to email: who took on a warning has not taken on the critical it
        became (Slack alone had dropped it, found from outside). An alert that ended is
        still told from its start, its end after."""
        kind = str(row.notification).partition(":")[0]
        if kind not in (NoticeKind.fire, NoticeKind.update, NoticeKind.repeat):
            return False
        snoozed = row.alert_snoozed_until is not None and row.alert_snoozed_until > self._clock()
        acknowledged = row.alert_status == "acknowledged" and kind != NoticeKind.update
        # Not useful: told of a rise in its severity only (``lifecycle``), not a first time.
        not_useful = bool(row.alert_not_useful) and kind == NoticeKind.fire
        return acknowledged or snoozed or not_useful

    async def _skip(self, rows: list[Any]) -> None:
        """Not sent, and never to be: ``skipped``, saying why."""
        await self._set(
            rows,
            status="skipped",
            claimed_until=None,
            doubtful_lease=None,
            last_error="not sent: acted on before it went out",
        )
        for r in rows:
            self._metrics.deliveries.labels(_rule(_notice(r)), r.channel, "skipped").inc()

    async def _apart(self, group: list[Any]) -> None:
        """A grouped message refused as it is (Slack's invalid_blocks, data the renderer
        chokes on) is one notice's fault, not every one's. Grouped, a valid notice failed
        with an invalid one until that one died, 12 attempts later (found from outside).
        The first is sent alone now, meeting its own fate; the rest go back untried, the
        next pass's group (one send more per pass, within the claim's lease)."""
        await self._deliver(group[:1])
        await self._release(group[1:])

    async def _failed_all(self, group: list[Any], rules: list[str], exc: DeliveryError) -> None:
        for r, rule in zip(group, rules, strict=True):
            await self._failed(r, rule, exc)

    async def _delivered(self, group: list[Any], rules: list[str]) -> None:
        head = group[0]
        now = self._clock()
        await self._set(
            group,
            status="delivered",
            attempts=deliveries.c.attempts + 1,
            delivered_at=now,
            claimed_until=None,
            doubtful_lease=None,
            last_error=None,
        )
        for r, rule in zip(group, rules, strict=True):
            self._metrics.deliveries.labels(rule, r.channel, "delivered").inc()
            if r.created_at is not None:
                self._metrics.delivery_seconds.labels(r.channel).observe(
                    (now - r.created_at).total_seconds()
                )
        # The destination is an address or channel id, never a URL (the webhook's is
        # "webhook"): nothing secret is logged. Data is logged on one line, so a CR/LF
        # in it cannot forge log lines.
        log.info(
            "delivered %s by %s to %s",
            one_line(", ".join(r.alert_id for r in group)),
            head.channel,
            one_line(head.destination),
        )

    async def _failed(self, row: Any, rule: str, exc: DeliveryError) -> None:
        # Unanswered before (its last error says so), not merely claimed by a sender
        # that died: a lease run out had been taken for a send (found in review).
        if exc.unsure and exc.unkeyed and str(row.last_error or "").startswith(UNANSWERED):
            await self._unconfirmed(row, rule, exc)
            return
        s = self._settings
        attempts = row.attempts + 1
        queued = row.created_at or self._clock()  # a row queued before the column: now
        # A day old, and tried UNBLOCK_ATTEMPTS times at least: one an admin retried
        # after a day gets its dozen attempts again.
        old = (
            self._clock() - queued >= timedelta(hours=s.delivery_give_up_after_h)
            and attempts >= UNBLOCK_ATTEMPTS
        )
        counted_out = s.delivery_max_attempts is not None and attempts >= s.delivery_max_attempts
        dead = exc.permanent or old or counted_out
        delay = backoff_s(attempts, s.delivery_backoff_base_s, s.delivery_backoff_cap_s, self._rng)
        # A receiver's Retry-After is waited at least, and the backoff too. Honoured as it
        # is, a "Retry-After: 1" on every 503 of an hour-long outage retried each notice
        # every second, and after a dozen attempts out of order (found in review).
        if exc.retry_after_s is not None:
            delay = max(delay, exc.retry_after_s)
        async with self._engine.begin() as conn:
            await conn.execute(
                update(deliveries)
                .where(deliveries.c.delivery_id == row.delivery_id)
                .values(
                    status="dead" if dead else "pending",
                    attempts=attempts,
                    next_attempt_at=self._clock() + timedelta(seconds=delay),
                    claimed_until=None,
                    # Failed, yet maybe out (a timeout): the next attempt looks first.
                    doubtful_lease=(row.doubtful_lease or row.claimed_until)
                    if exc.unsure
                    else row.doubtful_lease,
                    last_error=((UNANSWERED if exc.unsure else "") + _loggable(exc))[:2000],
                )
            )
        outcome = "dead" if dead else "retry"
        self._metrics.deliveries.labels(rule, row.channel, outcome).inc()
        log.warning(
            "alert %s by %s failed (attempt %d, %s): %s",
            one_line(row.alert_id),
            row.channel,
            attempts,
            "giving up" if dead else f"retry in {delay:.1f}s",
            _loggable(exc),
        )

    async def _unconfirmed(self, row: Any, rule: str, exc: DeliveryError) -> None:
        """An attempt in doubt for the second time, to a receiver where a copy can be
        neither looked for nor folded (Slack's incoming webhook): taken as out, not sent
        a third time. Each retry of a notice Slack was slow to answer had posted it
        again (found from outside): at most one copy, as after a crash."""
        now = self._clock()
        await self._set(
            [row],
            status="delivered",
            attempts=deliveries.c.attempts + 1,
            delivered_at=now,
            claimed_until=None,
            doubtful_lease=None,
            last_error=("not confirmed: sent twice without an answer; " + _loggable(exc))[:2000],
        )
        self._metrics.deliveries.labels(rule, row.channel, "unconfirmed").inc()
        log.warning(
            "alert %s by %s: sent twice without an answer (%s); taken as delivered, not "
            "sent again (the receiver cannot be asked, nor fold a copy)",
            one_line(row.alert_id),
            row.channel,
            _loggable(exc),
        )

    async def _defer(self, group: list[Any], seconds: float) -> None:
        """Back in the queue untried (no attempt counted), due when the hold ends."""
        async with self._engine.begin() as conn:
            await conn.execute(
                update(deliveries)
                .where(deliveries.c.delivery_id.in_([r.delivery_id for r in group]))
                .values(
                    next_attempt_at=self._clock() + timedelta(seconds=seconds),
                    claimed_until=None,
                )
            )

    async def _pace(self, key: tuple[str, str]) -> None:
        """At most one Slack message per second per destination (Slack's own limit)."""
        loop = asyncio.get_running_loop()
        wait = self._last_send.get(key, 0.0) + self._settings.slack_min_interval_s - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        self._last_send[key] = loop.time()


async def _waiting_behind(conn: AsyncConnection, head: Any, free: ColumnElement[bool]) -> list[int]:
    """The untried deliveries queued for ``head``'s channel and destination after it
    (Slack or email), alerts' notices but digests: sent
    with it as one message (a group shows MAX_GROUPED alerts and counts the rest). Not
    those of an account with an earlier notice there that does not go with them (one
    being retried, or claimed): an account's notices keep their order (``_order_within``),
    or its "resolved" could arrive before its "firing" (found in review)."""
    d = deliveries
    here = (
        d.c.channel == head.channel,
        d.c.destination == head.destination,
        d.c.status == "pending",
    )
    found = (
        await conn.execute(
            select(d.c.delivery_id, d.c.account_id)
            .where(
                *here,
                d.c.delivery_id > head.delivery_id,
                d.c.attempts == 0,
                ~d.c.notification.startswith(CASE_NOTIFICATION),
                ~d.c.notification.startswith(NoticeKind.digest.value),
                free,
            )
            .order_by(d.c.delivery_id)
            .limit(MAX_GROUPED * 5)
        )
    ).all()
    if not found:
        return []
    taken = {row.delivery_id for row in found} | {head.delivery_id}
    accounts = {row.account_id for row in found}
    named = d.c.account_id.in_([a for a in accounts if a is not None])
    theirs = or_(named, d.c.account_id.is_(None)) if None in accounts else named
    earlier = await conn.execute(
        select(d.c.delivery_id, d.c.account_id).where(
            *here, theirs, d.c.delivery_id < found[-1].delivery_id
        )
    )
    held: dict[str | None, int] = {}  # account → its first notice that stays behind
    for row in earlier:
        if row.delivery_id not in taken:
            held[row.account_id] = min(held.get(row.account_id, row.delivery_id), row.delivery_id)
    return [
        row.delivery_id
        for row in found
        if row.account_id not in held or row.delivery_id < held[row.account_id]
    ]


def _pace_key(channel: Channel | None, destination: str) -> tuple[str, str] | None:
    """Deliveries that share Slack's rate limit (one webhook, or one channel)."""
    if channel is None:
        return None
    key = channel.pace_key(destination)
    return None if key is None else (channel.name, key)


def _notice(row: Any) -> Notice:
    if row.payload is not None:
        return Notice.from_json(row.payload)
    # Rows queued before notices had payloads: the alert's own firing.
    alert = AlertEvent.model_validate(row.alert_payload)
    return Notice(NoticeKind.fire, [alert], row.alert_id)


def _loggable(exc: Exception) -> str:
    """An error fit for logs and ``last_error``: one line, no NUL (PostgreSQL text
    refuses it), and no URL path or query (a webhook URL's token)."""
    return redact_urls(one_line(str(exc)))


def _order_within() -> ColumnElement[Any]:
    """What a destination's notices keep their order within: the whole destination (a
    person's email), but per account for the generic webhook and Slack, whose
    destinations many accounts share (the one webhook; Slack's incoming webhook, a
    channel): there, one notice failing again and again held up every account's
    notices (the webhook's 14 minutes until it died; Slack's for its dozen attempts,
    found from outside)."""
    d = deliveries.c
    shared = d.channel.in_([WebhookChannel.name, "slack"])
    return case((shared, d.account_id), else_=literal(None))


def _one_notice(notices: list[Notice]) -> Notice:
    """A group's notices as one message (grouped Slack); a single one as it is."""
    if len(notices) == 1:
        return notices[0]
    each = _one_per_alert([pair for n in notices for pair in n.each()])
    key = "+".join(n.key for n in notices)
    parts = tuple(n.key for n in notices)
    language = notices[0].language  # one destination: one reader's, or the team's
    if len(each) == 1:
        ((alert, kind),) = each
        return Notice(kind, [alert], key, parts=parts, language=language)
    return Notice(
        NoticeKind.group,
        [a for a, _ in each],
        key,
        kinds=tuple(kind for _, kind in each),
        parts=parts,
        language=language,
    )


def _one_per_alert(
    each: list[tuple[AlertEvent, NoticeKind]],
) -> list[tuple[AlertEvent, NoticeKind]]:
    """One entry per alert, where the first of its notices stood: its newest revision,
    told as its end if that is what it is, else as the most telling of its notices (a
    first notice, an escalation, an update, a reminder, in that order). A fire and an
    update of one alert read as "2 alerts", the first one stale and with a second set of
    buttons (found from outside)."""
    newest: dict[str, AlertEvent] = {}
    kinds: dict[str, list[NoticeKind]] = {}
    for alert, kind in each:
        if alert.alert_id not in newest or alert.revision >= newest[alert.alert_id].revision:
            newest[alert.alert_id] = alert
        kinds.setdefault(alert.alert_id, []).append(kind)
    out = []
    for alert_id, alert in newest.items():
        told = kinds[alert_id]
        if alert.status == "resolved" and NoticeKind.resolve in told:
            out.append((alert, NoticeKind.resolve))
        else:
            out.append((alert, min(told, key=lambda k: _TELLING.get(k, len(_TELLING)))))
    return out


# Of an alert's notices grouped into one message, the one it is told as: the first
# notice before all (the person hears of it now), then the lead's, then a rise.
_TELLING = {
    NoticeKind.fire: 0,
    NoticeKind.escalate: 1,
    NoticeKind.update: 2,
    NoticeKind.repeat: 3,
}


def _rule(notice: Notice) -> str:
    """The rule a delivery is about ("digest" for digests, "case" for case and task
    notices, "handover" for handovers), for metric labels."""
    if notice.case is not None:
        return "case"
    if notice.handover is not None:
        return "handover"
    return "digest" if notice.kind == NoticeKind.digest else notice.first.rule


def _in_language(payload: dict[str, Any], language: str | None) -> dict[str, Any]:
    """A notice's stored payload for one destination: with its reader's language, if
    they chose one."""
    return {**payload, "language": language} if language else payload


def _digest(row: Any) -> bool:
    """A daily digest goes alone: it lists a CSM's open alerts already."""
    return str(row.notification).startswith(NoticeKind.digest.value)


def _case_notice(row: Any) -> bool:
    """A case, task or handover notice goes alone: a grouped Slack message lists
    alerts (a handover's notification begins as a case's)."""
    return str(row.notification).startswith(CASE_NOTIFICATION)
