"""What other packages may read of scoring: the one import they are allowed (the import
rules in ``pyproject.toml``, explained in ``docs/architecture.md``).

The read API's routes (``api.py``, ``portfolio.py``), the dashboard and the reports all
read through these functions, so a page and ``GET /v1/accounts`` agree on who sees
what, on scores, ARR and the order. A CSM key (``ApiKey.portfolio_of``) sees only the
accounts its CSM owns.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import Annotated, Any

from pydantic import AfterValidator
from sqlalchemy import Select, Table, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scoring import usage_store
from services.scoring.as_of import AHEAD_OF_UTC as AHEAD_OF_UTC  # for other packages
from services.scoring.as_of import HEALTH_AS_OF_COLUMNS as HEALTH_AS_OF_COLUMNS
from services.scoring.as_of import check_not_future as check_not_future  # for other packages
from services.scoring.as_of import (
    check_retention,
    measures_as_of,
    oldest_as_of,
    with_history,
)
from services.scoring.as_of import open_at as open_at  # for other packages
from services.scoring.as_of import portfolio_health_as_of as portfolio_health_as_of
from services.scoring.as_of import scores_as_of as scores_as_of  # for other packages
from services.scoring.as_of import tickets_as_of as tickets_as_of  # for other packages
from services.scoring.danger import cause_code as cause_code  # for other packages
from services.scoring.facts_history import end_of as end_of  # for other packages
from services.scoring.facts_history import facts_as_of as facts_as_of  # for other packages
from services.scoring.measures import Measures, load_measures
from services.scoring.model.attribution import Pulls as Pulls  # for other packages
from services.scoring.model.attribution import profile_named, pulls
from services.scoring.model.labels import generic_label as generic_label  # for other packages
from services.scoring.model.labels import is_share as is_share  # for other packages
from services.scoring.model.schema import HealthModel
from services.scoring.model.store import ModelStore
from services.scoring.state import OPEN_STATUSES
from services.scoring.usage import MODULE_KEY as MODULE_KEY  # for other packages
from services.scoring.usage import AccountUsage as AccountUsage  # for other packages
from services.scoring.usage import DayUse as DayUse  # for other packages
from services.scoring.zones import account_zone as account_zone  # for other packages
from services.scoring.zones import account_zones as account_zones  # for other packages
from services.scoring.zones import zone_of as zone_of  # for other packages (import rules)
from shared.auth import ApiKey
from shared.clock import utcnow
from shared.contracts.events import fold_email
from shared.i18n import N_
from shared.storage.tables import (
    account_health,
    accounts,
    activity_daily,
    alerts,
    band_changes,
    health_daily,
    rule_state,
    tickets,
    touchpoint_log,
)
from shared.web import ClientError

# Ticket statuses that count as open: the same the health model's measures count.
OPEN_TICKET_STATUSES: tuple[str, ...] = OPEN_STATUSES
# One answer holds a day per entry: three years, a few hundred KB of JSON at most.
MAX_HISTORY_DAYS = 3 * 366
# Days a query may name. Nothing stored lies outside them (ingest refuses such events),
# so a day beyond could only answer empty; and they keep every range computed from a
# day (a report's months, a default window) far from the calendar's ends, where date
# arithmetic overflows (year 1 and 9999).
FIRST_DAY = date(1970, 1, 1)
LAST_DAY = date(2100, 12, 31)
# "Stably active" in the lead's view: at least half of the seats active over 7 days.
STABLE_ACTIVE_SHARE = 0.5


def _within_calendar(day: date) -> date:
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ValueError(f"give a day from {FIRST_DAY} to {LAST_DAY}")
    return day


# A day parameter: 422 naming the parameter when it lies outside FIRST_DAY..LAST_DAY.
Day = Annotated[date, AfterValidator(_within_calendar)]


def day_range(start: date | None, end: date, default_days: int) -> tuple[date, date]:
    """``start``..``end`` (``start`` defaulting to ``default_days`` back): 422 when the
    days are swapped or more than one answer holds. ``end`` may come from stored data,
    so it is brought within the calendar first."""
    end = min(max(end, FIRST_DAY), LAST_DAY)
    start = start or max(FIRST_DAY, end - timedelta(days=default_days - 1))
    if start > end:
        raise ClientError(422, "bad_range", "'from' is after 'to': swap them.")
    if (end - start).days >= MAX_HISTORY_DAYS:
        raise ClientError(
            422,
            "range_too_long",
            "Ask for at most {limit} days at a time (split the range).",
            values={"limit": MAX_HISTORY_DAYS},
        )
    return start, end


async def visible_account(conn: AsyncConnection, account_id: str, key: ApiKey) -> Any:
    """The account's facts row (None when only scores are known), or 404 when it is
    unknown or not the key's to see."""
    row = (await conn.execute(select(accounts).where(accounts.c.account_id == account_id))).first()
    known = (
        row is not None
        or (
            await conn.execute(
                select(account_health.c.account_id).where(account_health.c.account_id == account_id)
            )
        ).first()
        is not None
    )
    owner = row.owner_email if row is not None else None
    if not known or key.portfolio_of not in (None, owner):
        raise ClientError(
            404,
            "not_found",
            "No account {account_id!r} visible to this key.",
            values={"account_id": account_id},
        )
    return row


