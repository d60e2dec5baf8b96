"""Read API for account health, history and measures, and the health model itself.

A read key tied to a CSM (``keys create --csm-email``) sees only accounts that CSM
owns; others answer 404, as if they did not exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, tzinfo
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scoring.inputs import depth_level
from services.scoring.model.schema import ModelError
from services.scoring.model.store import ModelStore
from services.scoring.queries import (
    Day,
    account_health_row,
    account_measures,
    band_changes_between,
    daily_scores,
    day_range,
    newest_score_day,
    visible_account,
)
from services.scoring.schemas import AccountHealth, AccountMetrics, HealthHistory
from shared.document_routes import (
    DOCUMENT_ANSWERS,
    current_document,
    replace_document,
    toml_body,
)
from shared.openapi import error_responses
from shared.web import AdminKey, ClientError, ReadKey

# History without a range covers this many days back from the newest day.
DEFAULT_HISTORY_DAYS = 90
MAX_MODEL_BYTES = 200_000


@dataclass
class HealthApiContext:
    engine: AsyncEngine
    models: ModelStore
    zone: tzinfo = UTC


def get_context(request: Request) -> HealthApiContext:
    ctx: HealthApiContext = request.app.state.health_api
    return ctx


Context = Annotated[HealthApiContext, Depends(get_context)]

# Not there, not scored yet, or not this key's account.
NOT_FOUND = error_responses(404)
router = APIRouter(prefix="/v1", tags=["health"])


@router.get("/accounts/{account_id}/health", response_model=AccountHealth, responses=NOT_FOUND)
async def account_health_view(account_id: str, ctx: Context, key: ReadKey) -> dict[str, Any]:
    """Score, band, depth level and the explanation of the newest score."""
    async with ctx.engine.connect() as conn:
        facts = await visible_account(conn, account_id, key)
        h = await account_health_row(conn, account_id)
    if h is None or (h.score is None and h.band is None):
        raise ClientError(404, "not_scored", f"Account {account_id!r} has no score yet.")
    inputs = h.inputs or {}
    return {
        "account_id": account_id,
        "name": facts.name if facts is not None else None,
        "tier": facts.tier if facts is not None else None,
        "as_of": h.as_of.isoformat(),
        "score": h.score,
        "band": h.band,
        "depth_level": inputs.get("depth_level"),
        "danger_level": h.danger_level,
        "danger_causes": (h.components or {}).get("danger", {}).get("causes", []),
        "explanation": h.components,
    }


@router.get(
    "/accounts/{account_id}/health/history", response_model=HealthHistory, responses=NOT_FOUND
)
async def account_health_history(
    account_id: str,
    ctx: Context,
    key: ReadKey,
    from_: Annotated[Day | None, Query(alias="from")] = None,
    to: Day | None = None,
) -> dict[str, Any]:
    """The score as of each day (event-time days) from ``from`` to ``to``, and the band
    changes between. A day's row is stored only when the score or its inputs changed, so
    a day without one carries the latest earlier score (``recorded`` says which days
    have their own row); ``from`` = ``to`` is the score as of that date."""
    async with ctx.engine.connect() as conn:
        await visible_account(conn, account_id, key)
        if to is None:
            to = await newest_score_day(conn, account_id) or date.today()
        start, to = day_range(from_, to, DEFAULT_HISTORY_DAYS)
        return {
            "account_id": account_id,
            "from": start.isoformat(),
            "to": to.isoformat(),
            "days": await daily_scores(conn, account_id, start, to),
            "band_changes": await band_changes_between(conn, account_id, start, to),
        }


@router.get("/accounts/{account_id}/metrics", response_model=AccountMetrics, responses=NOT_FOUND)
async def account_metrics(
    account_id: str, ctx: Context, key: ReadKey, as_of: Day | None = None
) -> dict[str, Any]:
    """The raw rolling measures as of a day (default: the newest event's day), with
    per-event-name, module and platform counts over the last 7 and 28 days."""
    async with ctx.engine.connect() as conn:
        await visible_account(conn, account_id, key)
        m = await account_measures(conn, account_id, as_of, ctx.zone)
        model, _ = await ctx.models.current(conn)
    if m is None:
        raise ClientError(404, "no_activity", f"Account {account_id!r} has no activity yet.")
    counts: dict[str, dict[str, dict[str, int]]] = {}
    for (dimension, name), (c7, c28) in sorted(m.names.items()):
        counts.setdefault(dimension, {})[name] = {"last_7d": c7, "last_28d": c28}
    return {
        "account_id": account_id,
        "as_of": m.as_of.isoformat(),
        "seats_purchased": m.seats_purchased,
        "active_users_7d": m.active_users_7d,
        "active_users_30d": m.active_users_30d,
        "active_days_7d": m.active_days_7d,
        "active_users_today": m.active_users_today,
        "users_ever_active": m.users_ever_active,
        "activation_rate": (
            round(m.users_ever_active / m.seats_purchased, 4) if m.seats_purchased else None
        ),
        "usage_minutes_7d": m.usage_minutes_7d,
        "events_7d": m.events_7d,
        "open_tickets": m.open_tickets,
        "depth_level": depth_level(m, model.depth),
        "counts": counts,
        "usage_quotas": [
            {
                "dimension": d,
                "name": n,
                "limit": limit,
                "used_28d": m.names.get((d, n), (0, 0))[1],
            }
            for d, n, limit in m.usage_quotas
        ],
    }


@router.get("/health-model", response_class=PlainTextResponse)
async def get_health_model(ctx: Context, _key: ReadKey) -> PlainTextResponse:
    """The model in force, as TOML (its version is in the ``X-Model-Version`` header)."""
    return await current_document(ctx.engine, ctx.models, "X-Model-Version")


@router.put(
    "/health-model", openapi_extra=toml_body("the health model"), responses=DOCUMENT_ANSWERS
)
async def put_health_model(request: Request, ctx: Context, key: AdminKey) -> JSONResponse:
    """Replace the model (TOML body, with a new ``version``); applies from the next batch."""
    model = await replace_document(
        request,
        ctx.engine,
        ctx.models,
        author=key.name,
        max_bytes=MAX_MODEL_BYTES,
        what="the model",
        invalid=ModelError,
        invalid_code="invalid_model",
    )
    return JSONResponse({"version": model.version, "status": "in force"}, status_code=200)
