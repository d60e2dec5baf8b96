"""The lead's workload view: every CSM's load against the handbook's capacity (SEG-10),
touchpoints overdue by cadence (CAD-03/08), open alerts and those waiting for someone, open
risk cases, a chart, and the form that reassigns accounts between CSMs.

A CSM's key sees their own line only and no form; reassigning takes a lead's or an
admin's key with the ``respond`` scope (``reassign.may_reassign``). A reassignment is
published on the bus as account facts carrying the new owner, exactly as the API's
``POST /v1/accounts/reassign`` and as a logged touchpoint is (``activity_page``): scoring
applies it within moments, and alerts and cases follow the owner.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from services.alerts.cases.queries import case_query
from services.alerts.queries import visible_alerts, waiting
from services.dashboard.activity_page import producer_of
from services.dashboard.admin_pages import alerting_of
from services.dashboard.auth import Forbidden, Viewer, checked_form, context, viewer
from services.dashboard.charts import COLOURS, Chart, _bars
from services.dashboard.routes import _with_notice, language, page
from services.scoring.workload import reads
from services.scoring.workload.reassign import (
    MAX_ACCOUNTS,
    may_reassign,
    messages,
    reassignment,
)
from shared.auth import ApiKey, Scope
from shared.bus.base import BusUnavailable
from shared.clock import utcnow
from shared.contracts.events import Email
from shared.i18n import N_, translate
from shared.storage.tables import accounts, alerts, cases
from shared.web import ClientError

router = APIRouter(prefix="/ui", include_in_schema=False)

# Overdue touchpoints listed on the page (the API pages through them all).
SHOWN_OVERDUE = 50
EMAIL: TypeAdapter[str] = TypeAdapter(Email)
# Why nothing was reassigned (shown above the form, which keeps what was typed).
ERRORS = {
    "ids": N_("Give one to {n} account ids, separated by commas, spaces or lines."),
    "owner": N_("Give the email of the CSM who takes the accounts."),
    "unknown": N_("No account {id} is known."),
    "stranger": N_(
        "{owner} is no one healthwatch sends work to, so the accounts would leave every "
        "CSM's list: check the address, or give them a CSM key first (Admin, or "
        "`healthwatch keys create --role csm --csm-email …`)."
    ),
    "bus": N_("The event bus is not reachable, so nothing was reassigned. Try again in a moment."),
}


def _today(request: Request) -> date:
    return utcnow().astimezone(context(request).settings.zone).date()


@router.get("/workload")
async def workload_view(request: Request) -> Response:
    who = await viewer(request)
    return await _page(request, who, {}, None)


async def _page(
    request: Request, who: Viewer, form: Mapping[str, str], error: str | None, **values: object
) -> Response:
    ctx = context(request)
    today = _today(request)
    async with ctx.engine.connect() as conn:
        csms = await reads.capacity(conn, who.key, ctx.settings, today)
        due = await reads.touchpoints_due(conn, who.key, ctx.settings, today)
        cases = await _open_cases(conn, who.key)
        to_do = await _alerts_to_do(conn, who.key, utcnow())
    for c in csms:
        c["open_cases"] = cases.get(c["owner_email"], 0)
        c["alerts_to_do"] = to_do.get(c["owner_email"], 0)
    overdue = [d for d in due if d["overdue"]]
    lang = language(request)
    data = {
        "csms": csms,
        "overdue": overdue[:SHOWN_OVERDUE],
        "overdue_total": len(overdue),
        "capacity": ctx.settings,
        "can_reassign": may_reassign(who.key) and producer_of(request) is not None,
        "form": form,
        "error": error and translate(lang, ERRORS[error], **values),
        "max_accounts": MAX_ACCOUNTS,
    }
    status = {None: 200, "bus": 503, "unknown": 404}.get(error, 422)
    return page(request, "workload.html", {"w": data, "charts": _charts(csms, lang)}, who, status)


async def _open_cases(conn: AsyncConnection, key: ApiKey) -> dict[str | None, int]:
    """Open risk cases per their account's owner now (the cases' own read interface)."""
    q = case_query(key).where(cases.c.state == "open").subquery()
    counted = select(q.c.owner, func.count()).group_by(q.c.owner)
    return {owner: n for owner, n in await conn.execute(counted)}


async def _alerts_to_do(conn: AsyncConnection, key: ApiKey, now: datetime) -> dict[str | None, int]:
    """Alerts waiting for someone (``waiting``: not snoozed, silenced, muted by a critical
    alert nor acknowledged) per their account's owner now. The open alerts alone counted
    the muted and snoozed ones as a CSM's load (found from outside)."""
    q = (
        select(accounts.c.owner_email, func.count())
        .select_from(alerts.join(accounts, accounts.c.account_id == alerts.c.account_id))
        .where(waiting(now))
        .group_by(accounts.c.owner_email)
    )
    return {owner: n for owner, n in await conn.execute(visible_alerts(q, key))}


def _charts(csms: list[dict[str, Any]], lang: str) -> dict[str, Chart]:
    """Each CSM's load as a share of one CSM's capacity (100% = full), red above it."""
    loads = [round(c["load"] * 100, 1) for c in csms]
    colours = [COLOURS["red"] if v > 100 else COLOURS["blue"] for v in loads]
    names = [c["owner_email"] or translate(lang, "no CSM") for c in csms]
    return {"load": _bars(names, loads, colours, translate(lang, "Load, % of one CSM's capacity"))}


def account_ids(text: str) -> list[str]:
    """The ids in the form's field: separated by commas (a Chinese keyboard's "，" and
    "、" too), semicolons, spaces or lines."""
    return [i for i in re.split(r"[\s,;，、；]+", text.strip()) if i]


@router.post("/workload/reassign")
async def reassign(request: Request) -> Response:
    """Move the form's accounts to the named CSM, then back to the workload view."""
    who, form = await checked_form(request, Scope.respond)
    if not may_reassign(who.key):
        raise Forbidden(N_("Only a lead or an admin may reassign accounts between CSMs."))
    ids = account_ids(form.get("account_ids", ""))
    if not 0 < len(ids) <= MAX_ACCOUNTS or any(len(i) > 200 for i in ids):
        return await _page(request, who, form, "ids", n=MAX_ACCOUNTS)
    try:
        to_owner = EMAIL.validate_python(form.get("to_owner", "").strip())
    except ValidationError:
        return await _page(request, who, form, "owner")
    ctx = context(request)
    bus = producer_of(request)
    if bus is None:
        return await _page(request, who, form, "bus")
    refused: ClientError | None = None
    async with ctx.engine.connect() as conn:
        try:
            events, _ = await reassignment(
                conn, who.key, ids, to_owner, utcnow(), alerting_of(request)
            )
        except ClientError as exc:
            refused = exc
    if refused is not None:  # the page reads the database: not while this connection
        # holds it (SQLite: a connection's first statement takes the write lock)
        if refused.code == "unknown_owner":
            return await _page(request, who, form, "stranger", owner=to_owner)
        unknown = next((i for i in ids if repr(i) in refused.message), ids[0])
        return await _page(request, who, form, "unknown", id=unknown)
    try:
        if events:
            await bus.send_many(messages(events, ctx.settings))
    except BusUnavailable:
        return await _page(request, who, form, "bus")
    return RedirectResponse(_with_notice("/ui/workload", "reassigned"), status_code=303)
