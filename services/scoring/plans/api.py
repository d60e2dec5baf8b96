"""The success-plan API: one account's plan (read, made from a template, milestones
added, changed, ticked and removed) and the plans of a portfolio, worst first.

Reading takes a ``read`` key, changing a ``respond`` key (a CSM acting on their
portfolio, as with alerts); a CSM key sees and changes only its own accounts' plans
(404 otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scoring.plans import queries
from services.scoring.plans.queries import MilestoneSpec, Today
from services.scoring.plans.templates import MAX_TARGET, PlanTemplates
from shared.auth import ApiKey
from shared.clock import Clock, utcnow
from shared.contracts.events import Day, Label
from shared.openapi import error_responses
from shared.web import ReadKey, RespondKey

router = APIRouter(prefix="/v1", tags=["success plans"])
NOT_FOUND = error_responses(404)
CHANGED = error_responses(404, 422)


@dataclass
class PlansApiContext:
    engine: AsyncEngine
    templates: PlanTemplates
    zone: tzinfo
    clock: Clock = utcnow

    def today(self) -> Today:
        return Today(self.clock(), self.zone)


def get_context(request: Request) -> PlansApiContext:
    ctx: PlansApiContext = request.app.state.plans_api
    return ctx


Context = Annotated[PlansApiContext, Depends(get_context)]
Title = Annotated[Label, Field(min_length=1)]  # no control characters: NUL fails PostgreSQL
Measure = Annotated[
    str | None,
    Field(
        max_length=300,
        description="A measure of the health score (activation_rate, active_days_7d, "
        "events_28d[report_run], …), 'go_live', or none: checked by hand",
    ),
]
Target = Annotated[float | None, Field(allow_inf_nan=False, ge=-MAX_TARGET, le=MAX_TARGET)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PlanCreate(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{}, {"template": "strategic-onboarding", "start_on": "2026-12-01"}]
        },
    )

    template: str | None = Field(
        None, description="Template id; default: the one for the account's tier and stage"
    )
    start_on: Day | None = Field(None, description="Default: the account's today")


class MilestoneCreate(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "title": "Reports run weekly",
                    "measure": "events_28d[report_run]",
                    "target": 20,
                    "due_on": "2027-03-01",
                },
                {"title": "Kick-off workshop held", "due_on": "2027-01-15"},
            ]
        },
    )

    title: Title
    due_on: Day
    measure: Measure = None
    op: Literal[">=", "<="] = ">="
    target: Target = None


class MilestoneEdit(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"achieved": True}, {"due_on": "2027-04-01"}]},
    )

    title: Title | None = None
    due_on: Day | None = None
    measure: Measure = None
    op: Literal[">=", "<="] | None = None
    target: Target = None
    achieved: bool | None = Field(None, description="Tick (or untick) a hand-checked milestone")


class MilestoneOut(BaseModel):
    key: str
    title: str
    measure: str | None
    op: str
    target: float | None
    baseline: float | None
    start_on: str
    due_on: str
    state: Literal["on_track", "at_risk", "missed", "achieved"]
    value: float | None
    done_share: float = Field(description="Share of the way from the baseline to the target")
    time_share: float = Field(description="Share of the time from the start to the due day")
    projected: float | None = Field(description="The value at the due day at the pace so far")
    achieved_on: str | None
    checked_by: str | None
    alert_open: bool


class PlanOut(BaseModel):
    account_id: str
    name: str
    owner_email: str | None
    planned: bool
    template: str | None
    start_on: str | None
    created_by: str | None
    as_of: str
    counts: dict[str, int]
    milestones: list[MilestoneOut]


class PlanRow(BaseModel):
    account_id: str
    name: str
    owner_email: str | None
    tier: str | None
    template: str | None
    counts: dict[str, int]
    problems: list[dict[str, Any]]
    next_due_on: str | None


class PlanList(BaseModel):
    total: int
    limit: int
    offset: int
    plans: list[PlanRow]


def _author(key: ApiKey) -> str:
    return key.csm_email or f"key:{key.name}"


async def _answer(ctx: PlansApiContext, key: ApiKey, account_id: str) -> dict[str, Any]:
    async with ctx.engine.connect() as conn:
        return await queries.account_plan(conn, key, account_id, ctx.today())


@router.get("/accounts/{account_id}/plan", response_model=PlanOut, responses=NOT_FOUND)
async def get_plan(account_id: str, ctx: Context, key: ReadKey) -> dict[str, Any]:
    """The account's success plan: each milestone's state (on track, at risk, missed,
    achieved with its day) from the health score's own measures, as of today
    (``planned`` false and no milestones when it has none)."""
    return await _answer(ctx, key, account_id)


@router.post(
    "/accounts/{account_id}/plan", response_model=PlanOut, status_code=201, responses=CHANGED
)
async def create_plan(
    account_id: str, body: PlanCreate, ctx: Context, key: RespondKey
) -> dict[str, Any]:
    """Make the account's plan from a template (replacing the plan it has)."""
    async with ctx.engine.begin() as conn:
        await queries.create_plan(
            conn,
            key,
            account_id,
            ctx.templates,
            template_id=body.template,
            start_on=body.start_on,
            author=_author(key),
            when=ctx.today(),
        )
    return await _answer(ctx, key, account_id)


