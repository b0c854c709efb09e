"""``scangate serve``: the supervisor, and the entry points of the processes it starts.

The supervisor validates the configuration (failing with the exact key), loads
the tokens, checks the allowed plugins, creates the data directory on first start
and makes its run directory. Then it starts, with the ``spawn`` method, one writer
process (``_writer_main``, then server/scanlink.py's ``writer_main``: it decides
and commits every scan, server/writer.py) and ``workers`` worker processes
(``_worker_main``, then server/service.py's ``start_worker``: the gRPC servicers,
which hand every scan to the writer over its Unix socket). Each process opens
LMDB itself, after it started. The workers serve one port (SO_REUSEPORT: the
kernel spreads connections over them). The supervisor serves Prometheus metrics
for all of them on ``metrics_port`` and restarts a process that dies. On SIGTERM
or SIGINT it stops the workers first (each finishes its in-flight calls, whose
scans the writer commits before they are answered), then the writer.

What a running server keeps on disk lives in its run directory,
``DATA/run/<supervisor pid>-<random>/`` (0700): ``metrics/`` (prometheus_client's
multiprocess files), ``writer.sock`` (the writer's Unix socket) and ``limits`` (the
rate limits' buckets, mapped by every worker: server/limits.py). The supervisor
and each of its processes hold a shared flock on that directory while they live.
A graceful stop removes it; the next start on the same data directory removes
every run directory whose lock it can take exclusively, that is, one whose
processes are all gone (a kill -9, a crash), however the pids were reused since,
and never one of a server still running. When the socket's path would be longer
than a Unix socket address allows, the socket goes to a directory under the system
temp directory, recorded in the run directory and removed with it.
"""

from __future__ import annotations

import dataclasses
import fcntl
import logging
import multiprocessing
import multiprocessing.connection
import os
import re
import secrets
import shutil
import signal
import socket
import stat
import tempfile
import time
from pathlib import Path
from typing import Any

from scangate import clock, plugins
from scangate.config import STORE_ENV, Config, StoreConfig, load_config
from scangate.datadir import make_private_dir, open_data_dir, open_private_file
from scangate.errors import InvalidArgument

from .auth import TokenTable
from .limits import LimitTable, limits_path
from .process import settle_heap, setup_logging

# Not imported at module top: .scanlink, .service and, through them, .metrics.
# Every child process imports this module first (its target lives here), and
# importing .metrics creates the process's metric files, which must not exist
# before _child_start made them owner-only. Each child entry point imports what
# its process runs, after _child_start: the servicers stay out of the writer
# process, and the writer's and the workers' code out of the supervisor.

log = logging.getLogger("scangate.server")

__all__ = ["serve", "resolve_config"]


def resolve_config(data_dir: str | os.PathLike[str], config_file: str | None, store: str | None = None,
                   **overrides: Any) -> Config:
    """The config file (or DATA/scangate.toml), then SCANGATE_* variables, then
    command-line flags (``overrides`` that are not None; ``store``: --store, whose
    variable is SCANGATE_STORE)."""
    cfg = load_config(config_file, data_dir=data_dir if Path(data_dir).exists() else None)
    url = store or os.environ.get(STORE_ENV) or cfg.store.url
    if url != cfg.store.url:
        try:
            cfg = dataclasses.replace(cfg, store=StoreConfig(url))
        except InvalidArgument as exc:
            raise InvalidArgument(f"--store: {str(exc).removeprefix('url: ')}") from None
    given = {k: v for k, v in overrides.items() if v is not None}
    if given:
        try:
            cfg = dataclasses.replace(cfg, server=dataclasses.replace(cfg.server, **given))
        except InvalidArgument as exc:
            raise InvalidArgument(f"--{str(exc).replace('_', '-')}") from None
    return cfg


def _tokens_path(data_dir: Path, cfg: Config) -> Path | None:
    if cfg.server.tokens_file:
        return Path(cfg.server.tokens_file)
    default = data_dir / "tokens.toml"
    return default if default.exists() else None


def _load_tokens(data_dir: Path, cfg: Config) -> TokenTable | None:
    path = _tokens_path(data_dir, cfg)
    table = TokenTable.load(path) if path else None
    if table is not None and not len(table):
        table = None
    if table is None and cfg.server.require_auth:
        raise InvalidArgument("server.require_auth: true, but no tokens are configured "
                              "(scangate tokens add NAME --role ROLE)")
    return table


