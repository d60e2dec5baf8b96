"""Text every channel shares: what a notice is headed, the dashboard link of an
account, and data made safe for a header or a log line."""

from __future__ import annotations

import re
import urllib.parse

from shared.contracts.alerts import AlertEvent
from shared.contracts.notices import Notice, NoticeKind
from shared.i18n import DEFAULT_LANGUAGE, N_, translate
from shared.i18n.alert_text import alert_text

_PREFIX = {
    NoticeKind.update: N_("Updated: {title}"),
    NoticeKind.repeat: N_("Reminder: {title}"),
    NoticeKind.escalate: N_("Escalated, not acknowledged: {title}"),
}
# Severities and health bands as notices show them, translated where shown.
LABELS = (N_("critical"), N_("warning"), N_("info"), N_("red"), N_("yellow"), N_("green"))
# Control characters (C0, DEL, C1) and Unicode line/paragraph separators: a CR/LF in
# a header value starts a new header (or a forged log line).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
# Printable ASCII but ``%``: what an HTTP header value may carry as is.
_HEADER_SAFE = "".join(chr(code) for code in range(0x21, 0x7F) if chr(code) != "%")
# A URL's user, path and query, where webhook tokens live (Slack's /services/T/B/token).
_URL_SECRETS = re.compile(r"(https?://)(?:[^@/\s'\"]*@)?([^/\s'\"?#]+)[^\s'\")]*")
# A host name followed by a path, with no scheme before it (or one _URL_SECRETS left).
_HOST_PATH = re.compile(
    r"((?<![\w.-])[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})/(?!…)[^\s'\")>]+"
)


def headline(
    notice: Notice,
    alert: AlertEvent | None = None,
    lang: str = DEFAULT_LANGUAGE,
    kind: NoticeKind | None = None,
) -> str:
    """What a notice is headed, in the recipient's language ``lang`` (the alert's own
    title too, where alerts.po translates its rule's template); ``kind``: the alert's
    own notice's, in a group."""
    a = alert or notice.first
    if notice.kind == NoticeKind.digest:
        n = len(notice.alerts)
        one = "{n} open alert: your daily digest"
        return translate(lang, one if n == 1 else "{n} open alerts: your daily digest", n=n)
    prefix = _PREFIX.get(kind or notice.kind)
    title = alert_text(lang, a.title)
    return translate(lang, prefix, title=title) if prefix else title


def health(alert: AlertEvent, lang: str) -> str:
    """The alert's health as "42 (red)", in ``lang``; "n/a" without a score."""
    if alert.score is None:
        return translate(lang, "n/a")
    if not alert.band:
        return str(alert.score)
    return translate(lang, "{score} ({band})", score=alert.score, band=translate(lang, alert.band))


# Notices that tell an alert again, or its end: they carry the account's health now, while
# the summary is the one written when it fired. A resolve said "Health score 22 (red)" in
# its text and "Health: 4 (red)" in its table (found from outside): each is labelled.
TOLD_AGAIN = (NoticeKind.repeat, NoticeKind.escalate, NoticeKind.resolve)


def told_again(alert: AlertEvent, kind: NoticeKind) -> bool:
    return kind in TOLD_AGAIN or alert.status == "resolved"


def summary_of(alert: AlertEvent, kind: NoticeKind, lang: str = DEFAULT_LANGUAGE) -> str:
    """The alert's summary in ``lang``; told again, said to be from when it fired."""
    said = alert_text(lang, alert.summary)
    if said and told_again(alert, kind):
        return translate(lang, "When it fired: {summary}", summary=said)
    return said


def health_label(alert: AlertEvent, kind: NoticeKind, lang: str = DEFAULT_LANGUAGE) -> str:
    """ "Health", or "Health now" where the summary is from when it fired."""
    return translate(lang, "Health now" if told_again(alert, kind) else "Health")


def changes(alert: AlertEvent, lang: str = DEFAULT_LANGUAGE) -> list[str]:
    """The sentences of what moved over the week before the alert ("active users over 7
    days fell from 42 to 9, −79%"), in ``lang`` (stored in English)."""
    return [
        alert_text(lang, str(change["text"]))
        for change in alert.details.get("changes", [])
        if "text" in change
    ]


def next_step(alert: AlertEvent, lang: str = DEFAULT_LANGUAGE) -> str:
    """What to do next, from the alert's rule (``details.next_step``) in ``lang``; ""
    for an alert without one (a rule a team wrote without it, a resolved alert)."""
    step = alert.details.get("next_step")
    return alert_text(lang, step) if isinstance(step, str) and step else ""


