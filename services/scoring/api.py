"""Read API for account health, history and measures, and the health model itself.

A read key tied to a CSM (``keys create --csm-email``) sees only accounts that CSM
owns; others answer 404, as if they did not exist.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.scoring import explain, history
from services.scoring.inputs import depth_level
from services.scoring.model.schema import HealthModel, ModelError, load_default_model
from services.scoring.model.store import ModelStore
from services.scoring.queries import (
    AHEAD_OF_UTC,
    HEALTH_AS_OF_COLUMNS,
    Day,
    account_health_row,
    account_measures,
    band_changes_between,
    check_not_future,
    daily_scores,
    day_range,
    end_of,
    facts_as_of,
    newest_score_day,
    portfolio_health_as_of,
    scores_as_of,
    visible_account,
)
from services.scoring.relationship_as_of import relationship_measures
from services.scoring.schemas import (
    AccountHealth,
    AccountMetrics,
    HealthHistory,
    PortfolioHealth,
)
from services.scoring.zones import account_zone
from shared.document_routes import (
    DOCUMENT_ANSWERS,
    TomlResponse,
    current_document,
    replace_document,
    toml_body,
)
from shared.i18n import DEFAULT_LANGUAGE, N_
from shared.i18n.alert_text import alert_text
from shared.openapi import error_responses
from shared.web import AdminKey, ClientError, ReadKey, answer_language, spreadsheet_cell

# Accounts per answer of GET /v1/health: a page of a few hundred KB of JSON by default,
# and a large portfolio (the handbook's 2,000 accounts) in one page at most.
DEFAULT_BULK_ROWS = 1000
MAX_BULK_ROWS = 10_000
# History without a range covers this many days back from the newest day.
DEFAULT_HISTORY_DAYS = 90
MAX_MODEL_BYTES = 200_000


@dataclass
class HealthApiContext:
    engine: AsyncEngine
    models: ModelStore
    zone: tzinfo = UTC
    # Days of daily counts kept before each account's newest event: in its usage state
    # (HEALTHWATCH_WINDOW_DAYS) and in all (HEALTHWATCH_HISTORY_DAYS).
    window_days: int = 90
    history_days: int = 730
    # The service's currency (HEALTHWATCH_CURRENCY): money is ordered by currency first.
    currency: str | None = None


def get_context(request: Request) -> HealthApiContext:
    ctx: HealthApiContext = request.app.state.health_api
    return ctx


Context = Annotated[HealthApiContext, Depends(get_context)]

# Not there, not scored yet, or not this key's account.
NOT_FOUND = error_responses(404)
# Also: an as-of day older than the daily counts kept, or after today.
NOT_FOUND_OR_GONE = error_responses(404, 422)
router = APIRouter(prefix="/v1", tags=["health"])


@router.get(
    "/accounts/{account_id}/health", response_model=AccountHealth, responses=NOT_FOUND_OR_GONE
)
async def account_health_view(
    account_id: str,
    ctx: Context,
    key: ReadKey,
    request: Request,
    response: Response,
    as_of: Day | None = None,
) -> dict[str, Any]:
    """Score, band, depth level and the explanation of the newest score; with ``as_of``,
    the score recorded as of that day (``scored_on``: the day of its row) with the
    account's name and tier as they were then."""
    # The sentences follow Accept-Language, as the refusals do: a shared cache keeps
    # the languages apart.
    lang = answer_language(request)
    response.headers["Content-Language"] = lang
    response.headers["Vary"] = "Accept-Language"
    async with ctx.engine.connect() as conn:
        facts = await visible_account(conn, account_id, key)
        model, _ = await ctx.models.current(conn)
        if as_of is not None:
            return await _health_as_of(conn, account_id, as_of, ctx.zone, model, lang)
        h = await account_health_row(conn, account_id)
        if h is None or (h.score is None and h.band is None):
            raise ClientError(
                404,
                "not_scored",
                "Account {account_id!r} has no score yet.",
                values={"account_id": account_id},
            )
        inputs = h.inputs or {}
        why = (
            None
            if h.components is None
            else await history.with_moved_since(conn, account_id, h.components, inputs)
        )
    return {
        "account_id": account_id,
        "name": facts.name if facts is not None else None,
        "tier": facts.tier if facts is not None else None,
        "as_of": h.as_of.isoformat(),
        "score": h.score,
        "band": h.band,
        "depth_level": inputs.get("depth_level"),
        "danger_level": h.danger_level,
        "danger_causes": _causes_in(lang, (h.components or {}).get("danger", {}).get("causes", [])),
        "explanation": (
            None
            if why is None
            else _changes_in(lang, explain.worded_changes(why, explain.labels(model)))
        ),
    }


def _changes_in(lang: str, why: dict[str, Any]) -> dict[str, Any]:
    """An explanation's sentences of what moved in ``lang`` (stored in English, as
    alerts are, and worded as theirs: "活跃用户数从 42 降至 9（−79%）"); numbers and
    measure ids stay as they are, for programs."""
    if lang == DEFAULT_LANGUAGE or not isinstance(why.get(explain.CHANGES), dict):
        return why
    periods = {
        period: [
            {**entry, "text": alert_text(lang, entry["text"])} if "text" in entry else entry
            for entry in entries
        ]
        for period, entries in why[explain.CHANGES].items()
    }
    return {**why, explain.CHANGES: periods}


def _causes_in(lang: str, causes: list[Any]) -> list[Any]:
    """The danger causes with their sentences in ``lang`` (codes as they are)."""
    if lang == DEFAULT_LANGUAGE:
        return causes
    return [
        {**cause, "text": alert_text(lang, str(cause["text"]))}
        if isinstance(cause, dict) and cause.get("text")
        else cause
        for cause in causes
    ]


