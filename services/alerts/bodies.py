"""What every JSON body the alerts API reads holds to: finite numbers (NaN and ±Infinity
quoted back in the 422, never a 500) and storable text (no NUL, no lone surrogate)."""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, model_validator


def _no_nul(value: str | None) -> str | None:
    if value is not None and "\x00" in value:
        raise ValueError("must not contain NUL (\\u0000) characters")
    return value


Text = Annotated[str, AfterValidator(_no_nul)]


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
