"""The days a page's ``from``/``to`` ask for, and the words the page says when it shows
other days than those. The lead, NPS and retention pages had replaced a reversed,
unreadable or too long pair without a word (found from outside), so a reader took the
default's figures for the ones asked.

``read`` is pure: the page gives today and its limits, and says the note in its
reader's language (``AskedDays.said``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta, tzinfo

from shared.contracts.events import EARLIEST_DATE
from shared.i18n import N_, format_when, translate

# What the page says; the days it shows instead are in its heading. None says "the
# default days": on the lead page a preset (``days=30``) may stand in.
REVERSED = N_("“From” came after “to”: showing {start} to {end}.")
TOO_LONG = N_("At most {n} days at a time: showing {start} to {end}.")
UNREADABLE = N_("The days asked for could not be read (a day is written 2026-12-07).")
NO_FROM = N_("A range needs its first day (“from”) too.")
FUTURE = N_("“From” ({day}) is after today: nothing has happened since.")
# A reversed pair wholly after today: its days by their own names (its "from" named the
# pair's "to" after the turn: found from outside).
FUTURE_PERIOD = N_("The days asked for ({start} to {end}) are after today: nothing has happened.")
EMPTY = N_("A period from {start} to {end} holds no day (“to” is the first day after it).")
BEFORE_DATA = N_("There is no data before {day}.")
TOO_LATE = N_("A period ends by the end of this quarter at the latest: showing {start} to {end}.")


@dataclass(frozen=True)
class AskedDays:
    """``span``: the days to show, ``start`` to ``end`` (both in, or ``end`` out for a
    half-open page); None: nothing asked, or nothing usable (the page's default).
    ``note``: why the days shown are not those asked, if they are not."""

    span: tuple[date, date] | None = None
    note: str | None = None
    values: dict[str, int | str | date] = field(default_factory=dict)

    def said(self, language: str, zone: tzinfo) -> str | None:
        """The note in ``language``, its days as that reader writes them."""
        if self.note is None:
            return None
        values = {
            k: format_when(language, v, zone) if isinstance(v, date) else v
            for k, v in self.values.items()
        }
        return translate(language, self.note, **values)


def read(
    params: Mapping[str, str],
    today: date,
    *,
    most_days: int,
    until_today: bool = True,
    half_open: bool = False,
    latest: date | None = None,
) -> AskedDays:
    """``from``/``to`` as ISO days (``to`` left out: today). A reversed pair is turned
    round and a longer one cut to its last ``most_days`` days, saying so. Nothing usable
    (unreadable, no ``from``, ``from`` after today, an empty or pre-1970 period) gives
    the page's default (span None), saying why. ``until_today``: a ``to`` after today
    is today (a page of what happened); else ``latest``, if given, is the latest ``to``
    (a period still to come: the retention page's, to the current quarter's end; a
    ``to`` of 9999 showed ten years of the 100th century). ``half_open``: ``to`` is the
    first day out."""
    asked_from, asked_to = params.get("from") or "", params.get("to") or ""
    if not asked_from and not asked_to:
        return AskedDays()
    if not asked_from:
        return AskedDays(note=NO_FROM)
    try:
        start = date.fromisoformat(asked_from)
        end = date.fromisoformat(asked_to) if asked_to else today
    except ValueError:
        return AskedDays(note=UNREADABLE)
    note = None
    if start > end and asked_to:
        start, end, note = end, start, REVERSED
    if start > today:  # nothing has happened in it yet (a period to come is ours: 100%)
        if note == REVERSED:
            return AskedDays(note=FUTURE_PERIOD, values={"start": start, "end": end})
        return AskedDays(note=FUTURE, values={"day": start})
    if until_today:
        end = min(end, today)
    elif latest is not None and end > latest:
        end, note = latest, TOO_LATE
    if end < EARLIEST_DATE:
        return AskedDays(note=BEFORE_DATA, values={"day": EARLIEST_DATE})
    if half_open and start >= end:
        return AskedDays(note=EMPTY, values={"start": start, "end": end})
    longest = timedelta(days=most_days if half_open else most_days - 1)
    if end - start > longest:
        start, note = end - longest, TOO_LONG
    values: dict[str, int | str | date] = {"start": start, "end": end, "n": most_days}
    return AskedDays((start, end), note, values if note else {})
