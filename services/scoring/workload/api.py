"""The workload API: capacity per CSM, touchpoints due, reassignment, NPS and advocates.

A CSM's key sees its own portfolio only; a lead's or an admin's sees every account.
Lists are paged (``total``, ``limit``, ``offset``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scoring.queries import Day, day_range, visible_account
from services.scoring.workload import nps, reads
from services.scoring.workload.capacity import capacity_of
from services.scoring.workload.reassign import MAX_ACCOUNTS, messages, reassignment
from shared.alerting.store import AlertingStore
from shared.bus.base import BusUnavailable, Producer
from shared.clock import utcnow
from shared.config import Settings
from shared.contracts.events import Email, Id
from shared.openapi import error_responses
from shared.web import ClientError, ReadKey, RespondKey

router = APIRouter(prefix="/v1", tags=["workload"])

# An NPS range without a start covers a year: two survey rounds (SV-05).
DEFAULT_NPS_DAYS = 365
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0)]


@dataclass
class WorkloadApiContext:
    engine: AsyncEngine
    settings: Settings
    # The service's alerting store (the configured file its default): its routing's
    # people may take accounts.
    alerting: AlertingStore
    producer: Producer | None = None  # None: reassignment is refused (503)


def get_context(request: Request) -> WorkloadApiContext:
    ctx: WorkloadApiContext = request.app.state.workload_api
    return ctx


Context = Annotated[WorkloadApiContext, Depends(get_context)]


class Answer(BaseModel):
    model_config = ConfigDict(extra="allow")


class Page(Answer):
    total: int = Field(description="Rows in all (before limit/offset)")
    limit: int
    offset: int


class CapacityPage(Page):
    capacity: dict[str, int] = Field(description="Accounts one CSM can serve per tier (SEG-10)")
    csms: list[dict[str, Any]] = Field(
        description="Per CSM: accounts by tier, load (1.0 = one CSM's capacity), ARR per "
        "currency, overdue touchpoints, open alerts"
    )


class DuePage(Page):
    accounts: list[dict[str, Any]] = Field(
        description="Per account: the cadence due next, its day, overdue or not, every cadence"
    )


class NpsAnswer(Answer):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    by: str
    from_: str = Field(alias="from")
    to: str
    scale: str
    overall: dict[str, Any]
    segments: list[dict[str, Any]]


class AccountNps(Answer):
    account_id: str
    latest: int | None
    latest_at: str | None = Field(None, description="When the newest answer was given")
    responses: int = Field(description="Answers counted")
    promoters: int
    passives: int
    detractors: int
    nps: float | None
    trend: list[dict[str, Any]]
    answers: list[dict[str, Any]]


class AdvocatesPage(Page):
    advocates: list[dict[str, Any]]


class Reassign(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"account_ids": ["acme", "globex"], "to_owner": "li.na@example.com"}]
        },
    )
    account_ids: list[Id] = Field(min_length=1, max_length=MAX_ACCOUNTS)
    to_owner: Email = Field(description="The email of the CSM who takes the accounts")


class Reassigned(Answer):
    accepted: int = Field(description="Accounts whose owner change was published")
    event_ids: list[str]
    unchanged: list[str] = Field(description="Accounts the CSM owned already")


def _today(ctx: WorkloadApiContext) -> date:
    return utcnow().astimezone(ctx.settings.zone).date()


@router.get("/capacity", response_model=CapacityPage)
async def capacity(
    ctx: Context, key: ReadKey, limit: Limit = 100, offset: Offset = 0
) -> dict[str, Any]:
    """Each CSM's portfolio load by tier against the handbook's capacity (SEG-10: 15
    strategic, 30 enterprise, 200–300 non-focus accounts per CSM), busiest first."""
    async with ctx.engine.connect() as conn:
        rows = await reads.capacity(conn, key, ctx.settings, _today(ctx))
    return {
        "total": len(rows),
        "limit": limit,
        "offset": offset,
        "capacity": capacity_of(ctx.settings),
        "csms": rows[offset : offset + limit],
    }


@router.get("/touchpoints/due", response_model=DuePage)
async def touchpoints_due(
    ctx: Context,
    key: ReadKey,
    owner: Annotated[str | None, Query(max_length=320, description="The CSM's email")] = None,
    overdue: Annotated[bool, Query(description="Only the overdue ones")] = False,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Strategic and enterprise accounts by the day their next touchpoint is due (CAD-03,
    CAD-08; non-focus accounts get mass mailings, no visits: CAD-12), soonest first."""
    async with ctx.engine.connect() as conn:
        rows = await reads.touchpoints_due(conn, key, ctx.settings, _today(ctx), owner)
    if overdue:
        rows = [r for r in rows if r["overdue"]]
    return {"total": len(rows), "limit": limit, "offset": offset, "accounts": rows[offset:][:limit]}


