"""Email: the channel (SMTP) and what a notice says there (a subject, HTML and plain
text). Every header is one line and the envelope holds the one address given, so
data cannot add a header or a recipient."""

from __future__ import annotations

import hashlib
import html
import re
from datetime import UTC, tzinfo
from email.message import EmailMessage
from email.utils import formataddr, formatdate, parseaddr
from zoneinfo import ZoneInfo

import aiosmtplib

from services.alerts.channels.base import SEND_TIMEOUT_S, DeliveryError, Unseeing
from services.alerts.channels.case_text import (
    case_button,
    case_headline,
    case_lines,
    case_url,
    labelled,
    unlisted,
)
from services.alerts.channels.text import (
    account_url,
    alert_url,
    changes,
    encodable,
    headline,
    health,
    health_label,
    most_urgent_first,
    next_step,
    one_line,
    safe_key,
    summary_of,
)
from shared.alerting.schema import Recipient
from shared.config import Settings
from shared.contracts.alerts import AlertEvent
from shared.contracts.notices import Notice, NoticeKind
from shared.i18n import DEFAULT_LANGUAGE, translate
from shared.i18n.alert_text import alert_text, rule_name

# One plain address: no spaces, control characters or lists (a CR/LF or a comma would
# add recipients).
_ADDRESS = re.compile(r"[^\s\x00-\x1f\x7f@<>,;:\"()\[\]\\]+@[^\s\x00-\x1f\x7f@<>,;:\"()\[\]\\]+")
# Mail clients show well under this; the rest of a title is in the body anyway.
SUBJECT_CHARS = 250
_BAND_COLOUR = {"red": "#c62828", "yellow": "#f9a825", "green": "#2e7d32"}

# Permanent replies a relay gives for its own state, not the message's: authentication
# required or refused (530, 534, 535: credentials being rotated), mailbox storage
# exceeded (552). Retried until the notice gives up, as a 4xx is.
RETRIED_5XX = frozenset({530, 534, 535, 552})


class EmailChannel(Unseeing):
    name = "email"
    broadcast = False
    one_post = False

    def __init__(self, settings: Settings):
        self._settings = settings

    def address(self, recipient: Recipient) -> str | None:
        return recipient.email or None

    def pace_key(self, destination: str) -> None:
        return None

    async def send(self, notice: Notice, destination: str) -> None:
        s = self._settings
        name, address = _mailbox(destination)
        sender_name, sender = _mailbox(s.smtp_from)
        msg = EmailMessage()
        msg["From"] = formataddr((sender_name, sender)) if sender_name else sender
        msg["To"] = formataddr((name, address)) if name else address
        msg["Date"] = formatdate(usegmt=True)
        # The reader's language, as they chose it, else the team's (HEALTHWATCH_LANGUAGE).
        lang = notice.language or s.language
        msg["Subject"] = subject(notice, lang)
        msg["Message-ID"] = message_id(notice, sender)
        zone = ZoneInfo(s.timezone)  # the team's clock, for a case's times
        msg.set_content(text_body(notice, s.public_url, lang, zone))
        msg.add_alternative(html_body(notice, s.public_url, lang, zone), subtype="html")
        try:
            await aiosmtplib.send(
                msg,
                # The envelope, not addresses parsed back out of the headers; the address
                # alone: a display name in Chinese made the client ask for SMTPUTF8, and
                # a relay without it refused every email (found from outside).
                sender=sender,
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
                permanent=500 <= exc.code < 600 and exc.code not in RETRIED_5XX,
            ) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"SMTP unreachable: {exc!r}") from exc


# The longest notice key kept whole in a Message-ID: with the time and the domain, the
# header line stays far below RFC 5322's 998 characters (and most clients' 78 to fold).
MESSAGE_ID_KEY_CHARS = 200


