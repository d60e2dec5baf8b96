"""The connectors' mapping file: which vendor field is which of our account facts, and
how vendor values become ours.

The shipped ``default_mapping.toml`` documents every table; ``HEALTHWATCH_CONNECTORS_FILE``
names a file whose tables replace the defaults' one by one (a table left out keeps the
default). ``fact_value`` turns one vendor value into one fact, the same way for the
HubSpot webhook and every CSV format, so an export and a webhook agree.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

from shared.contracts.events import AccountFacts
from shared.i18n import Refusal

DEFAULT_FILE = Path(__file__).with_name("default_mapping.toml")
FORMATS = ("hubspot", "salesforce", "csv")
# Facts a column or property may fill: AccountFacts' own scalar fields, with owner and
# sales_owner given as an email (or a name or id that [owners] maps to one).
OWNER_FACTS = ("owner", "sales_owner")
SCALAR_FACTS = tuple(
    name
    for name in AccountFacts.model_fields
    if name not in ("kind", "schema_version", "event_id", "occurred_at", "received_at")
    and name not in ("contacts", "usage_quotas", *OWNER_FACTS)
)
TARGETS = ("account_id", *SCALAR_FACTS, *OWNER_FACTS)
NUMBER_FACTS = ("arr", "mrr", "seats_purchased")
DATE_FACTS = ("contract_start", "contract_end", "go_live")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# A HubSpot date property is midnight UTC in epoch milliseconds: 11+ digits (from 1973).
EPOCH_MS = re.compile(r"^\d{11,14}$")
# Salesforce's US-locale exports write dates month first.
US_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")


class MappingError(ValueError):
    """The mapping file is unreadable or names a fact we do not have."""


@dataclass(frozen=True)
class ConnectorMap:
    owners: dict[str, str] = field(default_factory=dict)
    zendesk_organizations: dict[str, str] = field(default_factory=dict)
    freshdesk_companies: dict[str, str] = field(default_factory=dict)
    hubspot_prefix: str = ""
    hubspot_properties: dict[str, str] = field(default_factory=dict)
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    columns: dict[str, dict[str, str]] = field(default_factory=dict)


def load_mapping(path: str = "") -> ConnectorMap:
    """The defaults, with the tables of ``path`` (if given) in their place."""
    merged = _read(DEFAULT_FILE)
    if path:
        for section, table in _read(Path(path)).items():
            if isinstance(table, dict) and isinstance(merged.get(section), dict):
                merged[section] = {**merged[section], **table}
            else:
                merged[section] = table
    return _parse(merged)


@cache
def cached_mapping(path: str) -> ConnectorMap:
    """Read once per process: the file changes with a deploy, not per request."""
    return load_mapping(path)


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise MappingError(f"connectors file {path}: {exc}") from exc


def _strings(table: Any, where: str) -> dict[str, str]:
    if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
        raise MappingError(f"[{where}] must map names to text")
    return {str(k): v for k, v in table.items()}


def _targets(table: Any, where: str) -> dict[str, str]:
    mapped = _strings(table, where)
    unknown = sorted(set(mapped.values()) - set(TARGETS))
    if unknown:
        raise MappingError(f"[{where}] maps to unknown facts {unknown}: use {', '.join(TARGETS)}")
    return mapped


def _parse(raw: dict[str, Any]) -> ConnectorMap:
    hubspot = raw.get("hubspot", {})
    csv_tables = raw.get("csv", {})
    return ConnectorMap(
        owners=_strings(raw.get("owners", {}), "owners"),
        zendesk_organizations=_strings(
            raw.get("zendesk", {}).get("organizations", {}), "zendesk.organizations"
        ),
        freshdesk_companies=_strings(
            raw.get("freshdesk", {}).get("companies", {}), "freshdesk.companies"
        ),
        hubspot_prefix=str(hubspot.get("account_prefix", "")),
        hubspot_properties=_targets(hubspot.get("properties", {}), "hubspot.properties"),
        values={k: _strings(v, f"values.{k}") for k, v in raw.get("values", {}).items()},
        columns={f: _targets(csv_tables.get(f, {}), f"csv.{f}") for f in FORMATS},
    )


class ValueRefused(Refusal):
    """A vendor's value that cannot be the fact (the message says why, in words the
    import page shows in the reader's language)."""


