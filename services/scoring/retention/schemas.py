"""What the renewals and retention API answers (its ``response_model``s)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from services.scoring.schemas import Answer, Number


class Renewals(Answer):
    quarter: str = Field(description="YYYYQn")
    from_: str = Field(alias="from", description="The quarter's first day")
    to: str = Field(description="The day after the quarter (the period is [from, to))")
    total: int = Field(description="Renewals in the quarter (before limit/offset)")
    totals: dict[str, Any] = Field(
        description="Per forecast class (commit, likely, at_risk): accounts, "
        "arr_accounts_known and arr_by_currency (never added across currencies)"
    )
    accounts: list[dict[str, Any]] = Field(
        description="Per account: ARR and currency, health, danger, open alerts, latest "
        "NPS, forecast and the reasons for it"
    )


class RetentionAnswer(Answer):
    from_: str = Field(alias="from")
    to: str = Field(description="The period is [from, to)")
    accounts_start: int = Field(description="Customers at the start (not churned)")
    accounts_kept: int
    churned_accounts: int
    logo_retention: Number | None = Field(description="accounts_kept ÷ accounts_start")
    arr_accounts_known: int = Field(description="Customers at the start with an ARR above 0")
    grr: Number | None = Field(description="Gross revenue retention, when one currency only")
    nrr: Number | None = Field(description="Net revenue retention, when one currency only")
    by_currency: dict[str, dict[str, Any]] = Field(
        description="Per currency: start_arr, churned_arr, contraction, expansion, "
        "end_arr, grr, nrr"
    )
    groups: list[dict[str, Any]] | None = Field(
        None, description="With ?by=: the same measures per tier, CSM or cohort"
    )
