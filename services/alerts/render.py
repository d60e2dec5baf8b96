"""What a notice says: Slack Block Kit and email (HTML + plain text).

A notice holds one alert (its firing, an update, a reminder, an escalation or its end)
or several (a Slack group, the daily digest)."""

from __future__ import annotations

import html
import re
import urllib.parse
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
# Slack refuses a whole message (invalid_blocks) whose section text exceeds 3,000
# characters or whose field exceeds 2,000; longer data is cut to fit.
SLACK_SECTION_CHARS = 3000
SLACK_FIELD_CHARS = 2000
# Mail clients show well under this; the rest of a title is in the body anyway.
SUBJECT_CHARS = 250
# Control characters (C0, DEL, C1) and Unicode line/paragraph separators: a CR/LF in
# a header value starts a new header (or a forged log line).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def account_url(public_url: str, account_id: str) -> str:
    """The dashboard's page of the account (``/ui/accounts/{id}``), the id escaped so
    any character (``/``, ``?``, ``#``, spaces) stays inside the path segment."""
    quoted = urllib.parse.quote(account_id, safe="")
    if quoted in (".", ".."):  # a client would resolve these segments away
        quoted = quoted.replace(".", "%2E")
    return f"{public_url.rstrip('/')}/ui/accounts/{quoted}"


def one_line(value: str) -> str:
    """``value`` fit for a header (email Subject/To, an HTTP header): control characters
    and line breaks become spaces, and lone surrogates (unencodable) become ``?``."""
    return _CONTROL.sub(" ", _encodable(value)).strip()


# Printable ASCII but ``%``: what an HTTP header value may carry as is.
_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%")


def header_token(value: str) -> str:
    """``value`` as one HTTP header token: anything but printable ASCII (control
    characters, spaces, non-ASCII) percent-encoded, so our keys pass unchanged."""
    return urllib.parse.quote(value, safe=_HEADER_SAFE)


# A URL's user, path and query, where webhook tokens live (Slack's /services/T/B/token).
_URL_SECRETS = re.compile(r"(https?://)(?:[^@/\s'\"]*@)?([^/\s'\"?#]+)[^\s'\")]*")


def redact_urls(text: str) -> str:
    """``text`` with every URL cut to its scheme and host: error messages of HTTP
    clients may quote the webhook URL, whose path is a credential."""
    return _URL_SECRETS.sub(r"\1\2/…", text)


def _encodable(value: str) -> str:
    return value.encode("utf-8", "replace").decode("utf-8")


def slack_escape(text: str, limit: int | None = None) -> str:
    """Data for a Slack text or mrkdwn field: ``&``, ``<``, ``>`` escaped as Slack
    documents, so a name cannot mention ``<!channel>`` or forge a ``<link|label>``;
    cut to ``limit`` characters without splitting an escape."""
    out = _encodable(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if limit is not None and len(out) > limit:
        out = re.sub(r"&[a-z]*$", "", out[: limit - 1]) + "…"
    return out


def safe_key(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", ".", key)


def headline(notice: Notice, alert: AlertEvent | None = None) -> str:
    a = alert or notice.first
    if notice.kind == "digest":
        return f"{len(notice.alerts)} open alerts: your daily digest"
    return _PREFIX.get(notice.kind, "") + a.title


def slack_text(notice: Notice, mention: str | None = None) -> str:
    """The plain-text fallback Slack shows in notifications and to screen readers (Slack
    parses it as mrkdwn too: the data in it is escaped)."""
    prefix = f"<@{slack_escape(mention)}> " if mention else ""
    if len(notice.alerts) > 1:
        titles = "; ".join(a.title for a in notice.alerts[:MAX_GROUPED])
        return f"{prefix}{len(notice.alerts)} alerts: " + slack_escape(titles, SLACK_SECTION_CHARS)
    line = f"[{notice.first.severity.value}] {headline(notice)}"
    return prefix + slack_escape(line, SLACK_SECTION_CHARS)


def slack_blocks(
    notice: Notice, public_url: str, mention: str | None = None, *, interactive: bool = True
) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if len(notice.alerts) > 1:
        intro = f"*{len(notice.alerts)} alerts*"
        if mention:
            intro = f"<@{slack_escape(mention)}> {intro}"
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
    """One alert's blocks. Every piece of data is escaped (``slack_escape``); only the
    markup around it is ours."""
    url = account_url(public_url, alert.account_id)
    band = (
        f"{_BAND_EMOJI.get(alert.band or '', '')} {alert.score} ({slack_escape(alert.band or '')})"
        if alert.score is not None
        else "n/a"
    )
    head = slack_escape(headline(notice, alert), SLACK_SECTION_CHARS - 100)
    head = f"{_SEVERITY_EMOJI.get(alert.severity.value, '')} *{head}*"
    if mention:
        head = f"<@{slack_escape(mention)}> {head}"
    blocks: list[dict[str, Any]] = [_section(head)]
    if alert.summary:
        blocks.append(_section(slack_escape(alert.summary, SLACK_SECTION_CHARS)))
    moved = changes(alert)
    if moved:
        text = "\n".join(f"• {c}" for c in moved)
        text = "*What changed in 7 days*\n" + slack_escape(text, SLACK_SECTION_CHARS - 50)
        blocks.append(_section(text))
    name = slack_escape(alert.account_name or alert.account_id, SLACK_FIELD_CHARS - 500)
    blocks += [
        {
            "type": "section",
            "fields": [
                _field("Account", f"<{url}|{name}>"),
                _field("Health", band),
                _field("Rule", f"`{slack_escape(alert.rule, 200)}`"),
                _field("Severity", alert.severity.value),
            ],
        },
        {"type": "actions", "elements": _buttons(alert, url, interactive)},
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": f"alert `{slack_escape(alert.alert_id)}`"}],
        },
    ]
    return blocks


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


def changes(alert: AlertEvent) -> list[str]:
    """The sentences of what moved over the week before the alert ("active users over 7
    days fell from 42 to 9, −79%")."""
    return [str(c["text"]) for c in alert.details.get("changes", []) if "text" in c]


def email_subject(notice: Notice) -> str:
    """One line whatever the data holds (a CR/LF in a name would start a new header),
    of a length mail clients show."""
    if notice.kind == "digest":
        subject = one_line(f"[healthwatch] {headline(notice)}")
    else:
        subject = one_line(f"[healthwatch {notice.first.severity.value}] {headline(notice)}")
    return subject if len(subject) <= SUBJECT_CHARS else subject[: SUBJECT_CHARS - 1] + "…"


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
    return _encodable(head + "\n\n----\n\n".join(parts) + "\n")


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
    return _encodable(f"""<!doctype html>
<html><body style="font-family:system-ui,sans-serif;color:#222">
{head}{"<hr>".join(rows)}
</body></html>
""")


def _changes_html(alert: AlertEvent) -> str:
    moved = changes(alert)
    if not moved:
        return ""
    items = "".join(f"<li>{html.escape(c)}</li>" for c in moved)
    return f"<p><b>What changed in 7 days</b></p><ul>{items}</ul>\n"