@router.post(
    "/accounts/reassign",
    status_code=202,
    response_model=Reassigned,
    responses=error_responses(403, 404, 422, 503),
)
async def reassign(body: Reassign, ctx: Context, key: RespondKey) -> dict[str, Any]:
    """Move accounts to another CSM (a lead's or an admin's key). Published as account
    facts carrying the new owner, which scoring applies within moments; alerts and
    cases follow the owner. A later CRM sync of ``owner`` overrides it. ``to_owner``
    must be someone healthwatch sends work to (an account's owner, a CSM with a key, a
    person of the alerting file's routing), else 422 ``unknown_owner``."""
    async with ctx.engine.connect() as conn:
        events, unchanged = await reassignment(
            conn, key, body.account_ids, str(body.to_owner), utcnow(), ctx.alerting
        )
    if events:
        if ctx.producer is None:
            raise ClientError(503, "no_bus", "This server has no event bus to publish on.")
        try:
            await ctx.producer.send_many(messages(events, ctx.settings))
        except BusUnavailable as exc:
            raise ClientError(503, "bus_unavailable", "The event bus is down: retry.") from exc
    return {
        "accepted": len(events),
        "event_ids": [e.event_id for e in events],
        "unchanged": unchanged,
    }


@router.get("/nps", response_model=NpsAnswer)
async def nps_view(
    ctx: Context,
    key: ReadKey,
    by: Literal["tier", "industry", "csm"] = "tier",
    from_: Annotated[Day | None, Query(alias="from")] = None,
    to: Day | None = None,
) -> dict[str, Any]:
    """NPS (% promoters − % detractors, answers 0–10: promoters 9–10, detractors 0–6)
    over the answers from ``from`` to ``to`` (default: the last year), overall and per
    segment, each with its monthly trend."""
    start, end = day_range(from_, to or _today(ctx), DEFAULT_NPS_DAYS)
    async with ctx.engine.connect() as conn:
        found = await reads.nps_by_segment(conn, key, by, start, end, ctx.settings.zone)
    return {"by": by, "from": start.isoformat(), "to": end.isoformat(), "scale": nps.SCALE, **found}


@router.get("/accounts/{account_id}/nps", response_model=AccountNps, responses=error_responses(404))
async def account_nps(account_id: str, ctx: Context, key: ReadKey) -> dict[str, Any]:
    """An account's NPS answers, newest first, its latest, NPS and monthly trend."""
    async with ctx.engine.connect() as conn:
        await visible_account(conn, account_id, key)
        return await reads.account_nps(conn, account_id, ctx.settings.zone)


@router.get("/advocates", response_model=AdvocatesPage)
async def advocates(
    ctx: Context, key: ReadKey, limit: Limit = 100, offset: Offset = 0
) -> dict[str, Any]:
    """Promoters (9–10) of the last six months (SV-05: a survey about every six months),
    newest first: the account, the contact, the comment and the health band."""
    async with ctx.engine.connect() as conn:
        rows = await reads.advocates(conn, key, utcnow())
    return {
        "total": len(rows),
        "limit": limit,
        "offset": offset,
        "advocates": rows[offset : offset + limit],
    }
