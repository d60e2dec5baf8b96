"""Real servers standing in for Slack and an SMTP relay, on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

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
    """Records every request; answers from a script of (status, headers), then 200."""

    requests: list[Recorded] = field(default_factory=list)
    script: deque[tuple[int, dict[str, str]]] = field(default_factory=deque)
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
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = dict((await request.form()).items())
        self.requests.append(Recorded(request.url.path, dict(request.headers), body, raw))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.hold is not None:
            await self.hold.wait()
        status, headers = self.script.popleft() if self.script else (200, {})
        if request.url.path.startswith("/api/"):
            ok = status == 200
            payload = (
                {"ok": ok}
                if ok
                else {"ok": False, "error": "ratelimited" if status == 429 else "internal_error"}
            )
            return JSONResponse(payload, status_code=status, headers=headers)
        return Response("ok" if status == 200 else "error", status_code=status, headers=headers)

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

        app = Starlette(routes=[Route("/{path:path}", handle, methods=["POST"])])
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
