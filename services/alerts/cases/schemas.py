"""What the cases and tasks API takes and answers (its bodies and ``response_model``s)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
)

from services.alerts.cases.model import CAUSES, TEXT_CHARS, TITLE_CHARS
from services.alerts.schemas import Page
from shared.contracts.events import Time, fold_email

Level = Literal["high", "normal", "mild"]
Outcome = Literal["saved", "churned", "downgraded"]
_CAUSES_TEXT = "cause codes: " + ", ".join(CAUSES)


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL (\\u0000) characters")
    return value


def _known_causes(codes: list[str]) -> list[str]:
    unknown = [c for c in codes if c not in CAUSES]
    if unknown:
        raise ValueError(f"unknown cause codes {unknown}; known: {', '.join(CAUSES)}")
    return codes


Title = Annotated[str, Field(min_length=1, max_length=TITLE_CHARS), AfterValidator(_no_nul)]
LongText = Annotated[str, Field(min_length=1, max_length=TEXT_CHARS), AfterValidator(_no_nul)]
Email = Annotated[
    str,
    Field(min_length=3, max_length=320, pattern=r"^[^\s@]+@[^\s@]+$"),
    AfterValidator(fold_email),  # as accounts' owners are: a task's owner filter compares them
]
# A cause code, shown in the OpenAPI as the enum it is (checked by _known_causes).
Cause = Annotated[str, WithJsonSchema({"type": "string", "enum": list(CAUSES)})]
Causes = Annotated[
    list[Cause],
    Field(max_length=len(CAUSES), description=_CAUSES_TEXT),
    AfterValidator(_known_causes),
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OpenCaseBody(_Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "account_id": "acme",
                    "danger_level": "high",
                    "causes": ["decision_maker_change"],
                    "summary": "New CIO is re-evaluating vendors",
                }
            ]
        },
    )
    account_id: Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_no_nul)]
    danger_level: Level
    causes: Causes = Field(default_factory=list)
    summary: Title


class FromAlertBody(_Body):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{}, {"danger_level": "high"}]}
    )
    danger_level: Level | None = Field(None, description="default: the alert's severity")
    causes: Causes | None = Field(None, description="default: the causes scoring measured")


class TaskBody(_Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"title": "Meet the new CIO", "due": "2026-12-10T09:00:00+08:00"}]
        },
    )
    title: Title
    due: Time  # 2000-2200, as event times: year 1 in a zone east of UTC overflows
    owner_email: Email | None = Field(None, description="default: the account's owner now")


class ReviewBody(_Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "notes": "Met the new CIO with sales: re-implementation agreed.",
                    "danger_after": "normal",
                    "causes": ["decision_maker_change"],
                }
            ]
        },
    )
    notes: LongText
    danger_after: Level
    causes: Causes | None = Field(None, description="the causes the review settled on")


class CloseBody(_Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "outcome": "saved",
                    "lesson": "Meet the decision maker every quarter, not only the IT contact.",
                }
            ]
        },
    )
    outcome: Outcome
    lesson: LongText


class TaskOut(BaseModel):
    task_id: int
    account_id: str
    account_name: str | None
    case_id: int | None
    kind: str = Field(description="case_action or nps_followup")
    title: str
    owner_email: str | None = Field(description="named on it, else the account's owner now")
    due: datetime
    done_at: datetime | None
    done_by: str | None
    source: str
    created_at: datetime


class ReviewOut(BaseModel):
    review_id: int
    at: datetime
    reviewer: str
    notes: str
    danger_after: str


class CaseOut(BaseModel):
    case_id: int
    account_id: str
    account_name: str | None
    tier: str | None
    owner_email: str | None = Field(description="the account's owner now")
    state: str = Field(description="open or closed")
    danger_level: str = Field(description="high, normal or mild")
    causes: list[str]
    summary: str
    open_tasks: int = Field(description="Tasks of its plan not done yet")
    alert_id: str | None
    opened_at: datetime
    opened_by: str
    next_review_at: datetime | None
    review_overdue: bool
    closed_at: datetime | None
    closed_by: str | None
    outcome: str | None
    lesson: str | None


class CaseDetail(CaseOut):
    tasks: list[TaskOut]
    reviews: list[ReviewOut]
    watchers: list[str] = Field(
        description="Who hears about the case: its owner, and for a "
        "strategic account the lead and the sales owner (DG-10)"
    )
    opened: bool | None = Field(
        None, description="On opening: false when the account's open case was found instead"
    )


class CaseList(Page):
    cases: list[CaseOut]


class TaskList(Page):
    tasks: list[TaskOut]
