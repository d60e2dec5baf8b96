"""Delivery channels. Each ``send`` either delivers or raises ``DeliveryError``."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Protocol

import aiosmtplib
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from services.alerts import render
from shared.config import Settings
from shared.contracts.alerts import AlertEvent

WEBHOOK_DESTINATION = "webhook"


class DeliveryError(Exception):
    def __init__(
        self, message: str, *, retry_after_s: float | None = None, permanent: bool = False
    ):
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.permanent = permanent


class Channel(Protocol):
    name: str

    def destination(self, alert: AlertEvent) -> str | None:
        """Where this alert goes on this channel; None when it cannot be routed."""

    async def send(self, alert: AlertEvent, destination: str) -> None: ...


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class SlackChannel:
    """Slack via the Web API (a DM or channel per CSM) or one incoming webhook."""

    name = "slack"

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

    def destination(self, alert: AlertEvent) -> str | None:
        slack_id = alert.owner.slack_id if alert.owner else None
        if self._web is not None:
            return slack_id or self._settings.slack_fallback_channel or None
        if self._webhook is not None:
            return WEBHOOK_DESTINATION
        return None

    async def send(self, alert: AlertEvent, destination: str) -> None:
        public = self._settings.public_url
        if self._web is not None:
            try:
                await self._web.chat_postMessage(
                    channel=destination,
                    text=render.slack_text(alert),
                    blocks=render.slack_blocks(alert, public),
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
        mention = alert.owner.slack_id if alert.owner else None
        try:
            response = await self._webhook.send(
                text=render.slack_text(alert, mention),
                blocks=render.slack_blocks(alert, public, mention),
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

    def __init__(self, settings: Settings):
        self._settings = settings

    def destination(self, alert: AlertEvent) -> str | None:
        owner_email = alert.owner.email if alert.owner else None
        return owner_email or self._settings.fallback_email or None

    async def send(self, alert: AlertEvent, destination: str) -> None:
        s = self._settings
        msg = EmailMessage()
        msg["From"] = s.smtp_from
        msg["To"] = destination
        msg["Subject"] = render.email_subject(alert)
        # A stable Message-ID lets mail clients fold the rare duplicate send.
        msg["Message-ID"] = f"<{alert.alert_id.replace(':', '.')}@healthwatch>"
        msg.set_content(render.email_text(alert, s.public_url))
        msg.add_alternative(render.email_html(alert, s.public_url), subtype="html")
        try:
            await aiosmtplib.send(
                msg,
                hostname=s.smtp_host,
                port=s.smtp_port,
                username=s.smtp_username or None,
                password=s.smtp_password.get_secret_value() or None,
                start_tls=s.smtp_starttls,
                timeout=30,
            )
        except aiosmtplib.SMTPResponseException as exc:
            raise DeliveryError(
                f"SMTP {exc.code}: {exc.message}",
                permanent=500 <= exc.code < 600 and exc.code != 552,
            ) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"SMTP unreachable: {exc!r}") from exc


def configured_channels(settings: Settings) -> list[Channel]:
    channels: list[Channel] = []
    if settings.slack_bot_token.get_secret_value() or settings.slack_webhook_url:
        channels.append(SlackChannel(settings))
    if settings.smtp_host:
        channels.append(EmailChannel(settings))
    return channels
