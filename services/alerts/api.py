"""The alerts API: list and read alerts, act on them, see failed deliveries, read and
replace the alerting file, per-rule quality, and Slack's button clicks.

A key tied to a CSM (``keys create --csm-email``) sees and acts on the alerts of the
accounts that CSM owns now (whoever owned them when they fired); others answer 404, as
if they did not exist.
"""

from __future__ import annotations

import statistics
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import (
    AwareDatetime,
    ConfigDict,
    Field,
    field_validator,
)
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.alerts.actions import Action, ActionError, actor_of, apply_action, snooze_text
from services.alerts.bodies import JsonBody, Reason, Text, asked_end
from services.alerts.queries import (
    accounts_of,
    alert_rows,
    of_rule,
    snoozed,
    storable_alert_id,
    total_of,
    visible_alert,
    visible_alerts,
    waiting,
)
from services.alerts.schemas import (
    AlertDetail,
    AlertList,
    AlertSummary,
    DeliveryList,
    RetryAnswer,
    RuleQualityList,
)
from shared.alerting.schema import AlertingError, Duration
from shared.alerting.store import AlertingStore
from shared.auth import ApiKey
from shared.clock import Clock, utcnow
from shared.config import Settings
from shared.contracts.alerts import OPEN_ALERT_STATUSES
from shared.contracts.events import INT32_MAX
from shared.document_routes import (
    DOCUMENT_ANSWERS,
    TomlResponse,
    current_document,
    replace_document,
    toml_body,
)
from shared.i18n import N_
from shared.openapi import error_responses
from shared.request_body import read_body
from shared.storage.tables import accounts, alert_activity, alerts, deliveries
from shared.web import AdminKey, ClientError, ReadKey, RespondKey

MAX_FILE_BYTES = 200_000
# Slack signs each request with a timestamp; older ones are replays (Slack's own limit).
SLACK_MAX_AGE_S = 300
# A button click's payload carries the message it was on: at most 50 blocks of a few
# thousand characters, well under 1 MiB.
SLACK_MAX_BODY_BYTES = 1_048_576
# A snooze is a pause, not a dismissal: beyond a quarter (one QBR cycle) the account's
# situation has changed and the alert should be resolved or marked not useful instead.
# Bounding it also keeps every 'until' a storable time.
MAX_SNOOZE = timedelta(days=90)
# deliveries.delivery_id is a 64-bit integer: larger numbers name no delivery.
MAX_DELIVERY_ID = 2**63 - 1


@dataclass
class AlertsApiContext:
    engine: AsyncEngine
    alerting: AlertingStore  # the alerting file: /v1/alert-rules, who may click in Slack
    settings: Settings
    clock: Clock = field(default=utcnow)


def get_context(request: Request) -> AlertsApiContext:
    ctx: AlertsApiContext = request.app.state.alerts_api
    return ctx


Context = Annotated[AlertsApiContext, Depends(get_context)]

# The answers of a route on one alert or delivery besides the key's: not there (or not
# this key's), and for an action one the alert's state refuses.
NOT_FOUND = error_responses(404)
ACTED = error_responses(404, 409)

router = APIRouter(prefix="/v1", tags=["alerts"])


def _summary(r: Any) -> dict[str, Any]:
    return {
        "alert_id": r.alert_id,
        "account_id": r.account_id,
        "rule": r.rule,
        "severity": r.severity,
        "status": r.status,
        "title": r.title,
        "owner_email": r.owner_now,
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
        **_grouping((r.payload or {}).get("details") or {}),
    }


def _grouping(details: dict[str, Any]) -> dict[str, Any]:
    """The alert's family and symptoms (a rule alone is its own single symptom)."""
    symptoms = details.get("symptoms")
    if not isinstance(symptoms, list):
        return {"family": None, "symptoms": []}
    rules = [s["rule"] for s in symptoms if isinstance(s, dict) and isinstance(s.get("rule"), str)]
    family = details.get("family")
    return {"family": family if isinstance(family, str) else None, "symptoms": rules}


def _page(total: int, limit: int, offset: int, shown: int) -> dict[str, Any]:
    return {
        "total": total,
        "limit": limit,
        "offset": offset,
        "truncated": offset + shown < total,
    }