def message_id(notice: Notice, sender: str) -> str:
    """The same for every send of one notice, so mail clients fold the rare duplicate
    send; apart from any other notice's. Notice keys repeat from one install (or one
    database) to the next (alert ids are deterministic), and a mail service that holds a
    Message-ID already may drop the message: the first alert's fired time and the
    sender's domain are in it too."""
    fired = int(notice.first.fired_at.timestamp()) if notice.alerts else 0
    domain = sender.rpartition("@")[2] or "healthwatch"
    key = safe_key(notice.key)
    if len(key) > MESSAGE_ID_KEY_CHARS:
        # A group's key joins its notices' (50 of them: a 1,564-byte header line, past
        # the 998 a line may hold, found in review): its digest, the same every send.
        key = "g" + hashlib.sha256(notice.key.encode()).hexdigest()[:32]
    return f"<{key}.{fired}@{safe_key(domain)}>"


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


def subject(notice: Notice, lang: str = DEFAULT_LANGUAGE) -> str:
    """One line whatever the data holds (a CR/LF in a name would start a new header),
    of a length mail clients show."""
    if notice.about_work:
        line = one_line(f"[healthwatch] {case_headline(notice, lang)}")
    elif notice.kind == NoticeKind.digest:
        line = one_line(f"[healthwatch] {headline(notice, lang=lang)}")
    elif notice.kind == NoticeKind.group:
        # Several notices to one address within ``group_wait``: tagged by the worst.
        pairs = most_urgent_first(notice)
        worst = pairs[0][0]
        tag = "resolved" if worst.status == "resolved" else worst.severity.value
        titles = "; ".join(headline(notice, a, lang, kind) for a, kind in pairs[:3])
        told = translate(lang, "{n} alerts: {titles}", n=len(notice.alerts), titles=titles)
        line = one_line(f"[healthwatch {translate(lang, tag)}] {told}")
    else:
        # An alert's end is no alarm: "[healthwatch warning] Resolved: …" read as one.
        first = notice.first
        tag = "resolved" if first.status == "resolved" else first.severity.value
        line = one_line(f"[healthwatch {translate(lang, tag)}] {headline(notice, lang=lang)}")
    return line if len(line) <= SUBJECT_CHARS else line[: SUBJECT_CHARS - 1] + "…"


def _title(notice: Notice, alert: AlertEvent, kind: NoticeKind, lang: str) -> str:
    """An alert's heading in the body: a digest lists alerts by their own titles, a
    group each with its own notice's kind ("Escalated: …")."""
    if notice.kind == NoticeKind.digest:
        return alert_text(lang, alert.title)
    return headline(notice, alert, lang, kind)


def _heading(notice: Notice, lang: str) -> str | None:
    """What a body of several alerts is headed: a digest's title, a group's count."""
    if notice.kind == NoticeKind.digest:
        return headline(notice, lang=lang)
    if notice.kind == NoticeKind.group:
        return translate(lang, "{n} alerts", n=len(notice.alerts))
    return None


def text_body(
    notice: Notice, public_url: str, lang: str = DEFAULT_LANGUAGE, zone: tzinfo = UTC
) -> str:
    if notice.about_work:
        pairs = case_lines(notice, lang, zone)
        lines = [labelled(label, value, lang) for label, value in pairs]
        if more := unlisted(notice, len(pairs), lang):
            lines.append(more)
        link = labelled(case_button(notice, lang), case_url(public_url, notice), lang)
        return encodable("\n".join([case_headline(notice, lang), "", *lines, "", link]) + "\n")
    parts = []
    for a, kind in most_urgent_first(notice):  # a digest's or group's worst first
        moved = changes(a, lang)
        lines = [_title(notice, a, kind, lang), "", summary_of(a, kind, lang), ""]
        if step := next_step(a, lang):
            lines += [translate(lang, "Next step: {step}", step=step), ""]
        if moved:
            lines += [translate(lang, "What changed in 7 days:"), *(f"  - {c}" for c in moved), ""]
        lines += [
            translate(
                lang, "Account: {name} ({id})", name=a.account_name or a.account_id, id=a.account_id
            ),
            labelled(health_label(a, kind, lang), health(a, lang), lang),
            translate(
                lang,
                "Rule: {rule}   Severity: {severity}",
                rule=rule_name(lang, a.rule),
                severity=translate(lang, a.severity.value),
            ),
            translate(lang, "Open the account: {url}", url=account_url(public_url, a.account_id)),
        ]
        if act := _act_url(a, public_url):
            lines.append(translate(lang, "Acknowledge, snooze or resolve: {url}", url=act))
        lines.append(translate(lang, "Alert id: {id}", id=a.alert_id))
        parts.append("\n".join(lines))
    heading = _heading(notice, lang)
    head = heading + "\n\n" if heading else ""
    return encodable(head + "\n\n----\n\n".join(parts) + "\n")


