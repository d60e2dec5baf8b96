"""What the workload API and the dashboard read: capacity per CSM, touchpoints due, NPS
per segment and account, the advocacy list. A CSM key (``ApiKey.portfolio_of``) sees
only the accounts its CSM owns now; owners are read from the accounts table at read
time, so a reassignment moves the accounts, their alerts and their due touchpoints.

The dashboard imports this module (and ``reassign``) directly: the import rules allow
it as they allow ``services.scoring.queries``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scoring.queries import Filters, portfolio_rows, portfolio_totals
from services.scoring.workload import nps
from services.scoring.workload.cadence import Cadences, due_dates, next_due
from services.scoring.workload.capacity import by_owner, capacity_of, load, served
from services.scoring.zones import zone_of
from shared.auth import ApiKey
from shared.config import Settings
from shared.contracts.alerts import OPEN_ALERT_STATUSES
from shared.contracts.events import LifecycleStage, fold_email
from shared.storage.tables import account_health, accounts, alerts, nps_responses, touchpoint_log

# SV-05: a survey about every six months, so a promoter's answer stands for half a year.
ADVOCACY_DAYS = 183
SEGMENTS = ("tier", "industry", "csm")
NONE = "none"  # the segment of accounts without the field


def _fields(facts: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict((facts or {}).get("fields") or {})


def _day(value: Any) -> date | None:
    return date.fromisoformat(value) if isinstance(value, str) else None


def _scoped(q: Select[Any], key: ApiKey, owner: str | None = None) -> Select[Any]:
    """``q`` (joined with accounts) narrowed to the key's portfolio and ``owner``."""
    for wanted in (key.portfolio_of, owner):
        if wanted is not None:
            q = q.where(accounts.c.owner_email == fold_email(wanted))
    return q


async def capacity(
    conn: AsyncConnection, key: ApiKey, settings: Settings, today: date
) -> list[dict[str, Any]]:
    """Per CSM (busiest first): accounts by tier, load against capacity, ARR managed per
    currency, touchpoints overdue and open alerts."""
    rows = served(await portfolio_rows(conn, key, Filters(), today))
    dues = await touchpoints_due(conn, key, settings, today)
    overdue = Counter(d["owner_email"] for d in dues if d["overdue"])
    open_alerts = await open_alerts_by_owner(conn, key)
    per_tier = capacity_of(settings)
    out = []
    for owner, mine in by_owner(rows).items():
        totals = portfolio_totals(mine)
        out.append(
            {
                "owner_email": owner,
                "accounts": len(mine),
                **load(mine, per_tier),
                "arr_by_currency": totals["arr_by_currency"],
                "arr_accounts_known": totals["arr_accounts_known"],
                "overdue_touchpoints": overdue[owner],
                "open_alerts": open_alerts.get(owner, 0),
            }
        )
    out.sort(key=lambda c: (-c["load"], c["owner_email"] or ""))
    return out


async def open_alerts_by_owner(conn: AsyncConnection, key: ApiKey) -> dict[str | None, int]:
    """Open alerts per the account's current owner."""
    q = (
        select(accounts.c.owner_email, func.count())
        .select_from(alerts.join(accounts, accounts.c.account_id == alerts.c.account_id))
        .where(alerts.c.status.in_(OPEN_ALERT_STATUSES))
        .group_by(accounts.c.owner_email)
    )
    return {owner: n for owner, n in await conn.execute(_scoped(q, key))}


