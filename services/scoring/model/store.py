"""The health model in force: the newest one stored, else the shipped default.

Every scoring process checks the stored version once per batch, so a model changed
through the API applies everywhere within one batch, without a restart.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scoring.model.schema import DEFAULT_MODEL, HealthModel, parse_model
from shared.clock import utcnow
from shared.storage.tables import health_models


class ModelStore:
    def __init__(self, default_source: str | None = None):
        self._default_source = default_source or DEFAULT_MODEL.read_text(encoding="utf-8")
        self._default = parse_model(self._default_source)
        self._stored: tuple[str, str, HealthModel] | None = None  # version, source, model

    async def current(self, conn: AsyncConnection) -> tuple[HealthModel, str]:
        """The model in force and its TOML source."""
        newest = (await conn.execute(_NEWEST)).first()
        if newest is None:
            return self._default, self._default_source
        if self._stored is None or self._stored[0] != newest.version:
            self._stored = (newest.version, newest.source, parse_model(newest.source))
        return self._stored[2], self._stored[1]


_NEWEST = (
    select(health_models.c.version, health_models.c.source)
    .order_by(health_models.c.created_at.desc())
    .limit(1)
)


async def save_model(conn: AsyncConnection, source: str, author: str) -> HealthModel:
    """Validate and store a model; raises ModelError with every problem listed."""
    model = parse_model(source)
    existing = (
        await conn.execute(
            select(health_models.c.version).where(health_models.c.version == model.version)
        )
    ).first()
    if existing is not None:
        raise ValueError(
            f"version {model.version!r} exists already: give the new model a new version"
        )
    await conn.execute(
        health_models.insert().values(
            version=model.version, source=source, created_at=utcnow(), created_by=author
        )
    )
    return model