def html_body(
    notice: Notice, public_url: str, lang: str = DEFAULT_LANGUAGE, zone: tzinfo = UTC
) -> str:
    e = html.escape
    if notice.about_work:
        return _case_html(notice, public_url, lang, zone)

    def t(text: str, **values: object) -> str:
        return e(translate(lang, text, **values))

    rows = []
    for a, kind in most_urgent_first(notice):  # a digest's or group's worst first
        colour = _BAND_COLOUR.get(a.band or "", "#555")
        style = f"color:{colour};font-weight:bold"
        rule = e(rule_name(lang, a.rule))
        told = _step_html(a, lang) + _changes_html(a, lang)
        label = health_label(a, kind, lang)
        url = _act_url(a, public_url)
        act = f' · <a href="{e(url)}">{t("Acknowledge, snooze or resolve")}</a>' if url else ""
        rows.append(f"""<h2 style="margin:16px 0 8px">{e(_title(notice, a, kind, lang))}</h2>
<p>{e(summary_of(a, kind, lang))}</p>
{told}<table cellpadding="4" style="border-collapse:collapse">
<tr><th align="left">{t("Account")}</th><td>{e(a.account_name or a.account_id)}</td></tr>
<tr><th align="left">{e(label)}</th><td style="{style}">{e(health(a, lang))}</td></tr>
<tr><th align="left">{t("Rule")}</th><td>{rule} ({t(a.severity.value)})</td></tr>
</table>
<p><a href="{e(account_url(public_url, a.account_id))}">{t("Open the account")}</a>{act}</p>
<p style="color:#888;font-size:12px">{t("alert {id}", id=a.alert_id)}</p>""")
    heading = _heading(notice, lang)
    head = f"<h1>{e(heading)}</h1>\n" if heading else ""
    return encodable(f"""<!doctype html>
<html lang="{e(lang)}"><body style="font-family:system-ui,sans-serif;color:#222">
{head}{"<hr>".join(rows)}
</body></html>
""")


def _case_html(notice: Notice, public_url: str, lang: str, zone: tzinfo) -> str:
    """A risk case, task or handover notice: its headline, facts and a link to the case
    (or the accounts)."""
    e = html.escape
    pairs = case_lines(notice, lang, zone)
    rows = "".join(f'<tr><th align="left">{e(k)}</th><td>{e(v)}</td></tr>' for k, v in pairs)
    if more := unlisted(notice, len(pairs), lang):
        rows += f'<tr><td colspan="2">{e(more)}</td></tr>'
    url = e(case_url(public_url, notice))
    return encodable(f"""<!doctype html>
<html lang="{e(lang)}"><body style="font-family:system-ui,sans-serif;color:#222">
<h2>{e(case_headline(notice, lang))}</h2>
<table cellpadding="4" style="border-collapse:collapse">{rows}</table>
<p><a href="{url}">{e(case_button(notice, lang))}</a></p>
</body></html>
""")


def _act_url(alert: AlertEvent, public_url: str) -> str | None:
    """The alert's page, which has the buttons email lacks; None for a resolved alert's
    notice (nothing is left to act on)."""
    return None if alert.status == "resolved" else alert_url(public_url, alert.alert_id)


def _step_html(alert: AlertEvent, lang: str) -> str:
    step = next_step(alert, lang)
    if not step:
        return ""
    return f"<p>{html.escape(translate(lang, 'Next step: {step}', step=step))}</p>\n"


def _changes_html(alert: AlertEvent, lang: str) -> str:
    moved = changes(alert, lang)
    if not moved:
        return ""
    items = "".join(f"<li>{html.escape(c)}</li>" for c in moved)
    heading = html.escape(translate(lang, "What changed in 7 days"))
    return f"<p><b>{heading}</b></p><ul>{items}</ul>\n"
