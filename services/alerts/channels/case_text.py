"""What a risk case or task notice says (``Notice.case``), on every channel: its
headline and lines, in the reader's language. Slack and email lay them out."""

from __future__ import annotations

from shared.contracts.notices import CaseNote, Notice, NoticeKind
from shared.i18n import DEFAULT_LANGUAGE, N_, translate
from shared.i18n.alert_text import alert_text

_HEADLINE = {
    NoticeKind.case_opened: N_("Risk case opened: {title}"),
    NoticeKind.review_due: N_("Case review due: {title}"),
    NoticeKind.review_overdue: N_("Case review overdue, not held: {title}"),
    NoticeKind.task_due: N_("Task due: {title}"),
    NoticeKind.task_overdue: N_("Task overdue, not done: {title}"),
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
    note = note_of(notice)
    # A case's summary is its alert's stored English title: shown as alerts are.
    title = alert_text(lang, note.title) if note.task_id is None else translate(lang, note.title)
    outcome = translate(lang, note.outcome or "")
    template = _HEADLINE.get(notice.kind, "{title}")
    return translate(lang, template, title=title, outcome=outcome)


def case_url(public_url: str, note: CaseNote) -> str:
    """The dashboard's page of the case, or the task list for a task of its own."""
    base = public_url.rstrip("/")
    return f"{base}/ui/cases/{note.case_id}" if note.case_id is not None else f"{base}/ui/tasks"


def case_lines(notice: Notice, lang: str = DEFAULT_LANGUAGE) -> list[tuple[str, str]]:
    """(label, value) pairs under the headline: the account and what matters of the
    case or task."""
    note = note_of(notice)
    lines = [(translate(lang, "Account"), note.account_name or note.account_id)]
    if note.danger_level:
        lines.append((translate(lang, "Danger"), translate(lang, note.danger_level)))
    if note.causes:
        lines.append((translate(lang, "Causes"), ", ".join(note.causes)))
    if note.due is not None and notice.kind != NoticeKind.case_closed:
        lines.append((translate(lang, "Due"), note.due.strftime("%Y-%m-%d %H:%M UTC")))
    if note.owner_email:
        lines.append((translate(lang, "Owner"), note.owner_email))
    if note.lesson:
        lines.append((translate(lang, "Lesson"), note.lesson))
    return lines
