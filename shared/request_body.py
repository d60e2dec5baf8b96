"""Reading HTTP request bodies within limits: size, gzip, JSON."""

from __future__ import annotations

import zlib
from typing import Any

import orjson
from fastapi import Request

from shared.contracts.wire import not_utf8_at
from shared.web import ClientError


async def read_json(request: Request, max_bytes: int) -> Any:
    """The decoded JSON body; 413 past ``max_bytes`` (also after gunzip), 400 if malformed."""
    return parse_json(await read_body(request, max_bytes))


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The raw body, gunzipped when so encoded; 413 past ``max_bytes``."""
    too_large = ClientError(
        413,
        "payload_too_large",
        "The body exceeds {max_bytes} bytes: split it into batches.",
        values={"max_bytes": max_bytes},
    )
    raw = await read_capped(request, max_bytes)
    if raw is None:
        raise too_large
    encoding = request.headers.get("content-encoding", "identity").lower()
    if encoding == "gzip":
        raw = _gunzip(raw, max_bytes, too_large)
    elif encoding not in ("identity", ""):
        raise ClientError(
            415,
            "unsupported_encoding",
            "Content-Encoding {encoding!r}: use gzip.",
            values={"encoding": encoding},
        )
    return raw


async def read_capped(request: Request, max_bytes: int) -> bytes | None:
    """The raw body as sent, or None once it is past ``max_bytes`` (declared so, or
    streamed so): never more than that is held."""
    # A length of more digits than any int64 is too large; int() of it would be refused.
    declared = request.headers.get("content-length") or ""
    if (
        declared.isascii()
        and declared.isdigit()
        and (len(declared) > 18 or int(declared) > max_bytes)
    ):
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _gunzip(raw: bytes, max_bytes: int, too_large: ClientError) -> bytes:
    # Decompress at most max_bytes + 1, so a gzip bomb costs no more than a big body.
    decoder = zlib.decompressobj(wbits=31)
    try:
        data = decoder.decompress(raw, max_bytes + 1)
    except zlib.error as exc:
        raise ClientError(
            400, "bad_gzip", "The body is not valid gzip: {exc}.", values={"exc": exc}
        ) from exc
    if len(data) > max_bytes or decoder.unconsumed_tail:
        raise too_large
    return data


def parse_json(raw: bytes) -> Any:
    if not raw.strip():
        raise ClientError(400, "empty_body", "The body is empty: send a JSON document.")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if (bad := not_utf8_at(raw)) is not None:
            raise ClientError(
                400,
                "not_utf8",
                "The body is not UTF-8 text (byte {offset} of it, 0x{byte}): JSON is sent "
                "as UTF-8.",
                values={"offset": bad, "byte": f"{raw[bad]:02x}"},
            ) from exc
        raise ClientError(
            400, "malformed_json", "The body is not valid JSON: {exc}.", values={"exc": exc}
        ) from exc
