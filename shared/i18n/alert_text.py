"""An alert's title and summary in the reader's language, at the time they are shown.

Scoring renders a rule's title and summary from the alerting file's English templates
and stores that text on the alert (the API, the log and every stored alert keep it as
it was). To show one in Chinese, the text is matched against the templates that
alerts.po translates: each ``{field}`` of a template captures what was filled in, the
translated template is filled with the same captures (each translated in turn when it
is a text of its own: a band, the change since last week, the danger's causes). A text
no template matches, such as a rule a team wrote and did not translate, stays as it is.
"""

from __future__ import annotations

import re
import string
from datetime import UTC, date
from functools import cache

from babel.messages.pofile import read_po

from shared.i18n import (
    DEFAULT_LANGUAGE,
    LOCALE_DIR,
    N_,
    babel_locale,
    format_when,
    translate,
)

# The default alerting file's rules by name, for lists, filters and charts: their ids
# (low_activity, tier_review) read as code on a Chinese page. A rule a team adds is shown
# by its id until it is named here.
RULE_LABELS = {
    "low_activity": N_("Low activity"),
    "active_users_falling": N_("Active users falling"),
    "active_users_rising": N_("Active users rising"),
    "usage_silence": N_("No use lately"),
    "health_not_green": N_("Health not green"),
    "health_red": N_("Health red"),
    "danger_high": N_("High danger"),
    "danger_normal": N_("Normal danger"),
    "touchpoint_overdue": N_("Touchpoint overdue"),
    "decision_maker_unreachable": N_("Decision maker out of reach"),
    "ticket_silence": N_("Tickets gone quiet"),
    "not_activated_90d": N_("Seats not activated after 90 days"),
    "not_live_90d": N_("Not live after 90 days"),
    "few_active_days": N_("Few active days"),
    "renewal_approaching": N_("Renewal approaching"),
    "seats_nearly_used": N_("Seats nearly used"),
    "quota_nearly_used": N_("Quota nearly used"),
    "tier_review": N_("Tier review"),
    "seats_growing": N_("Seats growing"),
    "decision_maker_changed": N_("Decision maker changed"),
    "champion_changed": N_("Champion changed"),
    "nps_detractor": N_("NPS detractor"),
    "payment_failed": N_("Payment failed"),
    "ticket_backlog": N_("Ticket backlog"),
    "ticket_unresolved_long": N_("Ticket open too long"),
    "sla_breach": N_("First replies late (SLA)"),
    # Not in the alerting file: success plans' milestones (services/scoring/plans/hook.py).
    "plan_milestone": N_("Success plan milestone"),
}


# The measures a success plan's milestone most often follows, by the words the pages use
# for them ("activation_rate is 0.12" read as code): a milestone's alert names its measure
# so (an alert stored before named it by id, which ``_field`` still words). The
# dashboard's plan form offers these; any measure may be typed.
MEASURE_LABELS = {
    "activation_rate": N_("Users activated so far ÷ seats purchased"),
    "active_days_7d": N_("Days with activity in the last 7"),
    "active_user_share_30d": N_("Active users over 30 days ÷ seats purchased (activation, ACT-04)"),
    "go_live": N_("Gone live"),
    "module_breadth_28d": N_("Distinct modules used over 28 days"),
    "usage_events_28d": N_("Events over 28 days"),
}
# Fields of alert texts that hold a day, written ISO in the stored English (a plan's due
# and achieved days, the day a rule's measures are as of).
DAY_FIELDS = frozenset({"due", "day", "as_of"})


def rule_name(language: str, rule: str) -> str:
    """A rule's name in ``language`` (its id for a rule not named in RULE_LABELS)."""
    label = RULE_LABELS.get(rule)
    return translate(language, label) if label else rule


# The catalogs whose templates are alert texts: the rules' and the success plans'.
CATALOGS = ("alerts.po", "plans.po")
# A template field in a translation: {name}, {share:.0%}, {x!r}.
FIELD = re.compile(r"\{(\w+)(?:![rsa])?(?::[^{}]*)?\}")
# Fields that hold a list ("a; b"): any other field's capture holds no ";", so a list's
# first item is never taken for a whole title.
LIST_FIELDS = frozenset({"title", "also", "change_text", "danger_text"})
# Captures deeper than this stay as they are (a title inside "Resolved: …" inside …).
DEPTH = 3


# The catalog of the measures' words (services/scoring/model/labels.py and the model's).
MEASURES_CATALOG = "measures.po"


@cache
def _measure_words(language: str) -> dict[str, str]:
    """The measures' labels and their words in ``language``."""
    path = LOCALE_DIR / babel_locale(language) / MEASURES_CATALOG
    if not path.exists():
        return {}
    with path.open("rb") as handle:
        return {
            str(m.id): str(m.string)
            for m in read_po(handle, locale=babel_locale(language))
            if m.id and isinstance(m.id, str) and m.string
        }


