"""What the ingest bench measures of one side in one round: events, wall time, CPU of each
process, latencies.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lib.measure import cores_between, cpu_seconds, percentile, system_busy_seconds


@dataclass
class CpuMeter:
    """CPU used during a phase by this process, the ingest server, the broker, and
    everything else on the machine ("other": a shared machine is a noisy one)."""

    pids: dict[str, int | None]
    _start: dict[str, float | None] = field(default_factory=dict)

    def _now(self) -> dict[str, float | None]:
        now: dict[str, float | None] = {"bench": time.process_time()}
        for name, pid in self.pids.items():
            now[name] = cpu_seconds(pid)
        now["machine"] = system_busy_seconds()
        return now

    def start(self) -> None:
        self._start = self._now()

    def cores(self, wall_s: float) -> dict[str, float | None]:
        """Average CPU cores busy per process over ``wall_s`` (1.0 = one core flat out)."""
        return cores_between(self._start, self._now(), wall_s, digits=None)


@dataclass
class Phase:
    """One measured run of one side."""

    side: str
    events: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    cpu_cores: dict[str, float | None] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    def summary(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "events": self.events,
            "seconds": round(self.seconds, 4),
            "events_per_s": round(self.rate, 1),
            "cpu_cores": {k: None if v is None else round(v, 3) for k, v in self.cpu_cores.items()},
            "cpu_us_per_event": {
                k: None if v is None else round(v * self.seconds / self.events * 1e6, 1)
                for k, v in self.cpu_cores.items()
                if k != "other"
            },
        }
        if self.latencies_ms:
            data["batch_latency_ms"] = {
                f"p{q}": round(percentile(self.latencies_ms, q), 2) for q in (50, 95, 99)
            }
        data.update({k: round(v, 4) for k, v in self.extra.items()})
        return data


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
