"""Slack: the channel (the Web API, or one incoming webhook) and what a notice says
there (Block Kit, with a plain-text fallback).

Every piece of data is escaped (``escape``): only the markup around it is ours, so an
account's name cannot mention ``<!channel>`` or forge a link.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Collection
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from services.alerts.channels.base import (
    LOOK_TIMEOUT_S,
    WEBHOOK_DESTINATION,
    DeliveryError,
    retry_after,
)
from services.alerts.channels.case_text import (
    case_button,
    case_headline,
    case_lines,
    case_url,
    unlisted,
)
from services.alerts.channels.text import (
    account_url,
    alerts_url,
    changes,
    encodable,
    headline,
    health,
    health_label,
    most_urgent_first,
    next_step,
    redact_urls,
    summary_of,
    without_url_secrets,
)
from shared.alerting.schema import Recipient
from shared.config import Settings
from shared.contracts.alerts import AlertEvent
from shared.contracts.notices import Notice, NoticeKind
from shared.i18n import DEFAULT_LANGUAGE, N_, translate
from shared.i18n.alert_text import rule_name

log = logging.getLogger(__name__)

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
# A group shows at most this many alerts and counts the rest…
MAX_GROUPED = 10
# …within Slack's 50 blocks a message: past them it refuses the whole message
# (invalid_blocks), every alert of the group with it. An alert takes up to 6 blocks.
MAX_BLOCKS = 50
# Slack refuses a whole message (invalid_blocks) whose section text exceeds 3,000
# characters or whose field exceeds 2,000; longer data is cut to fit.
SECTION_CHARS = 3000
# A section holds at most 10 fields (Block Kit's limit): a handover's further accounts
# are counted under them.
MAX_FIELDS = 10
FIELD_CHARS = 2000
# A message's mark (Slack's message metadata): the keys of the notices it says, so an
# attempt whose outcome is unknown can be looked for before sending again (``posted``).
NOTICE_EVENT = "healthwatch_notice"
# Looking for it: pages of a conversation's history, newest first. A sender's doubt
# spans one lease plus an outage; past 1,000 messages of a busy channel the notice is
# sent again rather than searched for longer (Slack allows about 50 reads a minute).
HISTORY_PAGES = 5
HISTORY_PAGE_SIZE = 200
# Slack stamps messages by its own clock: look this far before the attempt began.
CLOCK_SLACK_S = 120
# What looking needs beyond chat:write (a DM's id is found with im:write).
HISTORY_SCOPES = "channels:history, groups:history, im:history, im:write"
# A conversation's or a person's id (a channel given by its name cannot be read back
# without listing every channel).
_SLACK_ID = re.compile(r"[CGDUW][A-Z0-9]+")
# Errors that no retry mends.
# Refused as it is: sent again unchanged it is refused again.
_PERMANENT_CODES = ("channel_not_found", "not_in_channel", "invalid_auth")
# A look refused for what the app may read (its scopes, or a channel it is not in).
_UNREADABLE = ("missing_scope", "not_in_channel", "channel_not_found")
# Slack's own words for "it may have been done" (answered with HTTP 200).
_MAYBE_DONE_CODES = ("internal_error", "fatal_error", "service_unavailable")
# The message itself refused: in a group, one notice's fault (the outbox sends the group's
# first notice alone and the rest after).
_CONTENT_CODES = ("invalid_blocks", "invalid_blocks_format", "msg_too_long")


class SlackChannel:
    """Slack via the Web API (a DM or channel per recipient) or one incoming webhook
    that mentions the recipient."""

    name = "slack"
    broadcast = False

    def __init__(self, settings: Settings):
        self._settings = settings
        self._zone = ZoneInfo(settings.timezone)  # the team's clock, for a case's times
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

    @property
    def one_post(self) -> bool:
        """By the incoming webhook every notice goes to one channel: one post per
        notice, mentioning each of its people with a Slack id (``routing.addresses``),
        or nobody. A post per person repeated the alert in the channel, and a notice
        whose people had no Slack id was not posted at all (found from outside)."""
        return self._webhook is not None

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
        # The reader's language, as they chose it, else the team's (HEALTHWATCH_LANGUAGE).
        # Built before sending: a message that cannot be built never reached Slack.
        lang = notice.language or self._settings.language
        text = fallback_text(notice, lang=lang)
        blocks = message_blocks(
            notice, self._settings.public_url, interactive=True, lang=lang, zone=self._zone
        )
        try:
            await web.chat_postMessage(
                channel=destination,
                text=text,
                blocks=blocks,
                metadata={
                    "event_type": NOTICE_EVENT,
                    "event_payload": {"notices": [{"key": key} for key in notice.keys]},
                },
            )
        except SlackApiError as exc:
            status, body = exc.response.status_code, exc.response.data
            # A gateway's 5xx page is text, not Slack's JSON: no error code to read.
            error = body.get("error") if isinstance(body, dict) else None
            raise DeliveryError(
                f"Slack API {status}: {error or 'no error code'}",
                retry_after_s=retry_after(exc.response.headers.get("Retry-After")),
                permanent=error in _PERMANENT_CODES or error in _CONTENT_CODES,
                content=error in _CONTENT_CODES,
                unsure=status >= 500 or error in _MAYBE_DONE_CODES,
            ) from exc
        except Exception as exc:  # network errors surface as aiohttp/OS errors
            raise DeliveryError(
                f"Slack API unreachable: {exc!r}",
                # Not connected: nothing reached Slack. Anything else (a timeout, a
                # dropped connection) may have come after Slack posted it.
                unsure=not isinstance(exc, aiohttp.ClientConnectorError),
            ) from exc

    async def posted(
        self, keys: Collection[str], destination: str, since: datetime
    ) -> set[str] | None:
        """Looks in the conversation's history since ``since`` for messages this channel
        marked with ``keys`` (the Web API only; an incoming webhook cannot read). None
        when it cannot tell: a channel given by name, scopes missing, Slack away, or
        more messages since than it reads."""
        if self._web is None or not _SLACK_ID.fullmatch(destination):
            return None
        try:
            async with asyncio.timeout(LOOK_TIMEOUT_S):
                return await self._look(self._web, set(keys), destination, since)
        except TimeoutError:
            log.warning("looking in Slack for a notice in doubt took too long: sent again")
        return None

    async def _look(
        self, web: AsyncWebClient, wanted: set[str], destination: str, since: datetime
    ) -> set[str] | None:
        try:
            conversation = destination
            if destination[0] in "UW":  # a person: the app's DM with them
                opened = await web.conversations_open(users=destination)
                conversation = opened["channel"]["id"]
            found: set[str] = set()
            cursor = None
            oldest = f"{since.timestamp() - CLOCK_SLACK_S:.6f}"
            for _ in range(HISTORY_PAGES):
                page = await web.conversations_history(
                    channel=conversation,
                    oldest=oldest,
                    include_all_metadata=True,
                    limit=HISTORY_PAGE_SIZE,
                    cursor=cursor,
                )
                found |= _marked(page.get("messages") or [], wanted)
                cursor = (page.get("response_metadata") or {}).get("next_cursor")
                if found == wanted or not page.get("has_more") or not cursor:
                    return found
            return found or None
        except SlackApiError as exc:
            body = exc.response.data
            error = body.get("error") if isinstance(body, dict) else None
            # The bot must read where it posts: scopes, and a channel it is in.
            needs = f"; reading needs {HISTORY_SCOPES}" if error in _UNREADABLE else ""
            log.warning(
                "could not look in Slack for a notice in doubt (%s%s): it is sent again",
                error or exc.response.status_code,
                needs,
            )
        except Exception as exc:
            log.warning("could not look in Slack for a notice in doubt (%r): sent again", exc)
        return None

    async def _hook(self, notice: Notice, destination: str) -> None:
        """By the incoming webhook: one channel, the recipient mentioned, no buttons."""
        assert self._webhook is not None
        mention = destination if destination != WEBHOOK_DESTINATION else None
        # One channel many read: the team's language (``routing.languages_at``).
        public, lang = self._settings.public_url, self._settings.language
        # Built before the request: a message that cannot be built was never sent, and
        # must not count as maybe posted (``unsure``; found in review).
        text = fallback_text(notice, mention, lang=lang)
        blocks = message_blocks(
            notice, public, mention, interactive=False, lang=lang, zone=self._zone
        )
        try:
            response = await self._webhook.send(text=text, blocks=blocks)
        except Exception as exc:
            # The client's words may quote the URL (its path is the credential). Not
            # connected: nothing reached Slack. A timeout or a dropped connection may
            # have come after Slack posted it, and each retry posted it again (six
            # copies of one notice while Slack was slow, found from outside).
            raise DeliveryError(
                f"Slack webhook unreachable: {redact_urls(repr(exc))}",
                unsure=not isinstance(exc, aiohttp.ClientConnectorError),
                unkeyed=True,
            ) from exc
        if response.status_code != 200:
            headers = {k.lower(): v for k, v in (response.headers or {}).items()}
            retry = headers.get("retry-after")
            raise DeliveryError(
                f"Slack webhook answered {response.status_code}: "
                + without_url_secrets(response.body, self._settings.slack_webhook_url)[:200],
                retry_after_s=retry_after(retry[0] if isinstance(retry, list) else retry),
                permanent=response.status_code in (400, 403, 404, 410),
            )


def _marked(messages: list[dict[str, Any]], wanted: set[str]) -> set[str]:
    """The keys of ``wanted`` that ``messages`` carry in their mark."""
    found: set[str] = set()
    for message in messages:
        meta = message.get("metadata") or {}
        if meta.get("event_type") != NOTICE_EVENT:
            continue
        for part in (meta.get("event_payload") or {}).get("notices") or []:
            if isinstance(part, dict) and part.get("key") in wanted:
                found.add(part["key"])
    return found


def escape(text: str, limit: int | None = None) -> str:
    """Data for a Slack text or mrkdwn field: ``&``, ``<``, ``>`` escaped as Slack
    documents, so a name cannot mention ``<!channel>`` or forge a ``<link|label>``;
    cut to ``limit`` characters without splitting an escape."""
    out = encodable(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if limit is not None and len(out) > limit:
        out = re.sub(r"&[a-z]*$", "", out[: limit - 1]) + "…"
    return out


def fallback_text(
    notice: Notice, mention: str | None = None, *, lang: str = DEFAULT_LANGUAGE
) -> str:
    """The plain-text fallback Slack shows in notifications and to screen readers (Slack
    parses it as mrkdwn too: the data in it is escaped)."""
    prefix = f"{_mentions(mention)} " if mention else ""
    if notice.about_work:
        return prefix + escape(case_headline(notice, lang), SECTION_CHARS)
    if len(notice.alerts) > 1:
        titles = "; ".join(
            headline(notice, a, lang, kind) for a, kind in most_urgent_first(notice)[:MAX_GROUPED]
        )
        line = translate(lang, "{n} alerts: {titles}", n=len(notice.alerts), titles=titles)
        return prefix + escape(line, SECTION_CHARS)
    severity = translate(lang, notice.first.severity.value)
    line = f"[{severity}] {headline(notice, lang=lang)}"
    return prefix + escape(line, SECTION_CHARS)


def message_blocks(
    notice: Notice,
    public_url: str,
    mention: str | None = None,
    *,
    interactive: bool = True,
    lang: str = DEFAULT_LANGUAGE,
    zone: tzinfo = UTC,
) -> list[dict[str, Any]]:
    """A notice's Block Kit blocks; ``zone``: the team's, whose clock a case's times
    are on."""
    blocks: list[dict[str, Any]] = []
    if notice.about_work:
        return _case_blocks(notice, public_url, mention, lang, zone)
    if len(notice.alerts) > 1:
        intro = f"*{escape(translate(lang, '{n} alerts', n=len(notice.alerts)))}*"
        if mention:
            intro = f"{_mentions(mention)} {intro}"
        blocks.append(_section(intro))
        mention = None
    shown = 0
    for a, kind in most_urgent_first(notice)[:MAX_GROUPED]:
        its = _alert_blocks(notice, a, kind, public_url, mention, interactive, lang)
        if len(blocks) + len(its) > MAX_BLOCKS - 1:  # one left for "…and n more"
            break
        blocks.extend(its)
        shown += 1
    if len(notice.alerts) > shown:
        more = escape(translate(lang, "…and {n} more", n=len(notice.alerts) - shown))
        more = f"<{alerts_url(public_url)}|{more}>"  # where the rest are listed
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": more}]})
    return blocks


def _case_blocks(
    notice: Notice, public_url: str, mention: str | None, lang: str, zone: tzinfo
) -> list[dict[str, Any]]:
    """A risk case, task or handover notice: its headline, facts and a link to the
    case (or the accounts)."""
    head = f":clipboard: *{escape(case_headline(notice, lang), SECTION_CHARS - 100)}*"
    if mention:
        head = f"{_mentions(mention)} {head}"
    lines = case_lines(notice, lang, zone)
    facts = [_field(escape(k), escape(v, FIELD_CHARS - 100)) for k, v in lines]
    url = case_url(public_url, notice)
    button = {
        "type": "button",
        "text": {"type": "plain_text", "text": case_button(notice, lang)},
        "url": url,
        "action_id": "open_case" if notice.case is not None else "open_accounts",
    }
    blocks = [_section(head), {"type": "section", "fields": facts[:MAX_FIELDS]}]
    if more := unlisted(notice, min(len(facts), MAX_FIELDS), lang):
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": escape(more)}]})
    return [*blocks, {"type": "actions", "elements": [button]}]


def _section(mrkdwn: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn}}


def _mentions(destination: str) -> str:
    """The people an incoming-webhook post is for: its destination holds their Slack ids
    (``one_post``), each mentioned."""
    return " ".join(f"<@{escape(user)}>" for user in destination.split())


def _field(label: str, mrkdwn: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": f"*{label}*\n{mrkdwn}"}


def _alert_blocks(
    notice: Notice,
    alert: AlertEvent,
    kind: NoticeKind,
    public_url: str,
    mention: str | None,
    interactive: bool,
    lang: str,
) -> list[dict[str, Any]]:
    """One alert's blocks: its headline, summary, what changed, facts and buttons."""
    url = account_url(public_url, alert.account_id)
    head = escape(headline(notice, alert, lang, kind), SECTION_CHARS - 100)
    # An alert's end is no alarm: it read as one under its severity's sign.
    sign = (
        ":white_check_mark:"
        if alert.status == "resolved"
        else _SEVERITY_EMOJI.get(alert.severity.value, "")
    )
    head = f"{sign} *{head}*"
    if mention:
        head = f"{_mentions(mention)} {head}"
    blocks: list[dict[str, Any]] = [_section(head)]
    if alert.summary:
        blocks.append(_section(escape(summary_of(alert, kind, lang), SECTION_CHARS)))
    step = next_step(alert, lang)
    if step:
        said = translate(lang, "Next step: {step}", step=step)
        blocks.append(_section(escape(said, SECTION_CHARS)))
    moved = changes(alert, lang)
    if moved:
        text = "\n".join(f"• {c}" for c in moved)
        heading = escape(translate(lang, "What changed in 7 days"))
        blocks.append(_section(f"*{heading}*\n" + escape(text, SECTION_CHARS - 50)))
    alert_id = escape(translate(lang, "alert {id}", id=f"`{alert.alert_id}`"))
    return [
        *blocks,
        {"type": "section", "fields": _facts(alert, kind, url, lang)},
        {"type": "actions", "elements": _buttons(alert, url, interactive, lang)},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": alert_id}]},
    ]