@router.get("/alerts", response_model=AlertList)
async def list_alerts(
    ctx: Context,
    key: ReadKey,
    status: Literal[
        "open", "to_do", "snoozed", "firing", "acknowledged", "resolved", "any"
    ] = "open",
    severity: Literal["critical", "warning", "info"] | None = None,
    rule: Annotated[
        str | None,
        Query(max_length=200, description="the alert's rule, or a symptom of its family"),
    ] = None,
    account_id: Annotated[str | None, Query(max_length=200)] = None,
    owner: Annotated[str | None, Query(max_length=320, description="the account's owner")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=INT32_MAX)] = 0,
) -> dict[str, Any]:
    """Alerts, newest first; ``status=open`` means firing or acknowledged, ``to_do``
    firing and not snoozed, muted or marked not useful (what waits for someone: the
    dashboard's list to do), ``snoozed`` open and snoozed now. ``total`` counts every
    match and ``truncated`` says when the page does not hold them all."""
    q = alert_rows().order_by(alerts.c.stored_at.desc(), alerts.c.alert_id)
    if status == "open":
        q = q.where(alerts.c.status.in_(OPEN_ALERT_STATUSES))
    elif status == "to_do":
        q = q.where(waiting(ctx.clock()))
    elif status == "snoozed":
        q = q.where(alerts.c.status.in_(OPEN_ALERT_STATUSES), snoozed(ctx.clock()))
    elif status != "any":
        q = q.where(alerts.c.status == status)
    for column, value in ((alerts.c.severity, severity), (alerts.c.account_id, account_id)):
        if value is not None:
            q = q.where(column == value)
    if rule is not None:
        q = q.where(of_rule(rule))
    if owner is not None:  # the account's owner now, as for a CSM key
        q = q.where(alerts.c.account_id.in_(accounts_of(owner)))
    q = visible_alerts(q, key)
    async with ctx.engine.connect() as conn:
        rows = (await conn.execute(q.limit(limit).offset(offset))).all()
        total = await total_of(conn, q)
    return {"alerts": [_summary(r) for r in rows], **_page(total, limit, offset, len(rows))}


async def _alert(conn: AsyncConnection, alert_id: str, key: ApiKey) -> Any:
    row = await visible_alert(conn, alert_id, key)
    if row is None:
        raise ClientError(
            404,
            "not_found",
            "No alert {alert_id!r} visible to this key.",
            values={"alert_id": alert_id[:300]},
        )
    return row


@router.get("/alerts/{alert_id}", response_model=AlertDetail, responses=NOT_FOUND)
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


class SnoozeBody(JsonBody):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"for": "2d", "reason": "Customer away until Monday"}]}
    )
    until: AwareDatetime | None = Field(None, description="a time with zone, at most 90 days ahead")
    for_: Duration | None = Field(
        None,
        alias="for",
        description="e.g. '4h', '2d', ISO 8601 'P2D', or seconds; at most 90 days",
    )
    reason: Reason | None = None

    @field_validator("for_")
    @classmethod
    def _bounded(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and not timedelta(0) < value <= MAX_SNOOZE:
            raise ValueError(
                "a snooze lasts more than 0 and at most 90 days; for longer, resolve the "
                "alert or mark it not useful"
            )
        return value


class TextBody(JsonBody):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"text": "Called Li Na: the export fix ships Friday."}]}
    )
    text: Text = Field(min_length=1, max_length=10_000)


class ReasonBody(JsonBody):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"reason": "Renewal signed last week"}]}
    )
    reason: Reason | None = None


async def _act(ctx: AlertsApiContext, alert_id: str, key: ApiKey, action: Action) -> Any:
    now = ctx.clock()
    async with ctx.engine.begin() as conn:
        row = await _alert(conn, alert_id, key)
        try:
            await apply_action(conn, row, action, now)
        except ActionError as exc:
            raise ClientError.refusing(409, "conflict", exc) from exc
        return _summary(
            (await conn.execute(alert_rows().where(alerts.c.alert_id == alert_id))).one()
        )