# ---------------------------------------------------------------------- run directory
RUN_DIR_NAME = "run"
_RUN_ENTRY = re.compile(r"^[0-9]+-")           # <supervisor pid>-<random>, made by tempfile.mkdtemp
# sockaddr_un.sun_path is 108 bytes on Linux, the terminating NUL included
MAX_SOCKET_PATH = 107
SOCKET_NAME = "writer.sock"
_SOCKET_DIR_RECORD = "socket-dir"              # in a run directory: where its socket went instead
_SOCKET_DIR_PREFIX = "scangate-sock-"


@dataclasses.dataclass
class _RunDir:
    """The run directory of one server, held (shared flock) while it lives."""

    path: Path
    socket_dir: Path                           # ``path``, or the fallback under the temp directory
    fd: int                                    # the supervisor's lock on ``path``

    @property
    def metrics(self) -> Path:
        return self.path / "metrics"

    @property
    def writer_socket(self) -> str:
        return str(self.socket_dir / SOCKET_NAME)

    def decider_socket(self, i: int) -> str:
        """The socket of decider (writer) process ``i``: the writer's for the first."""
        return self.writer_socket if i == 0 else f"{self.writer_socket}.{i}"

    def remove(self) -> None:
        if self.socket_dir != self.path:
            shutil.rmtree(self.socket_dir, ignore_errors=True)
        shutil.rmtree(self.path, ignore_errors=True)
        os.close(self.fd)


def _hold_run_dir(path: str | os.PathLike[str]) -> int:
    """Take a shared lock on a run directory for the life of this process (the
    kernel drops it when the process dies, however it dies); the descriptor."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


def _open_run_dir(root: Path) -> _RunDir:
    """Remove the run directories of servers that are gone, then make and hold
    this server's."""
    base = Path(os.path.abspath(root)) / RUN_DIR_NAME     # absolute: children and sockets see one path
    make_private_dir(base)
    guard = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    try:
        # One starting server at a time sweeps and creates, so a sweep never finds
        # a run directory made but not yet locked. Held for milliseconds.
        fcntl.flock(guard, fcntl.LOCK_EX)
        _sweep_run_dirs(base)
        path = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=base))      # 0700
        fd = _hold_run_dir(path)
        socket_dir = path
        if len(os.fsencode(path / SOCKET_NAME)) > MAX_SOCKET_PATH:
            socket_dir = Path(tempfile.gettempdir()).absolute() / f"{_SOCKET_DIR_PREFIX}{secrets.token_hex(8)}"
            if len(os.fsencode(socket_dir / SOCKET_NAME)) > MAX_SOCKET_PATH:
                _RunDir(path, path, fd).remove()
                raise InvalidArgument(f"the writer's socket path is too long both under {root} and under "
                                      f"{socket_dir.parent}; set TMPDIR to a shorter directory")
            # recorded before it exists: a supervisor killed in between leaves a
            # record of nothing, never a directory that no record names
            rec = open_private_file(path / _SOCKET_DIR_RECORD, os.O_WRONLY | os.O_TRUNC)
            with os.fdopen(rec, "w", encoding="utf-8") as f:
                f.write(str(socket_dir))
            os.mkdir(socket_dir, 0o700)        # not make_private_dir: in a shared directory, never adopt one
        make_private_dir(path / "metrics")
        return _RunDir(path, socket_dir, fd)
    finally:
        os.close(guard)                         # releases the lock


def _sweep_run_dirs(base: Path) -> list[str]:
    """Remove every run directory under ``base`` that no live process holds, with
    its socket directory; return their paths."""
    removed: list[str] = []
    for entry in os.scandir(base):
        if not _RUN_ENTRY.match(entry.name) or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue                        # a server, or a process it started, still lives
            _remove_socket_dir(Path(entry.path))
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.path)
        finally:
            os.close(fd)
    if removed:
        log.info("removed the run directories of stopped servers", extra={"paths": removed})
    return removed


def _remove_socket_dir(run_path: Path) -> None:
    try:
        recorded = (run_path / _SOCKET_DIR_RECORD).read_text(encoding="utf-8").strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return
    p = Path(recorded)
    try:
        st = os.lstat(p)
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return
    # only what _open_run_dir makes: an absolute path named like ours, a real
    # directory of this user; a record pointing anywhere else is not followed
    if (p.is_absolute() and ".." not in p.parts and p.name.startswith(_SOCKET_DIR_PREFIX)
            and stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid()):
        shutil.rmtree(p, ignore_errors=True)
    else:
        log.warning("not removing %s, named as a socket directory in %s: not one scangate made", p, run_path)


