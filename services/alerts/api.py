"""The alerts API: list and read alerts, act on them, see failed deliveries, read and
replace the alerting file, per-rule quality, and Slack's button clicks.

A key tied to a CSM (``keys create --csm-email``) sees and acts on that CSM's alerts
only; others answer 404, as if they did not exist.
"""

from __future__ import annotations

import statistics
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import AwareDatetime, BaseModel, Field
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import Select, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.alerts.actions import Action, ActionError, apply_action
from shared.alerting.config import AlertingError, Duration
from shared.alerting.store import AlertingStore
from shared.auth import ApiKey, Scope
from shared.clock import Clock, utcnow
from shared.config import Settings
from shared.contracts.alerts import OPEN_ALERT_STATUSES
from shared.storage.tables import accounts, alert_activity, alerts, deliveries
from shared.web import ClientError, require_scope

MAX_FILE_BYTES = 200_000
# Slack signs each request with a timestamp; older ones are replays (Slack's own limit).
SLACK_MAX_AGE_S = 300


@dataclass
class AlertsApiContext:
    engine: AsyncEngine
    config: AlertingStore
    settings: Settings
    clock: Clock = field(default=utcnow)


def get_context(request: Request) -> AlertsApiContext:
    ctx: AlertsApiContext = request.app.state.alerts_api
    return ctx


Context = Annotated[AlertsApiContext, Depends(get_context)]
ReadKey = Annotated[ApiKey, Depends(require_scope(Scope.read))]
RespondKey = Annotated[ApiKey, Depends(require_scope(Scope.respond))]
AdminKey = Annotated[ApiKey, Depends(require_scope(Scope.admin))]

router = APIRouter(prefix="/v1", tags=["alerts"])


def visible_alerts(q: Select[Any], key: ApiKey) -> Select[Any]:
    """Alerts ``key`` may see: a CSM key only those of its own accounts."""
    if key.portfolio_of is not None:
        return q.where(alerts.c.owner_email == key.portfolio_of)
    return q


def _summary(r: Any) -> dict[str, Any]:
    return {
        "alert_id": r.alert_id,
        "account_id": r.account_id,
        "rule": r.rule,
        "severity": r.severity,
        "status": r.status,
        "title": r.title,
        "owner_email": r.owner_email,
        "fired_at": r.fired_at.isoformat(),
        "stored_at": r.stored_at.isoformat(),
        "acknowledged_at": r.acknowledged_at.isoformat() if r.acknowledged_at else None,
        "acknowledged_by": r.acknowledged_by,
        "resolved_at": r.resolved_at.isoformat() if r.resolved_at else None,
        "snoozed_until": r.snoozed_until.isoformat() if r.snoozed_until else None,
        "snooze_reason": r.snooze_reason,
        "muted": r.muted,
        "not_useful": r.not_useful,
        "escalated_at": r.escalated_at.isoformat() if r.escalated_at else None,
    }