@router.post("/alerts/{alert_id}/acknowledge", response_model=AlertSummary, responses=ACTED)
async def acknowledge(alert_id: str, ctx: Context, key: RespondKey) -> Any:
    """Someone is on it: no reminders, no escalation."""
    return await _act(ctx, alert_id, key, Action("acknowledge", actor_of(key)))


@router.post("/alerts/{alert_id}/snooze", response_model=AlertSummary, responses=ACTED)
async def snooze(alert_id: str, body: SnoozeBody, ctx: Context, key: RespondKey) -> Any:
    """Quiet until ``until`` (or ``for`` a duration, at most 90 days); told again then if
    still firing."""
    now = ctx.clock()
    until = asked_end(now, body.until, body.for_, "4h")
    if not now < until <= now + MAX_SNOOZE:
        raise ClientError(
            422,
            "invalid_request",
            "'until' must be in the future and at most 90 days ahead; for longer, resolve "
            "the alert or mark it not useful.",
            extra={"field": "until"},
        )
    return await _act(ctx, alert_id, key, Action("snooze", actor_of(key), body.reason, until))


@router.post("/alerts/{alert_id}/unsnooze", response_model=AlertSummary, responses=ACTED)
async def unsnooze(alert_id: str, ctx: Context, key: RespondKey) -> Any:
    return await _act(ctx, alert_id, key, Action("unsnooze", actor_of(key)))


@router.post("/alerts/{alert_id}/resolve", response_model=AlertSummary, responses=ACTED)
async def resolve(alert_id: str, body: ReasonBody, ctx: Context, key: RespondKey) -> Any:
    """Close it by hand (the condition may still hold: it fires again only after clearing)."""
    return await _act(ctx, alert_id, key, Action("resolve", actor_of(key), body.reason))


@router.post("/alerts/{alert_id}/comments", response_model=AlertSummary, responses=ACTED)
async def comment(alert_id: str, body: TextBody, ctx: Context, key: RespondKey) -> Any:
    return await _act(ctx, alert_id, key, Action("comment", actor_of(key), body.text))


@router.post("/alerts/{alert_id}/not-useful", response_model=AlertSummary, responses=ACTED)
async def not_useful(alert_id: str, body: ReasonBody, ctx: Context, key: RespondKey) -> Any:
    """Feedback for the rule's quality figures."""
    return await _act(ctx, alert_id, key, Action("not_useful", actor_of(key), body.reason))


@router.get("/deliveries", response_model=DeliveryList)
async def list_deliveries(
    ctx: Context,
    _key: AdminKey,
    status: Literal["pending", "delivered", "dead", "skipped"] = "dead",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=INT32_MAX)] = 0,
) -> dict[str, Any]:
    """Deliveries by status, newest first; ``dead`` ones gave up after their attempts.
    ``total`` counts every match and ``truncated`` says when the page does not hold them
    all."""
    q = (
        select(deliveries)
        .where(deliveries.c.status == status)
        .order_by(deliveries.c.delivery_id.desc())
    )
    async with ctx.engine.connect() as conn:
        rows = (await conn.execute(q.limit(limit).offset(offset))).all()
        total = await total_of(conn, q)
    return {"deliveries": [_delivery(d) for d in rows], **_page(total, limit, offset, len(rows))}


@router.post("/deliveries/{delivery_id}/retry", response_model=RetryAnswer, responses=NOT_FOUND)
async def retry_delivery(
    delivery_id: Annotated[int, Path(ge=1, le=MAX_DELIVERY_ID)], ctx: Context, _key: AdminKey
) -> dict[str, Any]:
    """Give a dead delivery a fresh set of attempts (after fixing the destination)."""
    async with ctx.engine.begin() as conn:
        done = await conn.execute(
            update(deliveries)
            .where(deliveries.c.delivery_id == delivery_id, deliveries.c.status == "dead")
            .values(status="pending", attempts=0, next_attempt_at=ctx.clock(), claimed_until=None)
        )
    if done.rowcount != 1:
        raise ClientError(
            404, "not_found", "No dead delivery {delivery_id}.", values={"delivery_id": delivery_id}
        )
    return {"delivery_id": delivery_id, "status": "pending"}