async def account_health_row(conn: AsyncConnection, account_id: str) -> Any:
    """The account's current health row (score, band, inputs, explanation), None before
    its first event."""
    q = select(account_health).where(account_health.c.account_id == account_id)
    return (await conn.execute(q)).first()


async def account_measures(
    conn: AsyncConnection,
    account_id: str,
    as_of: date | None,
    zone: tzinfo,
    kept: tuple[int, int] | None = None,
) -> Measures | None:
    """The account's rolling measures as of ``as_of`` (default: its newest event's day),
    None without activity. As of a given day: with the facts and the open tickets of
    that day, and (given the ``kept`` window and history days) 422
    ``as_of_beyond_retention`` for a day older than the kept daily counts answer, and
    ``as_of_in_future`` for a day after today in the account's zone (its measures would
    read the days to come as days without use)."""
    if as_of is None:
        measures = await load_measures(conn, {account_id}, None, zone)
    else:
        today = utcnow().astimezone(await account_zone(conn, account_id, zone)).date()
        check_not_future(as_of, today, N_("in the account's zone"))
        if kept is not None:
            oldest = await oldest_as_of(conn, account_id, kept, zone)
            check_retention(account_id, as_of, oldest, kept[1])
        measures = await measures_as_of(conn, {account_id}, as_of, zone)
    return measures[0] if measures else None


@dataclass(frozen=True)
class Filters:
    band: str | None = None
    danger_level: str | None = None
    tier: str | None = None
    csm: str | None = None
    lifecycle_stage: str | None = None
    renewal_within_days: int | None = None


def _arr(fields: dict[str, Any]) -> float | None:
    if fields.get("arr") is not None:
        return float(fields["arr"])
    return float(fields["mrr"]) * 12 if fields.get("mrr") is not None else None


async def portfolio_rows(
    conn: AsyncConnection, key: ApiKey, filters: Filters, today: date
) -> list[dict[str, Any]]:
    """The scored accounts ``key`` may see that match ``filters``, with their facts,
    renewal and risk × value (unsorted: see ``SORTS``)."""
    h = account_health
    q = select(
        h.c.account_id,
        h.c.score,
        h.c.band,
        h.c.danger_level,
        h.c.as_of,
        h.c.active_users_7d,
        h.c.open_tickets,
        accounts.c.name,
        accounts.c.tier,
        accounts.c.owner_email,
        accounts.c.seats_purchased,
        accounts.c.facts,
    ).select_from(h.outerjoin(accounts, accounts.c.account_id == h.c.account_id))
    if key.portfolio_of is not None:
        q = q.where(accounts.c.owner_email == key.portfolio_of)
    if filters.danger_level == "none":  # no handbook cause: stored as no level at all
        q = q.where(h.c.danger_level.is_(None))
    for column, wanted in (
        (h.c.band, filters.band),
        (h.c.danger_level, None if filters.danger_level == "none" else filters.danger_level),
        (accounts.c.tier, filters.tier),
        (accounts.c.owner_email, fold_email(filters.csm) if filters.csm else None),
    ):
        if wanted:
            q = q.where(column == wanted)
    rows = (_portfolio_row(r, today) for r in await conn.execute(q))
    return [row for row in rows if _matches(row, filters)]


