"""The scoring bench's printed tables."""

from __future__ import annotations

from typing import Any

from lib.console import out
from rich.table import Table

from scoring.timers import STEPS


def _n(value: float | None, fmt: str = ",.0f") -> str:
    return "-" if value is None else format(value, fmt)


def _cores(c: dict[str, float | None]) -> str:
    return "/".join(
        "-" if c.get(k) is None else f"{c[k]:.2f}" for k in ("bench", "broker", "postgres", "other")
    )


def _print_workload(result: dict[str, Any]) -> None:
    """The workload's one-line summary."""
    wl = result["workload"]
    out.print(
        f"workload: {wl['accounts']:,} accounts (~{wl['users_per_account_mean']} users), "
        f"{wl['usage_events']:,} usage events over {wl['days']} days + "
        f"{wl['account_facts_events']:,} account facts = {wl['records_total']:,} records "
        f"(mean {wl['mean_record_bytes']} bytes on Kafka); produced at "
        f"{_n(wl['produce_events_per_s'])} events/s"
    )


def _print_scoring(result: dict[str, Any]) -> None:
    """Scoring against the bare consumer, per batch size, and the bare rounds."""
    table = Table(title="scoring through the consumer path vs a bare consumer (events/s)")
    for header in (
        "batch max",
        "bare",
        "scoring",
        "ratio",
        "scoring s",
        "batches",
        "ms/batch",
        "SQL stmts/batch",
        "SQL share",
        "CPU bench/kafka/pg/other",
    ):
        table.add_column(header, justify="right")
    for data in result["scoring"].values():
        bare, sc = data["bare"], data["scoring"]
        table.add_row(
            str(data["scoring_batch_max"]),
            _n(bare["events_per_s"]),
            _n(sc["events_per_s"]) + ("" if sc["complete"] else " (incomplete)"),
            _n(data["ratio"], ".3f"),
            f"{sc['seconds']:.1f}",
            f"{sc['batches']:,}",
            _n(sc["batch_ms_mean"], ".1f"),
            _n(sc["sql"].get("statements_per_batch"), ".1f"),
            _n(sc["sql"]["share_of_wall"], ".2f"),
            _cores(sc["cpu_cores"]),
        )
    out.print(table)
    for data in result["scoring"].values():
        rounds = data["bare"].get("rounds", [])
        out.print(
            f"bare consumer rounds, max_records={data['scoring_batch_max']}: "
            + ", ".join(f"{_n(r['events_per_s'])} ({r['seconds']:.2f} s)" for r in rounds)
            + " events/s; the median is used"
        )
    out.print(
        "ratio = scoring events/s ÷ bare consumer events/s, both from start to last record; "
        "target ≥ 0.5. SQL share = time inside SQL statements ÷ scoring wall time."
    )


def _print_processes(result: dict[str, Any]) -> None:
    """Scoring in service processes (when measured)."""
    if result.get("processes"):
        table = Table(title="scoring in N `healthwatch scoring` processes, one consumer group")
        for header in ("processes", "batch max", "s", "events/s", "events/s after first", "CPU"):
            table.add_column(header, justify="right")
        for data in result["processes"].values():
            table.add_row(
                str(data["processes"]),
                str(data["scoring_batch_max"]),
                f"{data['seconds']:.1f}",
                _n(data["events_per_s"]),
                _n(data["events_per_s_after_first_poll"]),
                _cores(data["cpu_cores"]),
            )
        out.print(table)
        out.print("'after first' leaves out start-up: imports, the group join, the first fetch.")


def _print_state(result: dict[str, Any]) -> None:
    """The state's size per account."""
    table = Table(title="state size per account (PostgreSQL, pg_total_relation_size)")
    for header in (
        "state",
        "accounts",
        "events/acct",
        "state B/acct",
        "dedup B/acct",
        "state B/acct (as run)",
        "dedup B/acct (as run)",
    ):
        table.add_column(header, justify="right")
    for name, s in result["state"].items():
        vac = s.get("vacuum_full", s["as_run"])
        table.add_row(
            name,
            f"{s['accounts']:,}",
            _n(s["events_per_account"], ".0f"),
            _n(vac["state_bytes_per_account"]),
            _n(vac["dedup_bytes_per_account"]),
            _n(s["as_run"]["state_bytes_per_account"]),
            _n(s["as_run"]["dedup_bytes_per_account"]),
        )
    out.print(table)
    out.print(
        "B/acct columns without '(as run)' are after VACUUM FULL (live data); dedup = "
        "processed_events, the dedup log (one row per event ever processed)."
    )


def _print_import(result: dict[str, Any]) -> None:
    """The file import, per target database."""
    table = Table(title="healthwatch import (import_files), events/s")
    for header in (
        "target",
        "events",
        "seconds",
        "events/s",
        "lines only ev/s",
        "sweep s",
        "SQL share",
        "CPU bench/kafka/pg/other",
    ):
        table.add_column(header, justify="right")
    for name, data in result["import"].items():
        table.add_row(
            name,
            f"{data['imported']:,}",
            f"{data['seconds']:.1f}",
            _n(data["events_per_s"]),
            _n(data["events_per_s_lines_only"]),
            _n(data["seconds_sweep"], ".1f"),
            _n(data["sql"]["share_of_wall"], ".2f"),
            _cores(data["cpu_cores"]),
        )
    out.print(table)
    out.print("target ≥ 100k events/s. 'lines only' excludes the closing sweep of quiet accounts.")


def _print_steps(result: dict[str, Any]) -> None:
    """Where a batch's time goes, step by step, for every run."""
    table = Table(title="where a batch's time goes: ms per batch (of it in SQL statements)")
    table.add_column("run")
    table.add_column("records/batch", justify="right")
    for step in (*STEPS, "other"):
        table.add_column(step, justify="right")
    rows = [(f"scoring {k}", d["scoring"]) for k, d in result["scoring"].items()]
    rows += [(f"import {k}", d) for k, d in result["import"].items()]
    for name, data in rows:
        steps = data["steps"]
        calls = steps["handle_calls"]
        per = data["imported"] / calls if "imported" in data and calls else None
        per = data.get("records_per_batch_mean", per)
        cells = []
        for step in (*STEPS, "other"):
            st = steps["steps"][step]
            sql_ms = st["sql_seconds"] / calls * 1e3 if calls else None
            cells.append(f"{_n(st['ms_per_batch'], '.1f')} ({_n(sql_ms, '.1f')})")
        table.add_row(name, _n(per), *cells)
    out.print(table)
    out.print(
        "decode = JSON → pydantic; dedup = processed_events insert; apply = apply_events (state "
        "tables); rescore = measures, model, history; publish = alerts to Kafka; other = "
        "transaction begin/commit, metrics. The sweep's rescoring (outside batches) is not "
        "included."
    )


def print_tables(result: dict[str, Any]) -> None:
    _print_workload(result)
    _print_scoring(result)
    _print_processes(result)
    _print_state(result)
    _print_import(result)
    _print_steps(result)
    for warning in result.get("warnings", []):
        out.print(f"[yellow]warning: {warning}[/]")
