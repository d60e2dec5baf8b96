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


class Versioned(Protocol):
    @property
    def version(self) -> str: ...


T = TypeVar("T", bound=Versioned)
M = TypeVar("M", bound=BaseModel)


def parse_toml(text: str, schema: type[M], error: type[ValueError], what: str) -> M:
    """``text`` as TOML validated against ``schema``; ``error`` lists every problem with
    its location (``rule.3.when.0: …``)."""
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"not valid TOML: {exc}") from exc
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(file)'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise error(f"invalid {what}: {problems}") from exc


class DocumentStore(Generic[T]):
    def __init__(self, table: Table, parse: Callable[[str], T], default_source: str):
        self._table = table
        self._parse = parse
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
        """Validate and store a new version; the parser's error lists every problem."""
        parsed = self._parse(source)
        t = self._table
        existing = (
            await conn.execute(select(t.c.version).where(t.c.version == parsed.version))
        ).first()
        if existing is not None:
            raise ValueError(f"version {parsed.version!r} exists already: give it a new version")
        await conn.execute(
            t.insert().values(
                version=parsed.version, source=source, created_at=utcnow(), created_by=author
            )
        )
        return parsed
