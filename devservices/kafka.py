"""A single-node Apache Kafka broker (KRaft) from Maven Central jars, cached once."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from devservices.files import file_lock, tail
from devservices.kafka_wire import broker_ready
from devservices.ports import HOST, free_port, port_open

log = logging.getLogger("healthwatch.devservices")

#: Kafka version fetched from Maven Central (passed to the pom as ``-Dkafka.version``).
KAFKA_VERSION = "4.1.1"

_HERE = Path(__file__).resolve().parent
_POM = _HERE / "resources" / "pom.xml"
_LOG4J2 = _HERE / "resources" / "log4j2.properties"
_LOG4J2_FALLBACK = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.target = SYSTEM_OUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d{ISO8601}] %-5p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.console.ref = STDOUT
"""

# The broker's message.max.bytes: at least healthwatch's MAX_MESSAGE_BYTES (4 MiB), so
# the largest message a producer may send fits however its topic was created.
BROKER_MAX_MESSAGE_BYTES = 4 * 1024 * 1024


def default_cache_dir() -> Path:
    """Jar cache root: ``$HEALTHWATCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/healthwatch``,
    else ``~/.cache/healthwatch``."""
    env = os.environ.get("HEALTHWATCH_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "healthwatch"


def _kafka_lib_dir(cache_dir: Path | None, version: str = KAFKA_VERSION) -> Path:
    return (cache_dir or default_cache_dir()) / f"kafka-{version}" / "lib"


def _kafka_lib_complete(lib: Path, version: str) -> bool:
    return (lib / f"kafka_2.13-{version}.jar").is_file()


def fetch_kafka(cache_dir: Path | None = None) -> Path:
    """Make sure the Kafka broker jars are cached; return the ``lib`` directory.

    The jars are resolved with Maven from Maven Central into a temporary directory
    and renamed into place only when complete, so an interrupted download is never
    mistaken for a cached one. A file lock serialises concurrent first runs.
    """
    version = KAFKA_VERSION
    lib = _kafka_lib_dir(cache_dir, version)
    if _kafka_lib_complete(lib, version):
        return lib
    root = lib.parent.parent
    with file_lock(root / f".kafka-{version}.lock"):
        if _kafka_lib_complete(lib, version):  # another process fetched it meanwhile
            return lib
        # Holding the lock, any leftover temp dir is from an interrupted run.
        for stale in root.glob(f".kafka-{version}-tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        if lib.exists():
            shutil.rmtree(lib)
        mvn = shutil.which("mvn")
        if mvn is None:
            raise RuntimeError(
                "Maven ('mvn') is needed once to fetch the Kafka jars from Maven Central; "
                "install it (e.g. 'apt-get install -y maven')"
            )
        if not _POM.is_file():
            raise RuntimeError(f"Kafka classpath pom not found: {_POM}")
        log.info("fetching Kafka %s jars from Maven Central (first run only)…", version)
        started = time.monotonic()
        tmp = Path(tempfile.mkdtemp(prefix=f".kafka-{version}-tmp-", dir=root))
        try:
            shutil.copy2(_POM, tmp / "pom.xml")  # keep Maven's output out of the repo
            cmd = [
                mvn,
                "-q",
                "-B",
                "-f",
                str(tmp / "pom.xml"),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={tmp / 'lib'}",
                f"-Dkafka.version={version}",
            ]
            proc = subprocess.run(
                cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
            )
            if proc.returncode != 0 or not _kafka_lib_complete(tmp / "lib", version):
                output = (proc.stdout + proc.stderr).strip().splitlines()[-40:]
                raise RuntimeError(
                    f"fetching Kafka {version} jars failed (exit {proc.returncode}): "
                    + shlex.join(cmd)
                    + "\n"
                    + "\n".join(output)
                )
            lib.parent.mkdir(parents=True, exist_ok=True)
            os.rename(tmp / "lib", lib)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info(
            "cached %d Kafka jars in %s (%.1fs)",
            len(list(lib.glob("*.jar"))),
            lib,
            time.monotonic() - started,
        )
    return lib


def _find_java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    java = shutil.which("java")
    if java is None:
        raise RuntimeError(
            "Java 17+ is needed to run Kafka 4 (e.g. 'apt-get install -y openjdk-17-jre-headless')"
        )
    return java


def _new_cluster_id() -> str:
    """A Kafka cluster id, same format as ``kafka-storage random-uuid`` (no extra JVM)."""
    while True:
        cid = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


class KafkaBroker:
    """A single-node Apache Kafka (KRaft broker+controller) on 127.0.0.1.

    ``workdir`` holds ``server.properties``, the data dir (``data/``), the broker log
    (``kafka.log``) and ``ports.json``. Storage is formatted on the first start only, so
    ``stop()``/``kill()`` followed by ``start()`` restarts the same broker, with its data,
    on the same ports. When ``port``/``controller_port`` are not given, the ports of a
    previous run in the same ``workdir`` are reused, else free ports are picked.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        controller_port: int | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.cache_dir = cache_dir
        saved = self._load_state()
        self.port: int = port or saved.get("port") or free_port()
        controller = controller_port or saved.get("controller_port")
        while controller is None or controller == self.port:
            controller = free_port()
        self.controller_port: int = controller
        if saved and (saved.get("port"), saved.get("controller_port")) != (
            self.port,
            self.controller_port,
        ):
            log.warning(
                "Kafka workdir %s was formatted for ports %s/%s, now using %s/%s",
                self.workdir,
                saved.get("port"),
                saved.get("controller_port"),
                self.port,
                self.controller_port,
            )
        self._proc: subprocess.Popen[bytes] | None = None

    # -- paths / state
    @property
    def bootstrap(self) -> str:
        """``bootstrap_servers`` for clients: ``127.0.0.1:PORT``."""
        return f"{HOST}:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def log_file(self) -> Path:
        return self.workdir / "kafka.log"

    @property
    def config_file(self) -> Path:
        return self.workdir / "server.properties"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _state_file(self) -> Path:
        return self.workdir / "ports.json"

    def _load_state(self) -> dict[str, int]:
        try:
            raw = json.loads(self._state_file().read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(raw, dict):
            return {}
        return {k: v for k, v in raw.items() if isinstance(v, int)}

    def _write_config(self) -> None:
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"{HOST}:{self.controller_port}",
            "listeners": f"PLAINTEXT://{HOST}:{self.port},CONTROLLER://{HOST}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "3",
            "auto.create.topics.enable": "true",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # Kafka's sample config uses 0 for development and tests (default 3000 ms).
            "group.initial.rebalance.delay.ms": "0",
            # After kill() the controller keeps the old broker registration alive until its
            # session expires, and only then lets the restarted broker in: shorten that
            # wait (defaults 9000/2000 ms) so a crash-and-restart test is quick.
            "broker.session.timeout.ms": "4000",
            "broker.heartbeat.interval.ms": "1000",
            # healthwatch's producers send messages up to 4 MiB (shared/bus/kafka.py
            # MAX_MESSAGE_BYTES; the topics it creates say so too): allow them on topics
            # created any other way (auto-creation), above the 1 MB default.
            "message.max.bytes": str(BROKER_MAX_MESSAGE_BYTES),
        }
        text = "# written by devservices/kafka.py\n" + "".join(
            f"{k}={v}\n" for k, v in props.items()
        )
        self.config_file.write_text(text)
        self._state_file().write_text(
            json.dumps({"port": self.port, "controller_port": self.controller_port}) + "\n"
        )

    def _log4j_config(self) -> Path:
        if _LOG4J2.is_file():
            return _LOG4J2
        path = self.workdir / "log4j2.properties"
        path.write_text(_LOG4J2_FALLBACK)
        return path

    def _java_base(self, java: str, lib: Path) -> list[str]:
        return [
            java,
            f"-Dlog4j2.configurationFile=file:{self._log4j_config()}",
            "-cp",
            str(lib / "*"),
        ]

    def _format_storage(self, java: str, lib: Path) -> None:
        if (self.data_dir / "meta.properties").is_file():
            return
        if self.data_dir.exists():  # half-formatted by an interrupted earlier run
            shutil.rmtree(self.data_dir)
        cluster_id = _new_cluster_id()
        log.info("formatting Kafka storage in %s (cluster id %s)", self.data_dir, cluster_id)
        cmd = [
            *self._java_base(java, lib),
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            "-t",
            cluster_id,
            "-c",
            str(self.config_file),
        ]
        proc = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            raise RuntimeError(
                f"formatting Kafka storage failed (exit {proc.returncode}):\n"
                + (proc.stdout + proc.stderr).strip()
            )

    # -- lifecycle
    def start(self, timeout: float = 90) -> None:
        """Start the broker (fetching jars / formatting storage if needed) and wait until ready."""
        if self.running:
            return
        started = time.monotonic()
        deadline = started + timeout
        lib = fetch_kafka(self.cache_dir)
        java = _find_java()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        self._format_storage(java, lib)
        for port in (self.port, self.controller_port):
            if port_open(port, timeout=0.2):
                raise RuntimeError(f"port {HOST}:{port} is already in use; cannot start Kafka")
        cmd = [
            java,
            "-Xms256m",
            "-Xmx512m",
            "-Djava.awt.headless=true",
            *self._java_base(java, lib)[1:],
            "kafka.Kafka",
            str(self.config_file),
        ]
        log.info("starting Kafka %s on %s (log: %s)", KAFKA_VERSION, self.bootstrap, self.log_file)
        with self.log_file.open("ab") as out:
            out.write(f"\n=== devservices: starting Kafka at {time.ctime()} ===\n".encode())
            out.flush()
            self._proc = subprocess.Popen(
                cmd,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: no stray Ctrl-C, killpg works
            )
        try:
            self._wait_ready(deadline)
        except BaseException:
            self.kill()
            raise
        log.info("Kafka ready on %s after %.1fs", self.bootstrap, time.monotonic() - started)

    def _wait_ready(self, deadline: float) -> None:
        proc = self._proc
        assert proc is not None
        while True:
            code = proc.poll()
            if code is not None:
                raise RuntimeError(
                    f"Kafka exited with code {code} during startup; last lines of "
                    f"{self.log_file}:\n{tail(self.log_file)}"
                )
            if port_open(self.port) and broker_ready(self.port):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"Kafka did not become ready on {self.bootstrap}; last lines of "
                    f"{self.log_file}:\n{tail(self.log_file)}"
                )
            time.sleep(0.2)

    def _signal(self, sig: signal.Signals) -> None:
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)

    def stop(self, timeout: float = 30) -> None:
        """Graceful shutdown: SIGTERM, wait up to ``timeout``, then SIGKILL."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            log.info("stopping Kafka on %s", self.bootstrap)
            self._signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("Kafka did not stop within %.0fs; killing it", timeout)
                self._signal(signal.SIGKILL)
                proc.wait()
        self._signal(signal.SIGKILL)  # anything left in the process group
        self._proc = None

    def kill(self) -> None:
        """Hard stop (SIGKILL), e.g. to simulate a broker crash. ``start()`` works afterwards."""
        proc = self._proc
        if proc is None:
            return
        self._signal(signal.SIGKILL)
        proc.wait()
        self._proc = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (
            f"KafkaBroker({self.bootstrap!r}, workdir={str(self.workdir)!r}, "
            f"running={self.running})"
        )
