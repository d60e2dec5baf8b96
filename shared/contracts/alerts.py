"""The alert event that scoring publishes and the alerts service delivers (version 1)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from shared.contracts.events import Owner


class Severity(StrEnum):
    info = "info"
    warning = "warning"
    critical = "critical"


# An alert people still have to deal with, in the alerts service's lifecycle
# (firing → acknowledged → resolved).
OPEN_ALERT_STATUSES = ("firing", "acknowledged")


class AlertEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    # Deterministic (account, rule, n-th firing): a replay produces the same id.
    alert_id: str
    # 0 when the alert fires; each later message about it (a severity change, its end)
    # counts up, so (alert_id, revision) identifies a message and orders them.
    revision: int = 0
    account_id: str
    account_name: str | None = None
    rule: str
    severity: Severity
    status: Literal["firing", "resolved"] = "firing"
    title: str
    summary: str
    score: int | None = None
    band: str | None = None
    owner: Owner | None = None
    # The account's tier and sales owner, for routing (strategic: more people).
    tier: str | None = None
    sales_owner: Owner | None = None
    fired_at: AwareDatetime
    details: dict[str, Any] = Field(default_factory=dict)
