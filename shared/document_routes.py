"""The HTTP side of a versioned document (the health model, the alerting file): served
as TOML with its version in a header, replaced by an admin's PUT of a new version.
Storage and validation are ``shared.storage.documents.DocumentStore``'s."""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.i18n import Phrase
from shared.openapi import error_responses
from shared.request_body import read_body
from shared.storage.documents import DocumentStore, Versioned, VersionExists
from shared.web import ClientError

T = TypeVar("T", bound=Versioned)


def toml_body(what: str) -> dict[str, Any]:
    """``openapi_extra`` for a PUT of ``what`` as TOML (read raw: limits, UTF-8; any
    content type is taken). Shown as text/plain, which clients and fuzzers know how to
    send, unlike application/toml."""
    schema = {"type": "string", "description": f"{what} as UTF-8 TOML, with a new version"}
    content = {"text/plain": {"schema": schema, "example": 'version = "2026-12-03"\n'}}
    return {"requestBody": {"required": True, "content": content}}


class DocumentSaved(BaseModel):
    """The version now in force (the alerting file adds its rule count)."""

    model_config = ConfigDict(extra="allow")
    version: str
    status: str


# A PUT's answers besides the key's: too large, not UTF-8, refused, version taken.
DOCUMENT_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"model": DocumentSaved, "description": "In force from the next batch"},
    **error_responses(400, 409, 413, 422),
}


class TomlResponse(PlainTextResponse):
    """A TOML document (the model, the alerting file), documented as what it is."""

    media_type = "application/toml"


async def current_document(
    engine: AsyncEngine, store: DocumentStore[T], version_header: str
) -> TomlResponse:
    """The document in force as TOML, its version in ``version_header``."""
    async with engine.connect() as conn:
        document, source = await store.current(conn)
    return TomlResponse(source, headers={version_header: document.version})


async def replace_document(
    request: Request,
    engine: AsyncEngine,
    store: DocumentStore[T],
    *,
    author: str,
    max_bytes: int,
    what: str,
    invalid: type[ValueError],
    invalid_code: str,
) -> T:
    """Store the TOML body as the new version (by ``author``): 413 past ``max_bytes``,
    400 unless UTF-8, 422 (``invalid_code``) when ``store`` refuses it with ``invalid``,
    409 when its version exists. ``what`` names the document in the messages."""
    text = await _read_text(request, max_bytes, what)
    try:
        async with engine.begin() as conn:
            return await store.save(conn, text, author)
    except VersionExists as exc:
        raise ClientError(409, "version_exists", str(exc)) from exc
    except invalid as exc:
        raise ClientError(422, invalid_code, str(exc)) from exc
    except ValueError as exc:  # the TOML reader's own limits (an integer of 5,000 digits)
        raise ClientError(
            422,
            invalid_code,
            "Cannot read {what} as TOML: {reason}",
            values={"what": Phrase(what), "reason": str(exc)},
        ) from exc


async def _read_text(request: Request, max_bytes: int, what: str) -> str:
    try:
        raw = await read_body(request, max_bytes)
    except ClientError as exc:
        if exc.status != 413:
            raise
        # The generic 413 says to split a batch: a document cannot be split.
        raise ClientError(
            413,
            "payload_too_large",
            "Send {what} in at most {max_bytes} bytes.",
            values={"what": Phrase(what), "max_bytes": max_bytes},
        ) from exc
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ClientError(
            400, "bad_encoding", "Send {what} as UTF-8 TOML.", values={"what": Phrase(what)}
        ) from exc
