"""HTTP pieces every service shares: client errors, API-key auth, ops endpoints (the
OpenAPI side of them: ``shared.openapi``)."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Annotated, Any

import asyncpg  # type: ignore[import-untyped]
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from pydantic import BaseModel
from sqlalchemy import exc as sa_exc
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.middleware.base import RequestResponseEndpoint
from starlette.types import ASGIApp, Receive, Send
from starlette.types import Scope as AsgiScope

from shared.auth import ApiKey, KeyStore, KeysUnavailable, Scope
from shared.i18n import DEFAULT_LANGUAGE, Choices, Refusal, negotiate, worded
from shared.openapi import BASIC, BEARER, document_errors, mount_docs
from shared.storage.db import unstorable_value
from shared.worker import causes, describe

log = logging.getLogger(__name__)


# A CSV cell a spreadsheet would run as a formula starts with one of these (OWASP's
# "CSV injection"): an account name "=HYPERLINK(…)" sent by a CRM must stay text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_cell(value: Any) -> Any:
    """``value`` for a CSV cell: text that a spreadsheet would take for a formula gets a
    leading apostrophe (a spreadsheet then shows it as text, the apostrophe included);
    numbers stay numbers. A script reading the CSV sees the apostrophe: the Parquet
    export carries every value as it is."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


class ClientError(Exception):
    """A 4xx (or 503) answer with a machine-readable code and a message saying what to do.

    ``message`` is English, and a ``str.format`` template when ``values`` fill it: the
    answer is in the language the request's ``Accept-Language`` prefers, where the
    message has a translation (``shared/i18n/locale/*/api.po``); the code stays the same
    in every language, for programs to read."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        values: Mapping[str, object] | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ):
        self.template = message
        self.values = dict(values or {})
        self._filled = values is not None  # a template: its braces are fields
        self.message = worded(DEFAULT_LANGUAGE, message, self.values) if self._filled else message
        super().__init__(self.message)
        self.status = status
        self.code = code
        self.extra = extra or {}
        self.headers = headers

    @classmethod
    def refusing(cls, status: int, code: str, refusal: Refusal) -> ClientError:
        """The answer to a command ``refusal`` refused, worded as it is."""
        return cls(status, code, refusal.template, values=refusal.values or None)

    def worded(self, language: str) -> str:
        """The message in ``language`` (English where it has no translation)."""
        return worded(language, self.template, self.values if self._filled else None)


# First in every CSV file we write: without it Excel reads UTF-8 as the system's code
# page, and Chinese names come out garbled.
CSV_BOM = "\ufeff"


def csv_answer(
    columns: Sequence[str],
    rows: Iterable[dict[str, Any]],
    name: str,
    header: Sequence[str] | None = None,
) -> Response:
    """``rows`` as a CSV file (UTF-8 with a BOM, so spreadsheet programs read Chinese
    names right), one column per name in ``columns``, headed ``header`` (default: the
    names); lists joined by spaces."""
    out = io.StringIO()
    out.write(CSV_BOM)
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(spreadsheet_cell(h) for h in (header or columns))
    for row in rows:
        writer.writerow(
            spreadsheet_cell(
                " ".join(map(str, v)) if isinstance(v, list) else ("" if v is None else v)
            )
            for v in (row.get(c) for c in columns)
        )
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


def whole_number(text: str | None, most_digits: int = 18) -> int | None:
    """``text`` as a whole number when it is one written in ASCII digits (at most
    ``most_digits``, 18: any int64), else None. ``str.isdigit`` alone takes "²" and "①",
    which ``int()`` then refuses: a 500 from a hand-edited address or form."""
    if text is None or not (text.isascii() and text.isdigit()) or len(text) > most_digits:
        return None
    return int(text)


def answer_language(request: Request, default: str = DEFAULT_LANGUAGE) -> str:
    """The language of an API answer: the first of ``Accept-Language`` we have, else
    ``default`` (English for a refusal's message; its code is the same in every
    language)."""
    return negotiate(None, request.headers.get("accept-language"), default)


def error_response(request: Request, status: int, code: str, message: str) -> JSONResponse:
    """A client error's JSON body, ``message`` (English) in the request's language."""
    return _answer(request, ClientError(status, code, message))


async def client_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ClientError)
    return _answer(request, exc)


def _answer(request: Request, exc: ClientError) -> JSONResponse:
    language = answer_language(request)
    return JSONResponse(
        # "code" too: Segment's SDKs log an error body's code; "error" kept for clients.
        {"error": exc.code, "code": exc.code, "message": exc.worded(language), **exc.extra},
        status_code=exc.status,
        headers={**(exc.headers or {}), "Content-Language": language, "Vary": "Accept-Language"},
    )


def presented_key(request: Request) -> str | None:
    """The key from ``Authorization: Bearer …`` or Basic auth's username (Segment)."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value:
        return value.strip()
    if scheme.lower() == "basic" and value:
        try:
            username, _, _ = base64.b64decode(value).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return username or None
    return None


