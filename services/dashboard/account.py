"""One account's page: score trend, components and what changed, depth and danger,
seat activation, active-user share, top modules, open tickets, touchpoints, alerts."""

from __future__ import annotations

import contextlib
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.alerts.cases.queries import VOCABULARY, open_case_of
from services.alerts.queries import visible_alerts
from services.alerts.silences import silences_of
from services.dashboard import changes
from services.dashboard.alert_list import open_alerts
from services.dashboard.auth import NotFound, Viewer
from services.scoring.queries import (
    OPEN_TICKET_STATUSES,
    account_health_row,
    account_measures,
    daily_scores,
    health_model,
    newest_score_day,
    score_pulls,
    visible_account,
    zone_of,
)
from shared.storage.tables import alerts, health_daily, tickets, touchpoint_log
from shared.web import ClientError

HISTORY_DAYS = 90
TOP_MODULES = 8
RECENT = 20
# The handbook's four depth levels (HL-03): number and name.
DEPTH_LEVELS = {1: "record-keeping", 2: "workflow", 3: "integrated", 4: "customised"}
# The reports of an account (their pages are the reports' own, under this page's path).
REPORT_KINDS = (("usage", "Usage report"), ("bimonthly", "Bi-monthly review"), ("qbr", "QBR"))
# A churned account is offered no review with the customer (bi-monthly, QBR): there is
# none to hold. Its usage report stays, for the record.
KEPT_FOR_THE_RECORD = ("usage",)
# A period's stored day may be up to this many days older than asked (a row is written
# only when something changed), as the scoring's own comparisons allow.
PAST_SLACK_DAYS = 7
# The handbook's danger causes (danger.py's codes) in words without numbers, so the
# page can say them in every language; the numbers stay in the cause's own text.
DANGER_CAUSES = {
    "wrong_fit": "Sold outside the ideal customer profile",
    "decision_maker_change": "The customer's decision maker changed",
    "unclear_value": "Busy but shallow: many seats active, only record-keeping use",
    "slow_go_live": "Not live 3 months after purchase",
    "long_unresolved_tickets": "A ticket has been open a long time",
    "champion_change": "The customer's champion changed",
    "unmet_requests": "A feature request has waited over a month",
}

# A ticket's status, priority and type in words the page translates (values as stored).
TICKET_LABELS = {
    "open": "open",
    "pending": "waiting on the customer",
    "solved": "solved",
    "closed": "closed",
    "low": "low",
    "normal": "normal",
    "high": "high",
    "urgent": "urgent",
    "question": "question",
    "bug": "bug",
    "feature_request": "feature request",
    "other": "other",
}
# Facts the CRM sends as ISO days: shown as the reader writes a day.
DAY_FACTS = ("contract_start", "contract_end", "go_live")

# A risk case's danger level by name (the case vocabulary, lent by the cases' queries).
CASE_LEVELS = VOCABULARY[1]


def _shown_facts(fields: dict[str, Any]) -> dict[str, Any]:
    shown = dict(fields)
    for key in DAY_FACTS:
        if isinstance(shown.get(key), str):
            with contextlib.suppress(ValueError):
                shown[key] = date.fromisoformat(shown[key])
    return shown