def fact_value(mapping: ConnectorMap, target: str, text: str) -> Any:
    """``text`` (a vendor's value, as text) as the ``target`` fact's value; ValueError
    (``ValueRefused``) saying what is wrong. Empty text is None: the fact is left as it
    is."""
    text = text.strip()
    if not text:
        return None
    text = mapping.values.get(target, {}).get(text, text)
    if target in OWNER_FACTS:
        email = mapping.owners.get(text, text)
        if not EMAIL.match(email):
            raise ValueRefused(
                "{value!r} is no email and not in the connectors file's [owners]: add "
                '"{value}" = "their@email" there',
                value=text,
            )
        return {"email": email}
    # Full-width digits and signs read as ASCII (NFKC) in numbers and days only: names
    # and ids stay as sent, or one customer would be two ids by source.
    if target in NUMBER_FACTS:
        return _number(unicodedata.normalize("NFKC", text), whole=target == "seats_purchased")
    if target in DATE_FACTS:
        return _day(unicodedata.normalize("NFKC", text)).isoformat()
    return text


# Chinese myriads: "8万" is 80,000, "1.2亿" 120 million (a Chinese CRM writes ARR so).
MYRIADS = {"万": 10_000, "亿": 100_000_000}
# Money signs around an amount: the currency is a column of its own.
MONEY_SIGNS = re.compile(r"^[¥$€£]|元$")


def _number(text: str, *, whole: bool) -> float | int:
    cleaned = re.sub(r"[\s\u00a0\u202f']", "", text)  # spaces, NBSP, Swiss apostrophes
    cleaned = MONEY_SIGNS.sub("", cleaned)
    times = MYRIADS.get(cleaned[-1:], 1)
    if times != 1:
        cleaned = cleaned[:-1]
    if "," in cleaned and not US_NUMBER.fullmatch(cleaned):
        # "1.234,50" or "1234,5": a decimal comma. Stripping the commas read 1.2345.
        raise ValueRefused("{value!r} has a decimal comma: write it as 1234.50", value=text)
    if "," not in cleaned and times == 1 and EUROPEAN_THOUSANDS.fullmatch(cleaned):
        # "1.000" is a thousand in most of Europe and one in the US: not guessed.
        raise ValueRefused(
            "{value!r} may be a thousand or one: write it without separators", value=text
        )
    try:
        value = float(cleaned.replace(",", "")) * times
    except ValueError:
        raise ValueRefused("{value!r} is not a number", value=text) from None
    if times != 1:
        # 1.15 × 10,000 is 11,499.999… in floats: to the digits a myriad moves.
        value = round(value, 6)
    if whole:
        if not value.is_integer():
            raise ValueRefused("{value!r} is not a whole number", value=text)
        return int(value)
    return value


# Commas as thousands separators only, in groups of three ("1,234,567.50").
US_NUMBER = re.compile(r"[-+]?\d{1,3}(,\d{3})+(\.\d+)?")
# Points as thousands separators, or one decimal point before exactly three digits.
EUROPEAN_THOUSANDS = re.compile(r"[-+]?[1-9]\d{0,2}(\.\d{3})+")
# Year first, any one-digit month or day: "2026/3/5", "2026.03.05", "2026年3月5日".
YEAR_FIRST = re.compile(r"^(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?$")


def _day(text: str) -> date:
    if EPOCH_MS.match(text):
        return datetime.fromtimestamp(int(text) / 1000, UTC).date()
    us = US_DATE.match(text)
    ymd = YEAR_FIRST.match(text)
    try:
        if us:
            return date(int(us[3]), int(us[1]), int(us[2]))
        if ymd:
            return date(int(ymd[1]), int(ymd[2]), int(ymd[3]))
        # "2026-03-31", "2026-03-31 10:00" or "2026-03-31T10:00:00Z": the date part.
        return date.fromisoformat(text[:10].replace("/", "-"))
    except ValueError:
        raise ValueRefused("{value!r} is not a date: write YYYY-MM-DD", value=text) from None


class Problem(NamedTuple):
    """Why a value cannot be its fact: its source (column, property), the message, and
    the message as a template with its values (for the reader's language)."""

    field: str
    message: str
    template: str
    values: dict[str, object]

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


def mapped_facts(
    mapping: ConnectorMap, values: list[tuple[str, str, str]]
) -> tuple[dict[str, Any], list[Problem]]:
    """``(source name, target fact, text)`` triples as raw account facts, and a problem
    per value that cannot be one."""
    facts: dict[str, Any] = {}
    errors: list[Problem] = []
    for source, target, raw in values:
        try:
            value = fact_value(mapping, target, raw)
        except ValueRefused as exc:
            errors.append(Problem(source, str(exc), exc.template, exc.values))
            continue
        except ValueError as exc:
            errors.append(Problem(source, str(exc), str(exc), {}))
            continue
        if value is not None:
            facts[target] = value
    return facts, errors
