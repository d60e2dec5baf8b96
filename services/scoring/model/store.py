"""The health model in force: the newest one stored, else the shipped default."""

from __future__ import annotations

from collections.abc import Callable

from services.scoring.model.schema import DEFAULT_MODEL, HealthModel, parse_model
from shared.storage.documents import DocumentStore
from shared.storage.tables import health_models


class ModelStore(DocumentStore[HealthModel]):
    def __init__(
        self,
        default_source: str | None = None,
        *,
        check: Callable[[HealthModel], None] | None = None,
    ):
        """``check``: what a new model must pass (the composition root gives the API's
        store ``model_check.check_model``, which this package cannot import: it reads
        the inputs, which read the model)."""
        super().__init__(
            health_models,
            parse_model,
            default_source or DEFAULT_MODEL.read_text(encoding="utf-8"),
            check=check,
        )