@router.delete("/accounts/{account_id}/plan", status_code=204, responses=NOT_FOUND)
async def delete_plan(account_id: str, ctx: Context, key: RespondKey) -> Response:
    """Remove the plan; its open milestone alerts resolve at the next scoring."""
    async with ctx.engine.begin() as conn:
        await queries.remove_plan(conn, key, account_id)
    return Response(status_code=204)


@router.post(
    "/accounts/{account_id}/plan/milestones",
    response_model=PlanOut,
    status_code=201,
    responses=CHANGED,
)
async def add_milestone(
    account_id: str, body: MilestoneCreate, ctx: Context, key: RespondKey
) -> dict[str, Any]:
    """Add a milestone (starting today; to a new plan when the account has none); its
    key is made from its title."""
    spec = MilestoneSpec(body.title, body.due_on, body.measure, body.op, body.target)
    async with ctx.engine.begin() as conn:
        await queries.add_milestone(conn, key, account_id, spec, ctx.today(), author=_author(key))
    return await _answer(ctx, key, account_id)


@router.patch(
    "/accounts/{account_id}/plan/milestones/{milestone_key}",
    response_model=PlanOut,
    responses=CHANGED,
)
async def edit_milestone(
    account_id: str, milestone_key: str, body: MilestoneEdit, ctx: Context, key: RespondKey
) -> dict[str, Any]:
    """Change what is given; ``achieved`` ticks a hand-checked milestone."""
    # A measure or target set to null clears it; any other null changes nothing.
    changes = {
        name: value
        for name, value in body.model_dump(exclude_unset=True).items()
        if value is not None or name in ("measure", "target")
    }
    if changes.get("achieved") is not None:
        changes["checked_by"] = _author(key)
    async with ctx.engine.begin() as conn:
        await queries.edit_milestone(conn, key, account_id, milestone_key, ctx.today(), **changes)
    return await _answer(ctx, key, account_id)


@router.delete(
    "/accounts/{account_id}/plan/milestones/{milestone_key}",
    status_code=204,
    responses=NOT_FOUND,
)
async def delete_milestone(
    account_id: str, milestone_key: str, ctx: Context, key: RespondKey
) -> Response:
    async with ctx.engine.begin() as conn:
        await queries.remove_milestone(conn, key, account_id, milestone_key, ctx.today())
    return Response(status_code=204)


@router.get("/plans", response_model=PlanList)
async def list_plans(
    ctx: Context,
    key: ReadKey,
    at_risk: Annotated[
        bool | None,
        Query(description="true: plans with a milestone at risk or missed; false: without"),
    ] = None,
    csm: Annotated[str | None, Query(description="Owner CSM's email")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """The portfolio's plans, worst first (missed, at risk, then the nearest due day)."""
    async with ctx.engine.connect() as conn:
        rows = await queries.plan_rows(conn, key, ctx.today(), at_risk=at_risk, csm=csm)
    return {
        "total": len(rows),
        "limit": limit,
        "offset": offset,
        "plans": rows[offset : offset + limit],
    }


@router.get("/plan-templates", response_model=PlanTemplates)
async def plan_templates(ctx: Context, _key: ReadKey) -> PlanTemplates:
    """The templates new accounts' plans are made from (``plan_templates_file``)."""
    return ctx.templates