def _portfolio_row(r: Any, today: date) -> dict[str, Any]:
    fields = (r.facts or {}).get("fields", {})
    end = date.fromisoformat(fields["contract_end"]) if fields.get("contract_end") else None
    arr = _arr(fields)
    # A churned account is lost already: no risk to weigh (it led the riskiest first).
    churned = fields.get("lifecycle_stage") == "churned"
    risk = (100 - r.score) if r.score is not None and not churned else None
    return {
        "account_id": r.account_id,
        "name": r.name,
        "tier": r.tier,
        "owner_email": r.owner_email,
        "lifecycle_stage": fields.get("lifecycle_stage"),
        "score": r.score,
        "band": r.band,
        "danger_level": r.danger_level,
        "as_of": r.as_of.isoformat(),
        "seats_purchased": r.seats_purchased,
        "active_users_7d": r.active_users_7d,
        "open_tickets": r.open_tickets,
        "arr": arr,
        # The ARR's currency (None: the service's); totals never add two currencies.
        "currency": fields.get("currency"),
        "contract_end": end.isoformat() if end else None,
        # None for a former customer: its contract is no renewal to come ("-218 d").
        "days_to_renewal": (end - today).days if end and not churned else None,
        # The ARR weighted by its risk ((100 − score) / 100): where attention pays most,
        # in money never more than the ARR (× (100 − score) read as a loss 60 times a
        # ¥60,000 account's value).
        "risk_value": round(risk * arr / 100, 2) if risk is not None and arr else None,
    }


def _matches(row: dict[str, Any], filters: Filters) -> bool:
    """The filters kept in the facts document, which SQL does not see."""
    if filters.lifecycle_stage and row["lifecycle_stage"] != filters.lifecycle_stage:
        return False
    churned = row["lifecycle_stage"] == "churned"
    if filters.band and churned and filters.lifecycle_stage != "churned":
        # A churned account is no customer: its band counts in no total, and "red"
        # listed former customers beside the two red ones counted (found from outside).
        return False
    to_renewal = row["days_to_renewal"]
    return filters.renewal_within_days is None or (
        to_renewal is not None and 0 <= to_renewal <= filters.renewal_within_days
    )


# Orders by an amount of money. Amounts in two currencies are never compared (no
# exchange rates are configured; ¥100,000 read as more than $50,000): the service's
# currency comes first, then each other currency in turn, each by its amounts.
MONEY_SORTS = frozenset({"risk_value", "arr"})


def money_group(currency: str | None, home: str | None) -> str:
    """Where an account's amounts sort among currencies: the service's (``home``, or
    none named) first."""
    return "" if currency is None or currency == home else currency


# Sort key and direction of each order the portfolio can be listed in.
SORTS = {
    "risk_value": (lambda a: a["risk_value"] if a["risk_value"] is not None else -1.0, True),
    "score": (lambda a: a["score"] if a["score"] is not None else 101, False),
    "renewal": (lambda a: a["days_to_renewal"] if a["days_to_renewal"] is not None else 1e9, False),
    "name": (lambda a: (a["name"] or a["account_id"]).lower(), False),
}


async def newest_score_day(conn: AsyncConnection, account_id: str) -> date | None:
    """The newest day the account's score was recorded (None before its first score)."""
    h = health_daily.c
    q = select(h.day).where(h.account_id == account_id).order_by(h.day.desc()).limit(1)
    day: date | None = (await conn.execute(q)).scalar()
    return day


async def daily_scores(
    conn: AsyncConnection, account_id: str, start: date, end: date
) -> list[dict[str, Any]]:
    """The score and band as of each day from ``start`` to ``end`` (none before the first
    score). A day's row is stored only when the score or its inputs changed, so a day
    without one carries the latest earlier score; ``recorded`` says which days have
    their own row."""
    h = health_daily.c
    # The newest row on or before ``start`` stands for the first days of the range.
    first = (
        select(func.max(h.day)).where(h.account_id == account_id, h.day <= start).scalar_subquery()
    )
    rows = await conn.execute(
        select(h.day, h.score, h.band)
        .where(h.account_id == account_id, h.day >= func.coalesce(first, start))
        .where(h.day <= end)
        .order_by(h.day)
    )
    stored = {r.day: r for r in rows}
    earlier = [r for day, r in stored.items() if day < start]
    days, current = [], earlier[-1] if earlier else None
    for offset in range((end - start).days + 1):
        day = start + timedelta(days=offset)
        current = stored.get(day, current)
        if current is None:  # before the first score
            continue
        days.append(
            {
                "day": day.isoformat(),
                "score": current.score,
                "band": current.band,
                "recorded": day in stored,
            }
        )
    return days


