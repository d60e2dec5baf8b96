"""Scoring's plan step, run by ``ScoringProcessor.rescore`` in the batch's transaction
(and so by the daily sweep of quiet accounts, which rescores them as of today): a new
account gets the plan of its tier's and stage's template; every milestone's progress is
evaluated on the values the health score just used, an achievement is stored with its
day, and a milestone that turns at risk or missed publishes an alert on ``hw.alerts``
like a rule's (routing, dedup, snooze and notices are the alerts service's), resolved
when it is achieved or back on track. The alert state is stored beside the milestone in
the same transaction, and alert ids count the milestone's problems, so a replayed batch
publishes the same ids and revisions, which the alerts service stores once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.scoring.measures import Measures
from services.scoring.model.labels import is_share
from services.scoring.plans import store
from services.scoring.plans.progress import (
    AlertState,
    Milestone,
    Progress,
    State,
    Told,
    alert_step,
    evaluate,
)
from services.scoring.plans.templates import GO_LIVE, PlanTemplates, from_template
from services.scoring.step import AccountContacts, ScoredAccount
from shared.contracts.alerts import AlertEvent
from shared.i18n import N_
from shared.i18n.alert_text import MEASURE_LABELS

RULE = "plan_milestone"
# Who made a plan applied automatically, as the plan's author.
AUTHOR = "template"

# The processor's reader of what alerts name (name, owner, sales owner) per account.
Contacts = Callable[[AsyncConnection, set[str]], Awaitable[dict[str, AccountContacts]]]


def plan_values(inputs: Mapping[str, Any], go_live: date | None, today: date) -> dict[str, Any]:
    """The values milestones read: the health score's stored inputs, the go-live day."""
    return {
        **inputs,
        GO_LIVE: go_live.isoformat() if go_live else None,
        "as_of": today.isoformat(),
    }


def _inputs(result: ScoredAccount) -> Mapping[str, Any]:
    """The inputs the score just used (stored anew, or unchanged since the last score)."""
    if result.health is not None:
        return dict(result.health["inputs"])
    return (result.previous.inputs if result.previous else None) or {}


def _first_score(result: ScoredAccount) -> bool:
    """A new account: scored now for the first time (its state row has no inputs yet)."""
    return result.previous is None or result.previous.inputs is None


def plan_start(template_days: int, contract_start: date | None, today: date) -> date:
    """A new account's plan runs from its purchase (LC-07 counts 90 days from paying)
    while that leaves the plan's time ahead; else from today."""
    if contract_start and contract_start + timedelta(days=template_days) >= today:
        return min(contract_start, today)
    return today


async def step_plans(
    conn: AsyncConnection,
    measures: Sequence[Measures],
    results: Sequence[ScoredAccount],
    templates: PlanTemplates,
    contacts: Contacts,
    now: datetime,
) -> list[AlertEvent]:
    """Apply templates to new accounts, step every milestone; the alerts to publish."""
    by_id = {m.account_id: m for m in measures}
    scored = {r.account_id: r for r in results}
    values = {
        account_id: plan_values(_inputs(scored[account_id]), m.go_live, m.as_of)
        for account_id, m in by_id.items()
        if account_id in scored
    }
    for account_id in values:
        if _first_score(scored[account_id]):
            await _apply_template(conn, by_id[account_id], templates, values[account_id], now)
    plans = await store.load_plans(conn, values, removed=True)
    told: list[_Told] = []
    for account_id, plan in plans.items():
        m = by_id[account_id]
        moved: dict[str, tuple[AlertState, date | None]] = {}
        for stored in plan.milestones:
            progress = evaluate(stored.milestone, values[account_id], m.as_of)
            state = State.on_track if stored.removed else progress.state
            after, tell = alert_step(stored.alert, state)
            achieved = progress.achieved_on if progress.state == State.achieved else None
            if stored.removed and after.status == "ok":
                await store.forget_removed(conn, account_id, stored.milestone.key)
            elif after != stored.alert or achieved != stored.milestone.achieved_on:
                moved[stored.milestone.key] = (after, achieved or stored.milestone.achieved_on)
            if tell is not None:
                # Dated as the rules' alerts are: a sweep's on the day it scored them.
                at = max(m.as_of_time, now)
                result = scored[account_id]
                told.append(_Told(m, result, stored.milestone, progress, tell, stored.removed, at))
        await store.save_steps(conn, account_id, moved, now)
    return await _alerts(conn, told, contacts)


async def _apply_template(
    conn: AsyncConnection,
    m: Measures,
    templates: PlanTemplates,
    values: Mapping[str, Any],
    now: datetime,
) -> None:
    template = templates.matching(m.tier, m.lifecycle_stage, auto=True)
    if template is None or await store.load_plans(conn, [m.account_id]):
        return  # no template for it, or a plan made before its first score
    start = plan_start(template.days, m.contract_start, m.as_of)
    await store.replace_plan(
        conn,
        m.account_id,
        template=template.id,
        start_on=start,
        milestones=from_template(template, start),
        values=values,
        author=AUTHOR,
        now=now,
    )


