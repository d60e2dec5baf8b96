"""Segment's browser SDKs (analytics.js, analytics-next) as they call: the write key in
the body (``writeKey``, no Authorization header), ``Content-Type: text/plain`` (a simple
request, no preflight), the short paths (``/v1/t``, ``/v1/i``, ``/v1/g``, ``/v1/p``,
``/v1/s``, ``/v1/b``), and answers a page of another origin may read (CORS). Pointed at
healthwatch, they had been refused (404 on the short paths, 401 without the header) and
could not read any answer (found from outside).

Only the Segment calls are open to other origins, and without credentials: the ingest
key they take is the public write key, which sends usage and survey answers alone
(``deps.BROWSER_KINDS``); no cookie is ever read on them.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import JSONResponse, Response

from shared.auth import ApiKey, KeyStore, KeysUnavailable, Scope
from shared.openapi import BASIC, BEARER
from shared.web import ClientError, keys_unavailable, presented_key, require_scope

# The Segment calls' short paths, as analytics-next posts them, by call type.
SHORT_PATHS = {"track": "t", "identify": "i", "group": "g", "page": "p", "screen": "s"}
BATCH_SHORT_PATH = "b"
# What a page of another origin needs to read an answer, and to ask first (preflight)
# when it sends JSON or an Authorization header. A day of preflight caching: the answer
# never changes between releases.
READABLE = {"Access-Control-Allow-Origin": "*"}
PREFLIGHT = {
    **READABLE,
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, Content-Encoding",
    "Access-Control-Max-Age": "86400",
}

_header_check = require_scope(Scope.ingest)


async def header_key(
    request: Request,
    _bearer: Annotated[None, Depends(BEARER)],
    _basic: Annotated[None, Depends(BASIC)],
) -> ApiKey | None:
    """The key of an Authorization header, checked as every ingest key is; None without
    one (a browser sends its write key in the body: ``key_of``)."""
    if presented_key(request) is None:
        return None
    try:
        return await _header_check(request, None, None)
    except (ClientError, KeysUnavailable) as exc:
        # Refused here, before the route: readable too (found in review).
        raise _readable_refusal(exc) from exc


SegmentKey = Annotated[ApiKey | None, Depends(header_key)]


async def key_of(request: Request, header: ApiKey | None, body: Any) -> ApiKey:
    """The call's key: its header's, else the body's ``writeKey``; 401 without either,
    403 for a key without the ``ingest`` scope."""
    if header is not None:
        return header
    raw = body.get("writeKey") if isinstance(body, dict) else None
    keys: KeyStore = request.app.state.keys
    key = await keys.verify(raw) if isinstance(raw, str) and raw else None
    if key is None:
        raise ClientError(
            401,
            "unauthorized",
            "Missing or unknown API key: send 'Authorization: Bearer hwk_…' (or the key as the"
            " Basic-auth username, or as the body's writeKey, as Segment's browser SDKs do);"
            " create one with 'healthwatch keys create --scope {scope}'.",
            values={"scope": Scope.ingest.value},
            headers={"WWW-Authenticate": 'Bearer, Basic realm="healthwatch"'},
        )
    if not key.allows(Scope.ingest):
        raise ClientError(
            403, "forbidden", "This key lacks the {needed} scope needed here.",
            values={"needed": Scope.ingest.value},
        )  # fmt: skip
    return key


async def readable(answer: Awaitable[JSONResponse]) -> JSONResponse:
    """``answer``, or its refusal, readable by a page of any origin."""
    try:
        response = await answer
    except (ClientError, KeysUnavailable) as exc:
        raise _readable_refusal(exc) from exc
    response.headers.update(READABLE)
    return response


def _readable_refusal(exc: ClientError | KeysUnavailable) -> ClientError:
    """``exc`` as the answer it gets (``shared.web``'s handlers), readable by any origin."""
    if isinstance(exc, KeysUnavailable):
        exc = keys_unavailable(exc)
    exc.headers = {**(exc.headers or {}), **READABLE}
    return exc


async def preflight() -> Response:
    """A browser asking whether it may send JSON or an Authorization header: yes."""
    return Response(status_code=204, headers=PREFLIGHT)