def require_scope(scope: Scope, *alternatives: Scope) -> Callable[..., Awaitable[ApiKey]]:
    """A dependency that admits keys holding ``scope`` or one of ``alternatives`` (the
    app has ``state.keys``)."""

    async def check(
        request: Request,
        _bearer: Annotated[None, Depends(BEARER)],
        _basic: Annotated[None, Depends(BASIC)],
    ) -> ApiKey:
        keys: KeyStore = request.app.state.keys
        raw = presented_key(request)
        key = await keys.verify(raw) if raw else None  # KeysUnavailable: a 503, see below
        if key is None:
            raise ClientError(
                401,
                "unauthorized",
                "Missing or unknown API key: send 'Authorization: Bearer hwk_…' (or the key as the"
                " Basic-auth username); create one with 'healthwatch keys create --scope {scope}'.",
                values={"scope": scope.value},
                headers={"WWW-Authenticate": 'Bearer, Basic realm="healthwatch"'},
            )
        if not any(key.allows(s) for s in (scope, *alternatives)):
            # Listed as the answer's language lists them ("'ingest' or 'crm'"; "…或…").
            needed = Choices(s.value for s in (scope, *alternatives))
            raise ClientError(
                403,
                "forbidden",
                "This key lacks the {needed} scope needed here.",
                values={"needed": needed},
            )
        return key

    return check


# A database failover takes seconds; clients retrying every 5 s find it back soon after.
DATABASE_RETRY_AFTER_S = 5


def keys_unavailable(exc: Exception) -> ClientError:
    """The answer to a key that cannot be checked now: 503 and retry, never a 500."""
    return ClientError(
        503,
        "unavailable",
        "The key cannot be checked now ({reason}): nothing was done; retry later.",
        values={"reason": str(exc)},
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)},
    )


async def keys_unavailable_handler(_request: Request, exc: Exception) -> JSONResponse:
    """The key store is down and the key was not verified recently (an API call or a
    dashboard session)."""
    return await client_error_handler(_request, keys_unavailable(exc))


# The key of a route, declared once for every service (the role table is shared.auth's).
ReadKey = Annotated[ApiKey, Depends(require_scope(Scope.read))]
RespondKey = Annotated[ApiKey, Depends(require_scope(Scope.respond))]
AdminKey = Annotated[ApiKey, Depends(require_scope(Scope.admin))]
MetricsKey = Annotated[ApiKey, Depends(require_scope(Scope.metrics))]


def app_engine(request: Request) -> AsyncEngine:
    """The database of an app's read and admin routes (``state.engine``, set where the
    app is assembled: ``services.runtime``)."""
    engine: AsyncEngine = request.app.state.engine
    return engine


EngineDep = Annotated[AsyncEngine, Depends(app_engine)]
# Why a service is not ready (a short sentence naming the part: the probe's body), or
# None when it is.
Readiness = Callable[[], Awaitable[str | None]]
Liveness = Callable[[], Awaitable[bool]]


class Alive(BaseModel):
    """``status`` "stalled" (a 503): a consume loop has not even tried to move for three
    stall limits while its database and bus answer; the orchestrator should restart the
    process."""

    status: str = "ok"


class Ready(BaseModel):
    """``ready`` false (a 503): the database or the bus does not answer, or a consumer
    stalled; ``reason`` says which."""

    ready: bool
    reason: str | None = None


_PROMETHEUS_TEXT: dict[int | str, dict[str, Any]] = {
    200: {"description": "Prometheus text format", "content": {CONTENT_TYPE_LATEST: {}}}
}


class HttpMetrics:
    """Requests to the read API, the dashboard, the alerts API and the ops endpoints of
    every service but ingest (which counts its own): their 5xx were invisible."""

    def __init__(self, registry: CollectorRegistry):
        self.requests = Counter(
            "healthwatch_http_requests_total",
            "HTTP requests to the read API, the dashboard, the alerts API and ops endpoints, "
            "by route and status code",
            ["route", "status"],
            registry=registry,
        )


def route_of(request: Request) -> str:
    """The matched route's template (``/v1/accounts/{account_id}``), or "unmatched": a
    label value per route, never per account."""
    return str(getattr(request.scope.get("route"), "path", "unmatched"))


def count_requests(app: FastAPI, counter: Counter) -> None:
    """Count every request of ``app`` in ``counter`` (labels: route, status), a failure
    that reached no handler as a 500."""

    @app.middleware("http")
    async def counting(request: Request, call_next: RequestResponseEndpoint) -> Response:
        try:
            response = await call_next(request)
        except Exception:
            counter.labels(route_of(request), "500").inc()
            raise
        counter.labels(route_of(request), str(response.status_code)).inc()
        return response


