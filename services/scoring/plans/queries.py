"""What the API and the dashboard read and change of success plans: the one module of
the package other packages may import (``pyproject.toml``'s import rules).

Progress is computed here from the same stored values the health score used (its
inputs as of the account's newest data), on the account's own today, so a page and
``GET /v1/accounts/{id}/plan`` show what scoring's next step will decide. A CSM key
sees and changes only its own portfolio's plans (404 otherwise, as everywhere).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scoring.inputs import measure_names
from services.scoring.model.store import ModelStore
from services.scoring.plans import store
from services.scoring.plans.hook import plan_values
from services.scoring.plans.progress import PROBLEMS, Progress, State, evaluate
from services.scoring.plans.templates import (
    GO_LIVE,
    SHARE_TARGET,
    NewMilestone,
    PlanTemplate,
    PlanTemplates,
    UnknownMeasure,
    check_known,
    check_target,
    from_template,
    share_target_wrong,
)
from services.scoring.plans.templates import plan_templates as plan_templates  # the dashboard's
from services.scoring.queries import visible_account, zone_of
from shared.auth import ApiKey
from shared.contracts.events import fold_email, no_control
from shared.storage.db import among
from shared.storage.tables import account_health, accounts, success_plans
from shared.web import ClientError

# The order of the states in a list, worst first.
STATES = (State.missed, State.at_risk, State.on_track, State.achieved)


@dataclass(frozen=True)
class Today:
    """When a request is answered: the instant, and the service's zone (each account's
    today is in its own zone)."""

    now: datetime
    zone: tzinfo

    def of(self, facts: Any) -> date:
        return self.now.astimezone(zone_of(facts, self.zone)).date()


async def _values(
    conn: AsyncConnection, facts: dict[str, Any], when: Today
) -> dict[str, tuple[date, dict[str, Any]]]:
    """account → its today and the values its milestones read (``facts``: account →
    its facts row's facts)."""
    h = account_health.c
    stored = {
        r.account_id: r.inputs
        for r in await conn.execute(
            select(h.account_id, h.inputs).where(among(conn, h.account_id, facts))
        )
    }
    found = {}
    for account_id, known in facts.items():
        today = when.of(known)
        live = ((known or {}).get("fields") or {}).get(GO_LIVE)
        go_live = date.fromisoformat(live) if live else None
        found[account_id] = (today, plan_values(stored.get(account_id) or {}, go_live, today))
    return found


def _milestone_view(stored: store.StoredMilestone, p: Progress) -> dict[str, Any]:
    m = stored.milestone
    return {
        "key": m.key,
        "title": m.title,
        "measure": m.measure,
        "op": m.op,
        "target": m.target,
        "baseline": m.baseline,
        "start_on": m.start_on.isoformat(),
        "due_on": m.due_on.isoformat(),
        "checked_by": stored.checked_by,
        "alert_open": stored.alert.status != "ok",
        **p.as_dict(),
    }


def _counts(states: list[str]) -> dict[str, int]:
    found = Counter(states)
    return {state.value: found.get(state.value, 0) for state in STATES}


async def account_plan(
    conn: AsyncConnection, key: ApiKey, account_id: str, when: Today
) -> dict[str, Any]:
    """The account's plan with each milestone's progress (``planned`` False and no
    milestones when it has none; 404 when the account is not the key's to see)."""
    row = await visible_account(conn, account_id, key)
    plan = (await store.load_plans(conn, [account_id])).get(account_id)
    facts = row.facts if row is not None else None
    today, values = (await _values(conn, {account_id: facts}, when))[account_id]
    milestones = [
        _milestone_view(s, evaluate(s.milestone, values, today))
        for s in (plan.milestones if plan else [])
    ]
    return {
        "account_id": account_id,
        "name": (row.name if row is not None else None) or account_id,
        "owner_email": row.owner_email if row is not None else None,
        "planned": plan is not None,
        "template": plan.template if plan else None,
        "start_on": plan.start_on.isoformat() if plan else None,
        "created_by": plan.created_by if plan else None,
        "as_of": today.isoformat(),
        "counts": _counts([m["state"] for m in milestones]),
        "milestones": milestones,
    }


async def plan_rows(
    conn: AsyncConnection,
    key: ApiKey,
    when: Today,
    *,
    at_risk: bool | None = None,
    csm: str | None = None,
) -> list[dict[str, Any]]:
    """The plans ``key`` may see, one row per account, worst first (missed, then at
    risk, then the nearest due day); ``at_risk``: only those with a milestone at risk or
    missed (False: only those without)."""
    q = select(success_plans.c.account_id, accounts.c.facts, accounts.c.owner_email).select_from(
        success_plans.outerjoin(accounts, accounts.c.account_id == success_plans.c.account_id)
    )
    owner = key.portfolio_of or csm
    if owner is not None:
        q = q.where(accounts.c.owner_email == fold_email(owner))
    found = list(await conn.execute(q))
    plans = await store.load_plans(conn, [r.account_id for r in found])
    values = await _values(conn, {r.account_id: r.facts for r in found}, when)
    rows = [
        _plan_row(r, plans[r.account_id], *values[r.account_id])
        for r in found
        if r.account_id in plans
    ]
    if at_risk is not None:
        rows = [row for row in rows if bool(row["problems"]) == at_risk]
    rows.sort(key=_worst_first)
    return rows


def _worst_first(row: dict[str, Any]) -> tuple[int, int, str, str]:
    counts = row["counts"]
    return (-counts["missed"], -counts["at_risk"], row["next_due_on"] or "9", row["account_id"])


def _plan_row(r: Any, plan: store.Plan, today: date, values: dict[str, Any]) -> dict[str, Any]:
    progress = [(s.milestone, evaluate(s.milestone, values, today)) for s in plan.milestones]
    problems = [
        {"key": m.key, "title": m.title, "state": p.state.value, "due_on": m.due_on.isoformat()}
        for m, p in progress
        if p.state in PROBLEMS
    ]
    open_due = [m.due_on for m, p in progress if p.state != State.achieved]
    fields = (r.facts or {}).get("fields", {})
    return {
        "account_id": r.account_id,
        "name": fields.get("name") or r.account_id,
        "owner_email": r.owner_email,
        "tier": fields.get("tier"),
        "template": plan.template,
        "counts": _counts([p.state.value for _, p in progress]),
        "problems": problems,
        "next_due_on": min(open_due).isoformat() if open_due else None,
    }


# Changing plans: the API's routes and the dashboard's forms apply the same commands.


def _slug(title: str, taken: set[str]) -> str:
    """A milestone key from its title (``go-live-by-march``), unique in its plan."""
    base = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:50] or "milestone"
    key, n = base, 1
    while key in taken:
        n += 1
        key = f"{base}-{n}"
    return key


