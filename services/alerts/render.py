"""What a notice says: Slack Block Kit and email (HTML + plain text).

A notice holds one alert (its firing, an update, a reminder, an escalation or its end)
or several (a Slack group, the daily digest)."""

from __future__ import annotations

import html
import re
from typing import TYPE_CHECKING, Any

from shared.contracts.alerts import AlertEvent

if TYPE_CHECKING:
    from services.alerts.channels import Notice

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
_PREFIX = {
    "update": "Updated: ",
    "repeat": "Reminder: ",
    "escalate": "Escalated, not acknowledged: ",
}
# Slack allows 50 blocks a message; a group shows this many alerts and counts the rest.
MAX_GROUPED = 10


def account_url(public_url: str, account_id: str) -> str:
    return f"{public_url.rstrip('/')}/accounts/{account_id}"


def safe_key(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", ".", key)


def headline(notice: Notice, alert: AlertEvent | None = None) -> str:
    a = alert or notice.first
    if notice.kind == "digest":
        return f"{len(notice.alerts)} open alerts: your daily digest"
    return _PREFIX.get(notice.kind, "") + a.title


def slack_text(notice: Notice, mention: str | None = None) -> str:
    """The plain-text fallback Slack shows in notifications and to screen readers."""
    prefix = f"<@{mention}> " if mention else ""
    if len(notice.alerts) > 1:
        return f"{prefix}{len(notice.alerts)} alerts: " + "; ".join(
            a.title for a in notice.alerts[:MAX_GROUPED]
        )
    return f"{prefix}[{notice.first.severity.value}] {headline(notice)}"


def slack_blocks(
    notice: Notice, public_url: str, mention: str | None = None, *, interactive: bool = True
) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if len(notice.alerts) > 1:
        intro = f"*{len(notice.alerts)} alerts*"
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"<@{mention}> {intro}" if mention else intro},
            }
        )
        mention = None
    for a in notice.alerts[:MAX_GROUPED]:
        blocks.extend(_alert_blocks(notice, a, public_url, mention, interactive))
    if len(notice.alerts) > MAX_GROUPED:
        more = f"…and {len(notice.alerts) - MAX_GROUPED} more"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": more}]})
    return blocks


def _alert_blocks(
    notice: Notice, alert: AlertEvent, public_url: str, mention: str | None, interactive: bool
) -> list[dict[str, Any]]:
    url = account_url(public_url, alert.account_id)
    band = (
        f"{_BAND_EMOJI.get(alert.band or '', '')} {alert.score} ({alert.band})"
        if alert.score is not None
        else "n/a"
    )
    head = f"{_SEVERITY_EMOJI.get(alert.severity.value, '')} *{headline(notice, alert)}*"
    if mention:
        head = f"<@{mention}> {head}"
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
        buttons += [
            {
                "type": "button",
                "text": {"type": "plain_text", "text": "Acknowledge"},
                "action_id": "ack",
                "value": alert.alert_id,
                "style": "primary",
            },
            {
                "type": "button",
                "text": {"type": "plain_text", "text": "Snooze 1 day"},
                "action_id": "snooze_1d",
                "value": alert.alert_id,
            },
            {
                "type": "button",
                "text": {"type": "plain_text", "text": "Not useful"},
                "action_id": "not_useful",
                "value": alert.alert_id,
            },
        ]
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": head}},
    ]
    if alert.summary:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": alert.summary}})
    moved = changes(alert)
    if moved:
        text = "*What changed in 7 days*\n" + "\n".join(f"• {c}" for c in moved)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    blocks += [
        {
            "type": "section",
            "fields": [
                {
                    "type": "mrkdwn",
                    "text": f"*Account*\n<{url}|{alert.account_name or alert.account_id}>",
                },
                {"type": "mrkdwn", "text": f"*Health*\n{band}"},
                {"type": "mrkdwn", "text": f"*Rule*\n`{alert.rule}`"},
                {"type": "mrkdwn", "text": f"*Severity*\n{alert.severity.value}"},
            ],
        },
        {"type": "actions", "elements": buttons},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f"alert `{alert.alert_id}`"}]},
    ]
    return blocks


def changes(alert: AlertEvent) -> list[str]:
    """The sentences of what moved over the week before the alert ("active users over 7
    days fell from 42 to 9, −79%")."""
    return [str(c["text"]) for c in alert.details.get("changes", []) if "text" in c]


def email_subject(notice: Notice) -> str:
    if notice.kind == "digest":
        return f"[healthwatch] {headline(notice)}"
    return f"[healthwatch {notice.first.severity.value}] {headline(notice)}"


def email_text(notice: Notice, public_url: str) -> str:
    parts = []
    for a in notice.alerts:
        parts.append(
            "\n".join(
                [
                    headline(notice, a) if notice.kind != "digest" else a.title,
                    "",
                    a.summary,
                    "",
                    *(
                        ["What changed in 7 days:", *(f"  - {c}" for c in changes(a)), ""]
                        if changes(a)
                        else []
                    ),
                    f"Account: {a.account_name or a.account_id} ({a.account_id})",
                    f"Health: {a.score} ({a.band})" if a.score is not None else "Health: n/a",
                    f"Rule: {a.rule}   Severity: {a.severity.value}",
                    f"Open the account: {account_url(public_url, a.account_id)}",
                    f"Alert id: {a.alert_id}",
                ]
            )
        )
    head = headline(notice) + "\n\n" if notice.kind == "digest" else ""
    return head + "\n\n----\n\n".join(parts) + "\n"


def email_html(notice: Notice, public_url: str) -> str:
    e = html.escape
    rows = []
    for a in notice.alerts:
        colour = {"red": "#c62828", "yellow": "#f9a825", "green": "#2e7d32"}.get(
            a.band or "", "#555"
        )
        health = f"{a.score} ({e(a.band or '')})" if a.score is not None else "n/a"
        title = headline(notice, a) if notice.kind != "digest" else a.title
        rows.append(f"""<h2 style="margin:16px 0 8px">{e(title)}</h2>
<p>{e(a.summary)}</p>
{_changes_html(a)}<table cellpadding="4" style="border-collapse:collapse">
<tr><th align="left">Account</th><td>{e(a.account_name or a.account_id)}</td></tr>
<tr><th align="left">Health</th><td style="color:{colour};font-weight:bold">{health}</td></tr>
<tr><th align="left">Rule</th><td><code>{e(a.rule)}</code> ({e(a.severity.value)})</td></tr>
</table>
<p><a href="{e(account_url(public_url, a.account_id))}">Open the account</a></p>
<p style="color:#888;font-size:12px">alert {e(a.alert_id)}</p>""")
    head = f"<h1>{e(headline(notice))}</h1>\n" if notice.kind == "digest" else ""
    return f"""<!doctype html>
<html><body style="font-family:system-ui,sans-serif;color:#222">
{head}{"<hr>".join(rows)}
</body></html>
"""


def _changes_html(alert: AlertEvent) -> str:
    moved = changes(alert)
    if not moved:
        return ""
    items = "".join(f"<li>{html.escape(c)}</li>" for c in moved)
    return f"<p><b>What changed in 7 days</b></p><ul>{items}</ul>\n"