@dataclass(frozen=True)
class _Told:
    """A milestone whose alert tells something, with what its alert names."""

    measures: Measures
    result: ScoredAccount
    milestone: Milestone
    progress: Progress
    told: Told
    removed: bool
    at: datetime  # when it was told (its alert's fired_at)


async def _alerts(conn: AsyncConnection, told: list[_Told], contacts: Contacts) -> list[AlertEvent]:
    if not told:
        return []
    found = await contacts(conn, {t.measures.account_id for t in told})
    return [milestone_alert(t, found.get(t.measures.account_id)) for t in told]


def milestone_alert(t: _Told, contacts: AccountContacts | None) -> AlertEvent:
    """The deviation alert of a milestone (its English title and summary are templates
    that plans.po translates, as alerts.po does the rules')."""
    m, result, milestone, progress, told = t.measures, t.result, t.milestone, t.progress, t.told
    contacts = contacts or AccountContacts()
    name = contacts.name or m.account_id
    title, summary = alert_text(name, milestone, progress, told, removed=t.removed)
    return AlertEvent(
        alert_id=f"{m.account_id}:plan.{milestone.key}:{told.fire_count}",
        revision=told.revision,
        account_id=m.account_id,
        account_name=name,
        rule=RULE,
        severity=told.severity,
        status="firing" if told.status == "firing" else "resolved",
        title=title,
        summary=summary,
        score=result.score.value,
        band=result.score.band,
        owner=contacts.owner,
        tier=m.tier,
        sales_owner=contacts.sales_owner,
        fired_at=t.at,
        details={
            "rule_type": "plan",
            "as_of": m.as_of.isoformat(),
            "milestone": {
                "key": milestone.key,
                "title": milestone.title,
                "measure": milestone.measure,
                "op": milestone.op,
                "target": milestone.target,
                "due_on": milestone.due_on.isoformat(),
                **progress.as_dict(),
            },
        },
    )


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:g}" if abs(value) >= 1 else f"{value:.2g}"


def _shown(measure: str, value: float | None) -> str:
    """A milestone's value as its page shows it: a share as a percentage ("is 0.1, >= 0.5
    to reach" read as code, found from outside), any other measure as a number."""
    return f"{value:.0%}" if is_share(measure) and value is not None else _num(value)


# How a milestone's comparison reads in a sentence.
OPS = {">=": "≥", "<=": "≤"}


# The alerts' English texts: templates plans.po translates, which alert_text matches
# (shared/i18n/alert_text.py) to show a stored alert in the reader's language.
AT_RISK = N_("{name}: milestone {milestone} is at risk")
MISSED = N_("{name}: milestone {milestone} was missed")
REMOVED = N_("Removed from the plan.")
ACHIEVED = N_("Achieved on {day}.")
BACK_ON_TRACK = N_("Back on track.")
UNDONE_MISSED = N_("Was due {due}: not done.")
UNDONE = N_("Due {due} and not done yet.")
SHORT_MISSED = N_("Was due {due}: {measure} is {value}, {target} to reach.")
SHORT = N_("Due {due}: {measure} is {value}, {target} to reach; at this pace {projected} by then.")


def alert_text(
    name: str, milestone: Milestone, progress: Progress, told: Told, *, removed: bool = False
) -> tuple[str, str]:
    """The alert's title and summary in English; a resolved alert keeps the title of
    the problem it had."""
    state = told.state if told.status == "firing" else told.was
    head = MISSED if state == State.missed else AT_RISK
    title = head.format(name=name, milestone=milestone.title)
    due = milestone.due_on.isoformat()
    if told.status == "resolved":
        title = f"Resolved: {title}"
        if removed:
            return title, REMOVED
        if progress.state == State.achieved and progress.achieved_on:
            return title, ACHIEVED.format(day=progress.achieved_on.isoformat())
        return title, BACK_ON_TRACK
    if milestone.measure is None or milestone.measure == GO_LIVE:
        return title, (UNDONE_MISSED if state == State.missed else UNDONE).format(due=due)
    shown = partial(_shown, milestone.measure)
    fields = {
        "due": due,
        # By the words the plan form uses ("activation_rate is 0.1" read as code), the id
        # for a measure the form does not name.
        "measure": MEASURE_LABELS.get(milestone.measure, milestone.measure),
        "value": shown(progress.value),
        "target": f"{OPS.get(milestone.op, milestone.op)} {shown(milestone.target)}",
        "projected": shown(progress.projected),
    }
    return title, (SHORT_MISSED if state == State.missed else SHORT).format(**fields)