async def touchpoints_due(
    conn: AsyncConnection, key: ApiKey, settings: Settings, today: date, owner: str | None = None
) -> list[dict[str, Any]]:
    """The accounts with a cadence (strategic, enterprise; not churned), soonest due
    first: the cadence due next, its day and whether it is overdue, and every cadence.
    Days are on each account's calendar (its zone, else the service's)."""
    cadences = Cadences.from_settings(settings)
    a = accounts.c
    q = _scoped(select(a.account_id, a.name, a.tier, a.owner_email, a.facts), key, owner)
    rows = [r for r in await conn.execute(q) if r.tier in ("strategic", "enterprise")]
    last = await _last_touchpoints(conn, key, owner)
    out = []
    for r in rows:
        fields = _fields(r.facts)
        if fields.get("lifecycle_stage") == LifecycleStage.churned:
            continue
        go_live = _day(fields.get("go_live"))
        start = go_live or _day(fields.get("contract_start"))
        dues = due_dates(
            cadences.of(r.tier, go_live, today),
            last.get(r.account_id, {}),
            start,
            today,
            zone_of(r.facts, settings.zone),
        )
        first = next_due(dues)
        if first is None:
            continue
        out.append(
            {
                "account_id": r.account_id,
                "name": r.name,
                "tier": r.tier,
                "owner_email": r.owner_email,
                "cadence": first.cadence,
                "due_on": first.due_on.isoformat(),
                "overdue": first.due_on < today,
                "days_overdue": max(0, (today - first.due_on).days),
                "last_at": first.last_at.isoformat() if first.last_at else None,
                "cadences": [
                    {
                        "cadence": d.cadence,
                        "every_days": d.every_days,
                        "last_at": d.last_at.isoformat() if d.last_at else None,
                        "due_on": d.due_on.isoformat(),
                    }
                    for d in dues
                ],
            }
        )
    out.sort(key=lambda d: (d["due_on"], d["account_id"]))
    return out


async def _last_touchpoints(
    conn: AsyncConnection, key: ApiKey, owner: str | None
) -> dict[str, dict[str, datetime]]:
    """account → touchpoint kind → its newest touchpoint."""
    t = touchpoint_log.c
    q = (
        select(t.account_id, t.touchpoint_kind, func.max(t.occurred_at))
        .select_from(touchpoint_log.join(accounts, accounts.c.account_id == t.account_id))
        .group_by(t.account_id, t.touchpoint_kind)
    )
    out: dict[str, dict[str, datetime]] = defaultdict(dict)
    for account_id, kind, at in await conn.execute(_scoped(q, key, owner)):
        out[account_id][kind] = at
    return out


def _bounds(start: date, end: date, zone: tzinfo) -> tuple[datetime, datetime]:
    """The instants of the days ``start``..``end`` (inclusive) on ``zone``'s calendar."""
    return datetime.combine(start, time(), zone), datetime.combine(
        end + timedelta(days=1), time(), zone
    )


def _segment(by: str, r: Any) -> str:
    if by == "tier":
        return str(r.tier or NONE)
    if by == "csm":
        return str(r.owner_email or NONE)
    return str(_fields(r.facts).get("industry") or NONE)


async def nps_by_segment(
    conn: AsyncConnection, key: ApiKey, by: str, start: date, end: date, zone: tzinfo
) -> dict[str, Any]:
    """NPS over the answers given from ``start`` to ``end``: overall and per segment
    (``by``: tier, industry or the account's CSM now), each with its monthly trend."""
    n = nps_responses.c
    lo, hi = _bounds(start, end, zone)
    q = (
        select(n.occurred_at, n.score, accounts.c.tier, accounts.c.owner_email, accounts.c.facts)
        .select_from(nps_responses.outerjoin(accounts, accounts.c.account_id == n.account_id))
        .where(n.occurred_at >= lo, n.occurred_at < hi)
    )
    answers: dict[str, list[tuple[date, int]]] = defaultdict(list)
    everyone: list[tuple[date, int]] = []
    for r in await conn.execute(_scoped(q, key)):
        answer = (r.occurred_at.astimezone(zone).date(), r.score)
        answers[_segment(by, r)].append(answer)
        everyone.append(answer)
    return {
        "overall": {**nps.summary(s for _, s in everyone), "trend": nps.monthly(everyone)},
        "segments": [
            {"segment": name, **nps.summary(s for _, s in got), "trend": nps.monthly(got)}
            for name, got in sorted(answers.items())
        ],
    }