@router.get("/alerts")
async def list_alerts(
    ctx: Context,
    key: ReadKey,
    status: Literal["open", "firing", "acknowledged", "resolved", "any"] = "open",
    severity: Literal["critical", "warning", "info"] | None = None,
    rule: str | None = None,
    account_id: str | None = None,
    owner: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    """Alerts, newest first; ``status=open`` means firing or acknowledged."""
    q = select(alerts).order_by(alerts.c.stored_at.desc()).limit(limit)
    if status == "open":
        q = q.where(alerts.c.status.in_(OPEN_ALERT_STATUSES))
    elif status != "any":
        q = q.where(alerts.c.status == status)
    for column, value in (
        (alerts.c.severity, severity),
        (alerts.c.rule, rule),
        (alerts.c.account_id, account_id),
        (alerts.c.owner_email, owner),
    ):
        if value is not None:
            q = q.where(column == value)
    async with ctx.engine.connect() as conn:
        rows = (await conn.execute(visible_alerts(q, key))).all()
    return {"alerts": [_summary(r) for r in rows]}


async def _alert(conn: AsyncConnection, alert_id: str, key: ApiKey) -> Any:
    q = visible_alerts(select(alerts).where(alerts.c.alert_id == alert_id), key)
    row = (await conn.execute(q)).first()
    if row is None:
        raise ClientError(404, "not_found", f"No alert {alert_id!r} visible to this key.")
    return row


@router.get("/alerts/{alert_id}")
async def read_alert(alert_id: str, ctx: Context, key: ReadKey) -> dict[str, Any]:
    """The alert with what it says, who did what to it, and its deliveries."""
    async with ctx.engine.connect() as conn:
        row = await _alert(conn, alert_id, key)
        activity = await conn.execute(
            select(alert_activity)
            .where(alert_activity.c.alert_id == alert_id)
            .order_by(alert_activity.c.activity_id)
        )
        sent = await conn.execute(
            select(deliveries)
            .where(deliveries.c.alert_id == alert_id)
            .order_by(deliveries.c.delivery_id)
        )
        return {
            **_summary(row),
            "alert": row.payload,
            "activity": [
                {"at": a.at.isoformat(), "actor": a.actor, "action": a.action, "text": a.text}
                for a in activity
            ],
            "deliveries": [_delivery(d) for d in sent],
        }


def _delivery(d: Any) -> dict[str, Any]:
    return {
        "delivery_id": d.delivery_id,
        "alert_id": d.alert_id,
        "notification": d.notification,
        "channel": d.channel,
        "destination": d.destination,
        "status": d.status,
        "attempts": d.attempts,
        "next_attempt_at": d.next_attempt_at.isoformat(),
        "delivered_at": d.delivered_at.isoformat() if d.delivered_at else None,
        "last_error": d.last_error,
    }


class SnoozeBody(BaseModel):
    until: AwareDatetime | None = None
    for_: Duration | None = Field(None, alias="for", description="e.g. '4h', '2d'")
    reason: str | None = Field(None, max_length=2000)


class TextBody(BaseModel):
    text: str = Field(min_length=1, max_length=10_000)


class ReasonBody(BaseModel):
    reason: str | None = Field(None, max_length=2000)


async def _act(ctx: AlertsApiContext, alert_id: str, key: ApiKey, action: Action) -> Any:
    now = ctx.clock()
    async with ctx.engine.begin() as conn:
        row = await _alert(conn, alert_id, key)
        try:
            await apply_action(conn, row, action, now)
        except ActionError as exc:
            raise ClientError(409, "conflict", str(exc)) from exc
        return _summary(
            (await conn.execute(select(alerts).where(alerts.c.alert_id == alert_id))).one()
        )


def _actor(key: ApiKey) -> str:
    return key.csm_email or f"key:{key.name}"


@router.post("/alerts/{alert_id}/acknowledge")
async def acknowledge(alert_id: str, ctx: Context, key: RespondKey) -> Any:
    """Someone is on it: no reminders, no escalation."""
    return await _act(ctx, alert_id, key, Action("acknowledge", _actor(key)))


@router.post("/alerts/{alert_id}/snooze")
async def snooze(alert_id: str, body: SnoozeBody, ctx: Context, key: RespondKey) -> Any:
    """Quiet until ``until`` (or ``for`` a duration); told again then if still firing."""
    until = body.until or (ctx.clock() + body.for_ if body.for_ else None)
    if until is None:
        raise ClientError(422, "invalid", "Send 'until' (a time with zone) or 'for' (e.g. '4h').")
    return await _act(ctx, alert_id, key, Action("snooze", _actor(key), body.reason, until))


@router.post("/alerts/{alert_id}/unsnooze")
async def unsnooze(alert_id: str, ctx: Context, key: RespondKey) -> Any:
    return await _act(ctx, alert_id, key, Action("unsnooze", _actor(key)))


@router.post("/alerts/{alert_id}/resolve")
async def resolve(alert_id: str, body: ReasonBody, ctx: Context, key: RespondKey) -> Any:
    """Close it by hand (the condition may still hold: it fires again only after clearing)."""
    return await _act(ctx, alert_id, key, Action("resolve", _actor(key), body.reason))


@router.post("/alerts/{alert_id}/comments")
async def comment(alert_id: str, body: TextBody, ctx: Context, key: RespondKey) -> Any:
    return await _act(ctx, alert_id, key, Action("comment", _actor(key), body.text))


@router.post("/alerts/{alert_id}/not-useful")
async def not_useful(alert_id: str, body: ReasonBody, ctx: Context, key: RespondKey) -> Any:
    """Feedback for the rule's quality figures."""
    return await _act(ctx, alert_id, key, Action("not_useful", _actor(key), body.reason))


@router.get("/deliveries")
async def list_deliveries(
    ctx: Context,
    _key: AdminKey,
    status: Literal["pending", "delivered", "dead"] = "dead",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    """Deliveries by status; ``dead`` ones gave up after their attempts."""
    async with ctx.engine.connect() as conn:
        rows = await conn.execute(
            select(deliveries)
            .where(deliveries.c.status == status)
            .order_by(deliveries.c.delivery_id.desc())
            .limit(limit)
        )
        return {"deliveries": [_delivery(d) for d in rows]}


@router.post("/deliveries/{delivery_id}/retry")
async def retry_delivery(delivery_id: int, ctx: Context, _key: AdminKey) -> dict[str, Any]:
    """Give a dead delivery a fresh set of attempts (after fixing the destination)."""
    async with ctx.engine.begin() as conn:
        done = await conn.execute(
            update(deliveries)
            .where(deliveries.c.delivery_id == delivery_id, deliveries.c.status == "dead")
            .values(status="pending", attempts=0, next_attempt_at=ctx.clock(), claimed_until=None)
        )
    if done.rowcount != 1:
        raise ClientError(404, "not_found", f"No dead delivery {delivery_id}.")
    return {"delivery_id": delivery_id, "status": "pending"}


@router.get("/alert-rules", response_class=PlainTextResponse)
async def get_alert_rules(ctx: Context, _key: ReadKey) -> PlainTextResponse:
    """The alerting file in force (TOML)."""
    async with ctx.engine.connect() as conn:
        config, source = await ctx.config.current(conn)
    return PlainTextResponse(
        source, media_type="application/toml", headers={"X-Alerting-Version": config.version}
    )


@router.put("/alert-rules")
async def put_alert_rules(request: Request, ctx: Context, key: AdminKey) -> JSONResponse:
    """Replace the alerting file (TOML body, with a new ``version``); scoring applies its
    rules from the next batch, the alerts service its routing from the next message."""
    raw = await request.body()
    if len(raw) > MAX_FILE_BYTES:
        raise ClientError(413, "payload_too_large", f"The file is at most {MAX_FILE_BYTES} bytes.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ClientError(400, "bad_encoding", "Send the file as UTF-8 TOML.") from exc
    try:
        async with ctx.engine.begin() as conn:
            config = await ctx.config.save(conn, text, key.name)
    except AlertingError as exc:
        raise ClientError(422, "invalid_alerting", str(exc)) from exc
    except ValueError as exc:
        raise ClientError(409, "version_exists", str(exc)) from exc
    return JSONResponse(
        {"version": config.version, "rules": len(config.rules), "status": "in force"}
    )


@router.get("/alert-rules/quality")
async def rule_quality(ctx: Context, key: ReadKey) -> dict[str, Any]:
    """Per rule: fired, acknowledged, median minutes to acknowledge, marked not useful,
    and how many of the alerted accounts churned after the rule first fired for them (the
    CRM's lifecycle stage; ``healthwatch backtest`` gives the same figure for history)."""
    async with ctx.engine.connect() as conn:
        rows = (await conn.execute(visible_alerts(select(alerts), key))).all()
        churned = {
            r.account_id: churned_at
            for r in await conn.execute(select(accounts.c.account_id, accounts.c.facts))
            if (churned_at := _churned_at(r.facts)) is not None
        }
    by_rule: dict[str, list[Any]] = {}
    for r in rows:
        by_rule.setdefault(r.rule, []).append(r)
    out = []
    for rule, items in sorted(by_rule.items()):
        acked = [r for r in items if r.acknowledged_at is not None]
        minutes = [(r.acknowledged_at - r.stored_at).total_seconds() / 60 for r in acked]
        first_fired: dict[str, datetime] = {}
        for r in items:
            first_fired[r.account_id] = min(r.fired_at, first_fired.get(r.account_id, r.fired_at))
        out.append(
            {
                "rule": rule,
                "fired": len(items),
                "acknowledged": len(acked),
                "median_minutes_to_acknowledge": round(statistics.median(minutes), 1)
                if minutes
                else None,
                "not_useful": sum(1 for r in items if r.not_useful),
                "escalated": sum(1 for r in items if r.escalated_at is not None),
                "accounts": len(first_fired),
                "accounts_churned_since": sum(
                    1 for a, at in first_fired.items() if a in churned and churned[a] > at
                ),
            }
        )
    return {"rules": out}


def _churned_at(facts: dict[str, Any] | None) -> datetime | None:
    """When the CRM first said the account churned (that fact's event time), if it is
    churned now."""
    facts = facts or {}
    if (facts.get("fields") or {}).get("lifecycle_stage") != "churned":
        return None
    first = facts.get("churned_at")
    return datetime.fromisoformat(first) if first else None


SLACK_ACTIONS = {"ack": "acknowledge", "snooze_1d": "snooze", "not_useful": "not_useful"}


@router.post("/slack/interactions", include_in_schema=False)
async def slack_interactions(request: Request, ctx: Context) -> JSONResponse:
    """Slack's button clicks (Acknowledge, Snooze 1 day, Not useful), verified by Slack's
    request signature; the clicking user must be one the alert was routed to."""
    secret = ctx.settings.slack_signing_secret.get_secret_value()
    body = await request.body()
    verifier = SignatureVerifier(secret) if secret else None
    if verifier is None or not verifier.is_valid(
        body,
        request.headers.get("X-Slack-Request-Timestamp", ""),
        request.headers.get("X-Slack-Signature", ""),
    ):
        raise ClientError(401, "bad_signature", "Slack request signature missing or invalid.")
    form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
    try:
        payload = orjson.loads(form["payload"][0])
        user = str(payload["user"]["id"])
        clicked = payload["actions"][0]
        name = SLACK_ACTIONS[clicked["action_id"]]
        alert_id = str(clicked["value"])
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError) as exc:
        raise ClientError(
            400, "bad_payload", "Not a block_actions payload from our buttons."
        ) from exc
    now = ctx.clock()
    async with ctx.engine.begin() as conn:
        row = (await conn.execute(select(alerts).where(alerts.c.alert_id == alert_id))).first()
        config, _ = await ctx.config.current(conn)
        allowed: set[str | None] = {p.slack for p in config.routing.people.values() if p.slack}
        if row is not None:
            owner = (row.payload.get("owner") or {}).get("slack_id")
            sales = (row.payload.get("sales_owner") or {}).get("slack_id")
            allowed |= {owner, sales}
        if row is None or user not in allowed:
            return JSONResponse(
                {"response_type": "ephemeral", "text": "This alert is not yours to act on."}
            )
        until = now + timedelta(days=1) if name == "snooze" else None
        try:
            await apply_action(conn, row, Action(name, f"slack:{user}", None, until), now)
        except ActionError as exc:
            return JSONResponse({"response_type": "ephemeral", "text": f"Not done: {exc}."})
    return JSONResponse({"response_type": "ephemeral", "text": f"Done: {name.replace('_', ' ')}."})
