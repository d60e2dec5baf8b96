"""What every JSON body the alerts API reads holds to: finite numbers (NaN and ±Infinity
quoted back in the 422, never a 500) and storable text (no NUL, no lone surrogate); and
the end a body's ``until`` or ``for`` asks for."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field, model_validator

from shared.web import ClientError


def no_nul(value: str | None) -> str | None:
    if value is not None and "\x00" in value:
        raise ValueError("must not contain NUL (\\u0000) characters")
    return value


Text = Annotated[str, AfterValidator(no_nul)]
# A person's reason for an action. The length is checked before the text's own check:
# after it, pydantic words a long text as a list ("at most 2000 items", found from
# outside).
Reason = Annotated[str, Field(max_length=2000), AfterValidator(no_nul)]


class JsonBody(BaseModel):
    """A JSON body. NaN and ±Infinity (which Python's JSON parser accepts) become
    strings before validation: the 422 quotes the refused value back, and FastAPI's
    error answer cannot encode a non-finite float (it would be a 500). Text holding a
    lone surrogate (JSON's "\\ud800" escape) is refused: no database can store it."""

    @model_validator(mode="before")
    @classmethod
    def _finite(cls, data: Any) -> Any:
        return _json_safe(data)


def _json_safe(value: Any) -> Any:
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            raise ValueError("text must be valid Unicode (it holds a lone surrogate)") from None
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def asked_end(
    now: datetime, until: datetime | None, span: timedelta | None, example: str
) -> datetime:
    """The end a body asks for: ``until``, or now + ``for`` (``span``); 422 naming the
    mistake for neither, both (one was used without a word, found from outside) or a
    ``for`` of nothing (answered as if none was sent). ``example``: a ``for`` to quote."""
    if until is not None and span is not None:
        raise ClientError(
            422,
            "invalid_request",
            "Send 'until' or 'for', not both: they may name different ends.",
            extra={"field": "for"},
        )
    if until is not None:
        return until
    if span is None:
        raise ClientError(
            422,
            "invalid_request",
            "Send 'until' (a time with zone) or 'for' (e.g. {example!r}).",
            values={"example": example},
        )
    if span <= timedelta(0):
        raise ClientError(
            422,
            "invalid_request",
            "'for' must be longer than nothing (e.g. {example!r}).",
            values={"example": example},
            extra={"field": "for"},
        )
    return now + span