async def account_page(
    conn: AsyncConnection, who: Viewer, account_id: str, now: datetime, zone: tzinfo
) -> dict[str, Any]:
    """Everything the page shows; NotFound when the account is not the viewer's."""
    try:
        facts_row = await visible_account(conn, account_id, who.key)
    except ClientError as exc:
        raise NotFound(account_id) from exc
    stored = (facts_row.facts or {}) if facts_row is not None else {}
    # The account's days (its history, its today) are its own zone's, as scoring counts.
    zone = zone_of(stored, zone)
    facts = _shown_facts(stored.get("fields", {}))
    h = await account_health_row(conn, account_id)
    explanation = (h.components if h is not None else None) or {}
    inputs = (h.inputs if h is not None else None) or {}
    m = await account_measures(conn, account_id, None, zone)
    seats = facts.get("seats_purchased") or (m.seats_purchased if m else None)
    ever = m.users_ever_active if m else 0
    level = inputs.get("depth_level")
    components = _components(explanation)
    newest = await newest_score_day(conn, account_id)
    churned = facts.get("lifecycle_stage") == "churned"
    return {
        "account_id": account_id,
        "name": facts.get("name") or account_id,
        "facts": facts,
        "arr": _arr(facts),
        "churned": churned,
        "churned_at": _churned_at(stored) if churned else None,
        "owner": (facts.get("owner") or {}).get("email"),
        "health": h,
        "depth_level": (level, DEPTH_LEVELS.get(level, "")) if level is not None else None,
        "danger": _danger(explanation.get("danger")),
        "weakest": changes.weakest(components),
        "components": components,
        "groups": explanation.get("groups") or {},
        "capped_by": explanation.get("capped_by"),
        # What the points add up to, beside a capped score ("39" under points of 63.8
        # read as a sum that does not add up).
        "points": sum(float(c.get("contribution") or 0) for c in components),
        # Measures without data, in words (their labels are the model's, which only
        # scored measures carry in the explanation).
        "missing": [str(n).replace("_", " ") for n in explanation.get("missing") or []],
        "changes": await _changes(conn, account_id, h, newest, components, zone),
        "seats": seats,
        "users_ever_active": ever,
        "activation": round(ever / seats, 4) if seats else None,
        "active_users_7d": h.active_users_7d if h is not None else None,
        "active_share_7d": inputs.get("active_user_share_7d"),
        "history": await _history(
            conn, account_id, _card_day(h, newest, zone), now.astimezone(zone).date()
        ),
        "modules": _modules(m.names if m else {}),
        "tickets": await _open_tickets(conn, account_id),
        "ticket_labels": TICKET_LABELS,
        "day_facts": DAY_FACTS,
        "touchpoints": await _touchpoints(conn, account_id),
        "last_touchpoint_at": h.last_touchpoint_at if h is not None else None,
        "open_alerts": await open_alerts(conn, who, now, account_id),
        # Its open risk case, linked where the page offered only to open one.
        "open_case": await open_case_of(conn, account_id, who.key),
        "case_levels": CASE_LEVELS,
        "past_alerts": await _past_alerts(conn, who, account_id),
        "silences": await silences_of(conn, who.key, now, account_id),
        "reports": [(k, t) for k, t in REPORT_KINDS if not churned or k in KEPT_FOR_THE_RECORD],
    }


def _card_day(h: Any, newest: date | None, zone: tzinfo) -> date | None:
    """The day the card's score is as of: its newest stored day, or later when scoring
    since changed nothing (no row is written then: the score held), as of its newest
    event or the sweep's day. The chart runs to it, carrying the score as the history
    API does for a day without its own row."""
    if h is None or newest is None:
        return newest
    days: list[date] = [newest, h.as_of.astimezone(zone).date()]
    if h.swept_on is not None:
        days.append(h.swept_on)
    return max(days)


def _arr(facts: dict[str, Any]) -> float | None:
    """ARR as the portfolio counts it: the CRM's ARR, else twelve times its MRR; None
    (shown as unknown, never as 0) when the CRM sent neither."""
    if facts.get("arr") is not None:
        return float(facts["arr"])
    return float(facts["mrr"]) * 12 if facts.get("mrr") is not None else None


def _churned_at(stored: dict[str, Any]) -> date | None:
    """The day the CRM first said the account churned (kept with its facts)."""
    first = stored.get("churned_at")
    return datetime.fromisoformat(first).date() if isinstance(first, str) else None


def _danger(risk: dict[str, Any] | None) -> dict[str, Any]:
    """The danger level and its causes, each with the handbook's words for its code."""
    risk = risk or {}
    causes = [
        {**cause, "title": DANGER_CAUSES.get(cause.get("code", ""), cause.get("text", ""))}
        for cause in risk.get("causes") or []
    ]
    return {"level": risk.get("level"), "causes": causes}


def _components(explanation: dict[str, Any]) -> list[dict[str, Any]]:
    """Components, biggest contribution first, with their share of the score."""
    comps = [dict(c) for c in explanation.get("components") or []]
    for c in comps:
        c["label"] = c.get("label") or c.get("name") or c.get("measure") or "?"
    return sorted(comps, key=lambda c: -(c.get("contribution") or 0))


async def _changes(
    conn: AsyncConnection,
    account_id: str,
    h: Any,
    newest: date | None,
    components: list[dict[str, Any]],
    zone: tzinfo,
) -> list[tuple[str, dict[str, Any] | None]]:
    """Per period, the score's move and the measures that pulled it (see changes.py).
    A period back to before the account's first use (``zone``: its days) has no earlier
    score, as the portfolio's "Change 7d" has none (``home.score_changes``): the score of
    its facts alone showed as a jump of tens of points (found from outside)."""
    if h is None or newest is None:
        return []
    first_use = h.first_seen_at.astimezone(zone).date() if h.first_seen_at else None
    now = changes.now_state(newest, h)
    labels = {str(c.get("name")): c["label"] for c in components}
    model = await health_model(conn)
    out: list[tuple[str, dict[str, Any] | None]] = []
    for _key, back, title in changes.PERIODS:
        row = await _stored_before(conn, account_id, newest, back)
        if row is not None and back is not None and (first_use is None or row.day < first_use):
            row = None
        if row is None:
            out.append((title, None))
            continue
        then = changes.stored_state(row)
        moved = score_pulls(model, now.profile, then.inputs, now.inputs)
        named = {**moved.labels, **labels}
        out.append((title, changes.compare(now, then, named, moved.measures)))
    return out


