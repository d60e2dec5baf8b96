"""The alerting file in force: the newest one stored, else the shipped default."""

from __future__ import annotations

from pathlib import Path

from shared.alerting.schema import Alerting, default_alerting_source, parse_alerting
from shared.config import Settings
from shared.storage.documents import DocumentStore
from shared.storage.tables import alerting_configs


class AlertingStore(DocumentStore[Alerting]):
    def __init__(self, default_source: str | None = None):
        super().__init__(
            alerting_configs, parse_alerting, default_source or default_alerting_source()
        )


def alerting_store(settings: Settings) -> AlertingStore:
    """The store with the configured file (``alerting_file``) as its default."""
    if not settings.alerting_file:
        return AlertingStore()
    return AlertingStore(Path(settings.alerting_file).read_text(encoding="utf-8"))