def _child_start(run_dir: str) -> None:
    """First thing in every server child: hold the run directory, so that it stays
    while any process of this server lives (its supervisor killed or not), and make
    every file this process creates owner-only. A server child is a process of ours
    alone, so its umask is ours to set: prometheus_client's metric files and the
    writer's socket are created through APIs that take no mode."""
    _hold_run_dir(run_dir)                      # never closed: held until this process exits
    os.umask(0o077)


def _writer_main(run_dir: str, data_dir: str, cfg: Config, path: str,
                 ready: multiprocessing.connection.Connection, log_level: str) -> None:
    _child_start(run_dir)
    plugins.configure(cfg.plugins.allow, verify=False)   # the supervisor verified them
    # here, not at module top: see the note on imports above (metric files, and
    # the servicers stay out of this process)
    from .scanlink import writer_main

    writer_main(data_dir, cfg, path, ready, log_level)


# ---------------------------------------------------------------------- worker
def _worker_main(run_dir: str, data_dir: str, cfg: Config, tokens: TokenTable | None, port: int,
                 writer_socket: str, ready: multiprocessing.connection.Connection, log_level: str) -> None:
    import asyncio

    _child_start(run_dir)
    plugins.configure(cfg.plugins.allow, verify=False)   # PutCampaign checks campaigns' plugins here
    # here, not at module top: see the note on imports above (metric files, and
    # the supervisor loads no servicers)
    from .service import start_worker

    setup_logging(log_level)

    async def run() -> None:
        data = open_data_dir(data_dir, store=cfg.store.url or None)
        worker = await start_worker(data, cfg, tokens, writer_socket=writer_socket, port=port,
                                    limits_file=str(limits_path(run_dir)))
        settle_heap()        # startup objects (modules, descriptors) leave the collector's sight
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        ready.send(worker.port)
        ready.close()
        log.info("worker serving", extra={"port": worker.port})
        await stop.wait()
        log.info("worker stopping: finishing in-flight calls", extra={"grace_s": cfg.server.grace_s})
        await worker.stop(cfg.server.grace_s)
        data.close()
        log.info("worker stopped")

    asyncio.run(run())


# ---------------------------------------------------------------------- supervisor
def _reserve_port(host: str) -> socket.socket:
    """Pick a free port for all workers (``port = 0``) and hold it."""
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind((host, 0))
    return s


class _PayoutDepth:
    """Collector: payout requests waiting in the outbox, read at scrape time."""

    def __init__(self, data_dir: str, store: str):
        self.data = open_data_dir(data_dir, store=store or None)

    def collect(self):  # type: ignore[no-untyped-def]
        from prometheus_client.core import GaugeMetricFamily

        from scangate import payouts

        g = GaugeMetricFamily("scangate_payout_queue_depth", "payout requests not yet confirmed, by state",
                              labels=["state"])
        counts = {"pending": 0, "sending": 0, "failed": 0}
        for row in payouts.list_payouts(self.data):
            if row["state"] in counts:
                counts[row["state"]] += 1
        for state, n in counts.items():
            g.add_metric([state], n)
        yield g


def serve(data_dir: str | os.PathLike[str], cfg: Config, *, log_level: str = "INFO",
          announce: Any = None) -> int:
    """Run the server until SIGTERM or SIGINT; return the exit status."""
    announce = announce or (lambda message: print(message, flush=True))
    setup_logging(log_level)
    root = Path(data_dir)
    tokens = _load_tokens(root, cfg)                   # fail now, naming the key; workers get the table
    plugins.configure(cfg.plugins.allow)               # fail now, naming plugins.allow[N]
    created = not (root / "lmdb" / "data.mdb").exists()
    # first start: create it; with a PostgreSQL store, fail now if it cannot be
    # reached or holds no schema (scangate init --store makes it)
    if cfg.server.deciders > 1 and not cfg.store.url:
        raise InvalidArgument(f"server.deciders: {cfg.server.deciders} needs the PostgreSQL store ([store] url or "
                              "--store): on LMDB one writer commits every decision")
    open_data_dir(root, create=True, store=cfg.store.url or None).close()
    run = _open_run_dir(root)
    held = None
    try:
        port = cfg.server.port
        if port == 0:
            held = _reserve_port(cfg.server.host)
            port = held.getsockname()[1]
        code = _supervise(root, cfg, run, port, created, tokens, log_level, announce)
    finally:
        if held is not None:
            held.close()
        run.remove()
    if code == 0:
        announce("scangate: stopped")
    return code