async def _health_as_of(
    conn: AsyncConnection,
    account_id: str,
    day: date,
    zone: tzinfo,
    model: HealthModel | None = None,
    lang: str = DEFAULT_LANGUAGE,
) -> dict[str, Any]:
    """The score recorded as of ``day``, in the newest score's shape (``scored_on``
    added): its explanation with what moved since the row before and since days back,
    in words (``model``: the one in force, which names the measures; the shipped one
    if None)."""
    model = model or load_default_model()
    zone = await account_zone(conn, account_id, zone)
    check_not_future(day, datetime.now(zone).date(), N_("in the account's zone"))
    row = (await scores_as_of(conn, day, [account_id])).get(account_id)
    if row is None:
        raise ClientError(
            404,
            "not_scored",
            "Account {account_id!r} had no score as of {day}.",
            values={"account_id": account_id, "day": day.isoformat()},
        )
    # The end of the day in the account's zone, as the portfolio's as-of reads it.
    end = end_of(day, zone)
    then = (await facts_as_of(conn, end, [account_id])).get(account_id, {})
    inputs = row.inputs or {}
    why = history.expanded(row.explanation or {}, row.day, inputs, model)
    before = await history.inputs_before(conn, account_id, row.day)
    why[explain.MOVED] = {"since_previous": explain.moved(inputs, before, explain.MOVED_KEPT)}
    why = await history.with_moved_since(conn, account_id, why, inputs)
    danger = why.get("danger") or {}
    return {
        "account_id": account_id,
        "name": then.get("name"),
        "tier": then.get("tier"),
        "as_of": day.isoformat(),
        "scored_on": row.day.isoformat(),
        "score": row.score,
        "band": row.band,
        "depth_level": inputs.get("depth_level"),
        "danger_level": danger.get("level"),
        # The history row keeps codes; their sentences are made again from its inputs.
        "danger_causes": _causes_in(lang, danger.get("causes", [])),
        "explanation": _changes_in(lang, explain.worded_changes(why, explain.labels(model))),
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
            to = await newest_score_day(conn, account_id) or datetime.now(ctx.zone).date()
        start, to = day_range(from_, to, DEFAULT_HISTORY_DAYS)
        return {
            "account_id": account_id,
            "from": start.isoformat(),
            "to": to.isoformat(),
            "days": await daily_scores(conn, account_id, start, to),
            "band_changes": await band_changes_between(conn, account_id, start, to, ctx.zone),
        }


@router.get(
    "/accounts/{account_id}/metrics", response_model=AccountMetrics, responses=NOT_FOUND_OR_GONE
)
async def account_metrics(
    account_id: str, ctx: Context, key: ReadKey, as_of: Day | None = None
) -> dict[str, Any]:
    """The raw rolling measures as of a day (default: the newest event's day), with
    per-event-name, module and platform counts over the last 7 and 28 days. As of a past
    day, seats and allowances are the facts in force then and open tickets those open
    then; a day older than the kept daily counts answers 422 ``as_of_beyond_retention``
    (``oldest_as_of`` says the oldest day answered)."""
    async with ctx.engine.connect() as conn:
        await visible_account(conn, account_id, key)
        m = await account_measures(
            conn, account_id, as_of, ctx.zone, (ctx.window_days, ctx.history_days)
        )
        model, _ = await ctx.models.current(conn)
    if m is None:
        raise ClientError(
            404,
            "no_activity",
            "Account {account_id!r} has no activity yet.",
            values={"account_id": account_id},
        )
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
        **relationship_measures(m),
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


@router.get(
    "/health",
    response_model=PortfolioHealth,
    responses={200: {"content": {"text/csv": {}}, "description": "JSON, or CSV with ?format=csv"}},
)
async def portfolio_health(
    ctx: Context,
    key: ReadKey,
    as_of: Annotated[Day | None, Query(description="The day (default: today)")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_BULK_ROWS)] = DEFAULT_BULK_ROWS,
    offset: Annotated[int, Query(ge=0)] = 0,
    format: Annotated[Literal["json", "csv"], Query(description="csv for a spreadsheet")] = "json",
) -> Any:
    """Every account this key sees (a CSM key: its own portfolio) scored by ``as_of``:
    the score in force that day (``scored_on``: its row's day), with the name, tier,
    owner, seats, contract end and lifecycle stage as they were then and the tickets
    open then; ordered by account id, ``total`` before ``limit``/``offset``."""
    if as_of is not None:
        # Accounts count their days in their own zones: only a day begun in none is refused.
        ahead = (datetime.now(UTC) + AHEAD_OF_UTC).date()
        check_not_future(as_of, ahead, N_("anywhere (UTC+14)"))
    day = as_of or datetime.now(ctx.zone).date()
    async with ctx.engine.connect() as conn:
        rows = await portfolio_health_as_of(conn, key, day, ctx.zone)
    page = rows[offset : offset + limit]
    if format == "csv":
        out = io.StringIO()  # paged, for programs: no byte-order mark in each page
        writer = csv.DictWriter(out, fieldnames=HEALTH_AS_OF_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: spreadsheet_cell(v) for k, v in row.items()} for row in page)
        return Response(
            out.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={
                "X-Total-Count": str(len(rows)),
                "Content-Disposition": f'attachment; filename="health-{day.isoformat()}.csv"',
            },
        )
    return {
        "as_of": day.isoformat(),
        "total": len(rows),
        "limit": limit,
        "offset": offset,
        "accounts": page,
    }


@router.get("/health-model", response_class=TomlResponse)
async def get_health_model(ctx: Context, _key: ReadKey) -> TomlResponse:
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
        what=N_("the model"),
        invalid=ModelError,
        invalid_code="invalid_model",
    )
    return JSONResponse({"version": model.version, "status": "in force"}, status_code=200)
