"""From an account's stored measures to the health model's inputs.

The score itself comes from the declarative health model (``services/scoring/model``);
alert rules read the same inputs (``services/scoring/rules.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import lru_cache

from services.scoring.measures import Measures
from services.scoring.model.labels import GENERIC_LABELS
from services.scoring.model.schema import Behaviour, Depth, DepthLevel, Segment, Sla
from services.scoring.usage_measures import NAME_WINDOW_DAYS, NameUse

# A payment failure counts against health for a month (EW-08).
PAYMENT_FAILURE_MEMORY = timedelta(days=30)


DEPTH_LEVELS = (("workflow", 2), ("integrated", 3), ("customised", 4))


def depth_level(m: Measures, depth: Depth) -> int | None:
    """The highest of HL-03's levels the last 28 days of use show; None without use."""
    if not m.used_28d("event"):
        return None
    level = 1
    for name, number in DEPTH_LEVELS:
        rule: DepthLevel = getattr(depth, name)
        if uses_28d(m, rule) >= rule.min_uses and (rule.modules or rule.events or rule.platforms):
            level = number
    return level


def uses_28d(m: Measures, rule: DepthLevel) -> int:
    """Uses over the last 28 days of the modules, events and platforms ``rule`` names."""
    named = (
        [("module", x) for x in rule.modules]
        + [("event", x) for x in rule.events]
        + [("platform", x) for x in rule.platforms]
    )
    return sum(m.names.get(key, (0, 0))[1] for key in named)


def sla_breaches_28d(m: Measures, sla: Sla) -> int:
    """Tickets of the last 28 days answered later than the tier's first-reply target, or
    still unanswered past it as of the measures' day (CAD-15)."""
    target = timedelta(minutes=sla.target(m.tier))
    days = set(sla.working_days) if m.tier in sla.working_days_tiers else None
    start = m.as_of - timedelta(days=27)
    return sum(
        1
        for created, replied in m.ticket_replies
        if start <= m.day_of(created) <= m.as_of
        and working_time(created, replied or m.as_of_time, m.tz, days, past=target) > target
    )


def working_time(
    start: datetime,
    end: datetime,
    tz: tzinfo,
    days: set[int] | None,
    past: timedelta = timedelta.max,
) -> timedelta:
    """Time from ``start`` to ``end`` on the ISO weekdays ``days`` of zone ``tz`` (every
    day when None); days are measured in real time, 23 or 25 hours across a DST change.
    Counting stops once the time is more than ``past`` (a ticket unanswered for weeks is
    past its target after a working day or two, not after walking every day)."""
    # In UTC: aware datetimes of one zone subtract as wall-clock times.
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if days is None or end <= start:
        return end - start
    total = timedelta(0)
    day = start.astimezone(tz).date()
    while True:
        begins = datetime.combine(day, time(), tz).astimezone(UTC)
        ends = datetime.combine(day + timedelta(days=1), time(), tz).astimezone(UTC)
        if day.isoweekday() in days and min(end, ends) > max(start, begins):
            total += min(end, ends) - max(start, begins)
        if ends >= end or total > past:
            return total
        day += timedelta(days=1)


Inputs = dict[str, float | None]


def model_inputs(
    m: Measures,
    depth: Depth | None = None,
    sla: Sla | None = None,
    behaviour: Behaviour | None = None,
    also: Iterable[str] = (),
) -> Inputs:
    """The raw values the health model reads; None where there is no data. (The order of
    the keys is the order the stored inputs and explanations list them in.) ``also``:
    event names to measure besides the most used (``generic_inputs``)."""
    return {
        **_adoption(m),
        **_depth(m, depth or Depth()),
        **_activity(m),
        "open_tickets": m.open_tickets,
        **_relationship(m),
        "seats_purchased": m.seats_purchased,
        # The naive baseline the backtest compares the model with; shown, not scored.
        "days_since_last_use": days_since(m, m.last_seen_at),
        **_support(m, sla or Sla()),
        **_commercial(m),
        **generic_inputs(m, behaviour or Behaviour(), also),
    }


