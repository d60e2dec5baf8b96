"""The OpenAPI of every service: the error shape, the key schemes, request bodies read
raw, and Swagger UI / ReDoc served from the app itself."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.models import HTTPBase, HTTPBearer
from fastapi.openapi.models import SecurityBase as SecuritySchemeModel
from fastapi.responses import HTMLResponse
from fastapi.security.base import SecurityBase
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, TypeAdapter


class ErrorBody(BaseModel):
    """Every 4xx and 503 answer (``ClientError``'s shape); some codes add fields (a
    rejected batch its ``rejected`` list, a 422 its ``detail``)."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "example": {
                "error": "forbidden",
                "code": "forbidden",
                "message": "This key lacks the 'read' scope needed here.",
            }
        },
    )
    error: str
    code: str
    message: str


_REF = "#/components/schemas/"


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status answered with ``ErrorBody``."""
    return {s: {"model": ErrorBody, "description": _ERROR_TEXT.get(s, "Error")} for s in statuses}


_ERROR_TEXT = {
    400: "Malformed request",
    401: "Missing or unknown API key (or signature)",
    403: "The key lacks the scope needed here",
    404: "Not found",
    409: "Conflict with the stored state",
    413: "Body too large",
    415: "A Content-Encoding other than gzip",
    422: "Invalid values",
    503: "A dependency is down: nothing was done; retry after Retry-After seconds",
}


class _DocumentedScheme(SecurityBase):
    """A way to present a key, as the OpenAPI shows it on each route needing one. It
    checks nothing: ``require_scope`` does, for both ways at once."""

    def __init__(self, model: SecuritySchemeModel, scheme_name: str) -> None:
        self.model = model
        self.scheme_name = scheme_name

    async def __call__(self) -> None:
        return None


BEARER = _DocumentedScheme(
    HTTPBearer(
        bearerFormat="hwk_…",
        description="An API key, `Authorization: Bearer hwk_…`; create one with "
        "`healthwatch keys create --name <who> --role <role>`. Its scopes decide the routes.",
    ),
    "apiKey",
)
BASIC = _DocumentedScheme(
    HTTPBase(
        scheme="basic",
        description="The same key as the Basic-auth username, empty password: how Segment "
        "(and its SDKs) send the write key.",
    ),
    "segmentWriteKey",
)


# Swagger UI's and ReDoc's files from a package that ships them (fastapi-offline, MIT):
# /docs works without internet, and no CDN sees who reads our docs.
DOCS_ASSETS = "/docs-assets"
_ASSETS_DIR = files("fastapi_offline") / "static"


# The docs pages share an origin with the dashboard: never framed (clickjacking), no
# plugins, no base change. Their scripts are inline (Swagger UI's and ReDoc's own
# start-up code), so the script policy stays theirs.
DOCS_HEADERS = {
    "Content-Security-Policy": "frame-ancestors 'none'; object-src 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def mount_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc``, their scripts and styles served locally
    (FastAPI's custom-docs pattern; the app is built with ``docs_url=None``)."""
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(_ASSETS_DIR)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger() -> HTMLResponse:
        return _guarded(
            get_swagger_ui_html(
                openapi_url="/openapi.json",
                title=f"{app.title} — API",
                swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
            )
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return _guarded(
            get_redoc_html(
                openapi_url="/openapi.json",
                title=f"{app.title} — API",
                redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
                redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png",
                with_google_fonts=False,
            )
        )


def _guarded(page: HTMLResponse) -> HTMLResponse:
    page.headers.update(DOCS_HEADERS)
    return page


def document_errors(app: FastAPI) -> None:
    """The OpenAPI shows ``ErrorBody`` as the 401, 403 and 503 of every route taking a
    key (``require_scope``'s answers, which no route declares itself) and as the 422
    (``invalid_request_handler``'s shape, not FastAPI's)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        first = app.openapi_schema is None
        schema = generate()
        if first:
            _add_error_answers(schema)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented hook


# The models that documented_body's schemas refer to, put into every app's components.
_BODY_DEFS: dict[str, Any] = {}


def documented_body(
    shape: Any, examples: dict[str, Any], *, description: str = ""
) -> dict[str, Any]:
    """``openapi_extra`` showing a route's JSON body as ``shape`` (a pydantic model or
    type) with named ``examples``, for routes that read the raw body themselves (per-item
    accept/reject, gzip, size limits): the schema documents, it validates nothing."""
    schema = TypeAdapter(shape).json_schema(ref_template=_REF + "{model}")
    _BODY_DEFS.update(schema.pop("$defs", {}))
    if isinstance(shape, type) and issubclass(shape, BaseModel):
        # A named model: by reference, so clients and the docs show its name.
        _BODY_DEFS[shape.__name__] = schema
        schema = {"$ref": _REF + shape.__name__}
    examples_ = {name: {"value": value} for name, value in examples.items()}
    content = {"application/json": {"schema": schema, "examples": examples_}}
    return {"requestBody": {"required": True, "description": description, "content": content}}


def _add_error_answers(schema: dict[str, Any]) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(_BODY_DEFS)
    components["ErrorBody"] = ErrorBody.model_json_schema(ref_template=_REF + "{model}")
    answer = {"content": {"application/json": {"schema": {"$ref": _REF + "ErrorBody"}}}}
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.setdefault("responses", {})
            # 400 on every route: a NUL byte in the path or query (shared.web.RejectNulBytes).
            statuses = [400] if "400" not in responses else []
            # FastAPI's own 422 (HTTPValidationError) is answered in our shape; a route's
            # declared one (a batch's RejectedBatch) stays.
            declared = "422" in responses and "HTTPValidationError" not in str(responses["422"])
            statuses += [422] if "422" in responses and not declared else []
            statuses += [401, 403, 503] if operation.get("security") else []
            for status in statuses:
                responses[str(status)] = {"description": _ERROR_TEXT[status], **answer}
