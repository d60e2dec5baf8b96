"""Where the scoring processor's time goes: SQL statements by kind, and the steps of a batch,
timed by wrapping the processor in this process.
"""

from __future__ import annotations

import functools
import inspect
import re
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

import services.scoring.history as history_module
import services.scoring.processor as processor_module
from services.scoring import usage_store
from services.scoring.processor import ScoringProcessor

_KIND_PATTERNS = (
    re.compile(r"^\s*(INSERT)\s+INTO\s+\"?(\w+)", re.I),
    re.compile(r"^\s*(UPDATE)\s+\"?(\w+)", re.I),
    re.compile(r"^\s*(DELETE)\s+FROM\s+\"?(\w+)", re.I),
    re.compile(r"^\s*(SELECT|WITH)\b.*?\bFROM\s+\"?(\w+)", re.I | re.S),
)


def statement_kind(sql: str) -> str:
    for pattern in _KIND_PATTERNS:
        match = pattern.match(sql)
        if match:
            return f"{match.group(1).upper()} {match.group(2)}"
    return " ".join(sql.split()[:2]).upper()[:40]


class SqlTimer:
    """Counts and times the statements an engine sends (SQLAlchemy cursor events).

    The time of a statement is the wall time from handing it to the driver until its
    result is back: the round trip, the server's work, and whatever other coroutines
    the event loop ran meanwhile. Transaction BEGIN/COMMIT of asyncpg are not cursor
    executions and are not counted."""

    def __init__(self, engine: AsyncEngine, steps: StepTimer | None = None) -> None:
        self._sync = engine.sync_engine
        self._steps = steps
        self.statements = 0
        self.seconds = 0.0
        self.by_kind: dict[str, list[float]] = {}
        self._kinds: dict[str, str] = {}
        event.listen(self._sync, "before_cursor_execute", self._before)
        event.listen(self._sync, "after_cursor_execute", self._after)

    def _before(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        conn.info["bench_t0"] = time.perf_counter()

    def _after(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        started = conn.info.pop("bench_t0", None)
        if started is None:
            return
        took = time.perf_counter() - started
        kind = self._kinds.get(statement)
        if kind is None:
            kind = self._kinds[statement] = statement_kind(statement)
        self.statements += 1
        self.seconds += took
        if self._steps is not None:
            self._steps.add_sql(took)
        slot = self.by_kind.setdefault(kind, [0, 0.0])
        slot[0] += 1
        slot[1] += took

    def detach(self) -> None:
        event.remove(self._sync, "before_cursor_execute", self._before)
        event.remove(self._sync, "after_cursor_execute", self._after)

    def summary(self, wall_s: float, batches: float | None = None) -> dict[str, Any]:
        top = sorted(self.by_kind.items(), key=lambda kv: -kv[1][1])
        data: dict[str, Any] = {
            "statements": self.statements,
            "seconds": round(self.seconds, 3),
            "share_of_wall": round(self.seconds / wall_s, 3) if wall_s else None,
            "by_statement": {
                k: {
                    "count": int(v[0]),
                    "seconds": round(v[1], 3),
                    "ms_mean": round(v[1] / v[0] * 1e3, 3),
                }
                for k, v in top
            },
        }
        if batches:
            data["statements_per_batch"] = round(self.statements / batches, 1)
            data["sql_ms_per_batch"] = round(self.seconds / batches * 1e3, 2)
        return data


# The top-level steps of ``ScoringProcessor.handle``, in the order it runs them.
STEPS = (
    "decode",
    "load",
    "dedup",
    "apply",
    "relationship",
    "rescore",
    "save",
    "publish",
    "offsets",
    "relay",
)


def _targets(publisher: Any) -> list[tuple[Any, str, str]]:
    """(owner, attribute, step) of every function wrapped: the functions as the processor
    module looks them up at call time, so wrapping the attribute times the call."""
    targets: list[tuple[Any, str, str]] = [
        (ScoringProcessor, "handle", "handle"),
        (ScoringProcessor, "_decode", "decode"),
        (usage_store, "load", "load"),
        (processor_module, "drop_duplicates", "dedup"),
        (processor_module, "apply_events", "apply"),
        (processor_module, "record_relationship", "relationship"),
        (ScoringProcessor, "rescore", "rescore"),
        (usage_store, "save", "save"),
        (processor_module, "save_offsets", "offsets"),
        (ScoringProcessor, "relay", "relay"),
        (processor_module, "_lock_accounts", "lock"),
        (processor_module, "load_measures", "measures"),
        (processor_module, "measures_as_of", "measures"),
        (processor_module, "_load_rule_states", "history"),
        (history_module, "load_previous", "history"),
        (history_module, "load_past_inputs", "history"),
        (processor_module, "score_account", "score"),
        (processor_module, "_alerts", "alerts"),
        (processor_module, "step_plans", "plans"),
        (processor_module, "_record", "record"),
    ]
    if publisher is not None:
        targets.append((publisher, "send_many", "publish"))
    return targets


class StepTimer:
    """Splits ``ScoringProcessor.handle`` into its steps by wrapping them while a phase
    runs (the service code is not changed, only looked up through): ``decode``, ``load``
    (the batch's usage states, one SELECT), ``dedup`` (``drop_duplicates``: the 48-hour
    id window in the states), ``apply`` (``apply_events``), ``relationship``,
    ``rescore`` (measures, history, the pure scoring step, writes), ``save`` (changed
    states and ``activity_daily``), ``publish`` (alerts and dead letters into the
    outbox, in the transaction), ``offsets``, ``relay`` (the outbox to Kafka, after the
    commit); the rest
    of ``handle`` (transaction begin/commit, metrics) is "other". A step's time counts
    once, at the outermost wrapped call (``usage_store.load`` called from within
    ``rescore`` is rescore's); ``rescore``'s own parts are kept apart, inside and outside
    batches. A function missing from the code (renamed) is reported as absent."""

    def __init__(self, publisher: Any = None) -> None:
        self.current: list[str] = []
        self.seconds: dict[str, float] = dict.fromkeys(("handle", *STEPS), 0.0)
        self.calls: dict[str, int] = dict.fromkeys(("handle", *STEPS), 0)
        self.sql: dict[str, float] = {}
        self.outside: dict[str, float] = {}
        self.parts: dict[str, dict[str, float]] = {"in_batches": {}, "outside_batches": {}}
        self.absent: list[str] = []
        self._undo: list[Callable[[], None]] = []
        for owner, name, step in _targets(publisher):
            self._wrap(owner, name, step)

    def _wrap(self, owner: Any, name: str, step: str) -> None:
        original = getattr(owner, name, None)
        if original is None:
            self.absent.append(f"{step} ({name})")
            return
        timer = self
        wrapper: Callable[..., Any]
        if inspect.iscoroutinefunction(original):

            @functools.wraps(original)
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                timer.current.append(step)
                started = time.perf_counter()
                try:
                    return await original(*args, **kwargs)
                finally:
                    timer.current.pop()
                    timer.record(step, time.perf_counter() - started)

        else:

            @functools.wraps(original)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                timer.current.append(step)
                started = time.perf_counter()
                try:
                    return original(*args, **kwargs)
                finally:
                    timer.current.pop()
                    timer.record(step, time.perf_counter() - started)

        setattr(owner, name, wrapper)
        self._undo.append(lambda: setattr(owner, name, original))

    def record(self, step: str, took: float) -> None:
        """Called after a wrapped call returned (``current`` holds its callers)."""
        inside = "handle" in self.current
        if self.current and self.current[-1] == "rescore":
            slot = self.parts["in_batches" if inside else "outside_batches"]
            slot[step] = slot.get(step, 0.0) + took
        elif len(self.current) > (1 if inside else 0):
            return  # inside another step, which counts it
        elif step == "handle" or inside:
            self.seconds[step] = self.seconds.get(step, 0.0) + took
            self.calls[step] = self.calls.get(step, 0) + 1
        else:  # e.g. the import's daily scoring or the sweep, outside any batch
            self.outside[step] = self.outside.get(step, 0.0) + took

    def add_sql(self, took: float) -> None:
        """A statement's time, to the top-level step running it (and to rescore's part)."""
        stack = self.current
        if "handle" in stack:
            step = stack[1] if len(stack) > 1 else "handle"
        else:
            step = f"outside handle: {stack[0]}" if stack else "outside handle"
        self.sql[step] = self.sql.get(step, 0.0) + took
        if "rescore" in stack and stack[-1] != "rescore":
            where = "in_batches" if "handle" in stack else "outside_batches"
            key = f"{where}.{stack[stack.index('rescore') + 1]}"
            self.sql[key] = self.sql.get(key, 0.0) + took

    def detach(self) -> None:
        while self._undo:
            self._undo.pop()()

    def summary(self, events: int | None = None) -> dict[str, Any]:
        """Seconds, share, ms per batch and µs per event (``events``: those the batches
        carried) of each step, and of it inside SQL statements."""
        handle = self.seconds["handle"]
        batches = self.calls["handle"]
        inner = sum(self.seconds[s] for s in STEPS)
        steps: dict[str, Any] = {}
        for step in (*STEPS, "other"):
            took = handle - inner if step == "other" else self.seconds[step]
            sql = self.sql.get("handle" if step == "other" else step, 0.0)
            steps[step] = {
                "seconds": round(took, 3),
                "share_of_handle": round(took / handle, 3) if handle else None,
                "ms_per_batch": round(took / batches * 1e3, 2) if batches else None,
                "us_per_event": round(took / events * 1e6, 2) if events else None,
                "sql_seconds": round(sql, 3),
                "sql_us_per_event": round(sql / events * 1e6, 2) if events else None,
            }
        sql_in_handle = sum(v for k, v in self.sql.items() if "." not in k and "outside" not in k)
        return {
            "handle_calls": batches,
            "handle_seconds": round(handle, 3),
            "events": events,
            "handle_us_per_event": round(handle / events * 1e6, 2) if events else None,
            "sql_in_handle_us_per_event": round(sql_in_handle / events * 1e6, 2)
            if events
            else None,
            "steps": steps,
            "rescore_parts": {
                where: {
                    part: {
                        "seconds": round(took, 3),
                        "sql_seconds": round(self._part_sql(where, part), 3),
                    }
                    for part, took in sorted(found.items(), key=lambda kv: -kv[1])
                }
                for where, found in self.parts.items()
            },
            "outside_handle_seconds": {k: round(v, 3) for k, v in self.outside.items()},
            "sql_outside_handle_seconds": {
                k: round(v, 3) for k, v in self.sql.items() if k.startswith("outside")
            },
            "absent_steps": self.absent,
        }

    def _part_sql(self, where: str, part: str) -> float:
        return self.sql.get(f"{where}.{part}", 0.0)


def metric_sum(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    total = 0.0
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total
