"""``scangate serve``: the supervisor and its worker processes.

The supervisor validates the configuration (failing with the exact key), creates
the data directory on first start, then starts ``workers`` processes with the
``spawn`` method. Each worker opens LMDB itself, after it started, and serves the
same port (SO_REUSEPORT: the kernel spreads connections over the workers). The
supervisor serves Prometheus metrics for all of them on ``metrics_port``, restarts
a worker that dies, and on SIGTERM or SIGINT passes the signal on and waits for
every worker to finish its in-flight calls and commit what it acknowledged.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from scangate.config import Config, load_config
from scangate.errors import InvalidArgument

from .scanlink import SERVER_GC_THRESHOLDS, writer_main

log = logging.getLogger("scangate.server")

__all__ = ["serve", "resolve_config", "setup_logging"]


def setup_logging(level: str = "INFO") -> None:
    """Structured logs: one JSON object per line on stderr."""
    from pythonjsonlogger.json import JsonFormatter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(process)d %(message)s",
                                       rename_fields={"asctime": "time", "levelname": "level", "name": "logger",
                                                      "process": "pid"}))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def resolve_config(data_dir: str | os.PathLike[str], config_file: str | None, **overrides: Any) -> Config:
    """The config file (or DATA/scangate.toml), then SCANGATE_* variables, then
    command-line flags (``overrides`` that are not None)."""
    cfg = load_config(config_file, data_dir=data_dir if Path(data_dir).exists() else None)
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


def _load_tokens(data_dir: Path, cfg: Config):  # type: ignore[no-untyped-def]
    from .auth import TokenTable

    path = _tokens_path(data_dir, cfg)
    table = TokenTable.load(path) if path else None
    if table is not None and not len(table):
        table = None
    if table is None and cfg.server.require_auth:
        raise InvalidArgument("server.require_auth: true, but no tokens are configured "
                              "(scangate tokens add NAME --role ROLE)")
    return table


# ---------------------------------------------------------------------- worker
def _worker_main(data_dir: str, cfg: Config, tokens: Any, port: int, writer_socket: str,
                 ready: multiprocessing.connection.Connection, log_level: str) -> None:
    import asyncio

    setup_logging(log_level)

    async def run() -> None:
        from scangate.datadir import open_data_dir

        from .service import start_worker

        data = open_data_dir(data_dir)
        worker = await start_worker(data, cfg, tokens, writer_socket=writer_socket, port=port)
        gc.collect()
        gc.freeze()          # startup objects (modules, descriptors) leave the collector's sight
        gc.set_threshold(*SERVER_GC_THRESHOLDS)
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

    def __init__(self, data_dir: str):
        from scangate.datadir import open_data_dir

        self.data = open_data_dir(data_dir)

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
    from scangate.datadir import open_data_dir

    announce = announce or (lambda message: print(message, flush=True))
    setup_logging(log_level)
    root = Path(data_dir)
    tokens = _load_tokens(root, cfg)                   # fail now, naming the key; workers get the table
    created = not (root / "lmdb" / "data.mdb").exists()
    open_data_dir(root, create=True).close()          # first start: create it
    s = cfg.server
    held = None
    port = s.port
    if port == 0:
        held = _reserve_port(s.host)
        port = held.getsockname()[1]
    metrics_dir = tempfile.mkdtemp(prefix="scangate-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    metrics_url = None
    if s.metrics_port:
        from prometheus_client import CollectorRegistry, start_http_server
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=metrics_dir)
        registry.register(_PayoutDepth(str(root)))
        httpd, _ = start_http_server(s.metrics_port, addr=s.host, registry=registry)
        metrics_url = f"http://{s.host}:{httpd.server_port}/metrics"
    ctx = multiprocessing.get_context("spawn")
    stopping = False
    sockets_dir = tempfile.mkdtemp(prefix="scangate-")          # 0700: only this user reaches the writer
    writer_socket = os.path.join(sockets_dir, "writer.sock")

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def launch(name: str, target: Any, *args: Any) -> multiprocessing.process.BaseProcess:
        parent_end, child_end = ctx.Pipe(duplex=False)
        p = ctx.Process(target=target, args=(*args, child_end, log_level), name=name, daemon=False)
        p.start()
        child_end.close()
        if not parent_end.poll(60):
            raise RuntimeError(f"{name} did not start within 60 s")
        try:
            parent_end.recv()
        except EOFError:
            raise RuntimeError(f"{name} failed to start; see its log above") from None
        return p

    def start_writer() -> multiprocessing.process.BaseProcess:
        return launch("scangate-writer", writer_main, str(root), cfg, writer_socket)

    def start(slot: int) -> multiprocessing.process.BaseProcess:
        return launch(f"scangate-worker-{slot}", _worker_main, str(root), cfg, tokens, port, writer_socket)

    workers: list[multiprocessing.process.BaseProcess] = []
    writer = None
    try:
        writer = start_writer()
        for slot in range(s.workers):
            workers.append(start(slot))
    except RuntimeError as exc:
        log.error("%s", exc)
        for p in workers + ([writer] if writer else []):
            p.terminate()
        return 1
    where = f"{'tls://' if s.tls_cert else ''}{s.host}:{port}"
    announce(f"scangate: serving {root} on {where} with {s.workers} worker(s)"
             f"{' (created it)' if created else ''}; metrics on {metrics_url or 'off'}; "
             f"auth {'on' if _tokens_path(root, cfg) else 'off'}")
    log.info("serving", extra={"address": where, "workers": s.workers, "metrics": metrics_url})
    try:
        while not stopping:
            time.sleep(0.2)
            if not writer.is_alive() and not stopping:
                log.error("writer (pid %s) exited with %s; restarting", writer.pid, writer.exitcode)
                _mark_dead(writer.pid)
                writer = start_writer()
            for slot, p in enumerate(workers):
                if not p.is_alive() and not stopping:
                    log.error("worker %d (pid %s) exited with %s; restarting", slot, p.pid, p.exitcode)
                    _mark_dead(p.pid)
                    workers[slot] = start(slot)
    finally:
        # workers first (they finish their calls, whose scans the writer commits), then the writer
        _stop(workers, s.grace_s + 30)
        _stop([writer], s.grace_s + 30)
        if held is not None:
            held.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)
        shutil.rmtree(sockets_dir, ignore_errors=True)
    announce("scangate: stopped")
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