async def _stored_before(
    conn: AsyncConnection, account_id: str, newest: date, back: int | None
) -> Any:
    """The stored day ``back`` days before ``newest`` (or the latest within a week
    before it); with ``back`` None, the stored day before ``newest``."""
    h = health_daily.c
    q = select(health_daily).where(h.account_id == account_id)
    if back is None:
        q = q.where(h.day < newest)
    else:
        target = newest - timedelta(days=back)
        q = q.where(h.day <= target, h.day >= target - timedelta(days=PAST_SLACK_DAYS))
    return (await conn.execute(q.order_by(h.day.desc()).limit(1))).first()


async def _history(
    conn: AsyncConnection, account_id: str, newest: date | None, today: date
) -> dict[str, Any]:
    """The score, band and 7-day active-user share (as %) of each day up to the newest
    score, read as the history API reads them (``daily_scores``: a day without its own
    row carries the latest earlier one), so the chart, the card and
    ``GET …/health/history`` say the same. ``recorded`` marks days scored on their own;
    ``partial`` says the last day is today, still under way."""
    out: dict[str, Any] = {
        "days": [],
        "scores": [],
        "bands": [],
        "recorded": [],
        "active_share": [],
        "partial": False,
    }
    if newest is None:
        return out
    start = newest - timedelta(days=HISTORY_DAYS - 1)
    days = await daily_scores(conn, account_id, start, newest)
    shares = await _shares(conn, account_id, start, newest)
    share = shares.pop(None, None)
    for entry in days:
        share = shares.get(entry["day"], share)
        out["days"].append(entry["day"])
        out["scores"].append(entry["score"])
        out["bands"].append(entry["band"])
        out["recorded"].append(entry["recorded"])
        out["active_share"].append(round(share * 100, 1) if share is not None else None)
    out["partial"] = newest == today
    return out


async def _shares(
    conn: AsyncConnection, account_id: str, start: date, end: date
) -> dict[str | None, float | None]:
    """The stored 7-day active-user share per day from ``start`` to ``end`` (ISO day →
    share), and under None the latest stored before ``start``, carried in as scores are."""
    h = health_daily.c
    share = h.inputs["active_user_share_7d"].as_float()
    rows = await conn.execute(
        select(h.day, share)
        .where(h.account_id == account_id, h.day <= end)
        .where(h.day >= start - timedelta(days=HISTORY_DAYS))
        .order_by(h.day)
    )
    out: dict[str | None, float | None] = {}
    for day, value in rows:
        out[None if day < start else day.isoformat()] = value
    return out


def _modules(names: dict[tuple[str, str], tuple[int, int]]) -> list[dict[str, Any]]:
    used: list[dict[str, Any]] = [
        {"module": name, "count_7d": c7, "count_28d": c28}
        for (dimension, name), (c7, c28) in names.items()
        if dimension == "module" and c28
    ]
    used.sort(key=lambda u: (-u["count_28d"], u["module"]))
    return used[:TOP_MODULES]


async def _open_tickets(conn: AsyncConnection, account_id: str) -> list[Any]:
    q = (
        select(tickets)
        .where(tickets.c.account_id == account_id, tickets.c.status.in_(OPEN_TICKET_STATUSES))
        .order_by(tickets.c.created_at)
        .limit(RECENT * 5)
    )
    return list(await conn.execute(q))


async def _touchpoints(conn: AsyncConnection, account_id: str) -> list[Any]:
    """The newest touchpoints: when, what, with whom (name and role) and by which CSM."""
    t = touchpoint_log.c
    q = (
        select(t.occurred_at, t.touchpoint_kind, t.contact_name, t.contact_role, t.csm_email)
        .where(t.account_id == account_id)
        .order_by(t.occurred_at.desc())
        .limit(RECENT)
    )
    return list(await conn.execute(q))


async def _past_alerts(conn: AsyncConnection, who: Viewer, account_id: str) -> list[Any]:
    q = (
        select(
            alerts.c.alert_id,
            alerts.c.rule,
            alerts.c.severity,
            alerts.c.title,
            alerts.c.fired_at,
            alerts.c.resolved_at,
        )
        .where(alerts.c.account_id == account_id, alerts.c.status == "resolved")
        .order_by(alerts.c.fired_at.desc())
        .limit(RECENT)
    )
    return list(await conn.execute(visible_alerts(q, who.key)))