# Stored with the score's inputs besides the model's (``step.score_account``): the score
# and two counts; a milestone may read them ("score ≥ 70").
STORED_EXTRAS = ("score", "active_users_7d", "events_7d")


def measure_names(behaviour: Behaviour) -> tuple[frozenset[str], frozenset[str]]:
    """The names of the inputs every account gets (with the model's declared events and
    ratios), and the measures kept per event name (``events_28d`` of
    ``events_28d[report_run]``, for any name): what a milestone or rule may read."""
    day = date(2000, 1, 3)  # any day: only the names are read
    blank = Measures(
        account_id="",
        as_of=day,
        as_of_time=datetime.combine(day, time(), UTC),
        first_seen=day,  # the product-agnostic measures need a first use
        active_users_7d=0,
        active_users_30d=0,
        active_days_7d=0,
        events_7d=0,
        open_tickets=0,
        seats_purchased=None,
    )
    names = frozenset(model_inputs(blank, behaviour=behaviour))
    return names | frozenset(STORED_EXTRAS), frozenset(GENERIC_LABELS) - names


def _adoption(m: Measures) -> Inputs:
    """Shown and backtested, not scored by the default model (ACT-02…ACT-07)."""
    seats = m.seats_purchased or None
    platforms = m.used_28d("platform")
    all_uses = sum(platforms.values())
    return {
        "dau": m.active_users_today,
        "activation_rate": m.users_ever_active / seats if seats else None,
        "daily_login_ratio": (
            m.active_users_today / m.users_ever_active if m.users_ever_active else None
        ),
        "usage_minutes_per_active_user_7d": (
            round(m.usage_minutes_7d / m.active_users_7d, 2) if m.active_users_7d else None
        ),
        **{
            f"{platform}_share_28d": (platforms.get(platform, 0) / all_uses if all_uses else None)
            for platform in ("pc", "app", "api")
        },
    }


def _depth(m: Measures, depth: Depth) -> Inputs:
    """How deep the last 28 days of use went (HL-03)."""
    modules = m.used_28d("module")
    used_any = bool(m.used_28d("event"))
    core = depth.core_modules
    return {
        # None, not 0, when no use named a module: the product may have none.
        "module_breadth_28d": len(modules) if modules else None,
        "core_module_use_28d": (
            sum(1 for module in core if module in modules) / len(core) if core and modules else None
        ),
        "api_calls_28d": m.used_28d("platform").get("api", 0) if used_any else None,
        # HL-03's 定制型: uses of what the model counts as customisation (depth.customised).
        "customisation_uses_28d": uses_28d(m, depth.customised) if used_any else None,
        "depth_level": depth_level(m, depth),
    }


def _activity(m: Measures) -> Inputs:
    seats = m.seats_purchased or None
    return {
        "active_user_share_7d": m.active_users_7d / seats if seats else None,
        "active_user_share_30d": m.active_users_30d / seats if seats else None,
        "active_days_7d": m.active_days_7d if m.first_seen else None,
    }


def _relationship(m: Measures) -> Inputs:
    return {
        "days_since_touchpoint": (
            (m.as_of - m.day_of(m.last_touchpoint_at)).days if m.last_touchpoint_at else None
        ),
        "nps_latest": m.nps_latest,
        "nps_trend": (
            m.nps_latest - m.nps_previous
            if m.nps_latest is not None and m.nps_previous is not None
            else None
        ),
        # EW-14/DG-04: contact with the decision maker, not just the day-to-day contact.
        "days_since_decision_maker_contact": days_since(m, m.last_decision_maker_contact_at),
    }