@cache
def _templates(
    language: str, loose_name: bool = False
) -> list[tuple[re.Pattern[str], list[str], str]]:
    """(pattern, its fields, the translation) per template of CATALOGS; a title's
    "{name}: " prefix is optional (a family's "Also: …" lists titles without it).
    Templates that begin with fixed text first ("Resolved: {title}" is no title of an
    account named "Resolved"), then the most fixed text first ("health {score} is red"
    before "health {score} is {band}")."""
    messages: list[tuple[str, str]] = []
    for catalog in CATALOGS:
        path = LOCALE_DIR / babel_locale(language) / catalog
        if not path.exists():
            continue
        with path.open("rb") as handle:
            messages += [
                (str(m.id), str(m.string))
                for m in read_po(handle, locale=babel_locale(language))
                if m.id and isinstance(m.id, str) and m.string and "{" in m.id
            ]
    if loose_name:  # only the templates naming the account, its name holding anything
        messages = [(msgid, msgstr) for msgid, msgstr in messages if "{name}" in msgid]
    found = []
    for msgid, msgstr in messages:
        found.append((*_pattern(msgid, loose_name), msgstr))
        if msgid.startswith("{name}: ") and not loose_name:
            short = msgstr.removeprefix("{name}：").removeprefix("{name}: ")
            found.append((*_pattern(msgid.removeprefix("{name}: ")), short))
    found.sort(key=lambda t: (t[0].pattern.startswith("("), -len(FIELD.sub("", t[0].pattern))))
    return found


def _pattern(template: str, loose_name: bool = False) -> tuple[re.Pattern[str], list[str]]:
    parts, fields = [], []
    for literal, field, _spec, _conversion in string.Formatter().parse(template):
        parts.append(re.escape(literal))
        if field is not None:
            loose = field in LIST_FIELDS or (loose_name and field == "name")
            parts.append("(.*?)" if loose else "([^;\n]*?)")
            fields.append(field)
    return re.compile("".join(parts), re.DOTALL), fields


def alert_text(language: str, text: str | None) -> str:
    """``text`` (an alert's title or summary, lines apart) in ``language``."""
    if not text or language == DEFAULT_LANGUAGE:
        return text or ""
    return "\n".join(_translated(language, line, 0, whole=True) for line in text.split("\n"))


def _translated(language: str, text: str, depth: int, *, whole: bool = False) -> str:
    """``text`` translated; ``whole``: one line or one title, never a list's part."""
    if depth > DEPTH or not text.strip():
        return text
    # A whole line or title may name an account whose name holds ";" ("Alpha; Beta
    # Ltd"): tried after the strict templates, never on a list, whose parts it would join.
    tries = [_templates(language)] + ([_templates(language, True)] if whole else [])
    for templates in tries:
        for pattern, fields, msgstr in templates:
            found = pattern.fullmatch(text)
            if found is None:
                continue
            values = dict(zip(fields, found.groups(), strict=True))
            filled = {
                field: _field(language, field, value, depth) for field, value in values.items()
            }
            return _fill(msgstr, filled)
    whole_text = translate(language, text)
    if whole_text != text:  # a message of its own, though it holds "; " (a summary)
        return whole_text
    label, colon, named = text.partition(": ")
    if colon and "; " not in text and (words := _measure_words(language).get(label)):
        # A per-name measure's words ("uses over 7 days: export"): the label in
        # ``language``, the product's event name as it is. Only a measure's label: a
        # title of the form "X: …" whose X has a translation elsewhere is no measure.
        return f"{words}：{named}"
    if "; " in text:  # the parts of a list: causes, changes, a family's other symptoms
        return "；".join(_translated(language, part, depth + 1) for part in text.split("; "))
    return text


def _field(language: str, field: str, value: str, depth: int) -> str:
    """One captured field in ``language``: an account's name as it is, a day as the
    reader writes it, a measure by its words, any other text translated in turn."""
    if field == "name":
        return value
    if field in DAY_FIELDS:
        try:
            return format_when(language, date.fromisoformat(value), UTC)
        except ValueError:
            return value
    if field == "measure" and value in MEASURE_LABELS:
        return translate(language, MEASURE_LABELS[value])
    return _translated(language, value, depth + 1, whole=field == "title")


def _fill(translation: str, values: dict[str, str]) -> str:
    """The translation's fields replaced by the texts captured for them (already
    formatted: a field's format spec is not applied again)."""
    return FIELD.sub(lambda m: values.get(m.group(1), m.group(0)), translation)
