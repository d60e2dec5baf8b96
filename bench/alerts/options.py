"""The alert latency bench's options, as parsed from its command line."""

from __future__ import annotations

from dataclasses import dataclass

from lib.services import ServiceOptions


@dataclass
class Options(ServiceOptions):
    rate: float
    batch: int
    concurrency: int
    background_accounts: int
    users: int
    duration: float
    warmup: float
    trigger_interval: float
    slack_min_interval: float
    slack_mode: str
    scoring_batch_max: int | None
    scoring_processes: int
    service_env: dict[str, str]
    drain_timeout: float
