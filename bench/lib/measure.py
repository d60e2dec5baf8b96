"""What a bench measures besides its own figure: CPU of processes and of the
machine, percentiles, and the machine and commit a result was taken on."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int | None) -> float | None:
    """User+system CPU seconds of a process so far (Linux ``/proc``), else None."""
    if pid is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    # After "pid (comm) ": state is field 3, so utime/stime (14/15) are at 11/12.
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def system_busy_seconds() -> float | None:
    """CPU seconds spent busy by the whole machine so far, all cores (``/proc/stat``)."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    ticks = [int(x) for x in first[1:9]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / _CLK_TCK


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def machine_info(kafka_version: str) -> dict[str, Any]:
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "kafka": kafka_version,
    }
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["ram_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    java = shutil.which("java")
    if java:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            proc = subprocess.run(
                [java, "-version"], capture_output=True, text=True, timeout=20, check=False
            )
            first = (proc.stderr or proc.stdout).strip().splitlines()
            info["java"] = first[0] if first else None
    libs = ("aiokafka", "httpx", "uvicorn", "fastapi", "pydantic", "orjson", "httptools")
    versions = {}
    for lib in libs:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[lib] = importlib.metadata.version(lib)
    info["libraries"] = versions
    return info


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    return {"commit": git("rev-parse", "HEAD") or None, "dirty": bool(git("status", "--porcelain"))}


def result_header(benchmark: str, script: str, argv: Sequence[str]) -> dict[str, Any]:
    """What every result starts with: which bench, when, the command, the commit, and
    where ``services`` was imported from (a snapshot on ``PYTHONPATH``, or this tree)."""
    import services

    return {
        "benchmark": benchmark,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": [os.path.relpath(script), *argv],
        "git": git_state(),
        "code_root": str(Path(services.__file__).parent.parent),
    }


def changed_files() -> list[str]:
    """What ``git status`` lists as changed in the working tree (untracked files too)."""
    proc = subprocess.run(
        ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    return [line[3:] for line in proc.stdout.splitlines() if line.strip()]


# Cores the other processes of the machine may use during a measured phase before a bench
# warns that the machine was busy (and its figures noisy).
BUSY_OTHER_CORES = 0.25


def _proc_stat(pid: int) -> tuple[int, float, float] | None:
    """(ppid, own CPU s, reaped children's CPU s) of a process, from ``/proc``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    tck = os.sysconf("SC_CLK_TCK")
    own = (int(fields[11]) + int(fields[12])) / tck
    children = (int(fields[13]) + int(fields[14])) / tck
    return int(fields[1]), own, children


def tree_cpu_seconds(root: int | None) -> float | None:
    """CPU seconds of a process and all its descendants, live or already reaped
    (PostgreSQL: the postmaster, one backend per connection, its workers)."""
    if root is None:
        return None
    stats: dict[int, tuple[int, float, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (s := _proc_stat(int(entry.name))) is not None:
            stats[int(entry.name)] = s
    if root not in stats:
        return None
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total = stats[root][2]  # children the root reaped (exited backends)
    todo = [root]
    while todo:
        pid = todo.pop()
        total += stats[pid][1]
        todo.extend(children.get(pid, ()))
    return total


def cores_between(
    begin: dict[str, float | None],
    end: dict[str, float | None],
    wall_s: float,
    *,
    digits: int | None = 3,
) -> dict[str, float | None]:
    """Average CPU cores each name used over ``wall_s`` (1.0 = one core flat out), from
    two readings of CPU seconds. The reading ``machine`` (the whole machine's busy time)
    becomes ``other``: what everything but the named processes used, since a shared
    machine is a noisy one."""
    used: dict[str, float | None] = {}
    for name, stop in end.items():
        start = begin.get(name)
        used[name] = None if stop is None or start is None else (stop - start) / wall_s
    machine = used.pop("machine")
    ours = sum(v for v in used.values() if v is not None)
    used["other"] = None if machine is None else max(0.0, machine - ours)
    if digits is None:
        return used
    return {k: None if v is None else round(v, digits) for k, v in used.items()}


def rate(events: int, seconds: float | None) -> float | None:
    return round(events / seconds, 1) if seconds else None


@dataclass
class PhaseMeter:
    """CPU cores used during a phase: this process, the broker, PostgreSQL (all its
    processes) and everything else on the machine ("other")."""

    broker_pid: int | None
    postgres_pid: int | None
    _start: dict[str, float | None] = field(default_factory=dict)
    _wall: float = 0.0

    def _now(self) -> dict[str, float | None]:
        return {
            "bench": time.process_time(),
            "broker": cpu_seconds(self.broker_pid),
            "postgres": tree_cpu_seconds(self.postgres_pid),
            "machine": system_busy_seconds(),
        }

    def start(self) -> None:
        self._start = self._now()
        self._wall = time.perf_counter()

    def cores(self) -> dict[str, float | None]:
        return cores_between(self._start, self._now(), time.perf_counter() - self._wall)
