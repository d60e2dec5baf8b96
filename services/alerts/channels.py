"""Delivery channels. Each ``send`` either delivers or raises ``DeliveryError``.

A channel turns a recipient into its own address (``address``) and sends a notice
there. Every notice carries a stable key (the alert and which notification of it), sent
as the email Message-ID and the webhook's Idempotency-Key, so a receiver can fold the
rare duplicate a crash between sending and recording causes.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr, parseaddr
from typing import Any, Protocol

import aiosmtplib
import httpx
import orjson
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from services.alerts import render
from shared.alerting.schema import Recipient
from shared.config import Settings
from shared.contracts.alerts import AlertEvent

WEBHOOK_DESTINATION = "webhook"
# One plain address: no spaces, control characters or lists (a CR/LF or a comma would
# add recipients).
_ADDRESS = re.compile(r"[^\s\x00-\x1f\x7f@<>,;:\"()\[\]\\]+@[^\s\x00-\x1f\x7f@<>,;:\"()\[\]\\]+")
# Bounded so a hung receiver releases the sender long before its claim lease (60 s) ends.
SEND_TIMEOUT_S = 30


@dataclass(frozen=True)
class Notice:
    """One message: ``kind`` is fire / update / repeat / escalate / resolve / digest."""

    kind: str
    alerts: list[AlertEvent]
    key: str

    @property
    def first(self) -> AlertEvent:
        return self.alerts[0]

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "key": self.key,
            "alerts": [a.model_dump(mode="json") for a in self.alerts],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Notice:
        alerts = [AlertEvent.model_validate(a) for a in data["alerts"]]
        return cls(data["kind"], alerts, data["key"])


class DeliveryError(Exception):
    def __init__(
        self, message: str, *, retry_after_s: float | None = None, permanent: bool = False
    ):
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.permanent = permanent


class Channel(Protocol):
    name: str
    # True: one delivery per notice, whoever the recipients are (the webhook).
    broadcast: bool

    def address(self, recipient: Recipient) -> str | None:
        """Where this recipient is reached on this channel; None if not at all."""

    def pace_key(self, destination: str) -> str | None:
        """Deliveries sharing a key are paced (Slack: 1 message per second)."""

    async def send(self, notice: Notice, destination: str) -> None: ...


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class SlackChannel:
    """Slack via the Web API (a DM or channel per recipient) or one incoming webhook
    that mentions the recipient."""

    name = "slack"
    broadcast = False

    def __init__(self, settings: Settings):
        self._settings = settings
        token = settings.slack_bot_token.get_secret_value()
        # Our outbox retries durably; the SDK's in-memory retries would only hide failures.
        self._web = (
            AsyncWebClient(token=token, base_url=settings.slack_api_url, retry_handlers=[])
            if token
            else None
        )
        self._webhook = (
            AsyncWebhookClient(settings.slack_webhook_url, timeout=10, retry_handlers=[])
            if settings.slack_webhook_url and not token
            else None
        )

    def address(self, recipient: Recipient) -> str | None:
        return recipient.slack or None

    def pace_key(self, destination: str) -> str:
        # One incoming webhook is one Slack channel: pace all of it together.
        return WEBHOOK_DESTINATION if self._webhook is not None else destination

    async def send(self, notice: Notice, destination: str) -> None:
        public = self._settings.public_url
        interactive = self._web is not None
        if self._web is not None:
            try:
                await self._web.chat_postMessage(
                    channel=destination,
                    text=render.slack_text(notice),
                    blocks=render.slack_blocks(notice, public, interactive=interactive),
                )
            except SlackApiError as exc:
                status = exc.response.status_code
                raise DeliveryError(
                    f"Slack API {status}: {exc.response.get('error')}",
                    retry_after_s=_retry_after(exc.response.headers.get("Retry-After")),
                    permanent=exc.response.get("error")
                    in ("channel_not_found", "not_in_channel", "invalid_auth"),
                ) from exc
            except Exception as exc:  # network errors surface as aiohttp/OS errors
                raise DeliveryError(f"Slack API unreachable: {exc!r}") from exc
            return
        assert self._webhook is not None
        mention = destination if destination != WEBHOOK_DESTINATION else None
        try:
            response = await self._webhook.send(
                text=render.slack_text(notice, mention),
                blocks=render.slack_blocks(notice, public, mention, interactive=False),
            )
        except Exception as exc:
            raise DeliveryError(f"Slack webhook unreachable: {exc!r}") from exc
        if response.status_code != 200:
            headers = {k.lower(): v for k, v in (response.headers or {}).items()}
            retry = headers.get("retry-after")
            raise DeliveryError(
                f"Slack webhook answered {response.status_code}: {response.body[:200]}",
                retry_after_s=_retry_after(retry[0] if isinstance(retry, list) else retry),
                permanent=response.status_code in (400, 403, 404, 410),
            )


class EmailChannel:
    name = "email"
    broadcast = False

    def __init__(self, settings: Settings):
        self._settings = settings

    def address(self, recipient: Recipient) -> str | None:
        return recipient.email or None

    def pace_key(self, destination: str) -> None:
        return None

    async def send(self, notice: Notice, destination: str) -> None:
        s = self._settings
        name, address = _mailbox(destination)
        msg = EmailMessage()
        msg["From"] = render.one_line(s.smtp_from)
        msg["To"] = formataddr((name, address)) if name else address
        msg["Subject"] = render.email_subject(notice)
        # A stable Message-ID lets mail clients fold the rare duplicate send.
        msg["Message-ID"] = f"<{render.safe_key(notice.key)}@healthwatch>"
        msg.set_content(render.email_text(notice, s.public_url))
        msg.add_alternative(render.email_html(notice, s.public_url), subtype="html")
        try:
            await aiosmtplib.send(
                msg,
                # The envelope, not addresses parsed back out of the headers.
                sender=render.one_line(s.smtp_from),
                recipients=[address],
                hostname=s.smtp_host,
                port=s.smtp_port,
                username=s.smtp_username or None,
                password=s.smtp_password.get_secret_value() or None,
                start_tls=s.smtp_starttls,
                timeout=SEND_TIMEOUT_S,
            )
        except aiosmtplib.SMTPResponseException as exc:
            raise DeliveryError(
                f"SMTP {exc.code}: {exc.message}",
                permanent=500 <= exc.code < 600 and exc.code != 552,
            ) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"SMTP unreachable: {exc!r}") from exc


def _mailbox(destination: str) -> tuple[str, str]:
    """(display name, address) of ``destination`` ("CS Team <cs@example.com>" or a bare
    address), read as one line: the address alone is the envelope recipient."""
    line = render.one_line(destination)
    name, address = parseaddr(line)
    # parseaddr guesses at what it cannot parse ("a@x Bcc: b@y" gives "a@xBcc"): the
    # address must be there as written.
    if _ADDRESS.fullmatch(address) is None or address not in line:
        raise DeliveryError(f"{destination!r} is not an email address", permanent=True)
    return name, address


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256 over ``timestamp.body``; receivers recompute it
    and reject stale timestamps, which stops replays."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class WebhookChannel:
    """Every notice as JSON to one URL, HMAC-signed (``X-Healthwatch-Signature``), with
    each account's dashboard page (``account_urls``: account id → URL)."""

    name = "webhook"
    broadcast = True

    def __init__(self, settings: Settings, client: httpx.AsyncClient | None = None):
        self._settings = settings
        self._client = client

    def address(self, recipient: Recipient) -> str:
        return WEBHOOK_DESTINATION

    def pace_key(self, destination: str) -> None:
        return None

    async def send(self, notice: Notice, destination: str) -> None:
        public = self._settings.public_url
        links = {a.account_id: render.account_url(public, a.account_id) for a in notice.alerts}
        body = orjson.dumps({**notice.to_json(), "account_urls": links})
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": render.header_token(notice.key),
            "X-Healthwatch-Timestamp": timestamp,
        }
        secret = self._settings.webhook_secret.get_secret_value()
        if secret:
            headers["X-Healthwatch-Signature"] = webhook_signature(secret, timestamp, body)
        try:
            if self._client is not None:
                response = await self._client.post(
                    self._settings.webhook_url, content=body, headers=headers
                )
            else:
                async with httpx.AsyncClient(timeout=SEND_TIMEOUT_S) as client:
                    response = await client.post(
                        self._settings.webhook_url, content=body, headers=headers
                    )
        except httpx.HTTPError as exc:
            raise DeliveryError(f"webhook unreachable: {exc!r}") from exc
        if response.status_code >= 300:
            raise DeliveryError(
                f"webhook answered {response.status_code}: {response.text[:200]}",
                retry_after_s=_retry_after(response.headers.get("Retry-After")),
                permanent=response.status_code in (400, 401, 403, 404, 410, 422),
            )


def configured_channels(settings: Settings) -> list[Channel]:
    channels: list[Channel] = []
    if settings.slack_bot_token.get_secret_value() or settings.slack_webhook_url:
        channels.append(SlackChannel(settings))
    if settings.smtp_host:
        channels.append(EmailChannel(settings))
    if settings.webhook_url:
        channels.append(WebhookChannel(settings))
    return channels