def _support(m: Measures, sla: Sla) -> Inputs:
    return {
        "open_high_priority_tickets": m.open_high_priority_tickets,
        "sla_breaches_28d": sla_breaches_28d(m, sla),
        # TK-01: volume alone is not a problem signal; shown beside the backlog.
        "tickets_opened_28d": _in_28d(m, (created for created, _ in m.ticket_replies)),
        "tickets_solved_28d": _in_28d(m, m.tickets_solved),
        "oldest_open_ticket_days": days_since(m, m.oldest_open_ticket_at, default=0),
        # Ticket silence (DG-03): shown, not scored by default; rules watch it.
        "days_since_last_ticket": days_since(m, m.last_ticket_at),
    }


def _commercial(m: Measures) -> Inputs:
    return {
        "days_to_contract_end": (m.contract_end - m.as_of).days if m.contract_end else None,
        "days_since_purchase": (m.as_of - m.contract_start).days if m.contract_start else None,
        # LC-08: time to first value, here the first day of use after the purchase.
        "time_to_first_value_days": (
            max(0, (m.first_seen - m.contract_start).days)
            if m.first_seen and m.contract_start
            else None
        ),
        "not_live_after_90d": _not_live(m),
        "payment_failed_30d": _payment_failed(m),
    }


def _payment_failed(m: Measures) -> float | None:
    """1 after a failed payment within PAYMENT_FAILURE_MEMORY, else 0; None for an
    account never seen in use and without a failed payment: "none failed" says nothing of
    an account nothing is known of, which had scored 100 (green) on it alone, with every
    other measure missing (found from outside)."""
    failed = m.last_payment_failed_at
    if failed is not None and m.as_of - m.day_of(failed) <= PAYMENT_FAILURE_MEMORY:
        return 1.0
    return 0.0 if m.first_seen is not None or failed is not None else None


# Per-name measures for at most this many names per account (the most used over 90
# days, besides the names the model declares): the stored inputs stay small.
MAX_NAMES = 12
NO_USE = NameUse(0, 0, 0, 0, (0, 0, 0, 0), None)


def generic_inputs(m: Measures, behaviour: Behaviour, also: Iterable[str] = ()) -> Inputs:
    """Product-agnostic measures (issue 13): computed for any product from the daily
    counts per event name the state keeps, without configuration. Per-name measures are
    named ``measure[name]``, e.g. ``events_28d[like]``: for the names the model
    declares, the names ``also`` (that rules and the account's milestones read), and the
    account's most used."""
    if m.first_seen is None:
        return {}
    events = {n: use for (d, n), use in m.name_use.items() if d == "event"}
    total = _sum(list(events.values()))
    tenure = (m.as_of - m.first_seen).days
    out: Inputs = {
        "days_since_first_use": float(tenure),
        "active_days_28d": m.active_days_28d,
        "distinct_events_28d": sum(1 for u in events.values() if u.days_28),
        **_counts("usage_events", total, m, tenure, suffix=""),
    }
    top = sorted(events, key=lambda n: (-events[n].days_90, n))[:MAX_NAMES]
    for name in dict.fromkeys([*behaviour.events, *also, *top]):
        use = events.get(name, NO_USE)
        out |= _counts("events", use, m, tenure, suffix=f"[{name}]")
        out[f"days_since_event[{name}]"] = _silence(m, use, tenure)
        if (value := m.name_use.get(("value", name))) is not None:
            out |= _values(name, value, events.get(name, NO_USE))
    for ratio in behaviour.ratios:
        below = events.get(ratio.denominator, NO_USE).days_28
        above = events.get(ratio.numerator, NO_USE).days_28
        out[ratio.name] = round(above / below, 4) if below else None
    return out


def _sum(uses: list[NameUse]) -> NameUse:
    weeks = [sum(u.weeks[k] for u in uses) for k in range(4)]
    return NameUse(
        days_7=sum(u.days_7 for u in uses),
        days_28=sum(u.days_28 for u in uses),
        previous_28=sum(u.previous_28 for u in uses),
        days_90=sum(u.days_90 for u in uses),
        weeks=(weeks[0], weeks[1], weeks[2], weeks[3]),
        last_day=max((u.last_day for u in uses if u.last_day), default=None),
    )


