"""Admin pages under /ui/admin: API keys, the health model, the alert rules and the
alert deliveries. Admin keys only: any other key gets the 403 page.

They do what the admin API does, through the same code: keys through ``shared.auth``
(as ``/v1/keys``), the two TOML documents through the stores ``PUT /v1/health-model``
and ``PUT /v1/alert-rules`` save through (their validation, their version check), and
deliveries on the table the alerts service sends from. (The import rules keep the
dashboard from the API modules themselves; it reads and acts on what they share.)
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import Table, func, select, update
from starlette.responses import Response

from services.dashboard.auth import (
    Forbidden,
    FormTooLarge,
    NotFound,
    Viewer,
    checked_form,
    context,
    viewer,
)
from services.dashboard.routes import page
from shared.alerting.store import AlertingStore, alerting_store
from shared.auth import (
    KeyStore,
    Role,
    Scope,
    create_key,
    list_keys,
    revoke_key,
    role_scopes,
    same_secret,
)
from shared.clock import utcnow
from shared.i18n import N_
from shared.request_body import read_capped
from shared.storage.documents import DocumentStore
from shared.storage.tables import alerting_configs, deliveries, health_models
from shared.web import whole_number

router = APIRouter(prefix="/ui/admin", include_in_schema=False)

# The documents' size limit is the API's (200 KB); url-encoding at most triples it.
MAX_DOCUMENT_FORM_BYTES = 3 * 200_000
DELIVERY_STATUSES = ("dead", "pending", "delivered", "skipped")
SHOWN = 100
# What an action's redirect may say (fixed texts, never text from the request).
DONE = {
    "revoked": "Key revoked: it stops working within a minute everywhere.",
    "retried": "Delivery queued again with a fresh set of attempts.",
    "not_dead": "That delivery is not dead (any more); the list below is current.",
    "own_key": "That is the key you are signed in with: revoke it with another admin key.",
}
# The two TOML documents: their store, table and the page's texts.
DOCUMENTS = {
    "model": {
        "title": "Health model",
        "table": health_models,
        "lead": "The model scores every account; a new version applies from the next batch.",
    },
    "rules": {
        "title": "Alert rules",
        "table": alerting_configs,
        "lead": "The alerting file: rules, routing and quiet hours; a new version applies "
        "from the next batch.",
    },
}


async def _admin(request: Request) -> Viewer:
    return await viewer(request, Scope.admin)


def _admin_page(
    request: Request, name: str, values: dict[str, Any], who: Viewer, status: int = 200
) -> HTMLResponse:
    done = DONE.get(request.query_params.get("done", ""))
    return page(request, name, {"admin_notice": done, **values}, who, status)


@router.get("", response_class=HTMLResponse)
async def admin_home(request: Request) -> Response:
    await _admin(request)
    return RedirectResponse("/ui/admin/keys", status_code=303)


# --- keys -------------------------------------------------------------------------------


@router.get("/keys", response_class=HTMLResponse)
async def keys_page(request: Request) -> Response:
    who = await _admin(request)
    return await _keys(request, who)


async def _keys(
    request: Request,
    who: Viewer,
    created: tuple[str, Any] | None = None,
    error: str | None = None,
    form: dict[str, str] | None = None,
) -> HTMLResponse:
    values = {
        "keys": await list_keys(context(request).engine),
        "roles": [role.value for role in Role],
        "created": created,
        "error": error,
        "form": form or {},
    }
    return _admin_page(request, "admin_keys.html", values, who, 422 if error else 200)


@router.post("/keys", response_class=HTMLResponse)
async def create_key_form(request: Request) -> Response:
    """Create a key and show its secret on this one answer (never stored in clear)."""
    who, form = await checked_form(request, Scope.admin)
    name = form.get("name", "").strip()
    email = form.get("csm_email", "").strip() or None
    try:
        scopes = _new_key_scopes(name, form.get("role", ""), email)
    except ValueError as exc:
        return await _keys(request, who, error=str(exc), form=form)
    engine = context(request).engine
    raw = await create_key(engine, name, scopes, email)
    (info,) = await list_keys(engine, raw.split("_", 2)[1])
    return await _keys(request, who, created=(raw, info))


def _new_key_scopes(name: str, role: str, email: str | None) -> frozenset[Scope]:
    """The scopes of a key to create, or ValueError saying what is wrong (the checks of
    ``POST /v1/keys``: a printable name, a known role, a CSM key with its CSM)."""
    if not 1 <= len(name) <= 200:
        raise ValueError("Give the key a name of 1 to 200 characters.")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name + (email or "")):
        raise ValueError("No control characters (tabs, line breaks…) in the name or e-mail.")
    if role not in {r.value for r in Role}:
        raise ValueError("Pick a role.")
    if email is not None and ("@" not in email or len(email) > 320 or " " in email):
        raise ValueError("The CSM e-mail is not an e-mail address.")
    return role_scopes(Role(role), email)


@router.post("/keys/{key_id}/revoke")
async def revoke_key_form(request: Request, key_id: str) -> Response:
    who, _form = await checked_form(request, Scope.admin)
    if key_id == who.key.key_id:  # no admin locks themselves out by a stray click
        return RedirectResponse("/ui/admin/keys?done=own_key", status_code=303)
    if await revoke_key(context(request).engine, key_id) is None:
        raise NotFound(key_id)
    keys: KeyStore = request.app.state.keys
    keys.forget(key_id)  # refused at once here, as the API's revoke does
    return RedirectResponse("/ui/admin/keys?done=revoked", status_code=303)


# --- the health model and the alert rules ------------------------------------------------


def _store(request: Request, kind: str) -> DocumentStore[Any]:
    """The store the API saves the document through: the health API's model store, the
    alerts API's alerting store (or one like it where this process has no alerts API)."""
    state = request.app.state
    if kind == "model":
        health_api = getattr(state, "health_api", None)
        if health_api is None:
            raise NotFound(kind)
        store: DocumentStore[Any] = health_api.models
        return store
    return alerting_of(request)