async def account_nps(conn: AsyncConnection, account_id: str, zone: tzinfo) -> dict[str, Any]:
    """An account's answers (newest first), its latest, its NPS over all of them and
    its monthly trend."""
    n = nps_responses.c
    q = (
        select(n.occurred_at, n.score, n.user_id, n.comment)
        .where(n.account_id == account_id)
        .order_by(n.occurred_at.desc(), n.event_id)
    )
    rows = list(await conn.execute(q))
    return {
        "account_id": account_id,
        "latest": rows[0].score if rows else None,
        "latest_at": rows[0].occurred_at.isoformat() if rows else None,
        **nps.summary(r.score for r in rows),
        "trend": nps.monthly((r.occurred_at.astimezone(zone).date(), r.score) for r in rows),
        "answers": [
            {
                "at": r.occurred_at.isoformat(),
                "score": r.score,
                "category": nps.category(r.score),
                "user_id": r.user_id,
                "comment": r.comment,
            }
            for r in rows
        ],
    }


async def advocates(conn: AsyncConnection, key: ApiKey, now: datetime) -> list[dict[str, Any]]:
    """Promoters of the last six months (SV-05), newest first, one row per account and
    respondent: the account, the contact, the comment and the account's health band."""
    n, h = nps_responses.c, account_health.c
    q = (
        select(
            n.account_id,
            n.occurred_at,
            n.score,
            n.user_id,
            n.comment,
            accounts.c.name,
            accounts.c.tier,
            accounts.c.owner_email,
            accounts.c.facts,
            h.band,
            h.score.label("health_score"),
        )
        .select_from(
            nps_responses.outerjoin(accounts, accounts.c.account_id == n.account_id).outerjoin(
                account_health, h.account_id == n.account_id
            )
        )
        .where(n.score >= nps.PROMOTER_MIN)
        .where(n.occurred_at >= now - timedelta(days=ADVOCACY_DAYS))
        .order_by(n.occurred_at.desc(), n.event_id)
    )
    seen: set[tuple[str, str | None]] = set()
    out = []
    for r in await conn.execute(_scoped(q, key)):
        if (r.account_id, r.user_id) in seen:
            continue
        seen.add((r.account_id, r.user_id))
        out.append(
            {
                "account_id": r.account_id,
                "name": r.name,
                "tier": r.tier,
                "owner_email": r.owner_email,
                "score": r.score,
                "at": r.occurred_at.isoformat(),
                "user_id": r.user_id,
                "contact": _contact(r.facts, r.user_id),
                "comment": r.comment,
                "band": r.band,
                "health_score": r.health_score,
            }
        )
    return out


def _contact(facts: Mapping[str, Any] | None, user_id: str | None) -> dict[str, Any] | None:
    """The CRM contact the respondent is (matched by email), if the facts name one."""
    for c in _fields(facts).get("contacts") or []:
        if user_id and isinstance(c, dict) and c.get("email") == user_id:
            return {"name": c.get("name"), "email": c.get("email"), "role": c.get("role")}
    return None


# A CSM's home lists what is overdue and what falls due within two weeks: enough to plan
# the coming visits (CAD-18: book the next visit at the end of each).
SOON_DAYS = 14


async def due_soon(
    conn: AsyncConnection, key: ApiKey, settings: Settings, today: date
) -> dict[str, Any]:
    """For a CSM's home: ``due`` (overdue or due within SOON_DAYS) and ``due_overdue``."""
    rows = await touchpoints_due(conn, key, settings, today)
    horizon = (today + timedelta(days=SOON_DAYS)).isoformat()
    return {
        "due": [r for r in rows if r["due_on"] <= horizon],
        "due_overdue": sum(1 for r in rows if r["overdue"]),
    }
