"""The ingest bench's options, as parsed from its command line."""

from __future__ import annotations

from dataclasses import dataclass

from lib.results import OutputOptions


@dataclass
class Options(OutputOptions):
    events: int
    batch: int
    concurrency: int
    warmup: int
    rounds: int
    accounts: int
    bootstrap: str | None
