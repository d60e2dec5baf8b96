"""Delivery channels, one module each owning its rendering: ``slack``, ``email``,
``webhook``. Each ``send`` either delivers or raises ``DeliveryError``.

A channel turns a recipient into its own address (``address``) and sends a notice
there. Every notice carries a stable key (the alert and which notification of it), sent
as the email Message-ID and the webhook's Idempotency-Key, so a receiver can fold the
rare duplicate a crash between sending and recording causes; on Slack it marks the
message, so a send in doubt is looked for there first (``posted``).
"""

from __future__ import annotations

from services.alerts.channels.base import Channel, DeliveryError
from services.alerts.channels.email import EmailChannel
from services.alerts.channels.slack import SlackChannel
from services.alerts.channels.webhook import WebhookChannel
from shared.config import Settings

__all__ = ["Channel", "DeliveryError", "configured_channels"]


def configured_channels(settings: Settings) -> list[Channel]:
    channels: list[Channel] = []
    if settings.slack_bot_token.get_secret_value() or settings.slack_webhook_url:
        channels.append(SlackChannel(settings))
    if settings.smtp_host:
        channels.append(EmailChannel(settings))
    if settings.webhook_url:
        channels.append(WebhookChannel(settings))
    return channels
