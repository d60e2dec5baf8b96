"""Email: the channel (SMTP) and what a notice says there (a subject, HTML and plain
text). Every header is one line and the envelope holds the one address given, so
data cannot add a header or a recipient."""

from __future__ import annotations

import html
import re
from email.message import EmailMessage
from email.utils import formataddr, parseaddr

import aiosmtplib

from services.alerts.channels.base import SEND_TIMEOUT_S, DeliveryError
from services.alerts.channels.text import (
    account_url,
    changes,
    encodable,
    headline,
    one_line,
    safe_key,
)
from shared.alerting.schema import Recipient
from shared.config import Settings
from shared.contracts.alerts import AlertEvent
from shared.contracts.notices import Notice, NoticeKind

# One plain address: no spaces, control characters or lists (a CR/LF or a comma would
# add recipients).
_ADDRESS = re.compile(r"[^\s\x00-\x1f\x7f@<>,;:\"()\[\]\\]+@[^\s\x00-\x1f\x7f@<>,;:\"()\[\]\\]+")
# Mail clients show well under this; the rest of a title is in the body anyway.
SUBJECT_CHARS = 250
_BAND_COLOUR = {"red": "#c62828", "yellow": "#f9a825", "green": "#2e7d32"}


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
        msg["From"] = one_line(s.smtp_from)
        msg["To"] = formataddr((name, address)) if name else address
        msg["Subject"] = subject(notice)
        # A stable Message-ID lets mail clients fold the rare duplicate send.
        msg["Message-ID"] = f"<{safe_key(notice.key)}@healthwatch>"
        msg.set_content(text_body(notice, s.public_url))
        msg.add_alternative(html_body(notice, s.public_url), subtype="html")
        try:
            await aiosmtplib.send(
                msg,
                # The envelope, not addresses parsed back out of the headers.
                sender=one_line(s.smtp_from),
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
    line = one_line(destination)
    name, address = parseaddr(line)
    # parseaddr guesses at what it cannot parse ("a@x Bcc: b@y" gives "a@xBcc"): the
    # address must be there as written.
    if _ADDRESS.fullmatch(address) is None or address not in line:
        raise DeliveryError(f"{destination!r} is not an email address", permanent=True)
    return name, address


def subject(notice: Notice) -> str:
    """One line whatever the data holds (a CR/LF in a name would start a new header),
    of a length mail clients show."""
    if notice.kind == NoticeKind.digest:
        line = one_line(f"[healthwatch] {headline(notice)}")
    else:
        line = one_line(f"[healthwatch {notice.first.severity.value}] {headline(notice)}")
    return line if len(line) <= SUBJECT_CHARS else line[: SUBJECT_CHARS - 1] + "…"


def _title(notice: Notice, alert: AlertEvent) -> str:
    """An alert's heading in the body: a digest lists alerts by their own titles."""
    return alert.title if notice.kind == NoticeKind.digest else headline(notice, alert)


def text_body(notice: Notice, public_url: str) -> str:
    parts = []
    for a in notice.alerts:
        moved = changes(a)
        lines = [_title(notice, a), "", a.summary, ""]
        if moved:
            lines += ["What changed in 7 days:", *(f"  - {c}" for c in moved), ""]
        lines += [
            f"Account: {a.account_name or a.account_id} ({a.account_id})",
            f"Health: {a.score} ({a.band})" if a.score is not None else "Health: n/a",
            f"Rule: {a.rule}   Severity: {a.severity.value}",
            f"Open the account: {account_url(public_url, a.account_id)}",
            f"Alert id: {a.alert_id}",
        ]
        parts.append("\n".join(lines))
    head = headline(notice) + "\n\n" if notice.kind == NoticeKind.digest else ""
    return encodable(head + "\n\n----\n\n".join(parts) + "\n")


def html_body(notice: Notice, public_url: str) -> str:
    e = html.escape
    rows = []
    for a in notice.alerts:
        colour = _BAND_COLOUR.get(a.band or "", "#555")
        health = f"{a.score} ({e(a.band or '')})" if a.score is not None else "n/a"
        rows.append(f"""<h2 style="margin:16px 0 8px">{e(_title(notice, a))}</h2>
<p>{e(a.summary)}</p>
{_changes_html(a)}<table cellpadding="4" style="border-collapse:collapse">
<tr><th align="left">Account</th><td>{e(a.account_name or a.account_id)}</td></tr>
<tr><th align="left">Health</th><td style="color:{colour};font-weight:bold">{health}</td></tr>
<tr><th align="left">Rule</th><td><code>{e(a.rule)}</code> ({e(a.severity.value)})</td></tr>
</table>
<p><a href="{e(account_url(public_url, a.account_id))}">Open the account</a></p>
<p style="color:#888;font-size:12px">alert {e(a.alert_id)}</p>""")
    head = f"<h1>{e(headline(notice))}</h1>\n" if notice.kind == NoticeKind.digest else ""
    return encodable(f"""<!doctype html>
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
