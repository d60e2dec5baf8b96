"""``/v1/silences``: the rules silenced on accounts (``silences.py``), listed, set and
ended."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.alerts.actions import actor_of
from services.alerts.api import Context
from services.alerts.bodies import JsonBody, Reason, Text, asked_end, no_nul
from services.alerts.silences import SilenceError, silence, silences_of, unsilence
from shared.alerting.schema import Duration
from shared.auth import ApiKey
from shared.openapi import error_responses
from shared.storage.tables import accounts
from shared.web import ClientError, ReadKey, RespondKey

router = APIRouter(prefix="/v1", tags=["alerts"])


class SilenceBody(JsonBody):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "account_id": "acme",
                    "rule": "ticket_silence",
                    "for": "180d",
                    "reason": "Their admin emails us instead of filing tickets",
                }
            ]
        }
    )
    account_id: Text = Field(min_length=1, max_length=200)
    rule: Text = Field(min_length=1, max_length=100)
    until: AwareDatetime | None = Field(None, description="a time with zone, at most a year ahead")
    for_: Duration | None = Field(
        None, alias="for", description="e.g. '90d', ISO 8601 'P90D', or seconds; at most a year"
    )
    reason: Reason | None = None


class SilenceOut(BaseModel):
    account_id: str
    rule: str
    until: str
    silenced_by: str
    reason: str | None
    silenced_at: str


class SilenceList(BaseModel):
    silences: list[SilenceOut]


async def _visible_account(conn: AsyncConnection, account_id: str, key: ApiKey) -> None:
    q = select(accounts.c.owner_email).where(accounts.c.account_id == account_id)
    row = (await conn.execute(q)).first()
    if row is None or key.portfolio_of not in (None, row.owner_email):
        raise ClientError(
            404,
            "not_found",
            "No account {account_id!r} visible to this key.",
            values={"account_id": account_id[:200]},
        )


@router.get("/silences", response_model=SilenceList)
async def list_silences(
    ctx: Context,
    key: ReadKey,
    account_id: Annotated[str | None, Query(max_length=200), AfterValidator(no_nul)] = None,
) -> dict[str, Any]:
    """The rules silenced on the accounts this key sees (on one, with ``account_id``)."""
    async with ctx.engine.connect() as conn:
        return {"silences": await silences_of(conn, key, ctx.clock(), account_id)}


@router.put("/silences", response_model=SilenceOut, responses=error_responses(404, 422))
async def put_silence(body: SilenceBody, ctx: Context, key: RespondKey) -> dict[str, Any]:
    """Silence a rule on an account until ``until`` (or ``for`` a duration, at most a
    year); sent again, it moves the end. Its open alerts are snoozed until then."""
    now = ctx.clock()
    until = asked_end(now, body.until, body.for_, "90d")
    async with ctx.engine.begin() as conn:
        await _visible_account(conn, body.account_id, key)
        alerting, _ = await ctx.alerting.current(conn)
        try:
            return await silence(
                conn,
                alerting,
                account_id=body.account_id,
                rule=body.rule,
                until=until,
                actor=actor_of(key),
                reason=body.reason,
                now=now,
            )
        except SilenceError as exc:
            raise ClientError.refusing(422, "invalid_request", exc) from exc


@router.delete("/silences", status_code=204, responses=error_responses(404))
async def delete_silence(
    ctx: Context,
    key: RespondKey,
    account_id: Annotated[Text, Query(max_length=200)],
    rule: Annotated[Text, Query(max_length=100)],
) -> Response:
    """End a silence now: its alerts still firing are told again at the next timer pass."""
    async with ctx.engine.begin() as conn:
        await _visible_account(conn, account_id, key)
        ended = await unsilence(
            conn, account_id=account_id, rule=rule, actor=actor_of(key), now=ctx.clock()
        )
    if not ended:
        raise ClientError(
            404,
            "not_found",
            "No silence of {rule!r} on {account_id!r} in force.",
            values={"rule": rule[:100], "account_id": account_id[:200]},
        )
    return Response(status_code=204)
