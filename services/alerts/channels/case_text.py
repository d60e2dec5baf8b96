"""What a notice about people's work says (``Notice.about_work``: a risk case, a task,
or accounts handed over to a CSM), on every channel: its headline, lines and link, in
the reader's language. Slack and email lay them out."""

from __future__ import annotations

from datetime import UTC, tzinfo

from babel.lists import format_list

from services.alerts.channels.text import account_url
from shared.contracts.notices import CaseNote, HandoverNote, Notice, NoticeKind
from shared.i18n import DEFAULT_LANGUAGE, N_, babel_locale, format_when, translate
from shared.i18n.alert_text import alert_text

_HEADLINE = {
    NoticeKind.case_opened: N_("Risk case opened: {title}"),
    NoticeKind.review_due: N_("Case review due: {title}"),
    NoticeKind.review_overdue: N_("Case review overdue, not held: {title}"),
    # A task's names its account: two CSMs' inboxes held identical "Task due: Escalate
    # the open tickets" emails (found from outside).
    NoticeKind.task_due: N_("Task due: {title} ({account})"),
    NoticeKind.task_overdue: N_("Task overdue, not done: {title} ({account})"),
    NoticeKind.case_closed: N_("Case closed ({outcome}): {title}"),
}
# The words stored as codes, as notices show them (the dashboard's catalog has them too).
LABELS = (
    N_("high"),
    N_("normal"),
    N_("mild"),
    N_("saved"),
    N_("churned"),
    N_("downgraded"),
)


def note_of(notice: Notice) -> CaseNote:
    assert notice.case is not None
    return notice.case


def case_headline(notice: Notice, lang: str = DEFAULT_LANGUAGE) -> str:
    if notice.handover is not None:
        return _handover_headline(notice.handover, lang)
    note = note_of(notice)
    # A case's summary is its alert's stored English title: shown as alerts are.
    title = alert_text(lang, note.title) if note.task_id is None else translate(lang, note.title)
    outcome = translate(lang, note.outcome or "")
    template = _HEADLINE.get(notice.kind, "{title}")
    account = note.account_name or note.account_id
    return translate(lang, template, title=title, outcome=outcome, account=account)


def labelled(label: str, value: str, lang: str = DEFAULT_LANGUAGE) -> str:
    """ "Label: value" as a line of text, with the colon of ``lang`` ("：" in Chinese)."""
    return translate(lang, "{label}: {value}", label=label, value=value)


def case_url(public_url: str, notice: Notice) -> str:
    """The dashboard's page of the case, or the task list for a task of its own; for a
    handover, the one account's page, or the portfolio (the new owner's list)."""
    base = public_url.rstrip("/")
    if (handed := notice.handover) is not None:
        if handed.total == 1:
            return account_url(public_url, handed.accounts[0].account_id)
        return f"{base}/ui/"
    note = note_of(notice)
    return f"{base}/ui/cases/{note.case_id}" if note.case_id is not None else f"{base}/ui/tasks"


def case_button(notice: Notice, lang: str = DEFAULT_LANGUAGE) -> str:
    """The words of the link to ``case_url``."""
    if (handed := notice.handover) is not None:
        return translate(lang, "Open the account" if handed.total == 1 else "Open my accounts")
    return translate(lang, "Open the case")


def unlisted(notice: Notice, shown: int, lang: str = DEFAULT_LANGUAGE) -> str | None:
    """ "…and 12 more accounts" for a handover's accounts beyond the ``shown`` first; None if
    every one is shown."""
    handed = notice.handover
    if handed is None or handed.total <= shown:
        return None
    return translate(lang, "…and {n} more accounts", n=handed.total - shown)


def case_lines(
    notice: Notice, lang: str = DEFAULT_LANGUAGE, zone: tzinfo = UTC
) -> list[tuple[str, str]]:
    """(label, value) pairs under the headline: the account and what matters of the
    case or task; a time on the clock of ``zone`` (the team's), as the reader writes it."""
    if notice.handover is not None:
        return _handover_lines(notice.handover, lang)
    note = note_of(notice)
    lines = [(translate(lang, "Account"), note.account_name or note.account_id)]
    if note.danger_level:
        lines.append((translate(lang, "Danger"), translate(lang, note.danger_level)))
    if note.causes:
        # Codes in a notice stored before the labels were kept: shown as they are.
        words = [translate(lang, label) for label in note.cause_labels or note.causes]
        lines.append((translate(lang, "Causes"), format_list(words, locale=babel_locale(lang))))
    if note.due is not None and notice.kind != NoticeKind.case_closed:
        lines.append((translate(lang, "Due"), format_when(lang, note.due, zone)))
    if note.owner_email:
        lines.append((translate(lang, "Owner"), note.owner_email))
    if note.lesson:
        lines.append((translate(lang, "Lesson"), note.lesson))
    return lines


def _handover_headline(handed: HandoverNote, lang: str) -> str:
    if handed.total == 1:
        first = handed.accounts[0]
        name = first.account_name or first.account_id
        return translate(lang, "Account assigned to you: {account}", account=name)
    return translate(lang, "{n} accounts assigned to you", n=handed.total)


def _handover_lines(handed: HandoverNote, lang: str) -> list[tuple[str, str]]:
    """(account, how it stands) for each account listed: its health, open alerts, open
    case and whom it came from, what a CSM taking it over asks first."""
    lines = []
    for account in handed.accounts:
        parts = []
        if account.score is not None:
            band = translate(lang, account.band or "")
            parts.append(
                translate(lang, "health {score} ({band})", score=account.score, band=band)
                if account.band
                else translate(lang, "health {score}", score=account.score)
            )
        if account.open_alerts:
            parts.append(translate(lang, "open alerts: {n}", n=account.open_alerts))
        if account.case_danger:
            danger = translate(lang, account.case_danger)
            parts.append(translate(lang, "risk case ({danger})", danger=danger))
        if account.previous_owner:
            parts.append(translate(lang, "from {owner}", owner=account.previous_owner))
        value = " · ".join(parts) or translate(lang, "not scored yet")
        lines.append((account.account_name or account.account_id, value))
    return lines
