"""The alerts page: every alert the viewer may see, filtered and paged with true totals,
and one alert's page with its history and every action the alerts API has
(acknowledge, snooze for a chosen time, unsnooze, resolve, not useful, comment).

Actions go through ``services.alerts.actions.apply_action``, as the API's and Slack's
do, in the transaction that read the alert, and are recorded with who did them.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from services.alerts.actions import Action, ActionError, actor_of, apply_action, snooze_note
from services.alerts.cases.queries import open_case_of
from services.alerts.queries import visible_alert, visible_alerts
from services.alerts.silences import (
    SilenceError,
    active_silence,
    silence,
    silences_of,
    unsilence,
)
from services.dashboard.admin_pages import alerting_of
from services.dashboard.alert_list import SORTS, VIEWS, AlertFilters, list_alerts
from services.dashboard.auth import NotFound, Viewer, checked_form, context, safe_next, viewer
from services.dashboard.home import Page, csm_emails, text_param
from services.dashboard.routes import NOTICES as ROUTE_NOTICES
from services.dashboard.routes import _with_notice, language, page
from services.scoring.queries import account_health_row, generic_label, recovered_since
from shared.auth import Scope
from shared.clock import utcnow
from shared.contracts.alerts import SEVERITY_ORDER
from shared.contracts.events import Tier
from shared.i18n import N_, translate
from shared.i18n.alert_text import MEASURE_LABELS, RULE_LABELS
from shared.storage.tables import alert_activity, alerts
from shared.web import whole_number

router = APIRouter(prefix="/ui", include_in_schema=False)

PAGE_SIZE = 50
# Snooze lengths offered, in hours (the API takes up to 90 days).
SNOOZE_HOURS = (1, 4, 24, 72, 168, 720)
ACTIONS = ("acknowledge", "snooze", "unsnooze", "resolve", "not_useful", "comment")
# The states the list's menu offers (alert_list.VIEWS), by name.
VIEW_LABELS = {
    "to_do": N_("to do"),
    "open": N_("open"),
    "firing": N_("firing"),
    "acknowledged": N_("acknowledged"),
    "snoozed": N_("snoozed"),
    "muted": N_("muted by a critical alert"),
    "resolved": N_("resolved"),
    "all": N_("all"),
}
# An alert's history, each action by what it did.
ACTION_LABELS = {
    "acknowledge": N_("acknowledged"),
    "snooze": N_("snoozed"),
    "unsnooze": N_("snooze ended"),
    "resolve": N_("resolved"),
    "not_useful": N_("marked not useful"),
    "comment": N_("comment"),
    "silence": N_("rule silenced"),
    "unsilence": N_("silence ended"),
}
# How long the alert page offers to silence its rule on its account, in days: a month to
# a contract year (silences.MAX_SILENCE).
SILENCE_DAYS = (30, 90, 180, 365)
# What the list's ticked alerts can be given at once, and the redirect's words for it.
BULK_ACTIONS = {
    "acknowledge": N_("Acknowledged"),
    "snooze": N_("Snoozed"),
    "resolve": N_("Resolved"),
    "not_useful": N_("Marked not useful"),
}
BULK_DONE = N_("{action}: {n} of the {total} picked.")
BULK_SKIPPED = N_(
    "The others were resolved, changed meanwhile or not yours: nothing was done to them."
)
TEXT_CHARS = 10_000  # the API's limit on a comment
# What an action's redirect may say (``done``): fixed texts, never text from the request.
NOTICES = {
    "acknowledge": "Alert acknowledged: no reminders and no escalation for it.",
    "snooze": "Alert snoozed: no reminders until the time shown.",
    "unsnooze": "Snooze ended: reminders resume.",
    "resolve": "Alert resolved.",
    "not_useful": "Marked not useful: the rule's precision counts it.",
    "comment": "Comment added.",
    "conflict": "That alert changed meanwhile; what you see is current.",
    "gone": "That alert is not visible to you.",
    "invalid": "That action needs a comment or a snooze time; nothing was changed.",
    "none_picked": "Tick the alerts to act on first: nothing was changed.",
    "silence": "Rule silenced on this account: its alerts there stay snoozed until the day "
    "shown, told to nobody.",
    "unsilence": ROUTE_NOTICES["unsilence"],
    "case_invalid": ROUTE_NOTICES["case_invalid"],
}


@dataclass(frozen=True)
class AlertQuery:
    """The alerts page's filters and page, read from and written to its query string."""

    state: str = "to_do"
    rule: str = ""
    severity: str = ""
    account: str = ""  # a part of an account's id or name
    owner: str = ""  # a CSM's email: a lead's view of one CSM's alerts
    tier: str = ""  # the account's tier
    sort: str = "urgency"  # alert_list.SORTS
    page: int = 1
    # The choices asked for that the page does not know ("tier", as asked), left out
    # and said: a typed "tier=Gold" showed every alert without a word (found from
    # outside). Not part of the page's links.
    unknown: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    @classmethod
    def parse(cls, params: Mapping[str, str], may_pick_owner: bool = True) -> AlertQuery:
        unknown: list[tuple[str, str]] = []

        def choice(name: str, known: Collection[str], default: str) -> str:
            """One of ``known``, read as people type it (any case, "non_focus")."""
            asked = params.get(name, "")
            value = asked.strip().lower()
            value = value if value in known else value.replace("_", "-")
            if value in known:
                return value
            if asked:
                unknown.append((name, asked[:40]))
            return default

        return cls(
            state=choice("state", VIEWS, "to_do"),
            rule=text_param(params.get("rule"), 100),
            severity=choice("severity", SEVERITY_ORDER, ""),
            account=text_param(params.get("account"), 200),
            owner=text_param(params.get("owner"), 320) if may_pick_owner else "",
            tier=choice("tier", TIERS, ""),
            sort=choice("sort", SORTS, "urgency"),
            page=whole_number(params.get("page", "1"), 6) or 1,
            unknown=tuple(unknown),
        )

    def said(self, lang: str) -> str | None:
        """What the page says of the choices it left out, if any."""
        if not self.unknown:
            return None
        sep = "、" if lang.startswith("zh") else ", "  # as the pages' ``list_sep``
        asked = sep.join(f"{name} “{value}”" for name, value in self.unknown)
        return translate(lang, UNKNOWN_CHOICES, asked=asked)

    @property
    def filters(self) -> AlertFilters:
        return replace(
            VIEWS[self.state],
            rule=self.rule or None,
            severity=self.severity or None,
            search=self.account or None,
            owner=self.owner or None,
            tier=self.tier or None,
        )

    def link(self, **changes: Any) -> str:
        changes.setdefault("page", 1)
        q = replace(self, **changes)
        pairs = [
            (k, str(v))
            for k, v in vars(q).items()
            if v and k != "unknown" and (k, v) not in _DEFAULTS
        ]
        return "/ui/alerts" + (f"?{urllib.parse.urlencode(pairs)}" if pairs else "")