# /readyz answers within this: the probes give up after 4 s (compose) or 5 s (the
# Kubernetes manifests), and a check that hangs on a frozen database must say "not
# ready", not time the probe out (found from outside: no answer for minutes).
READY_WITHIN_S = 3.0


def ops_router(
    registry: CollectorRegistry, ready: Readiness, *, alive: Liveness | None = None
) -> APIRouter:
    """``/healthz`` (process alive: it answers and, with ``alive``, no consume loop is
    stuck), ``/readyz`` (dependencies reachable), ``/metrics``."""
    router = APIRouter(tags=["ops"])

    @router.get("/healthz", response_model=Alive, responses={503: {"model": Alive}})
    async def healthz() -> JSONResponse:
        ok = True
        if alive is not None:
            try:
                ok = await asyncio.wait_for(alive(), READY_WITHIN_S)
            except TimeoutError:
                ok = True  # a dependency that hangs: its outage, not a stuck loop here
        if ok:
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "stalled"}, status_code=503)

    @router.get("/readyz", response_model=Ready, responses={503: {"model": Ready}})
    async def readyz() -> JSONResponse:
        try:
            reason = await asyncio.wait_for(ready(), READY_WITHIN_S)
        except TimeoutError:  # a database that hangs (a partition, a frozen host)
            reason = f"a dependency did not answer within {READY_WITHIN_S:g} s"
        if reason is None:
            return JSONResponse({"ready": True})
        return JSONResponse({"ready": False, "reason": reason}, status_code=503)

    @router.get("/metrics", response_class=Response, responses=_PROMETHEUS_TEXT)
    async def metrics(_key: MetricsKey) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router


# The errors of a database that cannot be reached (down, restarting, a failover, a
# partition), raised unwrapped by the driver while connecting; SQLAlchemy wraps what an
# open connection raises. Not every OSError or database error: a wrong query, a missing
# table or a file error is a bug, a 500 with its traceback that alerting sees.
UNREACHABLE: tuple[type[Exception], ...] = (
    ConnectionError,
    TimeoutError,
    socket.gaierror,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    sa_exc.TimeoutError,
    sa_exc.DisconnectionError,
)


# What the handler is registered for: the above, and OSError for asyncio's "Multiple
# exceptions" (it re-raises anything else, a 500).
HANDLED: tuple[type[Exception], ...] = (*UNREACHABLE, OSError)


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps or was caused by) says the database cannot be
    reached, as opposed to a query or the code being wrong."""
    for e in causes(exc):
        if isinstance(e, UNREACHABLE) or getattr(e, "connection_invalidated", False):
            return True
        if type(e) is OSError and str(e).startswith("Multiple exceptions:"):
            return True  # asyncio's connect to each address of a name ("localhost") failed
    return False


# SQLSTATE classes of a database that refuses the sign-in (28: a wrong user or password)
# or names no database there (3D): the settings are wrong, no retry helps.
REFUSED_SIGN_IN = ("28", "3D")


def refused_sign_in(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps) is the database refusing the connection's
    user, password or database name."""
    return any(str(getattr(e, "sqlstate", ""))[:2] in REFUSED_SIGN_IN for e in causes(exc))


def collided(exc: BaseException) -> bool:
    """Whether PostgreSQL ended the request's transaction because it met another one at
    the same rows: a deadlock, which it breaks by aborting one of the two, or a
    serialization failure. Nothing of it was written, and the same request sent again
    succeeds. Not the rest of class 40: a constraint checked at commit (40002) fails
    again, and a statement whose completion is unknown (40003) may have been written."""
    return any(isinstance(e, _COLLISIONS) for e in causes(exc))


_COLLISIONS = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)


# A deadlock is over once PostgreSQL has aborted one side (within its deadlock_timeout,
# 1 s by default), so a second later the other side has committed and a retry passes.
COLLISION_RETRY_AFTER_S = 1


async def unavailable_handler(request: Request, exc: Exception) -> JSONResponse:
    """The database cannot be reached while a request is served (a restart, a
    failover): 503 and retry, never a 500. A PostgreSQL restart answered every read of a
    key the process had checked already with a bare 500 (found from outside). A request
    that met another at the same rows (``collided``) is a 503 to retry too: a silence set
    while the alerts service stored a batch of the same account's alerts could deadlock
    with it, and the silence's side got a 500. Any other error goes on to the server's
    500."""
    if collided(exc):
        log.warning("request refused, it met another change: %s", describe(exc))
        return _answer(
            request,
            ClientError(
                503,
                "busy",
                "Another change to the same records was being made at the same moment; "
                "nothing was done: send the request again.",
                headers={"Retry-After": str(COLLISION_RETRY_AFTER_S)},
            ),
        )
    if not unreachable(exc):
        raise exc
    log.warning("request refused, the database is unavailable: %s", describe(exc))
    return _answer(
        request,
        ClientError(
            503,
            "unavailable",
            "The database cannot be reached just now: retry in a few seconds.",
            headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)},
        ),
    )


