"""When the next touchpoint of an account is due, by its tier's cadence.

The handbook's cadences (section 3): a strategic account is called or visited weekly in
its first month after go-live, then visited monthly with a business review every
quarter (CAD-03); an enterprise account is called or visited about every two months
(CAD-08); a non-focus account gets no visits, only the monthly mass mailing (CAD-12), so
nothing is ever due for it. The intervals are settings (``cadence_*``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo

from shared.config import Settings
from shared.contracts.events import Tier, TouchpointKind

# CAD-03's "first month after go-live", in days.
FIRST_MONTH_DAYS = 30
# What counts for each cadence: a visit is face to face (CAD-02 prefers it for strategic
# accounts; a meeting or a QBR is one too); "phone or visit" (CAD-03's first month,
# CAD-08) also takes a call. An email is no touchpoint for a cadence (CAD-17).
FACE_TO_FACE = frozenset({TouchpointKind.visit, TouchpointKind.meeting, TouchpointKind.qbr})
PHONE_OR_VISIT = FACE_TO_FACE | {TouchpointKind.call}
QBR = frozenset({TouchpointKind.qbr})


@dataclass(frozen=True)
class Cadence:
    name: str  # weekly / visit / qbr / contact
    every_days: int
    kinds: frozenset[str]  # the touchpoint kinds that count for it


@dataclass(frozen=True)
class Due:
    """One cadence of one account: the last touchpoint that counted and the next due day."""

    cadence: str
    every_days: int
    last_at: datetime | None
    due_on: date


@dataclass(frozen=True)
class Cadences:
    first_month: Cadence
    strategic: tuple[Cadence, ...]
    enterprise: tuple[Cadence, ...]

    @classmethod
    def from_settings(cls, s: Settings) -> Cadences:
        return cls(
            first_month=Cadence("weekly", s.cadence_strategic_first_month_days, PHONE_OR_VISIT),
            strategic=(
                Cadence("visit", s.cadence_strategic_visit_days, FACE_TO_FACE),
                Cadence("qbr", s.cadence_strategic_qbr_days, QBR),
            ),
            enterprise=(Cadence("contact", s.cadence_enterprise_days, PHONE_OR_VISIT),),
        )

    def of(self, tier: str | None, go_live: date | None, today: date) -> tuple[Cadence, ...]:
        """The cadences an account of ``tier`` follows on ``today`` (none: nothing due)."""
        if tier == Tier.strategic:
            first_month = go_live is not None and 0 <= (today - go_live).days < FIRST_MONTH_DAYS
            return (self.first_month,) if first_month else self.strategic
        if tier == Tier.enterprise:
            return self.enterprise
        return ()


def due_dates(
    cadences: tuple[Cadence, ...],
    last_by_kind: Mapping[str, datetime],
    start: date | None,
    today: date,
    zone: tzinfo,
) -> list[Due]:
    """Each cadence's next due day: ``every_days`` after the last touchpoint of a kind it
    counts (on the calendar of ``zone``); never touched, ``every_days`` after ``start``
    (the go-live, else the contract's start), else today."""
    out = []
    for c in cadences:
        last = max((at for kind, at in last_by_kind.items() if kind in c.kinds), default=None)
        if last is not None:
            due_on = last.astimezone(zone).date() + timedelta(days=c.every_days)
        else:
            due_on = start + timedelta(days=c.every_days) if start else today
        out.append(Due(c.name, c.every_days, last, due_on))
    return out


def next_due(dues: list[Due]) -> Due | None:
    """The cadence due first (None: nothing is ever due)."""
    return min(dues, key=lambda d: d.due_on, default=None)
