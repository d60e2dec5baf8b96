"""Real servers standing in for Slack and an SMTP relay, on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qsl

import orjson
import uvicorn
from aiosmtpd.controller import Controller
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from devservices import free_port


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    raw: bytes = b""
    # When the request arrived (the wall clock the services' timestamps use).
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class SlackStandIn:
    """Records every request; answers posts from a script of (status, headers), then
    200. As Slack's Web API, keeps what ``chat.postMessage`` posted (when it decides to
    answer 200, before any hold: a client gone meanwhile does not unpost it) per
    conversation, readable with ``conversations.open`` and ``conversations.history``."""

    requests: list[Recorded] = field(default_factory=list)
    script: deque[tuple[int, dict[str, str]]] = field(default_factory=deque)
    # conversation id → its messages, oldest first; a person's DM is "D" + their id's rest
    conversations: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # Every read refused with this error (say "missing_scope"); None: reads answer.
    read_error: str | None = None
    port: int = field(default_factory=free_port)
    # Seconds to hold each answer after recording the request (a slow Slack).
    delay_s: float = 0.0
    # If given, each answer waits until this event is set (a Slack that hangs until the
    # test lets it answer, however long the test takes to get there).
    hold: asyncio.Event | None = None

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/services/T000/B000/XXXX"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    async def _handle(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            body = dict(parse_qsl(raw.decode()))  # form-encoded
        path = request.url.path
        if path in ("/api/conversations.open", "/api/conversations.history"):
            body = {**dict(request.query_params.items()), **body}
            self.requests.append(Recorded(path, dict(request.headers), body, raw))
            return self._read(path, body)
        self.requests.append(Recorded(path, dict(request.headers), body, raw))
        status, headers = self.script.popleft() if self.script else (200, {})
        if path == "/api/chat.postMessage" and status == 200:
            self.conversations.setdefault(_conversation(body["channel"]), []).append(
                {"ts": f"{time.time():.6f}", "text": body.get("text"), **_meta(body)}
            )
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.hold is not None:
            await self.hold.wait()
        if request.url.path.startswith("/api/"):
            ok = status == 200
            payload = (
                {"ok": ok}
                if ok
                else {"ok": False, "error": "ratelimited" if status == 429 else "internal_error"}
            )
            return JSONResponse(payload, status_code=status, headers=headers)
        return Response("ok" if status == 200 else "error", status_code=status, headers=headers)

    def _read(self, path: str, query: dict[str, Any]) -> Response:
        if self.read_error is not None:
            return JSONResponse({"ok": False, "error": self.read_error})
        if path == "/api/conversations.open":
            return JSONResponse({"ok": True, "channel": {"id": _conversation(query["users"])}})
        oldest = float(query.get("oldest") or 0)
        messages = [
            m for m in self.conversations.get(query["channel"], []) if float(m["ts"]) > oldest
        ]
        if str(query.get("include_all_metadata")).lower() not in ("1", "true"):
            messages = [{k: v for k, v in m.items() if k != "metadata"} for m in messages]
        return JSONResponse({"ok": True, "messages": messages[::-1], "has_more": False})

    def posts_in(self, conversation: str) -> list[dict[str, Any]]:
        """What was posted to ``conversation`` (a person's id: their DM), oldest first."""
        return self.conversations.get(_conversation(conversation), [])

    def delivered(self) -> list[Recorded]:
        """Requests that were answered 200 (the ones Slack would have posted)."""
        return self._ok

    @contextlib.asynccontextmanager
    async def running(self):  # type: ignore[no-untyped-def]
        self._ok: list[Recorded] = []
        original = self._handle

        async def handle(request: Request) -> Response:
            response = await original(request)
            if response.status_code == 200:
                self._ok.append(self.requests[-1])
            return response

        app = Starlette(routes=[Route("/{path:path}", handle, methods=["GET", "POST"])])
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.02)
        try:
            yield self
        finally:
            if self.hold is not None:
                self.hold.set()  # a held answer must not keep the server from stopping
            server.should_exit = True
            await task


def _conversation(channel: str) -> str:
    """Where Slack posts for ``channel``: a person's id means the app's DM with them."""
    return "D" + channel[1:] if channel[:1] in ("U", "W") else channel


def _meta(body: dict[str, Any]) -> dict[str, Any]:
    meta = body.get("metadata")
    if isinstance(meta, str):  # form-encoded: Slack takes it as a JSON string
        meta = orjson.loads(meta)
    return {"metadata": meta} if meta else {}


class Inbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.senders: list[str] = []  # each message's envelope sender (MAIL FROM)
        self.fail_next = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.fail_next > 0:
            self.fail_next -= 1
            return "451 4.3.0 try again later"
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append(msg)
        self.senders.append(envelope.mail_from)
        return "250 OK"


@contextlib.contextmanager
def smtp_server(port: int | None = None, inbox: Inbox | None = None) -> Iterator[tuple[Inbox, int]]:
    """An aiosmtpd server on loopback; yields its inbox and port."""
    inbox = inbox or Inbox()
    port = port or free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()