async def unstorable_value_handler(request: Request, exc: Exception) -> JSONResponse:
    """A value the database cannot hold (out of a column's range, a NUL byte in text)
    came from the request: the client can fix it, the server cannot. A database that
    cannot be reached is a 503 (``unavailable_handler``); any other database error goes
    on to the server's 500."""
    if not unstorable_value(exc):
        return await unavailable_handler(request, exc)
    log.warning("request refused, a value cannot be stored: %s", type(exc.__cause__ or exc))
    return error_response(
        request,
        422,
        "unstorable_value",
        "A value in the request cannot be stored (out of range, too long, or text with a "
        "NUL byte): check the values you sent.",
    )


async def invalid_request_handler(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422, with a ``code`` like every other error, and without echoing the
    input: a NaN or an infinity quoted back cannot be written as JSON (a 500), and a
    huge or hostile value need not travel twice."""
    assert isinstance(exc, RequestValidationError)
    detail = [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    fields = ", ".join(".".join(str(p) for p in d["loc"]) for d in detail)
    # Each field's own message ("msg") is pydantic's, in English.
    return await client_error_handler(
        request,
        ClientError(
            422,
            "invalid_request",
            "Invalid values in: {fields}; see 'detail' for each field.",
            values={"fields": fields},
            extra={"detail": detail},
        ),
    )


class RejectNulBytes:
    """Refuse a path or query string with a NUL byte (400): no store accepts one in
    text, and PostgreSQL would fail the query with a server error."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _has_nul(scope):
            request = Request(scope)
            # A surface of its own (the dashboard's pages) may answer in its own form:
            # ``app.state.nul_answer(request)``, None where it is not the surface's.
            state = getattr(scope.get("app"), "state", None)
            answer: NulAnswer | None = getattr(state, "nul_answer", None)
            response = await answer(request) if answer is not None else None
            if response is None:
                response = error_response(
                    request,
                    400,
                    "bad_request",
                    "The path or query string holds a NUL byte (%00): remove it.",
                )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


NulAnswer = Callable[[Request], Awaitable[Response | None]]


def _has_nul(scope: AsgiScope) -> bool:
    raw_path = scope.get("raw_path") or b""
    query = scope.get("query_string") or b""
    path = scope.get("path") or ""
    return b"%00" in raw_path or b"%00" in query or b"\x00" in query or "\x00" in path


def _declared(dependant: Dependant) -> set[str]:
    """The query parameters a route declares, its dependencies' included (a few sets
    per read: not worth a cache keyed by routes, which do not hash)."""
    names: set[str] = set()
    for param in dependant.query_params:
        kind = param.field_info.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):  # a model of parameters
            names |= {field.alias or name for name, field in kind.model_fields.items()}
        else:
            names.add(param.alias)
    for sub in dependant.dependencies:
        names |= _declared(sub)
    return names


async def refuse_unknown_query(request: Request) -> None:
    """Refuse a read of the API (``GET /v1/…``) naming a query parameter its route does
    not take (400). Ignored, a misspelt filter (``?state=resolved`` for ``status``)
    answered every alert as if filtered. Commands and webhooks are left alone: a
    sender's URL may carry parameters of its own."""
    route = request.scope.get("route")
    if (
        request.method not in ("GET", "HEAD")
        or not isinstance(route, APIRoute)
        or not route.path.startswith("/v1/")
    ):
        return
    known = _declared(route.dependant)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise ClientError(
            400,
            "unknown_parameter",
            "Unknown query parameter {unknown}: this route takes {known}.",
            values={
                "unknown": ", ".join(repr(name[:60]) for name in unknown[:5]),
                "known": ", ".join(sorted(known)) or "none",
            },
            extra={"unknown": [name[:60] for name in unknown[:5]], "known": sorted(known)},
        )


def base_app(title: str, keys: KeyStore) -> FastAPI:
    """A FastAPI app with the key store, the JSON client-error handler and local docs."""
    app = FastAPI(
        title=title, docs_url=None, redoc_url=None, dependencies=[Depends(refuse_unknown_query)]
    )
    mount_docs(app)
    document_errors(app)
    app.state.keys = keys
    app.add_exception_handler(ClientError, client_error_handler)
    app.add_exception_handler(KeysUnavailable, keys_unavailable_handler)
    app.add_exception_handler(DBAPIError, unstorable_value_handler)
    for raised in HANDLED:
        app.add_exception_handler(raised, unavailable_handler)
    app.add_exception_handler(RequestValidationError, invalid_request_handler)
    app.add_middleware(RejectNulBytes)
    return app
