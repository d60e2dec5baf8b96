"""Text every channel shares: what a notice is headed, the dashboard link of an
account, and data made safe for a header or a log line."""

from __future__ import annotations

import re
import urllib.parse

from shared.contracts.alerts import AlertEvent
from shared.contracts.notices import Notice, NoticeKind

_PREFIX = {
    NoticeKind.update: "Updated: ",
    NoticeKind.repeat: "Reminder: ",
    NoticeKind.escalate: "Escalated, not acknowledged: ",
}
# Control characters (C0, DEL, C1) and Unicode line/paragraph separators: a CR/LF in
# a header value starts a new header (or a forged log line).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
# Printable ASCII but ``%``: what an HTTP header value may carry as is.
_HEADER_SAFE = "".join(chr(code) for code in range(0x21, 0x7F) if chr(code) != "%")
# A URL's user, path and query, where webhook tokens live (Slack's /services/T/B/token).
_URL_SECRETS = re.compile(r"(https?://)(?:[^@/\s'\"]*@)?([^/\s'\"?#]+)[^\s'\")]*")


def headline(notice: Notice, alert: AlertEvent | None = None) -> str:
    a = alert or notice.first
    if notice.kind == NoticeKind.digest:
        return f"{len(notice.alerts)} open alerts: your daily digest"
    return _PREFIX.get(notice.kind, "") + a.title


def changes(alert: AlertEvent) -> list[str]:
    """The sentences of what moved over the week before the alert ("active users over 7
    days fell from 42 to 9, −79%")."""
    return [str(change["text"]) for change in alert.details.get("changes", []) if "text" in change]


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
    return _CONTROL.sub(" ", encodable(value)).strip()


def header_token(value: str) -> str:
    """``value`` as one HTTP header token: anything but printable ASCII (control
    characters, spaces, non-ASCII) percent-encoded, so our keys pass unchanged."""
    return urllib.parse.quote(value, safe=_HEADER_SAFE)


def safe_key(key: str) -> str:
    """A notice key fit for an email Message-ID."""
    return re.sub(r"[^A-Za-z0-9._-]", ".", key)


def redact_urls(text: str) -> str:
    """``text`` with every URL cut to its scheme and host: error messages of HTTP
    clients may quote the webhook URL, whose path is a credential."""
    return _URL_SECRETS.sub(r"\1\2/…", text)


def encodable(value: str) -> str:
    """``value`` with lone surrogates (which UTF-8 cannot encode) as ``?``."""
    return value.encode("utf-8", "replace").decode("utf-8")
