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
        for header in (
            "processes",
            "batch max",
            "s",
            "events/s",
            "events/s after first",
            "bare",
            "ratio",
            "ratio after first",
            "CPU",
        ):
            table.add_column(header, justify="right")
        for data in result["processes"].values():
            table.add_row(
                str(data["processes"]),
                str(data["scoring_batch_max"]),
                f"{data['seconds']:.1f}",
                _n(data["events_per_s"]),
                _n(data["events_per_s_after_first_poll"]),
                _n(data.get("bare_events_per_s")),
                _n(data.get("ratio"), ".3f"),
                _n(data.get("ratio_after_first"), ".3f"),
                _cores(data["cpu_cores"]),
            )
        out.print(table)
        out.print(
            "'after first' leaves out start-up: imports, the group join, the first fetch. "
            "bare = the in-process phase's bare consumer at that batch size; target ≥ 0.5."
        )


def _print_state(result: dict[str, Any]) -> None:
    """The state's size per account: the hot usage value, and the tables."""
    table = Table(title="state per account: the hot usage value and the tables (PostgreSQL)")
    for header in (
        "state",
        "accounts",
        "events/acct",
        "usage value B median/mean/p90",
        "without dedup ids, median",
        "account_usage B/acct",
        "activity_daily B/acct",
        "health_daily B/acct",
        "all state B/acct",
        "all, as run",
    ):
        table.add_column(header, justify="right")
    for name, s in result["state"].items():
        vac = s.get("vacuum_full", s["as_run"])
        hot, tables = s["hot_state"], vac["tables_bytes_per_account"]
        spread = hot.get("bytes", {})
        table.add_row(
            name,
            f"{s['accounts']:,}",
            _n(s["events_per_account"], ".0f"),
            "/".join(_n(spread.get(k)) for k in ("median", "mean", "p90")),
            _n(hot.get("bytes_without_dedup_ids", {}).get("median")),
            _n(tables.get("account_usage")),
            _n(tables.get("activity_daily")),
            _n(tables.get("health_daily")),
            _n(vac["state_bytes_per_account"]),
            _n(s["as_run"]["state_bytes_per_account"]),
        )
    out.print(table)
    for name, s in result["state"].items():
        hot = s["hot_state"]
        if hot.get("accounts"):
            out.print(
                f"{name}: median account {_n(hot['users']['median'])} users, "
                f"{_n(hot['days']['median'])} days kept, "
                f"{_n(hot['events_per_day']['median'], '.1f')} events per day, "
                f"{_n(hot['names']['median'])} distinct names "
                f"({_n(hot['event_names']['median'])} events, {_n(hot['modules']['median'])} "
                f"modules, {_n(hot['platforms']['median'])} platforms), "
                f"{_n(hot['dedup_ids']['median'])} ids in the dedup window"
            )
    for shape in result.get("hot_state_synthetic", []):
        spread = shape["bytes"]
        out.print(
            f"synthetic account, {shape['days']} days kept, {shape['users']} users, "
            f"{shape['events_per_day']} events a day: usage value median {_n(spread['median'])} "
            f"B (p90 {_n(spread['p90'])})"
        )
    out.print(
        "usage value = the stored account_usage.state (msgspec + zstd), in bytes; target "
        "≤ 2 KB per typical account. Table columns: pg_total_relation_size per account "
        "after VACUUM FULL (heap, TOAST, indexes); 'as run' before it."
    )


def _print_sweep(result: dict[str, Any]) -> None:
    """The daily sweep of quiet accounts (when measured)."""
    if not result.get("sweep"):
        return
    table = Table(title="sweep of quiet accounts a day later (QuietAccountSweep.run_once)")
    for header in ("state", "accounts", "seconds", "accounts/s", "s per 100k", "SQL share"):
        table.add_column(header, justify="right")
    for name, data in result["sweep"].items():
        table.add_row(
            name,
            f"{data['accounts_swept']:,}",
            f"{data['seconds']:.2f}",
            _n(data["accounts_per_s"]),
            _n(data["seconds_per_100k_accounts"], ".1f"),
            _n(data["sql"]["share_of_wall"], ".2f"),
        )
    out.print(table)
    out.print("target: 100,000 quiet accounts ≤ 10 s.")


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
    out.print(
        "target ≥ 200k events/s, score history included. 'lines only' excludes the "
        "closing sweep of quiet accounts."
    )


def _print_steps(result: dict[str, Any]) -> None:
    """Where a batch's time goes, step by step, for every run: µs per event."""
    table = Table(title="where the time goes: µs per event in batches (of it in SQL statements)")
    table.add_column("run")
    table.add_column("records/batch", justify="right")
    for step in (*STEPS, "other"):
        table.add_column(step, justify="right")
    table.add_column("all", justify="right")
    rows = [(f"scoring {k}", d["scoring"]) for k, d in result["scoring"].items()]
    rows += [(f"import {k}", d) for k, d in result["import"].items()]
    for name, data in rows:
        steps = data["steps"]
        calls = steps["handle_calls"]
        per = data["imported"] / calls if "imported" in data and calls else None
        per = data.get("records_per_batch_mean", per)
        cells = [
            f"{_n(st['us_per_event'], '.1f')} ({_n(st['sql_us_per_event'], '.1f')})"
            for st in (steps["steps"][step] for step in (*STEPS, "other"))
        ]
        total = (
            f"{_n(steps['handle_us_per_event'], '.1f')} "
            f"({_n(steps['sql_in_handle_us_per_event'], '.1f')})"
        )
        table.add_row(name, _n(per), *cells, total)
    out.print(table)
    out.print(
        "decode = bytes → events; load = the batch's usage states (one SELECT); dedup = "
        "drop_duplicates (the 48-hour id window in the states); apply = apply_events; "
        "relationship = touchpoints/NPS; rescore = measures, history, score_account, writes; "
        "save = changed states + activity_daily; publish = alerts into the outbox; relay = "
        "the outbox to Kafka after the commit; other = "
        "transaction begin/commit, metrics. The import's daily scoring and the sweeps run "
        "outside batches: their rescore parts are in the JSON (steps.rescore_parts)."
    )
    for name, data in rows:
        parts = data["steps"]["rescore_parts"]
        for where, found in parts.items():
            if found:
                out.print(
                    f"{name}, rescore {where.replace('_', ' ')}: "
                    + ", ".join(
                        f"{part} {v['seconds']:.2f} s (SQL {v['sql_seconds']:.2f})"
                        for part, v in found.items()
                    )
                )


def print_tables(result: dict[str, Any]) -> None:
    _print_workload(result)
    _print_scoring(result)
    _print_processes(result)
    _print_state(result)
    _print_import(result)
    _print_sweep(result)
    _print_steps(result)
    for warning in result.get("warnings", []):
        out.print(f"[yellow]warning: {warning}[/]")
