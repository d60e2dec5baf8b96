"""What a notification says: Slack Block Kit and email (HTML + plain text)."""

from __future__ import annotations

import html
from typing import Any

from shared.contracts.alerts import AlertEvent

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


def account_url(public_url: str, account_id: str) -> str:
    return f"{public_url.rstrip('/')}/accounts/{account_id}"


def slack_text(alert: AlertEvent, mention: str | None = None) -> str:
    """The plain-text fallback Slack shows in notifications and to screen readers."""
    prefix = f"<@{mention}> " if mention else ""
    return f"{prefix}[{alert.severity.value}] {alert.title}"


def slack_blocks(
    alert: AlertEvent, public_url: str, mention: str | None = None
) -> list[dict[str, Any]]:
    url = account_url(public_url, alert.account_id)
    band = (
        f"{_BAND_EMOJI.get(alert.band or '', '')} {alert.score} ({alert.band})"
        if alert.score is not None
        else "n/a"
    )
    head = f"{_SEVERITY_EMOJI.get(alert.severity.value, '')} *{alert.title}*"
    if mention:
        head = f"<@{mention}> {head}"
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": head}},
        {"type": "section", "text": {"type": "mrkdwn", "text": alert.summary}},
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
        {
            "type": "actions",
            "elements": [
                {
                    "type": "button",
                    "text": {"type": "plain_text", "text": "Open account"},
                    "url": url,
                    "action_id": "open_account",
                },
            ],
        },
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f"alert `{alert.alert_id}`"}]},
    ]


def email_subject(alert: AlertEvent) -> str:
    return f"[healthwatch {alert.severity.value}] {alert.title}"


def email_text(alert: AlertEvent, public_url: str) -> str:
    lines = [
        alert.title,
        "",
        alert.summary,
        "",
        f"Account: {alert.account_name or alert.account_id} ({alert.account_id})",
        f"Health: {alert.score} ({alert.band})" if alert.score is not None else "Health: n/a",
        f"Rule: {alert.rule}   Severity: {alert.severity.value}",
        "",
        f"Open the account: {account_url(public_url, alert.account_id)}",
        f"Alert id: {alert.alert_id}",
    ]
    return "\n".join(lines) + "\n"


def email_html(alert: AlertEvent, public_url: str) -> str:
    e = html.escape
    colour = {"red": "#c62828", "yellow": "#f9a825", "green": "#2e7d32"}.get(
        alert.band or "", "#555"
    )
    health = f"{alert.score} ({e(alert.band or '')})" if alert.score is not None else "n/a"
    return f"""<!doctype html>
<html><body style="font-family:system-ui,sans-serif;color:#222">
<h2 style="margin:0 0 8px">{e(alert.title)}</h2>
<p>{e(alert.summary)}</p>
<table cellpadding="4" style="border-collapse:collapse">
<tr><th align="left">Account</th><td>{e(alert.account_name or alert.account_id)}</td></tr>
<tr><th align="left">Health</th><td style="color:{colour};font-weight:bold">{health}</td></tr>
<tr><th align="left">Rule</th><td><code>{e(alert.rule)}</code> ({e(alert.severity.value)})</td></tr>
</table>
<p><a href="{e(account_url(public_url, alert.account_id))}">Open the account</a></p>
<p style="color:#888;font-size:12px">alert {e(alert.alert_id)}</p>
</body></html>
"""