def _supervise(root: Path, cfg: Config, run: _RunDir, port: int, created: bool, tokens: Any, log_level: str,
               announce: Any) -> int:
    s = cfg.server
    metrics_dir = str(run.metrics)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    metrics_url = None
    if s.metrics_port:
        from prometheus_client import CollectorRegistry, start_http_server
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=metrics_dir)
        registry.register(_PayoutDepth(str(root), cfg.store.url))
        httpd, _ = start_http_server(s.metrics_port, addr=s.host, registry=registry)
        metrics_url = f"http://{s.host}:{httpd.server_port}/metrics"
    ctx = multiprocessing.get_context("spawn")
    stopping = False

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def launch(name: str, target: Any, *args: Any) -> multiprocessing.process.BaseProcess:
        parent_end, child_end = ctx.Pipe(duplex=False)
        p = ctx.Process(target=target, args=(str(run.path), *args, child_end, log_level), name=name, daemon=False)
        p.start()
        child_end.close()
        if not parent_end.poll(60):
            raise RuntimeError(f"{name} did not start within 60 s")
        try:
            parent_end.recv()
        except EOFError:
            raise RuntimeError(f"{name} failed to start; see its log above") from None
        return p

    def start_writer(i: int) -> multiprocessing.process.BaseProcess:
        # deciders (server.deciders, PostgreSQL only): writer processes of their own,
        # each committing its workers' scans in transactions of its own
        path = run.decider_socket(i)
        p = launch("scangate-writer" + (f"-{i}" if i else ""), _writer_main, str(root), cfg, path)
        # bind() made it 0777 less the writer's umask (0700): files are 0600 here
        os.chmod(path, 0o600)
        return p

    def start(slot: int) -> multiprocessing.process.BaseProcess:
        return launch(f"scangate-worker-{slot}", _worker_main, str(root), cfg, tokens, port,
                      run.decider_socket(slot % s.deciders))

    # the rate limits' buckets, in one file every worker maps: a client spread over
    # N workers gets the configured rate, not N times it (server/limits.py)
    LimitTable.create(limits_path(run.path))
    workers: list[multiprocessing.process.BaseProcess] = []
    writers: list[multiprocessing.process.BaseProcess] = []
    try:
        for i in range(s.deciders):
            writers.append(start_writer(i))
        for slot in range(s.workers):
            workers.append(start(slot))
    except RuntimeError as exc:
        log.error("%s", exc)
        for p in workers + writers:
            p.terminate()
        return 1
    where = f"{'tls://' if s.tls_cert else ''}{s.host}:{port}"
    announce(f"scangate: serving {root} on {where} with {s.workers} worker(s)"
             f"{f' and {s.deciders} deciders' if s.deciders > 1 else ''}"
             f"{' (created it)' if created else ''}; metrics on {metrics_url or 'off'}; "
             f"auth {'on' if _tokens_path(root, cfg) else 'off'}")
    log.info("serving", extra={"address": where, "workers": s.workers, "metrics": metrics_url,
                               "run_dir": str(run.path)})
    if clock.current() is not clock.system_ms:
        # a shifted clock decides every scan's day, window and draw: never by accident
        log.warning("%s is set: deciding on a %s, not the system clock", clock.CLOCK_ENV, clock.current())
    try:
        while not stopping:
            time.sleep(0.2)
            for i, writer in enumerate(writers):
                if not writer.is_alive() and not stopping:
                    log.error("writer %d (pid %s) exited with %s; restarting", i, writer.pid, writer.exitcode)
                    _mark_dead(writer.pid)
                    writers[i] = start_writer(i)
            for slot, p in enumerate(workers):
                if not p.is_alive() and not stopping:
                    log.error("worker %d (pid %s) exited with %s; restarting", slot, p.pid, p.exitcode)
                    _mark_dead(p.pid)
                    workers[slot] = start(slot)
    finally:
        # workers first (they finish their calls, whose scans the writer commits), then the writer
        _stop(workers, s.grace_s + 30)
        _stop(writers, s.grace_s + 30)
    return 0


def _stop(processes: list[multiprocessing.process.BaseProcess], timeout: float) -> None:
    for p in processes:
        if p.is_alive():
            os.kill(p.pid, signal.SIGTERM)   # type: ignore[arg-type]
    deadline = time.monotonic() + timeout
    for p in processes:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            log.error("%s (pid %s) did not stop in time; killing it", p.name, p.pid)
            p.kill()
            p.join()


def _mark_dead(pid: int | None) -> None:
    if pid is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