async def band_changes_between(
    conn: AsyncConnection, account_id: str, start: date, end: date, zone: tzinfo
) -> list[dict[str, Any]]:
    """The account's band changes on the days from ``start`` to ``end`` (its days, in its
    zone; ``zone`` for an account without one), oldest first."""
    local = await account_zone(conn, account_id, zone)
    q = (
        select(band_changes)
        .where(band_changes.c.account_id == account_id)
        .order_by(band_changes.c.changed_at)
    )
    return [
        {"at": c.changed_at.isoformat(), "from": c.from_band, "to": c.to_band, "score": c.score}
        for c in await conn.execute(q)
        if start <= c.changed_at.astimezone(local).date() <= end
    ]


def portfolio_totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals over portfolio rows, for ``GET /v1/aggregates`` and the lead's page alike:
    accounts (all the rows) and churned accounts; the customers' (not churned) bands and
    danger levels, ARR and ARR at risk (red band), active users and share of stably
    active accounts. A churned account is no customer: its band (red, once its use
    stopped) made the home page's red count larger than the lead page's (found from
    outside), and its ARR is lost, though its CRM facts may still carry it; ``arr_by_currency``
    keeps each currency's ARR apart (``default``: accounts without one, in the
    service's) and ``arr_accounts_known`` says how many customers have an ARR at all;
    ``arr_total`` is kept for old callers and adds whatever amounts there are."""
    customers = [r for r in rows if r["lifecycle_stage"] != "churned"]
    stable = sum(
        1
        for r in customers
        if r["seats_purchased"]
        and r["active_users_7d"] / r["seats_purchased"] >= STABLE_ACTIVE_SHARE
    )
    return {
        "accounts": len(rows),
        "by_band": dict(Counter(r["band"] or "unscored" for r in customers)),
        "by_danger_level": dict(Counter(r["danger_level"] or "none" for r in customers)),
        "arr_total": round(sum(r["arr"] or 0 for r in customers), 2),
        "arr_at_risk": round(sum(r["arr"] or 0 for r in customers if r["band"] == "red"), 2),
        "arr_accounts_known": sum(1 for r in customers if r["arr"] is not None),
        "arr_by_currency": _arr_by_currency(customers),
        "active_users_7d": sum(r["active_users_7d"] or 0 for r in customers),
        "stably_active_share": round(stable / len(customers), 4) if customers else None,
        "churned": sum(1 for r in rows if r["lifecycle_stage"] == "churned"),
    }


# The currency key of accounts whose facts name none (the service's currency).
DEFAULT_CURRENCY = "default"


def _arr_by_currency(customers: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """currency → ARR and ARR at risk (red band) over the customers with a known ARR;
    amounts in different currencies are never added."""
    out: dict[str, dict[str, float]] = {}
    for r in customers:
        if r["arr"] is None:
            continue
        sums = out.setdefault(
            r.get("currency") or DEFAULT_CURRENCY, {"arr": 0.0, "arr_at_risk": 0.0}
        )
        sums["arr"] = round(sums["arr"] + r["arr"], 2)
        if r["band"] == "red":
            sums["arr_at_risk"] = round(sums["arr_at_risk"] + r["arr"], 2)
    return out


# The entry of one day of a timeline, created on first use.
DayEntry = Callable[[date | datetime], dict[str, Any] | None]


async def timeline(
    conn: AsyncConnection, account_id: str, start: date, end: date, zone: tzinfo
) -> list[dict[str, Any]]:
    """Day by day from ``start`` to ``end``, the days with something to show: usage
    (events, duration), the day's score, tickets opened and solved, touchpoints, band
    changes and alerts; each on its day in the account's zone (``zone`` for an account
    without one), as its usage and scores are counted."""
    days: dict[str, dict[str, Any]] = {}
    local = await account_zone(conn, account_id, zone)

    def entry(on: date | datetime) -> dict[str, Any] | None:
        """The day's entry (a moment: on its day in the account's zone); None outside
        the range."""
        if isinstance(on, datetime):
            on = on.astimezone(local).date()
        if not start <= on <= end:
            return None
        return days.setdefault(on.isoformat(), {"day": on.isoformat()})

    for add in (_usage, _scores, _tickets, _touchpoints, _band_changes, _alerts):
        await add(conn, account_id, start, end, entry)
    return [days[day] for day in sorted(days)]


def _per_day(table: Table, account_id: str, start: date, end: date, *columns: Any) -> Select[Any]:
    """``columns`` of a table with a row per account and day, from ``start`` to ``end``."""
    return select(table.c.day, *columns).where(
        table.c.account_id == account_id, table.c.day.between(start, end)
    )


async def _usage(
    conn: AsyncConnection, account_id: str, start: date, end: date, entry: DayEntry
) -> None:
    t = activity_daily.c
    q = _per_day(activity_daily, account_id, start, end, t.events, t.duration_s)
    for on, events, seconds in await conn.execute(q):
        if (day := entry(on)) is not None:
            day.update(events=events, usage_minutes=round(seconds / 60, 1))


async def _scores(
    conn: AsyncConnection, account_id: str, start: date, end: date, entry: DayEntry
) -> None:
    t = health_daily.c
    for on, score, band in await conn.execute(
        _per_day(health_daily, account_id, start, end, t.score, t.band)
    ):
        if (day := entry(on)) is not None:
            day.update(score=score, band=band)


async def _tickets(
    conn: AsyncConnection, account_id: str, start: date, end: date, entry: DayEntry
) -> None:
    for t in await conn.execute(select(tickets).where(tickets.c.account_id == account_id)):
        if (day := entry(t.created_at)) is not None:
            day.setdefault("tickets_opened", []).append(t.ticket_id)
        if t.solved_at and (day := entry(t.solved_at)) is not None:
            day.setdefault("tickets_solved", []).append(t.ticket_id)


async def _touchpoints(
    conn: AsyncConnection, account_id: str, start: date, end: date, entry: DayEntry
) -> None:
    q = select(touchpoint_log.c.occurred_at).where(touchpoint_log.c.account_id == account_id)
    for (at,) in await conn.execute(q):
        if (day := entry(at)) is not None:
            day["touchpoints"] = day.get("touchpoints", 0) + 1


async def _band_changes(
    conn: AsyncConnection, account_id: str, start: date, end: date, entry: DayEntry
) -> None:
    q = select(band_changes).where(band_changes.c.account_id == account_id)
    for c in await conn.execute(q):
        if (day := entry(c.changed_at)) is not None:
            day.setdefault("band_changes", []).append(
                {"from": c.from_band, "to": c.to_band, "score": c.score}
            )


async def _alerts(
    conn: AsyncConnection, account_id: str, start: date, end: date, entry: DayEntry
) -> None:
    a = alerts.c
    q = select(a.alert_id, a.rule, a.severity, a.status, a.fired_at).where(
        a.account_id == account_id
    )
    for r in await conn.execute(q):
        if (day := entry(r.fired_at)) is not None:
            day.setdefault("alerts", []).append(
                {"alert_id": r.alert_id, "rule": r.rule, "severity": r.severity, "status": r.status}
            )


async def usage_states(
    conn: AsyncConnection, ids: Iterable[str], as_of: date | None = None
) -> dict[str, AccountUsage]:
    """The accounts' usage states (``usage.py``: daily counters of the kept window), for
    per-account reads other packages make (reports); ``as_of``: with the days of the
    long history the 90 days to that day need, where the window no longer holds them."""
    states = await usage_store.load(conn, ids)
    return states if as_of is None else await with_history(conn, states, as_of)


# The model in force, parsed once per version for the reads that score with it (a parse
# takes milliseconds; a page asks once).
_MODELS = ModelStore()


async def health_model(conn: AsyncConnection) -> HealthModel:
    """The health model in force."""
    model, _ = await _MODELS.current(conn)
    return model


def score_pulls(
    model: HealthModel, profile: str | None, before: dict[str, Any], after: dict[str, Any]
) -> Pulls:
    """Which measures moved a score from ``before`` to ``after`` (two days' stored
    inputs, scored with the model's ``profile``), by how many points each, under
    ``model`` (``model/attribution.py``)."""
    return pulls(model, profile_named(model, profile), before, after)


async def recovered_since(
    conn: AsyncConnection, account_id: str, rules: Iterable[str]
) -> dict[str, datetime] | None:
    """Rule → when it recovered on the account, the alert staying open for its cooldown
    (``rules.step``'s ``cleared_at``), for those of ``rules`` (an alert's symptoms)
    that fire; None while one of them still holds, or none fires. An alert on a green
    account read as wrong for a day with nothing saying it was ending (found from
    outside)."""
    r = rule_state.c
    rows = await conn.execute(
        select(r.rule, r.status, r.cleared_at).where(
            r.account_id == account_id, r.rule.in_(list(rules))
        )
    )
    firing = {row.rule: row.cleared_at for row in rows if row.status == "firing"}
    if not firing or any(cleared is None for cleared in firing.values()):
        return None
    return firing
