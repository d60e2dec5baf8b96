"""What a report tells the customer in words: the summary, the adoption goals and how
they came out, recommendations and the renewal, all from the account's real measures
and danger causes.

Customer-facing: the texts name what the customer sees and can do, never our labels
(tiers, bands, danger levels, measure ids). Every text is English here and Chinese in
``shared/i18n/locale/zh_CN/reports.po``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from services.reports.data import Report
from services.reports.fmt import Fmt

# Adoption goals tracked for every customer (RP-04 "position", ACT-xx). Targets from the
# handbook: 80% of purchased seats activated (ACT-16's go-live example, 400 of 500), half
# of the seats active in a week ("stably active", RP-01), use on 3 days a week (ACT-14),
# every core module in use (HL-03) and no issue open longer than 30 days (DG-06).
ACTIVATION_TARGET = 0.8
WEEKLY_ACTIVE_TARGET = 0.5
ACTIVE_DAYS_TARGET = 3
CORE_MODULES_TARGET = 1.0
OLDEST_TICKET_TARGET_DAYS = 30
# RP-13: executives give 15–30 minutes; the strongest few recommendations.
MAX_RECOMMENDATIONS = 5
# CAD-10: contact monthly in the quarter before the renewal.
RENEWAL_SOON_DAYS = 90
LOW_NPS = 6
QUIET_DAYS = 45


@dataclass(frozen=True)
class Goal:
    name: str
    target: str
    actual: str
    met: bool | None  # None: not measurable yet


@dataclass(frozen=True)
class Renewal:
    date: str
    status: str


def _inputs(r: Report) -> dict[str, Any]:
    return dict(r.current.get("inputs") or {})


def _at_least(value: float | None, target: float) -> bool | None:
    return None if value is None else value >= target


def goals(r: Report, f: Fmt) -> list[Goal]:
    """The adoption goals with their targets and where the account stands."""
    i = _inputs(r)
    seats, activated = r.figures.seats, r.figures.activated
    activation = activated / seats if seats else None
    oldest = i.get("oldest_open_ticket_days")
    return [
        Goal(
            f.t("Purchased seats activated"),
            f.t("at least {share}", share=f.pct(ACTIVATION_TARGET)),
            f.t(
                "{n} of {seats} ({share})",
                n=f.num(activated),
                seats=f.num(seats),
                share=f.pct(activation),
            )
            if seats
            else f.t("no seat count on record"),
            _at_least(activation, ACTIVATION_TARGET),
        ),
        Goal(
            f.t("Seats in use each week"),
            f.t("at least {share}", share=f.pct(WEEKLY_ACTIVE_TARGET)),
            f.pct(i.get("active_user_share_7d")),
            _at_least(i.get("active_user_share_7d"), WEEKLY_ACTIVE_TARGET),
        ),
        Goal(
            f.t("Days with use in the last week"),
            f.t("at least {n}", n=f.num(ACTIVE_DAYS_TARGET)),
            f.num(i.get("active_days_7d")),
            _at_least(i.get("active_days_7d"), ACTIVE_DAYS_TARGET),
        ),
        Goal(
            f.t("Core modules in use"),
            f.t("all of them"),
            f.pct(i.get("core_module_use_28d")),
            _at_least(i.get("core_module_use_28d"), CORE_MODULES_TARGET),
        ),
        Goal(
            f.t("Oldest open issue"),
            f.t("at most {n} days", n=f.num(OLDEST_TICKET_TARGET_DAYS)),
            f.t("{n} day" if oldest == 1 else "{n} days", n=f.num(oldest))
            if r.open_tickets
            else f.t("none open"),
            None if oldest is None else oldest <= OLDEST_TICKET_TARGET_DAYS,
        ),
    ]


def _from_causes(r: Report, f: Fmt) -> list[str]:
    """Recommendations for the danger causes the model found, in the customer's terms."""
    say = {
        "wrong_fit": "Let us review together how your setup matches the way your business "
        "works, and adjust it where it does not.",
        "decision_maker_change": "We would like to meet your new leadership, introduce our "
        "team and agree on this year's goals with them.",
        "champion_change": "Please introduce us to your new project lead, so that they have "
        "everything they need from day one.",
        "unclear_value": "Your team uses the product often but mostly to keep records: a "
        "workshop on workflows and approvals turns that use into saved time.",
        "slow_go_live": "Go-live is not complete yet: let us agree on a go-live date and the "
        "steps to reach it.",
        "unmet_requests": "Some of your feature requests are still open: we will give you a "
        "status and a date for each.",
    }
    return [f.t(say[code]) for code in r.current.get("danger_causes", []) if code in say]