def _facts(alert: AlertEvent, kind: NoticeKind, url: str, lang: str) -> list[dict[str, str]]:
    band = escape(health(alert, lang))
    if alert.score is not None:
        band = f"{_BAND_EMOJI.get(alert.band or '', '')} {band}"
    name = escape(alert.account_name or alert.account_id, FIELD_CHARS - 500)
    # An id of 200 Chinese characters is 1,800 in its link: past a field's 2,000 with its
    # name, Slack refused the message. The "Open account" button links it then.
    link = f"<{url}|{name}>"
    return [
        _field(translate(lang, "Account"), link if len(link) <= FIELD_CHARS - 100 else name),
        _field(health_label(alert, kind, lang), band),
        _field(translate(lang, "Rule"), escape(rule_name(lang, alert.rule), 200)),
        _field(translate(lang, "Severity"), escape(translate(lang, alert.severity.value))),
    ]


def _buttons(alert: AlertEvent, url: str, interactive: bool, lang: str) -> list[dict[str, Any]]:
    buttons: list[dict[str, Any]] = [
        {
            "type": "button",
            "text": {"type": "plain_text", "text": translate(lang, "Open account")},
            "url": url,
            "action_id": "open_account",
        }
    ]
    if interactive and alert.status == "firing":
        # Handled by POST /v1/slack/interactions (signature-verified).
        for action_id, label, style in (
            ("ack", N_("Acknowledge"), "primary"),
            ("snooze_1d", N_("Snooze 1 day"), None),
            ("not_useful", N_("Not useful"), None),
        ):
            button: dict[str, Any] = {
                "type": "button",
                "text": {"type": "plain_text", "text": translate(lang, label)},
                "action_id": action_id,
                "value": alert.alert_id,
            }
            if style:
                button["style"] = style
            buttons.append(button)
    return buttons
