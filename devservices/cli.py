"""Command line: ``python -m devservices kafka|postgres|fetch-kafka|install-postgres``."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from devservices.kafka import KafkaBroker, fetch_kafka
from devservices.postgres import PostgresCluster, ensure_postgres_installed, find_postgres_bindir

log = logging.getLogger("healthwatch.devservices")


def _wait_for_signal(is_alive: Callable[[], bool] | None = None) -> None:
    """Block until SIGINT/SIGTERM (or until ``is_alive()`` turns false)."""
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    while not stop.wait(1.0):
        if is_alive is not None and not is_alive():
            raise RuntimeError("service exited unexpectedly")


def _workdir(arg: str | None, prefix: str) -> tuple[Path, bool]:
    if arg:
        return Path(arg), False
    path = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(path, 0o755)
    return path, True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devservices", description="Run healthwatch's local Kafka / PostgreSQL."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    p_kafka = sub.add_parser("kafka", help="run a Kafka broker in the foreground")
    p_kafka.add_argument("--dir", help="work dir (kept; default: a temp dir removed on exit)")
    p_kafka.add_argument("--port", type=int, help="broker port (default: free port)")
    p_kafka.add_argument("--controller-port", type=int, help="KRaft controller port")
    p_kafka.add_argument(
        "--cache-dir", type=Path, help="jar cache (default: %(default)s)", default=None
    )
    p_pg = sub.add_parser("postgres", help="run a PostgreSQL cluster in the foreground")
    p_pg.add_argument("--dir", help="work dir (kept; default: a temp dir removed on exit)")
    p_pg.add_argument("--port", type=int, help="port (default: free port)")
    p_fetch = sub.add_parser("fetch-kafka", help="only download and cache the Kafka jars")
    p_fetch.add_argument("--cache-dir", type=Path, default=None)
    sub.add_parser("install-postgres", help="apt-get install postgresql if missing (root)")
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
        if args.command == "fetch-kafka":
            print(fetch_kafka(args.cache_dir), flush=True)
        elif args.command == "install-postgres":
            ensure_postgres_installed()
            print(find_postgres_bindir(), flush=True)
        elif args.command == "kafka":
            workdir, temporary = _workdir(args.dir, "healthwatch-kafka-")
            broker = KafkaBroker(
                workdir,
                port=args.port,
                controller_port=args.controller_port,
                cache_dir=args.cache_dir,
            )
            try:
                broker.start()
                print(f"KAFKA_BOOTSTRAP={broker.bootstrap}", flush=True)
                _wait_for_signal(lambda: broker.running)
            finally:
                broker.stop()
                if temporary:
                    shutil.rmtree(workdir, ignore_errors=True)
        elif args.command == "postgres":
            workdir, temporary = _workdir(args.dir, "healthwatch-pg-")
            cluster = PostgresCluster(workdir, port=args.port)
            try:
                cluster.start()
                print(f"DATABASE_URL={cluster.url}", flush=True)
                _wait_for_signal()
            finally:
                cluster.stop()
                if temporary:
                    shutil.rmtree(workdir, ignore_errors=True)
    except (RuntimeError, TimeoutError, subprocess.CalledProcessError) as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