async def create_plan(
    conn: AsyncConnection,
    key: ApiKey,
    account_id: str,
    templates: PlanTemplates,
    *,
    template_id: str | None,
    start_on: date | None,
    author: str,
    when: Today,
) -> None:
    """Make the account's plan from a template (default: its tier's and stage's),
    starting on ``start_on`` (default: the account's today); replaces a plan it has."""
    row = await visible_account(conn, account_id, key)
    facts = row.facts if row is not None else None
    fields = (facts or {}).get("fields", {})
    if template_id is not None:
        template = templates.get(template_id)
        if template is None:
            ids = [t.id for t in templates.template]
            raise ClientError(
                422,
                "unknown_template",
                "No template {template_id!r}: use one of {ids}.",
                values={"template_id": template_id, "ids": ids},
            )
    else:
        template = templates.matching(fields.get("tier"), fields.get("lifecycle_stage"))
        if template is None:
            raise ClientError(
                422,
                "no_template",
                "No template matches this account's tier and lifecycle stage: name one.",
            )
    # A templates file is checked for the form of its measures when read, not against
    # the model in force, which can change after (and names the per-event-name
    # measures): a milestone it cannot compute would never move.
    for milestone in template.milestone:
        where = f"template {template.id!r}, milestone {milestone.key!r}: "
        await _known_measure(conn, milestone.measure, where)
    today, values = (await _values(conn, {account_id: facts}, when))[account_id]
    start = start_on or today
    await store.replace_plan(
        conn,
        account_id,
        template=template.id,
        start_on=start,
        milestones=from_template(template, start),
        values=values,
        author=author,
        now=when.now,
    )
    await store.rescore_soon(conn, account_id)


