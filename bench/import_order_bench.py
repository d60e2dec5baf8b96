"""``healthwatch import`` of one history written in time order and sorted by account
(an export ``ORDER BY account_id``), each into a fresh SQLite database: seconds, peak
memory of the process, and whether the two score histories are the same.

    python bench/import_order_bench.py --accounts 200 --events 20000 --days 20

The scoring bench's workload (``scoring/workload.py``, as ``sweep_bench.py`` writes it),
10 users an account on average. Each import runs ``python -m services.cli import`` in a
process of its own, timed from outside (``/usr/bin/time``'s maximum resident size).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
from sweep_bench import write_workload

ROOT = Path(__file__).resolve().parent.parent


def run_import(path: Path, database: Path) -> dict[str, float]:
    """Import ``path`` into ``database`` in a process of its own: seconds, peak KB."""
    env = {**os.environ, "HEALTHWATCH_DATABASE_URL": f"sqlite+aiosqlite:///{database}"}
    command = ["/usr/bin/time", "-f", "%M", sys.executable, "-m", "services.cli", "import"]
    started = time.perf_counter()
    done = subprocess.run(
        [*command, str(path)], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 2), "peak_kb": float(done.stderr.strip().splitlines()[-1])}


def history(database: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(database) as conn:
        return conn.execute(
            "SELECT account_id, day, score, band FROM health_daily ORDER BY 1, 2"
        ).fetchall()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="import-order-") as folder:
        work = Path(folder)
        by_time = work / "by-time.ndjson"
        write_workload(by_time, args.accounts, args.events, args.days, args.seed)
        lines = by_time.read_bytes().splitlines()
        by_account = work / "by-account.ndjson"
        ordered = sorted(lines, key=lambda line: orjson.loads(line)["account_id"])
        by_account.write_bytes(b"\n".join(ordered) + b"\n")
        results: dict[str, object] = {"lines": len(lines), **vars(args), "out": None}
        histories = {}
        for name, path in (("by_time", by_time), ("by_account", by_account)):
            database = work / f"{name}.db"
            results[name] = run_import(path, database)
            histories[name] = history(database)
            print(f"{name}: {results[name]}", flush=True)
        results["same_history"] = histories["by_time"] == histories["by_account"]
        results["history_rows"] = len(histories["by_time"])
        print(f"same score history: {results['same_history']} ({results['history_rows']} rows)")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