# A grouped notice's order: what is firing before what ended, the worst first (a
# group shows its first MAX_GROUPED and counts the rest: a critical alert had been
# counted in "…and 24 more" below a page of info alerts, found from outside).
_URGENCY = {"critical": 0, "warning": 1, "info": 2}


def most_urgent_first(notice: Notice) -> list[tuple[AlertEvent, NoticeKind]]:
    """A notice's alerts with their kinds, firing before resolved and the worst first;
    otherwise in the notice's order (an account's own alerts keep theirs)."""
    return sorted(
        notice.each(),
        key=lambda pair: (
            pair[0].status == "resolved",
            _URGENCY.get(pair[0].severity.value, len(_URGENCY)),
        ),
    )


def alerts_url(public_url: str) -> str:
    """The dashboard's list of open alerts (``/ui/alerts``)."""
    return f"{public_url.rstrip('/')}/ui/alerts"


def alert_url(public_url: str, alert_id: str) -> str:
    """The dashboard's page of the alert, with its buttons (``/ui/alerts/{id}``): email
    has no buttons of its own."""
    return _page_url(public_url, "alerts", alert_id)


def account_url(public_url: str, account_id: str) -> str:
    """The dashboard's page of the account (``/ui/accounts/{id}``)."""
    return _page_url(public_url, "accounts", account_id)


def _page_url(public_url: str, kind: str, key: str) -> str:
    """A dashboard page's address, the id escaped so any character (``/``, ``?``, ``#``,
    spaces) stays inside the path segment."""
    quoted = urllib.parse.quote(key, safe="")
    if quoted in (".", ".."):  # a client would resolve these segments away
        quoted = quoted.replace(".", "%2E")
    return f"{public_url.rstrip('/')}/ui/{kind}/{quoted}"


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
    """``text`` with every URL cut to its scheme and host, and every host's path cut
    where a client quoted one without its scheme (aiohttp's invalid-URL errors): error
    messages of HTTP clients may quote the webhook URL, whose path is a credential."""
    return _HOST_PATH.sub(r"\1/…", _URL_SECRETS.sub(r"\1\2/…", text))


# A URL's password shorter than this is not cut from a destination's answer: it would cut
# its letters out of every word (and says little on its own).
MIN_SECRET_CHARS = 4
# An authorization header's scheme and credential, as an echo quotes it.
_CREDENTIALS = re.compile(r"\b(Basic|Bearer|Token)\s+[A-Za-z0-9+/=._~-]{6,}", re.IGNORECASE)

# A part of a webhook URL's path or query that may be its token: one holding a digit
# (Slack's T…/B…/token, "?token=abc123") or this long; words such as "services" or
# "hooks" stay readable.
SECRET_PART_CHARS = 12


def without_url_secrets(text: str, url: str) -> str:
    """``text`` (a destination's answer) with ``url``'s path and query, and every part of
    them that may be a token, cut out: a gateway or proxy may echo the request path,
    and that path is the credential."""
    parts = urllib.parse.urlsplit(url)
    # Credentials in the URL go out as Basic authorization, which a receiver may echo;
    # and any other credential a header carried.
    text = _CREDENTIALS.sub(r"\1 …", text)
    for password in {parts.password or "", urllib.parse.unquote(parts.password or "")}:
        # A password of a letter or two would cut that letter out of every word.
        if len(password) >= MIN_SECRET_CHARS:
            text = text.replace(password, "…")
    for whole in (parts.path, parts.query):
        if len(whole) > 1:
            text = text.replace(whole, "…")
    for part in re.split(r"[/?&=]", parts.path + "?" + parts.query):
        if len(part) >= SECRET_PART_CHARS or (len(part) >= 4 and any(c.isdigit() for c in part)):
            text = text.replace(part, "…")
    # Every query value: a key there is a credential whatever it looks like ("?key=qsecret"
    # was echoed into the log and the deliveries API, found from outside). Not the names.
    for _, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        for form in {value, urllib.parse.quote(value, safe="")}:
            if len(form) >= MIN_SECRET_CHARS:
                text = text.replace(form, "…")
    return text


def encodable(value: str) -> str:
    """``value`` with lone surrogates (which UTF-8 cannot encode) as ``?``."""
    return value.encode("utf-8", "replace").decode("utf-8")
