"""The scoring bench's options, as parsed from its command line."""

from __future__ import annotations

from dataclasses import dataclass

from lib.services import ServiceOptions


@dataclass
class Options(ServiceOptions):
    events: int
    accounts: int
    users: float
    days: int
    batches: list[int]
    state_accounts: list[int]
    state_events_per_account: float | None
    partitions: int | None
    scoring_timeout: float
    bare_rounds: int
    processes: list[int]
    vacuum: bool
    imports: bool
