"""Importing account facts from a CRM export on the dashboard (admin or lead).

Upload a CSV (HubSpot companies, Salesforce accounts or our own columns), see how its
columns map to account facts and each row's errors, then import. The facts are published
on the bus as ``AccountFacts`` events, exactly as ``POST /v1/accounts`` publishes them,
so scoring applies them like any other; the dashboard writes no account state.

Reading the CSV is the ingest connectors' (``services.ingest.connectors.accounts_csv``),
which the dashboard may not import: the composition root hands it in
(``mount_dashboard(accounts_reader=…)``); these Protocols are what the page reads of it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any, Protocol

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.responses import Response

from services.dashboard.auth import Forbidden, NotFound, Viewer, context, viewer
from services.dashboard.routes import language, page
from shared.auth import Scope, same_secret
from shared.bus.base import BusUnavailable, OutMessage, Producer
from shared.clock import utcnow
from shared.contracts.events import AccountFacts
from shared.contracts.wire import encode_event
from shared.i18n import N_
from shared.people import known_owners
from shared.request_body import read_body
from shared.web import ClientError

router = APIRouter(prefix="/ui", include_in_schema=False)

FORMATS = ("hubspot", "salesforce", "csv")
# An upload of a portfolio of ~10,000 accounts; larger ones: healthwatch accounts import.
MAX_UPLOAD_BYTES = 2 * 1024 * 1024
PREVIEW_ROWS = 20
ERRORS_SHOWN = 200
# Facts per bus call: a few hundred small messages per send_many.
PUBLISH_BATCH = 500
PROBLEMS = {
    "too_large": N_("The file is larger than 2 MB: import it with 'healthwatch accounts import'."),
    "no_file": N_("Choose a CSV file to upload."),
    "bus": N_("The event bus is not reachable, so nothing was imported. Try again in a moment."),
    "no_bus": N_(
        "This server runs the dashboard without the event bus: import with "
        "'healthwatch accounts import' instead."
    ),
}


class RowErrorLike(Protocol):
    @property
    def column(self) -> str: ...
    @property
    def message(self) -> str: ...
    def worded(self, language: str) -> str: ...


class RowLike(Protocol):
    @property
    def row(self) -> int: ...
    @property
    def fact(self) -> AccountFacts | None: ...
    @property
    def errors(self) -> Sequence[RowErrorLike]: ...


class HeaderLike(Protocol):
    @property
    def mapped(self) -> dict[str, str]: ...
    @property
    def ignored(self) -> list[str]: ...
    @property
    def encoding(self) -> str: ...
    @property
    def fallback(self) -> bool: ...


# (file bytes, format) -> the header and rows; ValueError when it is no such CSV at all.
AccountsReader = Callable[[bytes, str], tuple[HeaderLike, Sequence[RowLike]]]


async def _importer(request: Request) -> Viewer:
    """An admin or a lead: a key that responds and sees every account."""
    who = await viewer(request, Scope.respond)
    if who.key.portfolio_of is not None:
        raise Forbidden(
            N_("Importing accounts sets owners and tiers for everyone: ask your lead or an admin.")
        )
    return who


@router.get("/import", response_class=HTMLResponse)
async def import_form(request: Request) -> Response:
    who = await _importer(request)
    return page(request, "import.html", {"formats": FORMATS, "format": "csv"}, who)


def _multipart(body: bytes, content_type: str) -> dict[str, bytes]:
    """A multipart/form-data body's fields (the stdlib's MIME parser: no extra package)."""
    if not content_type.startswith("multipart/form-data"):
        return {}
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    fields: dict[str, bytes] = {}
    if not message.is_multipart():
        return fields
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            fields[name] = payload
    return fields


@router.post("/import", response_class=HTMLResponse)
async def import_post(request: Request) -> Response:
    """``step=preview``: the mapping and each row's errors; ``step=import``: publish."""
    who = await _importer(request)
    try:
        body = await read_body(request, MAX_UPLOAD_BYTES + 64 * 1024)
    except ClientError:
        return _form_again(request, who, "csv", "too_large", 413)
    fields = _multipart(body, request.headers.get("content-type", ""))
    if not same_secret(fields.get("csrf", b"").decode("utf-8", "replace"), who.csrf):
        raise Forbidden(
            N_(
                "This form's security token does not match your session (it may be from an "
                "old page or another site). Reload the page and try again."
            )
        )
    fmt = fields.get("format", b"").decode("utf-8", "replace")
    fmt = fmt if fmt in FORMATS else "csv"
    data = fields.get("file") or fields.get("csv") or b""
    if not data.strip():
        return _form_again(request, who, fmt, "no_file", 422)
    if len(data) > MAX_UPLOAD_BYTES:
        return _form_again(request, who, fmt, "too_large", 413)
    reader: AccountsReader | None = request.app.state.accounts_reader
    if reader is None:
        raise NotFound("import")
    try:
        header, rows = reader(data, fmt)
    except ValueError as exc:
        return _form_again(request, who, fmt, None, 422, file_error=str(exc))
    good = [r.fact for r in rows if r.fact is not None]
    lang = language(request)
    problems = [(r.row, e.column, e.worded(lang)) for r in rows for e in r.errors]
    values: dict[str, Any] = {
        "format": fmt,
        "header": header,
        "rows": len(rows),
        "good": good[:PREVIEW_ROWS],
        "good_count": len(good),
        "errors": problems[:ERRORS_SHOWN],
        "bad_count": sum(1 for r in rows if r.fact is None),
        # Sent back as the form's text (UTF-8), whatever the file was read in.
        "csv_text": data.decode(header.encoding, "replace"),
    }
    if fields.get("step") != b"import":
        return page(request, "import_preview.html", values, who)
    problem = await _publish(request, good)
    if problem is not None:
        return _form_again(request, who, fmt, problem, 503)
    return page(request, "import_done.html", values, who)


def _form_again(
    request: Request,
    who: Viewer,
    fmt: str,
    problem: str | None,
    status: int,
    *,
    file_error: str = "",
) -> Response:
    values = {
        "formats": FORMATS,
        "format": fmt,
        "problem": PROBLEMS.get(problem or ""),
        "file_error": file_error,
    }
    return page(request, "import.html", values, who, status)


async def _publish(request: Request, facts: list[AccountFacts]) -> str | None:
    """Publish the facts (a PROBLEMS key when the bus cannot take them)."""
    bus: Producer | None = getattr(request.app.state, "dashboard_bus", None)
    if bus is None:
        return "no_bus"
    settings = request.app.state.dashboard.settings
    now = utcnow()
    # A CRM export has no Slack column: owners keep the Slack ids known for them.
    async with context(request).engine.connect() as conn:
        facts = await known_owners(conn, facts)
    messages = [
        OutMessage(
            topic=settings.topic(f.kind),
            key=f.account_id.encode(),
            value=encode_event(f.model_copy(update={"received_at": now})),
        )
        for f in facts
    ]
    try:
        for start in range(0, len(messages), PUBLISH_BATCH):
            await bus.send_many(messages[start : start + PUBLISH_BATCH])
    except BusUnavailable:
        return "bus"
    return None
