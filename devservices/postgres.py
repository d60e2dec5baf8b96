"""A throwaway PostgreSQL cluster made with the installed server's own initdb/pg_ctl.

When run as root the server processes run as the ``postgres`` system user, since
PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import pwd
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from devservices.files import tail
from devservices.ports import HOST, free_port

log = logging.getLogger("healthwatch.devservices")

_PG_USER = "postgres"
_PG_BINARIES = ("initdb", "pg_ctl", "postgres")


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
        return f"postgresql+asyncpg://postgres@{HOST}:{self.port}/{dbname}"

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
                f"-c listen_addresses={HOST}",
                f"-p {self.port}",
                f"-k {shlex.quote(str(self._socket_dir()))}",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=200",
            ]
        )
        log.info("starting PostgreSQL on %s:%d (log: %s)", HOST, self.port, self.log_file)
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
                + f"\nlast lines of {self.log_file}:\n{tail(self.log_file)}"
            )
        self._started = True
        log.info("PostgreSQL ready at %s after %.1fs", self.url, time.monotonic() - started)

    def stop(self, timeout: float = 60) -> None:
        """Fast shutdown (``pg_ctl stop -m fast``)."""
        if not self._started:
            return
        if (self.data_dir / "postmaster.pid").exists():
            log.info("stopping PostgreSQL on %s:%d", HOST, self.port)
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
        self._run([createdb, "-h", HOST, "-p", str(self.port), "-U", "postgres", dbname])

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
