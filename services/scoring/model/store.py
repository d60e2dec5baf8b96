"""The health model in force: the newest one stored, else the shipped default."""

from __future__ import annotations

from services.scoring.model.schema import DEFAULT_MODEL, HealthModel, parse_model
from shared.storage.documents import DocumentStore
from shared.storage.tables import health_models


class ModelStore(DocumentStore[HealthModel]):
    def __init__(self, default_source: str | None = None):
        super().__init__(
            health_models,
            parse_model,
            default_source or DEFAULT_MODEL.read_text(encoding="utf-8"),
        )