def alerting_of(request: Request) -> AlertingStore:
    """The alerting store of this process: the alerts API's, or one like it (the
    configured file as its default) where this process has no alerts API."""
    state = request.app.state
    alerts_api = getattr(state, "alerts_api", None)
    if alerts_api is not None:
        alerting: AlertingStore = alerts_api.alerting
        return alerting
    if getattr(state, "admin_alerting", None) is None:
        state.admin_alerting = alerting_store(context(request).settings)
    own: AlertingStore = state.admin_alerting
    return own


async def _versions(request: Request, table: Table) -> list[Any]:
    t = table.c
    q = select(t.version, t.created_at, t.created_by).order_by(t.created_at.desc()).limit(SHOWN)
    async with context(request).engine.connect() as conn:
        return list(await conn.execute(q))


async def _document(
    request: Request,
    who: Viewer,
    kind: str,
    *,
    text: str | None = None,
    problems: list[str] | None = None,
    saved: str | None = None,
) -> HTMLResponse:
    doc = DOCUMENTS[kind]
    store = _store(request, kind)
    async with context(request).engine.connect() as conn:
        current, source = await store.current(conn)
    table: Table = doc["table"]  # type: ignore[assignment]
    values = {
        "kind": kind,
        "title": doc["title"],
        "lead": doc["lead"],
        "version": current.version,
        "source": source if text is None else text,
        "versions": await _versions(request, table),
        "problems": problems,
        "saved": saved,
    }
    return _admin_page(request, "admin_document.html", values, who, 422 if problems else 200)


@router.get("/model", response_class=HTMLResponse)
async def model_page(request: Request) -> Response:
    return await _document(request, await _admin(request), "model")


@router.get("/rules", response_class=HTMLResponse)
async def rules_page(request: Request) -> Response:
    return await _document(request, await _admin(request), "rules")


@router.post("/{kind}", response_class=HTMLResponse)
async def apply_document(request: Request, kind: str) -> Response:
    """Validate and store the pasted or uploaded TOML as the new version, as the PUT
    does; its problems are listed one per line, the text kept for fixing."""
    if kind not in DOCUMENTS:
        raise NotFound(kind)
    who, form = await _document_form(request)
    text = form.get("toml", "").replace("\r\n", "\n")
    try:
        async with context(request).engine.begin() as conn:
            saved = await _store(request, kind).save(conn, text, who.key.name)
    except ValueError as exc:  # invalid (every problem listed), or the version exists
        return await _document(request, who, kind, text=text, problems=problems_of(str(exc)))
    return await _document(request, who, kind, saved=saved.version)


async def _document_form(request: Request) -> tuple[Viewer, dict[str, str]]:
    """``checked_form`` for a document: the same CSRF check, room for a whole file."""
    who = await _admin(request)
    body = await read_capped(request, MAX_DOCUMENT_FORM_BYTES)
    if body is None:  # read only so far: a 403 had read it whole, and said it in English
        raise FormTooLarge(
            N_("The document is larger than the 200 KB the service accepts: shorten it.")
        )
    form = dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    if not same_secret(form.get("csrf", ""), who.csrf):
        raise Forbidden(
            "This form's security token does not match your session (it may be from an "
            "old page or another site). Reload the page and try again."
        )
    return who, form


def problems_of(message: str) -> list[str]:
    """A validation message as a list: "invalid the model: a: x; b: y" → ["a: x", "b: y"]
    (the stores list every problem with its location, separated by "; ")."""
    head, sep, rest = message.partition(": ")
    if sep and head.startswith("invalid "):
        return [part.strip() for part in rest.split("; ") if part.strip()]
    return [message]


# --- deliveries --------------------------------------------------------------------------


@router.get("/deliveries", response_class=HTMLResponse)
async def deliveries_page(request: Request) -> Response:
    who = await _admin(request)
    shown = request.query_params.get("status", "dead")
    status = shown if shown in DELIVERY_STATUSES else "dead"
    d = deliveries.c
    async with context(request).engine.connect() as conn:
        per_status = await conn.execute(select(d.status, func.count()).group_by(d.status))
        counts: dict[str, int] = {state: n for state, n in per_status}
        rows = list(
            await conn.execute(
                select(deliveries)
                .where(d.status == status)
                .order_by(d.delivery_id.desc())
                .limit(SHOWN)
            )
        )
    values = {"status": status, "statuses": DELIVERY_STATUSES, "counts": counts, "rows": rows}
    return _admin_page(request, "admin_deliveries.html", values, who)


@router.post("/deliveries/{delivery_id}/retry")
async def retry_delivery(request: Request, delivery_id: str) -> Response:
    """A dead delivery gets a fresh set of attempts, as ``POST /v1/deliveries/{id}/retry``
    gives it (after the destination was fixed)."""
    await checked_form(request, Scope.admin)
    if whole_number(delivery_id) is None:
        raise NotFound(delivery_id)
    d = deliveries.c
    async with context(request).engine.begin() as conn:
        done = await conn.execute(
            update(deliveries)
            .where(d.delivery_id == int(delivery_id), d.status == "dead")
            .values(status="pending", attempts=0, next_attempt_at=utcnow(), claimed_until=None)
        )
    outcome = "retried" if done.rowcount == 1 else "not_dead"
    return RedirectResponse(f"/ui/admin/deliveries?done={outcome}", status_code=303)
