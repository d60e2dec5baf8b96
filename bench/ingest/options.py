"""The ingest bench's options, as parsed from its command line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class Options:
    events: int
    batch: int
    concurrency: int
    warmup: int
    rounds: int
    accounts: int
    bootstrap: str | None
    out: Path
    plot: Path
    seed: int
    keep: bool