_DEFAULTS = {("state", "to_do"), ("page", 1), ("sort", "urgency")}
UNKNOWN_CHOICES = N_("Not a choice of this page, so left out: {asked}.")
TIERS = tuple(t.value for t in Tier)
# The list's orders, by their words (``alert_list.SORTS``).
SORT_LABELS = {
    "urgency": N_("Most urgent first"),
    "arr": N_("Most ARR first"),
    "health": N_("Weakest health first"),
    "oldest": N_("Waiting longest first"),
}


@router.get("/alerts", response_class=HTMLResponse)
async def alerts_view(request: Request) -> Response:
    who = await viewer(request)
    query = AlertQuery.parse(request.query_params, may_pick_owner=who.key.portfolio_of is None)
    currency = context(request).settings.currency
    async with context(request).engine.connect() as conn:
        number = max(1, query.page)
        start = (number - 1) * PAGE_SIZE
        total, rows = await list_alerts(
            conn, who, utcnow(), query.filters, PAGE_SIZE, start, query.sort, currency
        )
        if not rows and total and number > 1:  # past the end: the last page
            number = -(-total // PAGE_SIZE)
            offset = (number - 1) * PAGE_SIZE
            total, rows = await list_alerts(
                conn, who, utcnow(), query.filters, PAGE_SIZE, offset, query.sort, currency
            )
        rules = await _rules(conn, who)
        owners = await csm_emails(conn, who)
    values = {
        "query": replace(query, page=number),
        "listing": Page(rows, total, number, PAGE_SIZE),
        "rules": rules,
        "states": [(name, VIEW_LABELS[name]) for name in VIEWS],
        "owners": owners,
        "severities": tuple(SEVERITY_ORDER),
        "tiers": TIERS,
        "sorts": SORT_LABELS,
        "snooze_hours": SNOOZE_HOURS,
        **_notice(request),
    }
    if "notice" not in values and (unknown := query.said(language(request))):
        values["notice"] = unknown
    return page(request, "alerts.html", values, who)


@router.get("/alerts/{alert_id:path}", response_class=HTMLResponse)
async def alert_view(request: Request, alert_id: str) -> Response:
    """One alert: what it says, its history, and a form for each action."""
    who = await viewer(request)
    now = utcnow()
    async with context(request).engine.connect() as conn:
        if await visible_alert(conn, alert_id, who.key) is None:
            raise NotFound(alert_id)
        _, rows = await list_alerts(conn, who, now, _one(alert_id))
        activity = await _activity(conn, alert_id)
        about = await _about(conn, who, alert_id, rows[0]["account_id"])
        about["silence"] = await active_silence(conn, rows[0]["account_id"], rows[0]["rule"], now)
        if rows[0]["status"] != "resolved":
            rules = about["rules"] or [rows[0]["rule"]]
            about["recovered"] = await _recovered(request, conn, rows[0], rules)
    values = {
        "a": rows[0],
        "about": about,
        "activity": activity,
        "action_labels": ACTION_LABELS,
        "snooze_hours": SNOOZE_HOURS,
        "silence_days": SILENCE_DAYS,
        **_notice(request),
    }
    return page(request, "alert.html", values, who)


async def _about(
    conn: AsyncConnection, who: Viewer, alert_id: str, account_id: str
) -> dict[str, Any]:
    """What one needs to act on the alert, on its page (it showed the rule's id, its
    status and when it fired): what it says, what changed in the week before, the
    account's health now, its last touchpoint and its open risk case."""
    q = select(alerts.c.payload).where(alerts.c.alert_id == alert_id)
    payload = (await conn.execute(q)).scalar_one_or_none() or {}
    health = await account_health_row(conn, account_id)
    details = payload.get("details") or {}
    changes = details.get("changes") or []
    step = details.get("next_step")
    fired = details.get("values")
    symptoms = details.get("symptoms") or []
    return {
        # The rules whose state the alert stands for: its family's symptoms, or its own.
        "rules": [str(x["rule"]) for x in symptoms if isinstance(x, dict) and "rule" in x],
        "summary": payload.get("summary"),
        "next_step": step if isinstance(step, str) else None,
        "changes": [str(c["text"]) for c in changes if isinstance(c, dict) and "text" in c],
        "measures": rule_measures(
            fired if isinstance(fired, dict) else {}, health, payload.get("score")
        ),
        "score": health.score if health is not None else None,
        "band": health.band if health is not None else None,
        "last_touchpoint_at": health.last_touchpoint_at if health is not None else None,
        "case": await open_case_of(conn, account_id, who.key),
    }


async def _recovered(
    request: Request, conn: AsyncConnection, alert: Mapping[str, Any], rules: list[str]
) -> dict[str, datetime] | None:
    """When the alert's rules recovered and when it ends if they stay so (after the
    longest of their cooldowns); None while one still holds."""
    cleared = await recovered_since(conn, alert["account_id"], rules)
    if cleared is None:
        return None
    alerting, _ = await alerting_of(request).current(conn)
    cooldown = {rule.id: rule.cooldown for rule in alerting.rules}
    ends = [at + cooldown.get(rule, timedelta(0)) for rule, at in cleared.items()]
    return {"since": max(cleared.values()), "ends": max(ends)}


# What a rule may read from the account's row rather than from its inputs.
ROW_MEASURES = ("score", "band", "danger_level")
# What a rule may read of the score against the model's edges (``rules.rule_values``),
# stored in no row: worded here, and "now" worked out from the score's move since the
# alert fired (they read as raw ids with no value now, found from outside).
EDGE_LABELS = {
    "above_green": N_("Points above the green line (below it: negative)"),
    "above_red": N_("Points above the red line (below it: negative)"),
    "green_from": N_("Green from"),
    "red_below": N_("Red below"),
}


def rule_measures(
    fired: Mapping[str, Any], health: Any, fired_score: Any = None
) -> list[dict[str, Any]]:
    """The measures the alert's rules read, as when it fired and as now: its title keeps
    the numbers of when it fired ("no touchpoint for 80 days" stood beside 89 days now,
    found from outside). A measure the score no longer stores reads None now.
    ``fired_score``: the score when it fired."""
    now: dict[str, Any] = dict(health.inputs or {}) if health is not None else {}
    components = (health.components or {}).get("components", []) if health is not None else []
    for name in ROW_MEASURES:
        now[name] = getattr(health, name, None)
    score = now["score"]
    for name in ("above_green", "above_red"):
        then = fired.get(name)
        if all(isinstance(v, int | float) for v in (then, score, fired_score)):
            now[name] = then + (score - fired_score)
    for name in ("green_from", "red_below"):
        now[name] = fired.get(name)  # the model's edges, as when it fired
    labels = {
        str(c.get("name")): str(c["label"])
        for c in components
        if isinstance(c, dict) and c.get("label")
    }
    return [
        {
            "measure": name,
            "label": labels.get(name)
            or MEASURE_LABELS.get(name)
            or EDGE_LABELS.get(name)
            or generic_label(name),
            "then": value,
            "now": now.get(name),
        }
        for name, value in sorted(fired.items())
    ]


def _one(alert_id: str) -> AlertFilters:
    return replace(VIEWS["all"], alert_id=alert_id)


def _notice(request: Request) -> dict[str, str]:
    params, lang = request.query_params, language(request)
    done = params.get("done", "")
    action = BULK_ACTIONS.get(done.removeprefix("bulk_")) if done.startswith("bulk_") else None
    if action is not None:  # counts only, parsed: never text from the request
        n, total = whole_number(params.get("n", ""), 3), whole_number(params.get("of", ""), 3)
        if n is None or total is None:
            return {}
        said = translate(lang, BULK_DONE, action=translate(lang, action), n=n, total=total)
        return {"notice": said + (" " + translate(lang, BULK_SKIPPED) if n < total else "")}
    text = NOTICES.get(done)
    return {"notice": translate(lang, text)} if text else {}


async def _rules(conn: AsyncConnection, who: Viewer) -> list[str]:
    """The rules to filter by: those alerts were raised for, and the default file's
    (a rule may only ever be a symptom under a family's alert: a detractor under a
    relationship alert is found by "NPS detractor" too)."""
    q = visible_alerts(select(alerts.c.rule).distinct(), who.key)
    return sorted({rule for (rule,) in await conn.execute(q)} | set(RULE_LABELS))


async def _activity(conn: AsyncConnection, alert_id: str) -> list[dict[str, Any]]:
    """The alert's activity, a snooze's time apart from its reason (shown in the
    reader's language and zone)."""
    a = alert_activity.c
    q = (
        select(a.at, a.actor, a.action, a.text)
        .where(a.alert_id == alert_id)
        .order_by(a.at, a.activity_id)
    )
    shown = []
    for row in await conn.execute(q):
        timed = row.action in ("snooze", "silence")
        until, text = snooze_note(row.text) if timed else (None, row.text)
        shown.append(
            {"at": row.at, "actor": row.actor, "action": row.action, "until": until, "text": text}
        )
    return shown


def action_from_form(form: Mapping[str, str], actor: str, now: datetime) -> Action | None:
    """The action a form asks for, None when it is malformed (an unknown action, a
    snooze without an offered length, a comment without text)."""
    name = form.get("action", "")
    text = form.get("text", "").strip()[:TEXT_CHARS] or None
    if name not in ACTIONS or (name == "comment" and not text) or "\x00" in (text or ""):
        return None  # (PostgreSQL refuses NUL in text)
    until = None
    if name == "snooze":
        hours = form.get("hours", "")
        chosen = whole_number(hours, 3)
        if chosen not in SNOOZE_HOURS:
            return None
        until = now + timedelta(hours=chosen)
    return Action(name, actor, text=text, until=until)


@router.post("/alerts")
async def act(request: Request) -> Response:
    """Apply the form's action to the form's alert; then back to the page it came from."""
    who, form = await checked_form(request, Scope.respond)
    alert_id = form.get("alert_id", "")
    now = utcnow()
    action = action_from_form(form, actor_of(who.key), now)
    done = action.name if action else "invalid"
    async with context(request).engine.begin() as conn:
        row = await visible_alert(conn, alert_id, who.key)
        if row is None:
            done = "gone"
        elif action is not None:
            try:
                await apply_action(conn, row, action, now)
            except ActionError:
                done = "conflict"
    back = safe_next(form.get("next") or f"/ui/alerts/{urllib.parse.quote(alert_id)}")
    return RedirectResponse(_with_notice(back, done), status_code=303)


@router.post("/alerts/silence")
async def silence_rule(request: Request) -> Response:
    """Silence the form's alert's rule on its account for the form's days (``silences``)."""
    who, form = await checked_form(request, Scope.respond)
    alert_id = form.get("alert_id", "")
    days = whole_number(form.get("days", ""), 3)
    text = form.get("text", "").strip()[:2000] or None
    now = utcnow()
    done = "silence"
    async with context(request).engine.begin() as conn:
        row = await visible_alert(conn, alert_id, who.key)
        if row is None:
            done = "gone"
        elif days not in SILENCE_DAYS or "\x00" in (text or ""):
            done = "invalid"
        else:
            alerting, _ = await alerting_of(request).current(conn)
            try:
                await silence(
                    conn,
                    alerting,
                    account_id=row.account_id,
                    rule=row.rule,
                    until=now + timedelta(days=days),
                    actor=actor_of(who.key),
                    reason=text,
                    now=now,
                )
            except SilenceError:
                done = "invalid"
    back = safe_next(form.get("next") or f"/ui/alerts/{urllib.parse.quote(alert_id)}")
    return RedirectResponse(_with_notice(back, done), status_code=303)


@router.post("/silences/end")
async def end_silence(request: Request) -> Response:
    """End the silence of the form's rule on the form's account now."""
    who, form = await checked_form(request, Scope.respond)
    account_id = text_param(form.get("account_id"), 200)
    rule = text_param(form.get("rule"), 100)
    done = "unsilence"
    now = utcnow()
    async with context(request).engine.begin() as conn:
        mine = await silences_of(conn, who.key, now, account_id)
        if not any(s["rule"] == rule for s in mine):
            done = "gone"
        else:
            await unsilence(
                conn, account_id=account_id, rule=rule, actor=actor_of(who.key), now=now
            )
    back = safe_next(form.get("next") or f"/ui/accounts/{urllib.parse.quote(account_id)}")
    return RedirectResponse(_with_notice(back, done), status_code=303)


@router.post("/alerts/bulk")
async def act_on_many(request: Request) -> Response:
    """Apply the form's action to every alert ticked on the list (its ``pick-N``
    fields, a page's worth at most), each as the one-alert form would; back to the list
    saying for how many it was done. An alert resolved, changed meanwhile or not visible
    is left as it was and counted out, never fails the others."""
    who, form = await checked_form(request, Scope.respond)
    picked = list(dict.fromkeys(v for k, v in form.items() if k.startswith("pick-")))
    ids = picked[:PAGE_SIZE]
    now = utcnow()
    name = form.get("action", "")
    action = action_from_form(form, actor_of(who.key), now) if name in BULK_ACTIONS else None
    back = safe_next(form.get("next") or "/ui/alerts")
    if not ids or action is None:
        return RedirectResponse(_with_notice(back, "invalid" if ids else "none_picked"), 303)
    done = 0
    async with context(request).engine.begin() as conn:
        rows = [row for alert_id in ids if (row := await visible_alert(conn, alert_id, who.key))]
        # In the order of their silence locks (``hold_silences``), as every transaction
        # takes several: a snooze takes its alert's.
        for row in sorted(rows, key=lambda r: (r.account_id, r.rule)):
            try:
                await apply_action(conn, row, action, now)
            except ActionError:
                continue
            done += 1
    said = _with_notice(back, f"bulk_{action.name}", n=done, of=len(ids))
    return RedirectResponse(said, status_code=303)
