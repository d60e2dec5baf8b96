"""What an alert opening does to cases and tasks, in the intake's transaction (the one
that stores the alert with the consumed offsets): a high-danger alert opens the account's
case (DG-11: high danger, act at once) with the alert's next step as its first task, a
detractor's alert its follow-up task (SV-04).
Both are idempotent: a replayed or re-sent alert finds the open case and the task's
source key, and adds nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from services.alerts.cases.actions import NewCase, open_case
from services.alerts.cases.model import (
    CASE_ACTION,
    NPS_DETRACTOR_RULE,
    NPS_FOLLOWUP,
    SEVERITY_LEVEL,
    TITLE_CHARS,
    review_every,
)
from services.alerts.cases.queries import measured_causes
from services.alerts.cases.tasks import ALERT_SOURCE, NewTask, create_task
from shared.config import Settings
from shared.contracts.alerts import AlertEvent, Severity
from shared.i18n import N_

AUTOMATIC = "healthwatch"  # the actor of what the service opens itself
# A high danger's first action is due within this (DG-11: "act at once"). A day, not
# hours: the task list and reminders work in days, and a CSM told in the evening acts
# the next working morning.
HIGH_DANGER_FIRST_ACTION = timedelta(days=1)
NPS_FOLLOWUP_TITLE = N_("Call the detractor: ask what went wrong and agree on a fix")


async def alert_stored(
    conn: AsyncConnection, alert: AlertEvent, settings: Settings, now: datetime, *, rose: bool
) -> None:
    """``alert`` was stored firing: opened (``rose``: True), or a newer revision (``rose``:
    its severity rose). A case opens when it opens or turns critical, not on every
    revision (a case someone closed stays closed while the alert goes on); the
    follow-up once per alert, when the detractor's rule is among its symptoms."""
    if alert.status != "firing":
        return
    if rose and alert.severity == Severity.critical:
        await _open_case(conn, alert, settings, now)
    if NPS_DETRACTOR_RULE in _rules(alert):
        days = timedelta(days=settings.nps_followup_days)
        task = NewTask(
            alert.account_id,
            NPS_FOLLOWUP,
            NPS_FOLLOWUP_TITLE,
            now + days,
            f"{ALERT_SOURCE}{alert.alert_id}",
            source_key=f"{NPS_FOLLOWUP}:{alert.alert_id}",
        )
        await create_task(conn, task, now)


async def _open_case(
    conn: AsyncConnection, alert: AlertEvent, settings: Settings, now: datetime
) -> None:
    """The account's case, opened at the alert's danger with the causes scoring measured."""
    new = NewCase(
        alert.account_id,
        SEVERITY_LEVEL[alert.severity.value],
        # An alert's title may be empty (a team's rule without one): the rule names it.
        alert.title.strip()[:500] or alert.rule,
        AUTOMATIC,
        await measured_causes(conn, alert.account_id),
        alert.alert_id,
        told=True,  # the alert's own notice is going to the same people now
    )
    case_id, opened = await open_case(conn, new, settings, now)
    step = alert.details.get("next_step")
    if opened and isinstance(step, str) and step.strip():
        # The plan's first action (DG-13: tasks with owners and dates) is the alert's next
        # step: a case opened for a CSM said "No task yet". Due by the case's first
        # review, a high danger's within a day (DG-11: act at once; the rules' steps say
        # "today", and a task due in a week read as contradicting them).
        due = review_every(settings, new.danger_level)
        if new.danger_level == "high":
            due = min(due, HIGH_DANGER_FIRST_ACTION)
        first = NewTask(
            alert.account_id,
            CASE_ACTION,
            step.strip()[:TITLE_CHARS],
            now + due,
            f"{ALERT_SOURCE}{alert.alert_id}",
            case_id=case_id,
            source_key=f"next_step:{alert.alert_id}",
        )
        await create_task(conn, first, now)


def _rules(alert: AlertEvent) -> set[str]:
    """The rules firing in the alert: its own and its family's symptoms."""
    symptoms = alert.details.get("symptoms")
    found = {alert.rule}
    if isinstance(symptoms, list):
        found |= {
            s["rule"] for s in symptoms if isinstance(s, dict) and isinstance(s.get("rule"), str)
        }
    return found