def _counts(prefix: str, use: NameUse, m: Measures, tenure: int, suffix: str) -> Inputs:
    """Counts over 7 / 28 / 90 days, per active user (of the last 30 days: the users the
    state counts), the trend and the slope."""
    users = m.active_users_30d
    # The trend needs both 28-day windows inside the account's life; +1 on each side so
    # a name unused in both reads 1 (no change) rather than 0 ÷ 0.
    trend = round((use.days_28 + 1) / (use.previous_28 + 1), 4) if tenure >= 55 else None
    # Least-squares slope of the last four weekly counts, in events per week.
    w = use.weeks
    days_7, days_28, days_90, per_user, trend_key, slope = _count_keys(prefix, suffix)
    return {
        days_7: use.days_7,
        days_28: use.days_28,
        days_90: use.days_90,
        per_user: round(use.days_28 / users, 4) if users else None,
        trend_key: trend,
        slope: (3 * (w[3] - w[0]) + w[2] - w[1]) / 10 if tenure >= 27 else None,
    }


# Bounded: event names come from the products' events, however many there are.
@lru_cache(maxsize=4096)
def _count_keys(prefix: str, suffix: str) -> tuple[str, str, str, str, str, str]:
    """``_counts``' input names for a prefix and suffix, formatted once: a score names
    some 80 inputs this way."""
    return (
        f"{prefix}_7d{suffix}",
        f"{prefix}_28d{suffix}",
        f"{prefix}_90d{suffix}",
        f"{prefix}_28d_per_user{suffix}",
        f"{prefix}_trend{suffix}",
        f"{prefix}_slope{suffix}",
    )


def _silence(m: Measures, use: NameUse, tenure: int) -> float:
    """Days since the name was last used; unused over the whole kept window: at least
    that long (the state keeps no more), or the account's age if younger."""
    return float((m.as_of - use.last_day).days if use.last_day else min(tenure, NAME_WINDOW_DAYS))


def _values(name: str, value: NameUse, count: NameUse) -> Inputs:
    """Monetary (RFM) of a name whose events carry a "value" (e.g. an order's)."""
    return {
        f"value_90d[{name}]": value.days_90,
        f"value_per_event_90d[{name}]": round(value.days_90 / count.days_90, 2)
        if count.days_90
        else None,
    }


# DG-06: not live 3 months after purchase is a normal-danger sign.
GO_LIVE_EXPECTED_DAYS = 90


def days_since(m: Measures, moment: datetime | None, default: float | None = None) -> float | None:
    return max(0, (m.as_of - m.day_of(moment)).days) if moment else default


def _in_28d(m: Measures, moments: Iterable[datetime]) -> int:
    start = m.as_of - timedelta(days=27)
    return sum(1 for t in moments if start <= m.day_of(t) <= m.as_of)


def _not_live(m: Measures) -> float | None:
    """1 when the purchase is over 90 days old and the account is not live; 0 when live
    or still within the 90 days; None without a contract start, or when the account is
    in use but never sent a go-live date (no data: many products have no go-live)."""
    if m.contract_start is None or (m.go_live is None and m.first_seen is not None):
        return None
    deadline = m.contract_start + timedelta(days=GO_LIVE_EXPECTED_DAYS)
    live_by_deadline = m.go_live is not None and m.go_live <= max(deadline, m.as_of)
    return 1.0 if m.as_of > deadline and not live_by_deadline else 0.0


def segment_of(m: Measures) -> Segment:
    tenure = (m.as_of - m.contract_start).days if m.contract_start else None
    return Segment(tier=m.tier, lifecycle_stage=m.lifecycle_stage, tenure_days=tenure)