# A milestone's title: its column's length.
TITLE_CHARS = 200


@dataclass(frozen=True)
class MilestoneSpec:
    """A milestone as a person writes it (checked here: 422 with what to fix)."""

    title: str
    due_on: date
    measure: str | None = None
    op: str = ">="
    target: float | None = None

    def checked(self) -> MilestoneSpec:
        """The milestone, or 422 saying what to fix; its measure is judged against the
        model in force (``_known_measure``)."""
        check_share_target(self.measure, self.target)
        try:
            if not 0 < len(self.title) <= TITLE_CHARS:
                raise ValueError(f"a title of 1 to {TITLE_CHARS} characters")
            no_control(self.title)  # NUL fails PostgreSQL: a 500, from the dashboard's form
            check_target(self.measure, self.target)
        except ValueError as exc:
            raise ClientError(422, "invalid_milestone", str(exc)) from None
        if self.op not in (">=", "<="):
            raise ClientError(422, "invalid_milestone", "op is '>=' or '<='.")
        return self


def check_share_target(measure: str | None, target: float | None) -> None:
    """A share's target written as a percentage: 422 with its own code (the form says
    how to write it)."""
    if share_target_wrong(measure, target):
        raise ClientError(
            422, "share_target", SHARE_TARGET, values={"measure": measure, "target": target}
        )


async def _own_plan(
    conn: AsyncConnection, key: ApiKey, account_id: str, when: Today, *, author: str = ""
) -> tuple[store.Plan, date, dict[str, Any]]:
    """The account's plan, today and its values; ``author``: an account without a plan
    gets an empty one of theirs, starting today (else: 404)."""
    row = await visible_account(conn, account_id, key)
    plan = (await store.load_plans(conn, [account_id])).get(account_id)
    facts = row.facts if row is not None else None
    today, values = (await _values(conn, {account_id: facts}, when))[account_id]
    if plan is None:
        if not author:
            raise ClientError(
                404,
                "no_plan",
                "Account {account_id!r} has no success plan.",
                values={"account_id": account_id},
            )
        await store.replace_plan(
            conn,
            account_id,
            template=None,
            start_on=today,
            milestones=[],
            values=values,
            author=author,
            now=when.now,
        )
        plan = store.Plan(account_id, None, today, author)
    return plan, today, values


async def add_milestone(
    conn: AsyncConnection,
    key: ApiKey,
    account_id: str,
    spec: MilestoneSpec,
    when: Today,
    *,
    author: str,
) -> str:
    """Add a milestone starting today (to a new plan of ``author``'s if there is none);
    its key."""
    spec = spec.checked()
    await _known_measure(conn, spec.measure)
    plan, today, values = await _own_plan(conn, key, account_id, when, author=author)
    _not_past(spec.due_on, today)
    taken = {m.milestone.key for m in plan.milestones}
    new = NewMilestone(
        _slug(spec.title, taken), spec.title, spec.measure, spec.op, spec.target, spec.due_on
    )
    await store.add_milestone(conn, account_id, new, today, values, when.now)
    await store.rescore_soon(conn, account_id)
    return new.key


