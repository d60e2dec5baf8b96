"""The dashboard's renewal and retention files in the viewer's language.

The retention rates are percentages, as the page shows them, in every language (a
spreadsheet reads "95.2%" as 0.952): the English file had 0.952 where the Chinese had
95.2%. The API's file (``GET /v1/retention?format=csv``) keeps the fractions.

A lead opens the pipeline's CSV in a spreadsheet: in Chinese its headers and coded values
(tier, stage, health, danger, forecast, reasons) are the page's words, not ``at_risk``
and ``danger_level``. In English the file stays the API's (``GET /v1/renewals?format=
csv``), whose codes are English already and which programs read. The portfolio's data
export keeps the codes in every language: it feeds other tools, not people.

Pure: rows in, the header and rows out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from shared.i18n import DEFAULT_LANGUAGE, N_, format_pct, format_quarter, translate

RENEWAL_HEADERS = {
    "account_id": N_("Account id"),
    "name": N_("Account"),
    "tier": N_("Tier"),
    "owner_email": N_("CSM"),
    "lifecycle_stage": N_("Lifecycle stage"),
    "contract_end": N_("Contract end"),
    "days_to_renewal": N_("Days to renewal"),
    "arr": N_("ARR"),
    "currency": N_("Currency"),
    "score": N_("Score"),
    "band": N_("Health"),
    "danger_level": N_("Danger"),
    "open_alerts": N_("Open alerts"),
    "nps_latest": N_("NPS"),
    "forecast": N_("Forecast"),
    "reasons": N_("Reasons"),
}
RETENTION_HEADERS = {
    "currency": N_("Currency"),
    "accounts_start": N_("Customers at the start"),
    "accounts_kept": N_("Customers kept"),
    "churned_accounts": N_("Customers churned"),
    "logo_retention": N_("Logo retention"),
    "start_arr": N_("ARR at the start"),
    "churned_arr": N_("Churned ARR"),
    "contraction": N_("Contraction"),
    "expansion": N_("Expansion"),
    "end_arr": N_("ARR at the end"),
    "grr": N_("GRR"),
    "nrr": N_("NRR"),
}
PORTFOLIO_HEADERS = {
    "account_id": N_("Account id"),
    "name": N_("Account"),
    "tier": N_("Tier"),
    "lifecycle_stage": N_("Lifecycle stage"),
    "owner_email": N_("CSM"),
    "score": N_("Score"),
    "change": N_("Change 7d"),
    "band": N_("Health"),
    "danger_level": N_("Danger"),
    "arr": N_("ARR"),
    "currency": N_("Currency"),
    "contract_end": N_("Contract end"),
    "days_to_renewal": N_("Days to renewal"),
    "seats_purchased": N_("Seats purchased"),
    "active_users_7d": N_("active users over 7 days"),
    "open_tickets": N_("Open tickets"),
}
# Columns whose values are codes with a name of their own in the catalogs.
CODED = ("tier", "lifecycle_stage", "band", "danger_level")
# Rates, which the pages show as percentages (a spreadsheet reads "95.2%" as 0.952).
RATES = ("logo_retention", "grr", "nrr")

Row = dict[str, Any]


def renewal_file(
    columns: Sequence[str],
    rows: Iterable[Row],
    language: str,
    forecasts: Mapping[str, str],
    reasons: Mapping[str, str],
) -> tuple[list[str], list[Row]]:
    """The header and rows of the pipeline's CSV in ``language``; ``forecasts`` and
    ``reasons``: the page's labels of those codes."""
    if language == DEFAULT_LANGUAGE:
        return list(columns), list(rows)

    def say(text: str) -> str:
        return translate(language, text)

    def worded(row: Row) -> Row:
        out = {**row, **{c: say(row[c]) for c in CODED if row.get(c)}}
        if row.get("forecast"):
            out["forecast"] = say(forecasts.get(row["forecast"], row["forecast"]))
        out["reasons"] = "、".join(say(reasons.get(r, r)) for r in row.get("reasons") or [])
        return out

    return _header(columns, RENEWAL_HEADERS, say), [worded(row) for row in rows]


def portfolio_file(rows: Iterable[Row], language: str) -> tuple[list[str], list[Row]]:
    """The header and rows of the portfolio's list as a file (the page's search and
    filters, its order) in ``language``: the page's words for headers and codes in
    Chinese; in English the codes, as ``GET /v1/accounts`` names them."""
    columns = list(PORTFOLIO_HEADERS)
    if language == DEFAULT_LANGUAGE:
        return columns, list(rows)

    def say(text: str) -> str:
        return translate(language, text)

    worded = [{**row, **{c: say(row[c]) for c in CODED if row.get(c)}} for row in rows]
    return _header(columns, PORTFOLIO_HEADERS, say), worded


def retention_file(
    columns: Sequence[str],
    rows: Iterable[Row],
    language: str,
    group_header: str,
) -> tuple[list[str], list[Row]]:
    """The header and rows of the retention breakdown's CSV in ``language``;
    ``group_header``: the page's name of the grouping (tier, CSM, cohort)."""
    if language == DEFAULT_LANGUAGE:
        return list(columns), [{**row, **_rates(row, language)} for row in rows]

    def say(text: str) -> str:
        return translate(language, text)

    # "all" and tiers named, a cohort's quarter as the page writes it (2026年第3季度);
    # a CSM's email as it is.
    worded = [
        {
            **row,
            "group": format_quarter(language, say(str(row["group"]))),
            **_rates(row, language),
        }
        for row in rows
    ]
    headers = {**RETENTION_HEADERS, "group": group_header}
    return _header(columns, headers, say), worded


def _rates(row: Row, language: str) -> Row:
    """``row``'s rates as the page writes them; a rate it lacks stays as it is."""
    return {c: format_pct(language, row[c], 1) for c in RATES if row.get(c) is not None}


def _header(
    columns: Sequence[str], headers: Mapping[str, str], say: Callable[[str], str]
) -> list[str]:
    return [say(headers[c]) if c in headers else c for c in columns]
