"""Slack: the channel (the Web API, or one incoming webhook) and what a notice says
there (Block Kit, with a plain-text fallback).

Every piece of data is escaped (``escape``): only the markup around it is ours, so an
account's name cannot mention ``<!channel>`` or forge a link.
"""

from __future__ import annotations

import re
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from services.alerts.channels.base import WEBHOOK_DESTINATION, DeliveryError, retry_after
from services.alerts.channels.text import account_url, changes, encodable, headline
from shared.alerting.schema import Recipient
from shared.config import Settings
from shared.contracts.alerts import AlertEvent
from shared.contracts.notices import Notice

_BAND_EMOJI = {
    "red": ":red_circle:",
    "yellow": ":large_yellow_circle:",
    "green": ":large_green_circle:",
}
_SEVERITY_EMOJI = {
    "critical": ":rotating_light:",
    "warning": ":warning:",
    "info": ":information_source:",
}
# Slack allows 50 blocks a message; a group shows this many alerts and counts the rest.
MAX_GROUPED = 10
# Slack refuses a whole message (invalid_blocks) whose section text exceeds 3,000
# characters or whose field exceeds 2,000; longer data is cut to fit.
SECTION_CHARS = 3000
FIELD_CHARS = 2000
# Errors that no retry mends.
_PERMANENT_ERRORS = ("channel_not_found", "not_in_channel", "invalid_auth")


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
        if self._web is not None:
            await self._post(self._web, notice, destination)
        else:
            await self._hook(notice, destination)

    async def _post(self, web: AsyncWebClient, notice: Notice, destination: str) -> None:
        """By the Web API: buttons work (their clicks come back signed)."""
        try:
            await web.chat_postMessage(
                channel=destination,
                text=fallback_text(notice),
                blocks=message_blocks(notice, self._settings.public_url, interactive=True),
            )
        except SlackApiError as exc:
            status = exc.response.status_code
            raise DeliveryError(
                f"Slack API {status}: {exc.response.get('error')}",
                retry_after_s=retry_after(exc.response.headers.get("Retry-After")),
                permanent=exc.response.get("error") in _PERMANENT_ERRORS,
            ) from exc
        except Exception as exc:  # network errors surface as aiohttp/OS errors
            raise DeliveryError(f"Slack API unreachable: {exc!r}") from exc

    async def _hook(self, notice: Notice, destination: str) -> None:
        """By the incoming webhook: one channel, the recipient mentioned, no buttons."""
        assert self._webhook is not None
        mention = destination if destination != WEBHOOK_DESTINATION else None
        public = self._settings.public_url
        try:
            response = await self._webhook.send(
                text=fallback_text(notice, mention),
                blocks=message_blocks(notice, public, mention, interactive=False),
            )
        except Exception as exc:
            raise DeliveryError(f"Slack webhook unreachable: {exc!r}") from exc
        if response.status_code != 200:
            headers = {k.lower(): v for k, v in (response.headers or {}).items()}
            retry = headers.get("retry-after")
            raise DeliveryError(
                f"Slack webhook answered {response.status_code}: {response.body[:200]}",
                retry_after_s=retry_after(retry[0] if isinstance(retry, list) else retry),
                permanent=response.status_code in (400, 403, 404, 410),
            )


def escape(text: str, limit: int | None = None) -> str:
    """Data for a Slack text or mrkdwn field: ``&``, ``<``, ``>`` escaped as Slack
    documents, so a name cannot mention ``<!channel>`` or forge a ``<link|label>``;
    cut to ``limit`` characters without splitting an escape."""
    out = encodable(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if limit is not None and len(out) > limit:
        out = re.sub(r"&[a-z]*$", "", out[: limit - 1]) + "…"
    return out


def fallback_text(notice: Notice, mention: str | None = None) -> str:
    """The plain-text fallback Slack shows in notifications and to screen readers (Slack
    parses it as mrkdwn too: the data in it is escaped)."""
    prefix = f"<@{escape(mention)}> " if mention else ""
    if len(notice.alerts) > 1:
        titles = "; ".join(a.title for a in notice.alerts[:MAX_GROUPED])
        return f"{prefix}{len(notice.alerts)} alerts: " + escape(titles, SECTION_CHARS)
    line = f"[{notice.first.severity.value}] {headline(notice)}"
    return prefix + escape(line, SECTION_CHARS)


def message_blocks(
    notice: Notice, public_url: str, mention: str | None = None, *, interactive: bool = True
) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if len(notice.alerts) > 1:
        intro = f"*{len(notice.alerts)} alerts*"
        if mention:
            intro = f"<@{escape(mention)}> {intro}"
        blocks.append(_section(intro))
        mention = None
    for a in notice.alerts[:MAX_GROUPED]:
        blocks.extend(_alert_blocks(notice, a, public_url, mention, interactive))
    if len(notice.alerts) > MAX_GROUPED:
        more = f"…and {len(notice.alerts) - MAX_GROUPED} more"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": more}]})
    return blocks


def _section(mrkdwn: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn}}


def _field(label: str, mrkdwn: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": f"*{label}*\n{mrkdwn}"}


def _alert_blocks(
    notice: Notice, alert: AlertEvent, public_url: str, mention: str | None, interactive: bool
) -> list[dict[str, Any]]:
    """One alert's blocks: its headline, summary, what changed, facts and buttons."""
    url = account_url(public_url, alert.account_id)
    head = escape(headline(notice, alert), SECTION_CHARS - 100)
    head = f"{_SEVERITY_EMOJI.get(alert.severity.value, '')} *{head}*"
    if mention:
        head = f"<@{escape(mention)}> {head}"
    blocks: list[dict[str, Any]] = [_section(head)]
    if alert.summary:
        blocks.append(_section(escape(alert.summary, SECTION_CHARS)))
    moved = changes(alert)
    if moved:
        text = "\n".join(f"• {c}" for c in moved)
        blocks.append(_section("*What changed in 7 days*\n" + escape(text, SECTION_CHARS - 50)))
    return [
        *blocks,
        {"type": "section", "fields": _facts(alert, url)},
        {"type": "actions", "elements": _buttons(alert, url, interactive)},
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": f"alert `{escape(alert.alert_id)}`"}],
        },
    ]


def _facts(alert: AlertEvent, url: str) -> list[dict[str, str]]:
    band = (
        f"{_BAND_EMOJI.get(alert.band or '', '')} {alert.score} ({escape(alert.band or '')})"
        if alert.score is not None
        else "n/a"
    )
    name = escape(alert.account_name or alert.account_id, FIELD_CHARS - 500)
    return [
        _field("Account", f"<{url}|{name}>"),
        _field("Health", band),
        _field("Rule", f"`{escape(alert.rule, 200)}`"),
        _field("Severity", alert.severity.value),
    ]


def _buttons(alert: AlertEvent, url: str, interactive: bool) -> list[dict[str, Any]]:
    buttons: list[dict[str, Any]] = [
        {
            "type": "button",
            "text": {"type": "plain_text", "text": "Open account"},
            "url": url,
            "action_id": "open_account",
        }
    ]
    if interactive and alert.status == "firing":
        # Handled by POST /v1/slack/interactions (signature-verified).
        for action_id, label, style in (
            ("ack", "Acknowledge", "primary"),
            ("snooze_1d", "Snooze 1 day", None),
            ("not_useful", "Not useful", None),
        ):
            button: dict[str, Any] = {
                "type": "button",
                "text": {"type": "plain_text", "text": label},
                "action_id": action_id,
                "value": alert.alert_id,
            }
            if style:
                button["style"] = style
            buttons.append(button)
    return buttons
