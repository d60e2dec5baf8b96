"""Real local services for healthwatch: an Apache Kafka broker and a PostgreSQL cluster.

Used by the pytest fixtures and by developers; stdlib only, no Docker.

* Kafka: the real Apache Kafka broker (single-node KRaft, broker+controller in one
  JVM), assembled from Maven Central jars with ``deploy/local/kafka/pom.xml`` and
  cached under ``$HEALTHWATCH_CACHE_DIR`` (default ``~/.cache/healthwatch``).
* PostgreSQL: a throwaway cluster made with the server's own ``initdb``/``pg_ctl``.
  When run as root the server processes run as the ``postgres`` system user, since
  PostgreSQL refuses to run as root.

Command line::

    python deploy/local/localservices.py kafka [--dir D] [--port P]
    python deploy/local/localservices.py postgres [--dir D] [--port P]
    python deploy/local/localservices.py fetch-kafka [--cache-dir D]
    python deploy/local/localservices.py install-postgres
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import glob
import json
import logging
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Self

__all__ = [
    "KAFKA_VERSION",
    "KafkaBroker",
    "PostgresCluster",
    "default_cache_dir",
    "ensure_postgres_installed",
    "fetch_kafka",
    "find_postgres_bindir",
    "free_port",
    "main",
]

log = logging.getLogger("healthwatch.localservices")

#: Kafka version fetched from Maven Central (passed to the pom as ``-Dkafka.version``).
KAFKA_VERSION = "4.1.1"

_HERE = Path(__file__).resolve().parent
_POM = _HERE / "kafka" / "pom.xml"
_LOG4J2 = _HERE / "kafka" / "log4j2.properties"
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

_HOST = "127.0.0.1"
# The broker's message.max.bytes: at least healthwatch's MAX_MESSAGE_BYTES (4 MiB), so
# the largest message a producer may send fits however its topic was created.
BROKER_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
_PG_USER = "postgres"
_PG_BINARIES = ("initdb", "pg_ctl", "postgres")


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    """Return a TCP port that is currently free on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def default_cache_dir() -> Path:
    """Jar cache root: ``$HEALTHWATCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/healthwatch``,
    else ``~/.cache/healthwatch``."""
    env = os.environ.get("HEALTHWATCH_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "healthwatch"


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _port_open(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((_HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------- Kafka


def _kafka_lib_dir(cache_dir: Path | None, version: str = KAFKA_VERSION) -> Path:
    return (cache_dir or default_cache_dir()) / f"kafka-{version}" / "lib"


def _kafka_lib_complete(lib: Path, version: str) -> bool:
    return (lib / f"kafka_2.13-{version}.jar").is_file()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


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
    with _file_lock(root / f".kafka-{version}.lock"):
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


class _KafkaProtocolError(Exception):
    pass


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise _KafkaProtocolError("connection closed by broker")
        buf += chunk
    return bytes(buf)


def _kafka_call(
    sock: socket.socket, api_key: int, api_version: int, correlation_id: int, body: bytes
) -> bytes:
    """Send one non-flexible request (header v1) and return the response body (header v0)."""
    client_id = b"healthwatch-localservices"
    header = struct.pack(">hhih", api_key, api_version, correlation_id, len(client_id)) + client_id
    message = header + body
    sock.sendall(struct.pack(">i", len(message)) + message)
    (size,) = struct.unpack(">i", _recv_exact(sock, 4))
    payload = _recv_exact(sock, size)
    (got,) = struct.unpack_from(">i", payload, 0)
    if got != correlation_id:
        raise _KafkaProtocolError(f"correlation id {got} != {correlation_id}")
    return payload[4:]


_API_METADATA = 3
_API_VERSIONS = 18


def _kafka_broker_ready(port: int, timeout: float = 5.0) -> bool:
    """True when the broker answers ApiVersions and lists itself (unfenced) in Metadata."""
    try:
        with socket.create_connection((_HOST, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            body = _kafka_call(sock, _API_VERSIONS, 0, 1, b"")
            (error_code, count) = struct.unpack_from(">hi", body, 0)
            if error_code != 0:
                return False
            versions: dict[int, tuple[int, int]] = {}
            for i in range(count):
                key, lo, hi = struct.unpack_from(">hhh", body, 6 + 6 * i)
                versions[key] = (lo, hi)
            lo, hi = versions.get(_API_METADATA, (0, -1))
            if not lo <= 4 <= hi:
                return True  # cannot ask Metadata v4; ApiVersions answered, good enough
            # Metadata v4: topics = [] (none), allow_auto_topic_creation = false.
            body = _kafka_call(sock, _API_METADATA, 4, 2, struct.pack(">ib", 0, 0))
            (_throttle_ms, brokers) = struct.unpack_from(">ii", body, 0)
            return bool(brokers > 0)
    except (OSError, struct.error, _KafkaProtocolError):
        return False


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
        return f"{_HOST}:{self.port}"

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
            "controller.quorum.bootstrap.servers": f"{_HOST}:{self.controller_port}",
            "listeners": f"PLAINTEXT://{_HOST}:{self.port},CONTROLLER://{_HOST}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{_HOST}:{self.port}",
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
        text = "# written by deploy/local/localservices.py\n" + "".join(
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
            if _port_open(port, timeout=0.2):
                raise RuntimeError(f"port {_HOST}:{port} is already in use; cannot start Kafka")
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
            out.write(f"\n=== localservices: starting Kafka at {time.ctime()} ===\n".encode())
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
                    f"{self.log_file}:\n{_tail(self.log_file)}"
                )
            if _port_open(self.port) and _kafka_broker_ready(self.port):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"Kafka did not become ready on {self.bootstrap}; last lines of "
                    f"{self.log_file}:\n{_tail(self.log_file)}"
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


# --------------------------------------------------------------------------- PostgreSQL


def _has_pg_binaries(bindir: Path) -> bool:
    return all(os.access(bindir / b, os.X_OK) for b in _PG_BINARIES)


def _version_key(path: str) -> tuple[int, ...]:
    name = Path(path).parent.name  # /usr/lib/postgresql/<ver>/bin
    return tuple(int(p) for p in re.findall(r"\d+", name)) or (0,)


def find_postgres_bindir() -> Path | None:
    """Directory of the PostgreSQL server binaries, or None.

    Tried in order: ``pg_config --bindir``, the newest ``/usr/lib/postgresql/*/bin``, PATH.
    """
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=10
            ).stdout.strip()
            if out and _has_pg_binaries(Path(out)):
                return Path(out)
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True):
        if _has_pg_binaries(Path(candidate)):
            return Path(candidate)
    initdb = shutil.which("initdb")
    if initdb is not None and _has_pg_binaries(Path(initdb).parent):
        return Path(initdb).parent
    return None


def ensure_postgres_installed() -> None:
    """Install the PostgreSQL server with apt-get if it is missing (root only)."""
    if find_postgres_bindir() is not None:
        return
    command = "apt-get update && apt-get install -y postgresql"
    if os.geteuid() != 0:
        raise RuntimeError(
            f"PostgreSQL server binaries not found; install them with: sudo sh -c '{command}'"
        )
    apt = shutil.which("apt-get")
    if apt is None:
        raise RuntimeError(
            "PostgreSQL server binaries not found and apt-get is unavailable; install PostgreSQL"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log.info("installing PostgreSQL: %s", command)
    subprocess.run([apt, "update"], check=True, env=env, stdin=subprocess.DEVNULL)
    subprocess.run(
        [apt, "install", "-y", "postgresql"], check=True, env=env, stdin=subprocess.DEVNULL
    )
    if find_postgres_bindir() is None:
        raise RuntimeError("PostgreSQL was installed but its server binaries were not found")


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    log.info("creating system user %r to run PostgreSQL (it refuses to run as root)", name)
    subprocess.run(
        [useradd, "--system", "--user-group", "--no-create-home", "--shell", "/bin/sh", name],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return pwd.getpwnam(name)


def _traversable(path: Path, user: pwd.struct_passwd) -> bool:
    st = path.stat()
    if st.st_uid == user.pw_uid:
        return bool(st.st_mode & 0o100)
    if st.st_gid == user.pw_gid or st.st_gid in os.getgrouplist(user.pw_name, user.pw_gid):
        return bool(st.st_mode & 0o010)
    return bool(st.st_mode & 0o001)


class PostgresCluster:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (trust auth, superuser ``postgres``).

    ``workdir`` holds the data dir (``data/``), the server log (``postgres.log``) and the
    Unix socket. The cluster is created on the first ``start()`` and reused afterwards.
    As root, the server runs as the ``postgres`` system user and ``workdir`` is chowned
    to it (the user is created if missing).
    """

    def __init__(self, workdir: Path, *, port: int | None = None) -> None:
        bindir = find_postgres_bindir()
        if bindir is None:
            raise RuntimeError(
                "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; "
                "install them with: sudo apt-get install -y postgresql"
            )
        self.bindir: Path = bindir
        self.workdir = Path(workdir).resolve()
        self.port: int = port or free_port()
        self._user: pwd.struct_passwd | None = None
        self._started = False
        self._short_socket_dir: Path | None = None

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the ``postgres`` database."""
        return self.dsn("postgres")

    def dsn(self, dbname: str) -> str:
        """SQLAlchemy (asyncpg) URL of database ``dbname``."""
        return f"postgresql+asyncpg://postgres@{_HOST}:{self.port}/{dbname}"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def log_file(self) -> Path:
        return self.workdir / "postgres.log"

    @property
    def running(self) -> bool:
        return self._started and self._pg_ctl("status", check=False).returncode == 0

    # -- running as the right user
    def _prepare_workdir(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            return
        user = self._user = _ensure_system_user(_PG_USER)
        tmp_root = Path(tempfile.gettempdir()).resolve()
        for parent in reversed(self.workdir.parents):
            if _traversable(parent, user):
                continue
            if parent == tmp_root or tmp_root in parent.parents:
                # e.g. mkdtemp()/pytest base dirs are 0700: add only the search bit.
                log.info("making %s traversable for user %s (chmod o+x)", parent, user.pw_name)
                os.chmod(parent, parent.stat().st_mode | 0o001)
            else:
                raise RuntimeError(
                    f"{parent} is not traversable by user {user.pw_name!r}, which runs PostgreSQL "
                    f"when started as root; use a workdir under {tmp_root} or 'chmod o+x {parent}'"
                )
        for dirpath, dirnames, filenames in os.walk(self.workdir):
            for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
                os.lchown(name, user.pw_uid, user.pw_gid)
        os.chmod(self.workdir, 0o755)

    def _run(
        self, args: Sequence[str], *, check: bool = True, timeout: float | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        user = self._user
        if user is not None:
            env.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name)
        proc = subprocess.run(
            list(args),
            cwd=self.workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
            start_new_session=True,
            # As root: drop to the postgres user in the child, the same effect as
            # 'runuser -u postgres --' without depending on util-linux.
            user=None if user is None else user.pw_uid,
            group=None if user is None else user.pw_gid,
            extra_groups=None if user is None else [],
        )
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"{shlex.join(args)} failed (exit {proc.returncode}):\n"
                + (proc.stdout + proc.stderr).strip()
            )
        return proc

    def _pg_ctl(
        self, *args: str, check: bool = True, timeout: float | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self._run(
            [str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), *args],
            check=check,
            timeout=timeout,
        )

    def _initdb(self) -> None:
        if (self.data_dir / "PG_VERSION").is_file():
            return
        log.info("creating PostgreSQL cluster in %s", self.data_dir)
        base = [
            str(self.bindir / "initdb"),
            "-D",
            str(self.data_dir),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
        ]
        proc = self._run([*base, "--locale=C.UTF-8"], check=False)
        if proc.returncode != 0:  # C.UTF-8 not available on this system
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self._run([*base, "--no-locale"])

    def _socket_dir(self) -> Path:
        # Unix socket paths are limited to ~107 bytes; fall back to a short dir.
        if len(str(self.workdir / f".s.PGSQL.{self.port}.lock")) < 100:
            return self.workdir
        if self._short_socket_dir is None:
            short = Path(tempfile.mkdtemp(prefix="hw-pg-"))
            os.chmod(short, 0o755)
            if self._user is not None:
                os.chown(short, self._user.pw_uid, self._user.pw_gid)
            self._short_socket_dir = short
        return self._short_socket_dir

    # -- lifecycle
    def start(self, timeout: float = 60) -> None:
        """Create the cluster if needed, start it and wait until it accepts connections."""
        if self.running:
            return
        started = time.monotonic()
        self._prepare_workdir()
        self._initdb()
        # fsync/synchronous_commit/full_page_writes off: this is a throwaway test cluster,
        # durability across an OS crash is irrelevant and these make tests much faster.
        options = " ".join(
            [
                f"-c listen_addresses={_HOST}",
                f"-p {self.port}",
                f"-k {shlex.quote(str(self._socket_dir()))}",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=200",
            ]
        )
        log.info("starting PostgreSQL on %s:%d (log: %s)", _HOST, self.port, self.log_file)
        proc = self._pg_ctl(
            "-l",
            str(self.log_file),
            "-w",
            "-t",
            str(max(1, int(timeout))),
            "-o",
            options,
            "start",
            check=False,
            timeout=timeout + 10,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"PostgreSQL failed to start (exit {proc.returncode}):\n"
                + (proc.stdout + proc.stderr).strip()
                + f"\nlast lines of {self.log_file}:\n{_tail(self.log_file)}"
            )
        self._started = True
        log.info("PostgreSQL ready at %s after %.1fs", self.url, time.monotonic() - started)

    def stop(self, timeout: float = 60) -> None:
        """Fast shutdown (``pg_ctl stop -m fast``)."""
        if not self._started:
            return
        if (self.data_dir / "postmaster.pid").exists():
            log.info("stopping PostgreSQL on %s:%d", _HOST, self.port)
            self._pg_ctl(
                "stop",
                "-m",
                "fast",
                "-w",
                "-t",
                str(max(1, int(timeout))),
                check=False,
                timeout=timeout + 10,
            )
        self._started = False
        if self._short_socket_dir is not None:
            shutil.rmtree(self._short_socket_dir, ignore_errors=True)
            self._short_socket_dir = None

    def create_database(self, dbname: str) -> None:
        """``CREATE DATABASE dbname`` (via the cluster's own ``createdb``)."""
        createdb = str(self.bindir / "createdb")
        self._run([createdb, "-h", _HOST, "-p", str(self.port), "-U", "postgres", dbname])

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
        return f"PostgresCluster({self.url!r}, workdir={str(self.workdir)!r})"


# --------------------------------------------------------------------------- CLI


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
        prog="localservices.py", description="Run healthwatch's local Kafka / PostgreSQL."
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
