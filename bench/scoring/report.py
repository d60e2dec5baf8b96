"""The scoring bench's JSON report and its warnings."""

from __future__ import annotations

import contextlib
import importlib.metadata
import shlex
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lib.measure import changed_files, git_state, machine_info
from lib.services import Services

import services.scoring.processor as processor_module
from scoring.options import Options


def versions() -> dict[str, str]:
    found = {}
    for lib in ("asyncpg", "sqlalchemy", "aiosqlite", "aiokafka", "pydantic", "orjson", "alembic"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[lib] = importlib.metadata.version(lib)
    return found


def report(
    opts: Options, results: dict[str, Any], services: Services, argv: Sequence[str]
) -> dict[str, Any]:
    machine = machine_info(services.kafka_version)
    machine["libraries"].update(versions())
    pg_versions = {s.get("server_version") for s in results["state"].values()}
    machine["postgresql"] = ", ".join(sorted(v for v in pg_versions if v))
    return {
        "benchmark": "scoring: consumer path vs bare consumer; state size; healthwatch import",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": shlex.join(["python", *argv]),
        "git": {**git_state(), "changed_files": changed_files()},
        # Where services/ and shared/ were imported from (a snapshot via PYTHONPATH, or ROOT).
        "code_root": str(Path(processor_module.__file__).resolve().parents[2]),
        "machine": machine,
        "config": {
            "events": opts.events,
            "accounts": opts.accounts,
            "users_per_account": opts.users,
            "days": opts.days,
            "scoring_batch_max": opts.batches,
            "state_accounts": opts.state_accounts,
            "state_events_per_account": opts.state_events_per_account,
            "partitions": results["partitions"],
            "scoring_timeout_s": opts.scoring_timeout,
            "bare_rounds": opts.bare_rounds,
            "vacuum_full": opts.vacuum,
            "import_of_main_workload": opts.imports,
            "seed": opts.seed,
            "broker": f"external {opts.bootstrap}" if opts.bootstrap else "local single-node KRaft",
            "postgresql": "external" if opts.postgres_url else "local cluster (devservices)",
        },
        **{k: v for k, v in results.items() if k != "partitions"},
    }


def warnings_for(result: dict[str, Any]) -> list[str]:
    found = []
    phases: list[tuple[str, dict[str, Any]]] = []
    for tag, data in result["scoring"].items():
        phases += [(f"bare {tag}", data["bare"]), (f"scoring {tag}", data["scoring"])]
        sc = data["scoring"]
        if not sc["complete"]:
            found.append(f"scoring {tag} did not finish within the timeout")
        if sc["events_seen"] != sc["records_consumed_per_offsets"]:
            found.append(
                f"scoring {tag}: the usage states count {sc['events_seen']} distinct events "
                f"applied, the offsets {sc['records_consumed_per_offsets']} records"
            )
        if sc["usage_events_in_activity_daily"] != sc["usage_events_expected"]:
            found.append(
                f"scoring {tag}: {sc['usage_events_in_activity_daily']} usage events in "
                f"activity_daily, expected {sc['usage_events_expected']}"
            )
    for count, data in result.get("processes", {}).items():
        phases.append((f"{count} processes", data))
        if data["events_seen"] != data["records_consumed_per_offsets"]:
            found.append(
                f"{count} processes: {data['events_seen']} distinct events in the usage "
                f"states, {data['records_consumed_per_offsets']} records per the offsets"
            )
    for name, data in result["sweep"].items():
        phases.append((f"sweep {name}", data))
        accounts = result["state"].get(name, {}).get("accounts")
        if accounts is not None and data["accounts_swept"] != accounts:
            found.append(f"sweep {name}: {data['accounts_swept']} swept of {accounts} accounts")
    for name, data in result["import"].items():
        phases.append((f"import {name}", data))
        if data["events_seen"] != data["lines"]:
            found.append(
                f"import {name}: {data['events_seen']} distinct events in the usage states, "
                f"{data['lines']} lines"
            )
        if (
            data["rejected"]
            or data["usage_events_in_activity_daily"] != data["usage_events_expected"]
        ):
            found.append(
                f"import {name}: {data['rejected']} rejected lines, "
                f"{data['usage_events_in_activity_daily']} usage events in state, "
                f"expected {data['usage_events_expected']}"
            )
    for name, data in phases:
        other = data["cpu_cores"].get("other")
        if other is not None and other > 0.25:
            found.append(f"{name}: other processes used {other:.2f} cores (busy machine)")
    return found
