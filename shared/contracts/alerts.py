"""The alert event that scoring publishes and the alerts service delivers (version 1)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from shared.contracts.events import INT32_MAX, MAX_DEPTH, Owner, Tier, Time

# What the alerts store can hold, and no more: a message beyond it is undecodable (the
# intake logs and skips it) instead of failing its batch at every retry. Text is kept
# as it came otherwise (a name with a line break is rendered safely, not refused: an
# alert is not dropped for its account's name).
JSON_INT_MAX = 2**63 - 1  # orjson, which writes the JSON columns, stops at 64 bits


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not hold a NUL character (PostgreSQL text cannot)")
    return value


def _storable_tree(value: dict[str, Any]) -> dict[str, Any]:
    """At most MAX_DEPTH deep, integers within 64 bits (iterative: a hostile depth
    must not exhaust Python's recursion limit)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ValueError(f"is nested deeper than {MAX_DEPTH} levels")
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, int) and not -JSON_INT_MAX - 1 <= child <= JSON_INT_MAX:
                raise ValueError("holds an integer beyond 64 bits")
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return value


NoNul = AfterValidator(_no_nul)
AlertId = Annotated[str, Field(min_length=1, max_length=300), NoNul]  # alerts.alert_id
AccountId = Annotated[str, Field(min_length=1, max_length=200), NoNul]  # its columns
RuleId = Annotated[str, Field(min_length=1, max_length=100), NoNul]  # alerts.rule
AccountName = Annotated[str, Field(max_length=500), NoNul]  # accounts.name
Label = Annotated[str, Field(max_length=20), NoNul]  # alerts.tier
FreeText = Annotated[str, NoNul]


class Severity(StrEnum):
    info = "info"
    warning = "warning"
    critical = "critical"


# The order people attend to alerts in, wherever they are listed (the dashboard, the
# daily digest): the most severe first, then, within a severity, strategic accounts before
# enterprise and non-focus ones (the handbook's tiers of service).
SEVERITY_ORDER = {Severity.critical.value: 0, Severity.warning.value: 1, Severity.info.value: 2}
TIER_ORDER = {Tier.strategic.value: 0, Tier.enterprise.value: 1, Tier.non_focus.value: 2}

# An alert people still have to deal with, in the alerts service's lifecycle
# (firing → acknowledged → resolved).
OPEN_ALERT_STATUSES = ("firing", "acknowledged")


class AlertEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    # Deterministic (account, rule, n-th firing): a replay produces the same id.
    alert_id: AlertId
    # 0 when the alert fires; each later message about it (a severity change, its end)
    # counts up, so (alert_id, revision) identifies a message and orders them.
    revision: int = Field(0, ge=0, le=INT32_MAX)
    account_id: AccountId
    account_name: AccountName | None = None
    rule: RuleId
    severity: Severity
    status: Literal["firing", "resolved"] = "firing"
    title: FreeText
    summary: FreeText
    score: int | None = Field(None, ge=0, le=100)
    band: Label | None = None
    owner: Owner | None = None
    # The account's tier and sales owner, for routing (strategic: more people).
    tier: Label | None = None
    sales_owner: Owner | None = None
    fired_at: Time
    details: Annotated[dict[str, Any], AfterValidator(_storable_tree)] = Field(default_factory=dict)
    # Still true at the end of ``healthwatch import``: opened without a first notice (the
    # past is not news told all at once); later changes are told as usual. Resolved: it
    # ended in an import, which closes it if it was open, and is not stored otherwise.
    imported: bool = False