async def edit_milestone(
    conn: AsyncConnection,
    key: ApiKey,
    account_id: str,
    milestone_key: str,
    when: Today,
    **changes: Any,
) -> None:
    """Change a milestone's title, due day, measure, op or target, or tick a
    hand-checked one (``achieved``: True / False, by ``checked_by``)."""
    plan, today, values = await _own_plan(conn, key, account_id, when)
    stored = next((m for m in plan.milestones if m.milestone.key == milestone_key), None)
    if stored is None:
        raise ClientError(
            404,
            "no_milestone",
            "The plan has no milestone {milestone_key!r}.",
            values={"milestone_key": milestone_key},
        )
    m = stored.milestone
    achieved = changes.pop("achieved", None)
    author = changes.pop("checked_by", None)
    merged = MilestoneSpec(
        changes.get("title", m.title),
        changes.get("due_on", m.due_on),
        changes.get("measure", m.measure),
        changes.get("op", m.op),
        changes.get("target", m.target),
    ).checked()
    if changes.get("due_on", m.due_on) != m.due_on:  # a missed one's other fields may change
        _not_past(merged.due_on, today)
    if achieved is not None:
        if merged.measure is not None:
            raise ClientError(
                422, "measured_milestone", "Only a milestone without a measure is ticked by hand."
            )
        changes["achieved_on"] = today if achieved else None
        changes["checked_by"] = author if achieved else None
    if changes.get("measure", m.measure) != m.measure:
        await _known_measure(conn, merged.measure)  # one kept as it was is not judged again
    if changes.get("measure", m.measure) != m.measure or changes.get("op", m.op) != m.op:
        # Another measure: its pace is judged from today's value, from today.
        changes |= store.restart(merged.measure, merged.op, merged.target, today, values)
    await store.change_milestone(conn, account_id, milestone_key, when.now, **changes)
    await store.rescore_soon(conn, account_id)


def _not_past(due_on: date, today: date) -> None:
    """A milestone is due today or later: one due in the past was missed the moment it
    was made, and its alert went out at once (found from outside)."""
    if due_on < today:
        raise ClientError(
            422,
            "due_in_the_past",
            "A milestone is due today ({today}) or later, not {due_on}: one due in the past "
            "would be missed the moment it is saved.",
            values={"today": today.isoformat(), "due_on": due_on.isoformat()},
        )


async def has_plan(conn: AsyncConnection, key: ApiKey, account_id: str) -> bool:
    """Whether the account has a success plan (remaking one replaces its milestones);
    404 for an account ``key`` may not see, as for one that does not exist: the answer
    told a CSM which of the other CSMs' accounts had a plan (found from outside)."""
    await visible_account(conn, account_id, key)
    q = select(success_plans.c.account_id).where(success_plans.c.account_id == account_id)
    return (await conn.execute(q)).first() is not None


async def _known_measure(conn: AsyncConnection, measure: str | None, where: str = "") -> None:
    """422 ``unknown_measure`` for a measure the model in force does not compute: the
    milestone would never progress. ``where``: what holds it, first in the message."""
    if measure is None:
        return
    model, _ = await ModelStore().current(conn)
    try:
        check_known(measure, *measure_names(model.behaviour))
    except UnknownMeasure as exc:
        message = where + str(exc)
        raise ClientError(422, "unknown_measure", message, extra={"measures": exc.known}) from None


async def remove_milestone(
    conn: AsyncConnection, key: ApiKey, account_id: str, milestone_key: str, when: Today
) -> None:
    await _own_plan(conn, key, account_id, when)
    if not await store.remove_milestone(conn, account_id, milestone_key):
        raise ClientError(
            404,
            "no_milestone",
            "The plan has no milestone {milestone_key!r}.",
            values={"milestone_key": milestone_key},
        )
    await store.rescore_soon(conn, account_id)


async def remove_plan(conn: AsyncConnection, key: ApiKey, account_id: str) -> None:
    """Remove the account's plan (none: nothing to do)."""
    await visible_account(conn, account_id, key)
    plan = (await store.load_plans(conn, [account_id])).get(account_id)
    if plan is None:
        return
    for stored in plan.milestones:
        await store.remove_milestone(conn, account_id, stored.milestone.key)
    await store.drop_plan(conn, account_id)
    await store.rescore_soon(conn, account_id)


def template_choices(templates: PlanTemplates) -> list[PlanTemplate]:
    """The templates a person may pick, in the file's order."""
    return list(templates.template)