def _from_measures(r: Report, f: Fmt) -> list[str]:
    """Recommendations for measures below the goals (the causes above excepted)."""
    i, out = _inputs(r), []
    seats, activated = r.figures.seats, r.figures.activated
    if seats and activated / seats < ACTIVATION_TARGET:
        out.append(
            f.t(
                "{n} of your {seats} purchased seats have never been used: invite those "
                "colleagues, and we will run an onboarding session for them.",
                n=f.num(seats - activated),
                seats=f.num(seats),
            )
        )
    share = i.get("active_user_share_7d")
    if share is not None and share < WEEKLY_ACTIVE_TARGET:
        out.append(
            f.t(
                "{share} of your seats were in use last week: a short refresher for the "
                "teams that use it least would bring daily work into the product.",
                share=f.pct(share),
            )
        )
    core = i.get("core_module_use_28d")
    if core is not None and core < CORE_MODULES_TARGET:
        out.append(
            f.t(
                "Your team does not yet use every core module: we suggest a session on the "
                "modules you do not use yet and what they would take off your hands."
            )
        )
    oldest = i.get("oldest_open_ticket_days")
    if oldest is not None and oldest > OLDEST_TICKET_TARGET_DAYS:
        out.append(
            f.t(
                "One of your issues has been open {n} days: we will review it with you and "
                "agree on a resolution date.",
                n=f.num(oldest),
            )
        )
    return out + _relationship(i, f)


def _relationship(i: dict[str, Any], f: Fmt) -> list[str]:
    out = []
    nps = i.get("nps_latest")
    if nps is not None and nps <= LOW_NPS:
        out.append(
            f.t(
                "Your latest rating of the product was {n} out of 10: we would like to hear "
                "what would make it better.",
                n=f.num(nps),
            )
        )
    if i.get("payment_failed_30d") == 1:
        out.append(f.t("A recent payment did not go through: please check the billing details."))
    quiet = i.get("days_since_touchpoint")
    if quiet is not None and quiet > QUIET_DAYS:
        out.append(f.t("Let us set up a regular review meeting, every month or quarter."))
    return out


def recommendations(r: Report, f: Fmt) -> list[str]:
    """What to do next, most important first; a next step even when all is well."""
    out = list(dict.fromkeys(_from_causes(r, f) + _from_measures(r, f)))
    renewal = _days_to_renewal(r)
    if renewal is not None and 0 <= renewal <= RENEWAL_SOON_DAYS:
        out.insert(
            0,
            f.t(
                "Your renewal is on {day}: let us meet before then to review the results "
                "and plan the next year.",
                day=f.day(_contract_end(r)),
            ),
        )
    if not out:
        out.append(
            f.t(
                "Your team makes full use of the product: let us look at which other teams "
                "or processes could benefit, and share your results with your leadership."
            )
        )
    return out[:MAX_RECOMMENDATIONS]


def parse_day(value: object) -> date | None:
    """A day the CRM sent (ISO text in the stored facts), None when absent."""
    try:
        return date.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def _contract_end(r: Report) -> date | None:
    return parse_day(r.facts.get("contract_end"))


def _days_to_renewal(r: Report) -> int | None:
    end = _contract_end(r)
    return None if end is None else (end - r.end).days


def renewal(r: Report, f: Fmt) -> Renewal:
    """The renewal date and where it stands, as of the report's last day."""
    end, days = _contract_end(r), _days_to_renewal(r)
    if end is None or days is None:
        return Renewal(f.day(None), f.t("No renewal date on record: your CSM will confirm it."))
    if r.facts.get("lifecycle_stage") == "churned" or days < 0:
        return Renewal(f.day(end), f.t("The contract ended on {day}.", day=f.day(end)))
    if days <= RENEWAL_SOON_DAYS:
        status = f.t("Due in {n} days: we will be in touch every month until then.", n=f.num(days))
    else:
        status = f.t("In {n} days; the contract is active.", n=f.num(days))
    return Renewal(f.day(end), status)


def summary(r: Report, f: Fmt, met: list[Goal]) -> list[str]:
    """The executive summary: a few sentences a customer's leader reads in a minute."""
    fig, avg = r.figures, r.tier_average
    out = [
        f.t(
            # Counts after a colon: no plural to choose ("1 people … on 1 days").
            "Active users in the period: {active}; days with use: {days}; hours of use in "
            "all: {hours}.",
            active=f.num(fig.active_users),
            days=f.num(fig.active_days),
            hours=f.num(fig.usage_hours, 1),
        )
    ]
    if avg is not None and avg.active_users:
        out.append(
            f.t(
                "That is {ratio} of the average of comparable customers.",
                ratio=f.pct(fig.active_users / avg.active_users),
            )
        )
    measured = [g for g in met if g.met is not None]
    out.append(
        f.t(
            "Adoption goals met: {met} of {n}.",
            met=f.num(sum(bool(g.met) for g in measured)),
            n=f.num(len(measured)),
        )
    )
    out.append(
        f.t(
            "Requests and issues: {opened} raised and {solved} resolved in the period, "
            "{open} open now.",
            opened=f.num(r.tickets_opened),
            solved=f.num(r.tickets_solved),
            open=f.num(len(r.open_tickets)),
        )
    )
    return out
