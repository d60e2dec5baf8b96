"""Versioned configuration documents (the health model, the alerting file): the newest
stored version is in force, else the shipped default.

Every process checks the stored version once per batch or pass, so a document changed
through the API applies everywhere within one batch, without a restart.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.clock import utcnow


class VersionExists(ValueError):
    """A document of that version is stored already (versions are never replaced)."""


class Versioned(Protocol):
    @property
    def version(self) -> str: ...


T = TypeVar("T", bound=Versioned)
M = TypeVar("M", bound=BaseModel)


# The deepest nesting a configuration document may have: twice the shipped health
# model's 8 levels. The parser and the validators recurse once per level, so a bound far
# below Python's recursion limit keeps a hostile document from exhausting the stack.
MAX_DEPTH = 16


def parse_toml(text: str, schema: type[M], error: type[ValueError], what: str) -> M:
    """``text`` as TOML validated against ``schema``; ``error`` lists every problem with
    its location (``rule.3.when.0: …``)."""
    too_deep = error(
        f"not a valid {what}: values nest more than {MAX_DEPTH} levels deep "
        "(tables, arrays and dotted keys count): flatten the document"
    )
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"not valid TOML: {exc}") from exc
    except RecursionError:  # the parser recurses per nested array or inline table
        raise too_deep from None
    if _depth(data) > MAX_DEPTH:
        raise too_deep
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(file)'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise error(f"invalid {what}: {problems}") from exc


def _depth(value: Any) -> int:
    """How deep tables and arrays nest in ``value``, without recursion (stops counting
    past MAX_DEPTH)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if level > MAX_DEPTH:
            break
        children = item.values() if isinstance(item, dict) else item
        if isinstance(item, dict | list):
            stack.extend((child, level + 1) for child in children)
    return deepest


class DocumentStore(Generic[T]):
    def __init__(
        self,
        table: Table,
        parse: Callable[[str], T],
        default_source: str,
        *,
        check: Callable[[T], None] | None = None,
    ):
        """``check``: what a new version must pass beside parsing (raising the parser's
        error), on every path that saves one (the API, the dashboard's editor); the
        versions stored already are read without it, so a check added later cannot stop
        a service whose document passed before."""
        self._table = table
        self._parse = parse
        self._check = check
        self._default_source = default_source
        self._default = parse(default_source)
        self._stored: tuple[str, str, T] | None = None  # version, source, parsed
        self._newest = (
            select(table.c.version, table.c.source).order_by(table.c.created_at.desc()).limit(1)
        )

    async def current(self, conn: AsyncConnection) -> tuple[T, str]:
        """The document in force and its source text."""
        newest = (await conn.execute(self._newest)).first()
        if newest is None:
            return self._default, self._default_source
        if self._stored is None or self._stored[0] != newest.version:
            self._stored = (newest.version, newest.source, self._parse(newest.source))
        return self._stored[2], self._stored[1]

    async def save(self, conn: AsyncConnection, source: str, author: str) -> T:
        """Validate (and ``check``) and store a new version; the parser's error lists
        every problem."""
        parsed = self._parse(source)
        if self._check is not None:
            self._check(parsed)
        t = self._table
        existing = (
            await conn.execute(select(t.c.version).where(t.c.version == parsed.version))
        ).first()
        if existing is not None:
            raise VersionExists(f"version {parsed.version!r} exists already: give it a new version")
        await conn.execute(
            t.insert().values(
                version=parsed.version, source=source, created_at=utcnow(), created_by=author
            )
        )
        return parsed
