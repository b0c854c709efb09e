"""A real PostgreSQL cluster for tests and benchmarks: initdb into a temporary
directory, the postmaster on a free loopback port, stopped at the end.

The binaries are Debian's (``/usr/lib/postgresql/<major>/bin``; .ci/run installs
postgresql when they are missing). initdb refuses to run as root, so as root the
cluster belongs to the ``postgres`` user: its directory is handed to it and every
binary runs through ``runuser``. The cluster is durable as a production one is
(fsync and synchronous_commit on): the crash tests count on it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PG_ROOT = Path("/usr/lib/postgresql")


def pg_bin() -> Path:
    """The newest installed major version's bin directory."""
    majors = sorted((p for p in PG_ROOT.glob("*/bin") if (p / "initdb").exists()),
                    key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    if not majors:
        raise RuntimeError(f"no PostgreSQL server under {PG_ROOT}: install Debian's postgresql "
                           "(bash .ci/run does) to run the PostgreSQL tests")
    return majors[-1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgCluster:
    """One running cluster: ``url`` (database ``scangate``, user ``postgres``, no
    password: trust on loopback only), ``kill()`` (SIGKILL to the postmaster),
    ``start()`` again, ``stop()``."""

    def __init__(self, root: Path, settings: dict[str, str] | None = None):
        self.bin = pg_bin()
        self.root = root
        self.data = root / "data"
        self.port = _free_port()
        self.as_root = os.geteuid() == 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = root / "postgres.log"
        self.settings = dict(settings or {})     # more -c settings for every start

    def _cmd(self, *args: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *args] if self.as_root else list(args)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/scangate"

    def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")
            self.root.chmod(0o700)
        subprocess.run(self._cmd(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                                 "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions"),
                       check=True, capture_output=True, timeout=120)

    def start(self, timeout: float = 60) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self._cmd(
                str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port), "-k", str(self.root),
                "-c", "listen_addresses=127.0.0.1", "-c", "fsync=on", "-c", "synchronous_commit=on",
                "-c", "max_connections=100", "-c", "shared_buffers=64MB", "-c", "log_min_messages=warning",
                *(x for name, value in self.settings.items() for x in ("-c", f"{name}={value}"))),
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = subprocess.run([str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                                   capture_output=True)
            if ready.returncode == 0:
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)
        else:
            raise RuntimeError(f"postgres did not start in {timeout} s:\n{self.log.read_text()[-3000:]}")
        if (self.data / "standby.signal").exists():
            return                  # a standby: its databases are the primary's
        exists = subprocess.run([str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                                 "-d", "postgres", "-tAc", "SELECT 1 FROM pg_database WHERE datname = 'scangate'"],
                                check=True, capture_output=True, text=True).stdout.strip()
        if exists != "1":
            subprocess.run([str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                            "scangate"], check=True, capture_output=True)

    def standby(self, root: Path, name: str = "standby1") -> PgCluster:
        """A streaming standby of this cluster (pg_basebackup), connecting as
        ``name`` (the application name ``synchronous_standby_names`` lists),
        started; the caller stops it."""
        standby = PgCluster(root, self.settings)
        root.mkdir(parents=True, exist_ok=True)
        if self.as_root:
            shutil.chown(root, "postgres", "postgres")
            root.chmod(0o700)
        subprocess.run(self._cmd(str(self.bin / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(self.port),
                                 "-U", "postgres", "-D", str(standby.data), "-X", "stream", "-R", "-c", "fast"),
                       check=True, capture_output=True, timeout=300)
        with open(standby.data / "postgresql.auto.conf", "a", encoding="utf-8") as conf:
            conf.write(f"primary_conninfo = 'host=127.0.0.1 port={self.port} user=postgres "
                       f"application_name={name}'\n")
        standby.start()
        return standby

    def synchronous(self, name: str = "standby1") -> None:
        """From now on every commit waits for standby ``name`` to flush it
        (synchronous_standby_names, kept across restarts: ALTER SYSTEM)."""
        for sql in (f"ALTER SYSTEM SET synchronous_standby_names = '{name}'", "SELECT pg_reload_conf()"):
            subprocess.run([str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                            "-d", "postgres", "-qc", sql], check=True, capture_output=True)

    def wait_sync(self, name: str = "standby1", timeout: float = 60) -> None:
        """Until standby ``name`` streams from this cluster as its synchronous standby."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = subprocess.run([str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U",
                                    "postgres", "-d", "postgres", "-tAc",
                                    f"SELECT sync_state FROM pg_stat_replication WHERE application_name = '{name}'"],
                                   capture_output=True, text=True).stdout.strip()
            if state == "sync":
                return
            time.sleep(0.1)
        raise RuntimeError(f"{name} is not a synchronous standby after {timeout} s")

    def promote(self) -> None:
        """Make this standby a primary (pg_ctl promote, waiting until it is)."""
        subprocess.run(self._cmd(str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "promote"),
                       check=True, capture_output=True, timeout=120)

    def new_database(self, template: str | None = None) -> str:
        """A new database of the cluster (empty, or a copy of database
        ``template``); its URL."""
        name = f"t{uuid.uuid4().hex[:16]}"
        copy = ["-T", template] if template else []
        subprocess.run([str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                        *copy, name], check=True, capture_output=True)
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def kill(self) -> None:
        """SIGKILL to the postmaster (its backends notice and exit): a crash."""
        assert self.proc is not None
        # runuser forwards signals to its child; kill the postmaster itself
        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
        self.proc.wait(30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and subprocess.run(["pgrep", "-f", f"postgres.*{self.data}"],
                                                            capture_output=True).returncode == 0:
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        subprocess.run(self._cmd(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"),
                       capture_output=True, timeout=60)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@contextmanager
def pg_cluster(settings: dict[str, str] | None = None) -> Iterator[PgCluster]:
    """A fresh cluster for the block (``settings``: more server settings), removed
    after it; ``cluster.root.parent`` is a directory for more (a standby)."""
    root = Path(tempfile.mkdtemp(prefix="scangate-pg-"))
    root.chmod(0o711)       # the postgres user (as root: the cluster's owner) must reach its directory
    cluster = PgCluster(root / "cluster", settings)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