@router.get("/alert-rules", response_class=TomlResponse)
async def get_alert_rules(ctx: Context, _key: ReadKey) -> TomlResponse:
    """The alerting file in force (TOML)."""
    return await current_document(ctx.engine, ctx.alerting, "X-Alerting-Version")


@router.put(
    "/alert-rules", openapi_extra=toml_body("the alerting file"), responses=DOCUMENT_ANSWERS
)
async def put_alert_rules(request: Request, ctx: Context, key: AdminKey) -> JSONResponse:
    """Replace the alerting file (TOML body, with a new ``version``); scoring applies its
    rules from the next batch, the alerts service its routing from the next message."""
    alerting = await replace_document(
        request,
        ctx.engine,
        ctx.alerting,
        author=key.name,
        max_bytes=MAX_FILE_BYTES,
        what=N_("the alerting file"),
        invalid=AlertingError,
        invalid_code="invalid_alerting",
    )
    return JSONResponse(
        {"version": alerting.version, "rules": len(alerting.rules), "status": "in force"}
    )


@router.get("/alert-rules/quality", response_model=RuleQualityList)
async def rule_quality(ctx: Context, key: ReadKey) -> dict[str, Any]:
    """Per rule: fired, acknowledged, median minutes to acknowledge, marked not useful,
    and how many of the alerted accounts churned after the rule first fired for them (the
    CRM's lifecycle stage; ``healthwatch backtest`` gives the same figure for history).
    A family's alert counts for each rule among its symptoms (as last stored), not only
    for the one it is titled after."""
    async with ctx.engine.connect() as conn:
        rows = (await conn.execute(visible_alerts(select(alerts), key))).all()
        churned = {
            account.account_id: churned_at
            for account in await conn.execute(select(accounts.c.account_id, accounts.c.facts))
            if (churned_at := _churned_at(account.facts)) is not None
        }
    by_rule: dict[str, list[Any]] = {}
    for alert in rows:
        symptoms = _grouping((alert.payload or {}).get("details") or {})["symptoms"]
        for rule in symptoms or [alert.rule]:
            by_rule.setdefault(rule, []).append(alert)
    out = []
    for rule, items in sorted(by_rule.items()):
        acked = [alert for alert in items if alert.acknowledged_at is not None]
        minutes = [(a.acknowledged_at - a.stored_at).total_seconds() / 60 for a in acked]
        first_fired: dict[str, datetime] = {}
        for alert in items:
            earliest = first_fired.get(alert.account_id, alert.fired_at)
            first_fired[alert.account_id] = min(alert.fired_at, earliest)
        out.append(
            {
                "rule": rule,
                "fired": len(items),
                "acknowledged": len(acked),
                "median_minutes_to_acknowledge": round(statistics.median(minutes), 1)
                if minutes
                else None,
                "not_useful": sum(1 for alert in items if alert.not_useful),
                "escalated": sum(1 for alert in items if alert.escalated_at is not None),
                "accounts": len(first_fired),
                "accounts_churned_since": sum(
                    1
                    for account_id, fired in first_fired.items()
                    if account_id in churned and churned[account_id] > fired
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
    try:
        at = datetime.fromisoformat(first) if isinstance(first, str) else None
    except ValueError:
        return None  # not a time we wrote: this account's churn is not counted
    return at if at is not None and at.tzinfo is not None else None


SLACK_ACTIONS = {"ack": "acknowledge", "snooze_1d": "snooze", "not_useful": "not_useful"}


@router.post("/slack/interactions", include_in_schema=False)
async def slack_interactions(request: Request, ctx: Context) -> JSONResponse:
    """Slack's button clicks (Acknowledge, Snooze 1 day, Not useful), verified by Slack's
    request signature; the clicking user must be one the account's alerts go to now."""
    # Open to anyone until the signature is checked: read no more than Slack sends.
    body = await read_body(request, SLACK_MAX_BODY_BYTES)
    if not _signed_by_slack(ctx, request, body):
        raise ClientError(401, "bad_signature", "Slack request signature missing or invalid.")
    user, name, alert_id = _clicked(body)
    now = ctx.clock()
    async with ctx.engine.begin() as conn:
        row = None
        if storable_alert_id(alert_id):
            q = select(alerts).where(alerts.c.alert_id == alert_id)
            row = (await conn.execute(q)).first()
        if row is None or user not in await _slack_users_of(conn, ctx, row.account_id):
            return JSONResponse(
                {"response_type": "ephemeral", "text": "This alert is not yours to act on."}
            )
        # A day from the click as Slack signed it, not from its arrival: the same request
        # sent again within its five minutes (a replay, a retry) snoozes to the same end,
        # where it had pushed the snooze out again (found from outside).
        clicked_at = datetime.fromtimestamp(int(request.headers["X-Slack-Request-Timestamp"]), UTC)
        until = clicked_at + timedelta(days=1) if name == "snooze" else None
        action = Action(name, f"slack:{user}", None, until)
        if name == "snooze" and await _snoozed_by(conn, row.alert_id, action):
            # The same click again (a replay, Slack's retry): done once. Applied again,
            # it had snoozed anew an alert somebody had woken since (found from outside).
            return JSONResponse({"response_type": "ephemeral", "text": "Done: snooze."})
        try:
            await apply_action(conn, row, action, now)
        except ActionError as exc:
            return JSONResponse({"response_type": "ephemeral", "text": f"Not done: {exc}"})
    return JSONResponse({"response_type": "ephemeral", "text": f"Done: {name.replace('_', ' ')}."})


async def _snoozed_by(conn: AsyncConnection, alert_id: str, action: Action) -> bool:
    """Whether ``action`` (a snooze from Slack) was applied already: its end, a day from
    the click as Slack signed it, and its clicker name the click."""
    a = alert_activity.c
    found = await conn.execute(
        select(a.activity_id)
        .where(
            a.alert_id == alert_id,
            a.actor == action.actor,
            a.action == "snooze",
            a.text == snooze_text(action),
        )
        .limit(1)
    )
    return found.first() is not None


def _signed_by_slack(ctx: AlertsApiContext, request: Request, body: bytes) -> bool:
    """Slack's v0 signature over a timestamp no older than five minutes. Malformed
    headers (a non-numeric timestamp, non-ASCII signature) are as good as none."""
    secret = ctx.settings.slack_signing_secret.get_secret_value()
    timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
    signature = request.headers.get("X-Slack-Signature", "")
    # Unix seconds have 10 digits until 2286; a longer number would overflow the
    # verifier's float arithmetic.
    if not secret or not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        return False
    if not signature.isascii():
        return False  # hmac.compare_digest refuses non-ASCII strings (TypeError)
    try:
        body.decode("utf-8")  # Slack sends form-encoded ASCII; the verifier decodes it
    except UnicodeDecodeError:
        return False  # a 500 to anyone who knew the time (found from outside)
    return SignatureVerifier(secret).is_valid(body, timestamp, signature)


def _clicked(body: bytes) -> tuple[str, str, str]:
    """(Slack user, our action, alert id) of a block_actions payload from our buttons."""
    form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
    try:
        payload = orjson.loads(form["payload"][0])
        clicked = payload["actions"][0]
        return (
            str(payload["user"]["id"]),
            SLACK_ACTIONS[clicked["action_id"]],
            str(clicked["value"]),
        )
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError) as exc:
        raise ClientError(
            400, "bad_payload", "Not a block_actions payload from our buttons."
        ) from exc


async def _slack_users_of(
    conn: AsyncConnection, ctx: AlertsApiContext, account_id: str
) -> set[str]:
    """Who may act on the account's alerts from Slack: the people of the routing file,
    and the account's owner and sales owner now (not when the alert fired)."""
    alerting, _ = await ctx.alerting.current(conn)
    allowed = {p.slack for p in alerting.routing.people.values() if p.slack}
    q = select(accounts.c.owner_slack_id, accounts.c.facts).where(
        accounts.c.account_id == account_id
    )
    account = (await conn.execute(q)).first()
    if account is None:
        return allowed
    sales = ((account.facts or {}).get("fields") or {}).get("sales_owner")
    sales_slack = sales.get("slack_id") if isinstance(sales, dict) else None
    return allowed | {str(u) for u in (account.owner_slack_id, sales_slack) if u}
