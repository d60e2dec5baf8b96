"""Revenue and logo retention over a period, from each account's facts as they were at
the period's start and at its end (pure: no database).

The standard SaaS definitions (README, "Renewals and retention"; the handbook's
CH-01/CH-02, §2.5.4), over the accounts that existed at the start only — an account
signed during the period adds nothing, so the rates measure the base one had:

- churned: the account's lifecycle stage became ``churned``, or its ARR dropped to 0
  or unknown;
- contraction / expansion: a kept account's ARR went down / up;
- GRR = (start ARR − churned ARR − contraction) ÷ start ARR (at most 100%);
- NRR = (start ARR − churned ARR − contraction + expansion) ÷ start ARR (above 100%
  when expansion outweighs the losses: the handbook's 续费率, CH-02);
- logo retention = accounts kept ÷ accounts at the start (the handbook's 续约率).

Money is summed per currency, never across: the rates are per currency, and the
top-level GRR and NRR exist only when every amount is in one currency.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from services.scoring.retention.periods import Quarter
from shared.contracts.events import LifecycleStage, folded_email

# The currency key of accounts whose facts name none (the service's): the same key as
# the portfolio's money totals (queries.DEFAULT_CURRENCY).
DEFAULT_CURRENCY = "default"
# The group of an account whose tier, CSM or contract start is not known.
UNKNOWN = "unknown"


def arr_of(fields: Mapping[str, Any]) -> float | None:
    """The ARR of an account's facts: ``arr``, else 12 × ``mrr``, else None (unknown)."""
    if fields.get("arr") is not None:
        return float(fields["arr"])
    return float(fields["mrr"]) * 12 if fields.get("mrr") is not None else None


@dataclass(frozen=True)
class Standing:
    """An account's commercial standing at one instant, from its facts' fields."""

    arr: float | None
    currency: str
    stage: str | None
    tier: str | None
    owner_email: str | None
    contract_start: date | None

    @classmethod
    def of(cls, fields: Mapping[str, Any]) -> Standing:
        owner = fields.get("owner") or {}
        start = fields.get("contract_start")
        return cls(
            arr=arr_of(fields),
            currency=fields.get("currency") or DEFAULT_CURRENCY,
            stage=fields.get("lifecycle_stage"),
            tier=fields.get("tier"),
            # Folded: facts stored before emails were folded name the same CSM.
            owner_email=folded_email(owner.get("email")) if isinstance(owner, dict) else None,
            contract_start=date.fromisoformat(start) if start else None,
        )

    @property
    def customer(self) -> bool:
        """A customer at this instant: not churned (an unknown ARR stays a customer)."""
        return self.stage != LifecycleStage.churned


@dataclass
class Flow:
    """One currency's ARR moves over the period."""

    start_arr: float = 0.0
    churned_arr: float = 0.0
    contraction: float = 0.0
    expansion: float = 0.0

    def answer(self) -> dict[str, Any]:
        start = self.start_arr
        kept = start - self.churned_arr - self.contraction
        return {
            "start_arr": round(start, 2),
            "churned_arr": round(self.churned_arr, 2),
            "contraction": round(self.contraction, 2),
            "expansion": round(self.expansion, 2),
            "end_arr": round(kept + self.expansion, 2),
            "grr": round(kept / start, 4) if start else None,
            "nrr": round((kept + self.expansion) / start, 4) if start else None,
        }


@dataclass
class Retention:
    """The sums over one group of accounts (all of them, a tier, a CSM, a cohort)."""

    accounts_start: int = 0
    accounts_kept: int = 0
    # Accounts at the start whose ARR was known and above 0: the revenue measures' base.
    arr_accounts_known: int = 0
    flows: dict[str, Flow] = field(default_factory=dict)

    def add(self, before: Standing, after: Standing) -> None:
        self.accounts_start += 1
        churned = not after.customer or (bool(before.arr) and not after.arr)
        self.accounts_kept += not churned
        if not before.arr:
            return
        self.arr_accounts_known += 1
        flow = self.flows.setdefault(before.currency, Flow())
        flow.start_arr += before.arr
        if churned:
            flow.churned_arr += before.arr
        elif after.currency != before.currency:
            # Re-priced in another currency: the amounts cannot be compared, so the
            # account counts as kept at its old ARR (neither expansion nor contraction).
            return
        elif after.arr is not None and after.arr < before.arr:
            flow.contraction += before.arr - after.arr
        elif after.arr is not None:
            flow.expansion += after.arr - before.arr

    def answer(self) -> dict[str, Any]:
        # The service's currency first, then the others by code.
        order = sorted(self.flows, key=lambda c: (c != DEFAULT_CURRENCY, c))
        by_currency = {c: self.flows[c].answer() for c in order}
        only = next(iter(by_currency.values())) if len(by_currency) == 1 else {}
        return {
            "accounts_start": self.accounts_start,
            "accounts_kept": self.accounts_kept,
            "churned_accounts": self.accounts_start - self.accounts_kept,
            "logo_retention": (
                round(self.accounts_kept / self.accounts_start, 4) if self.accounts_start else None
            ),
            "arr_accounts_known": self.arr_accounts_known,
            "grr": only.get("grr"),
            "nrr": only.get("nrr"),
            "by_currency": by_currency,
        }


def _cohort(s: Standing) -> str:
    return str(Quarter.of(s.contract_start)) if s.contract_start else UNKNOWN


# What an account is grouped by in a breakdown, from its standing at the period's start
# (the tier it had, the CSM who held it, the quarter its contract started).
GROUPS: dict[str, Callable[[Standing], str]] = {
    "tier": lambda s: s.tier or UNKNOWN,
    "csm": lambda s: s.owner_email or UNKNOWN,
    "cohort": _cohort,
}


def retention(
    start: Mapping[str, Mapping[str, Any]],
    end: Mapping[str, Mapping[str, Any]],
    by: str | None = None,
) -> dict[str, Any]:
    """The retention from the facts' fields at the start (account → fields) to those at
    the end, overall and, with ``by`` (a key of ``GROUPS``), per group. An account
    missing at the end kept its facts unchanged."""
    total, groups = Retention(), dict[str, Retention]()
    for before, after in _pairs(start, end):
        total.add(before, after)
        if by is not None:
            groups.setdefault(GROUPS[by](before), Retention()).add(before, after)
    answer = total.answer()
    if by is not None:
        answer["groups"] = [{by: name, **groups[name].answer()} for name in sorted(groups)]
    return answer


def _pairs(
    start: Mapping[str, Mapping[str, Any]], end: Mapping[str, Mapping[str, Any]]
) -> Iterable[tuple[Standing, Standing]]:
    for account_id, fields in start.items():
        before = Standing.of(fields)
        if before.customer:
            yield before, Standing.of(end.get(account_id, fields))
