"""Scan decisions over gRPC (``scangate serve``) against a bare grpcio echo server.

``python -m bench grpc [--n N] [--workers 1,2] [--concurrency C] [--clients K]
[--connections M] [--batch B] [--streams S] [--repeat R] [--json]``

For each worker count N of --workers, in one run:

Scan (scangate)
    A real ``scangate serve --workers N --metrics-port 0`` on a fresh data
    directory holding one active campaign (bench/rewards.py CAMPAIGN: odds 20%, cash
    and points prizes, budgets) and freshly issued codes. Each unary
    ``ScanService.Scan`` carries a fresh request_id, a distinct genuine code and a
    distinct user, so every call does the full work: verify, verdict, reward draw and
    a durable (synced) group commit before the reply.
echo (bare grpc)
    ``bench/_echo.py``: a supervisor and N ``grpc.aio`` worker processes started
    with ``spawn`` on one port (``grpc.so_reuseport``), the process model of
    ``scangate serve``. A generic handler on the same method path parses the
    ``ScanRequest`` and returns a pre-built ``ScanDecision`` whose serialised size is
    that of a real decision (the median-sized reply of Scan's warm-up). The same
    request bytes as the Scan run are sent.
ScanStream (scangate)
    The same server: S concurrent bidirectional streams, each sending a
    ``ScanBatch`` of B scans (distinct genuine codes) and waiting for its
    ``ScanDecisionBatch`` before sending the next.

The load generator is K separate processes (``multiprocessing`` spawn), each an
asyncio ``grpc.aio`` client keeping its share of C calls in flight over its share of
M TCP connections (``grpc.use_local_subchannel_pool``, so SO_REUSEPORT can spread
them over the workers), with identical client code for Scan and echo (raw bytes in
and out; the replies are parsed and checked after the timed region). Every figure
comes after a warm-up on the same connections and counts N requests; rate is
requests over the wall time from the common start to the last reply (the best of
--repeat timed runs), latency percentiles are per call. SO_REUSEPORT hashes each
connection to one worker; the benchmark reads the split from /proc and reconnects
(up to 20 times) while it is lopsided, and prints it ("conns per worker").

"server CPU us" / "client CPU us": user + system CPU time per request of every
process of the server (its process group: supervisor and workers) and of the load
generators during the timed run, from /proc. Unlike the rates, these barely move
when other work shares the machine, so they are the figures to compare across runs.
"writer CPU us": the same for ``scangate serve``'s writer process alone (the one
listening on its Unix socket), per request or, for ScanStream, per decision: the
one process every decision passes through.

The shared driver pins the benchmark to one core; this benchmark undoes that before
starting any process, so the servers and the load generator share every CPU the
benchmark may use (a client on the server's core would measure the scheduler).

--repeat R runs each timed figure R times (fresh codes each time) and keeps the
best; --seed is accepted like every benchmark's, but nothing here depends on it.

raw LMDB (ScanStream's baseline)
    ``bench/rewards.py`` decide/raw in the same run, on the same disk: one put at a
    random key and one append per decision, B per durable write transaction.

--store DIR measures Scan and ScanStream again, after the fresh store's, on a data
directory ``python -m bench fill`` made (a national programme's size: linked
bottles, scan histories and every record decisions write), scanning bottles it
left unscanned, in a shuffled order; the ratios to the fresh store's figures are
targets (>= 0.8x, the writer issue). Beside them, the storage floor of that ratio
(bench/rewards.py ``measure_raw_sized``): raw LMDB doing what a decision does at
random keys, one new key in each of the databases that grow with the programme
(scan histories, the request index, the actors' counters) and one append, in
databases as large as the filled store's and as the fresh store's, B per durable
commit, same disk, same run. Its filled/fresh ratio is what LMDB itself loses as
the B-trees grow: a batch's random keys stop sharing leaf pages, so each commit
writes and syncs more pages.

--prepare MODE starts the server with ``server.prepare`` = MODE (workers: each
worker prepares its calls' read-only half, scangate.decide.prepared; writer: the
writer decides everything); by default the server picks (auto).

Targets, at the first worker count: unary Scan >= 0.8x echo requests/s and Scan
p99 <= 2x echo p99 (the gRPC issue); server CPU per Scan <= 1.5x echo's, and
ScanStream >= 0.5x raw LMDB's group commit (the writer issue). A FAIL is reported,
never turned into a non-zero exit status.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import multiprocessing.connection
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scangate.config import PREPARE_MODES

from . import _harness

SCAN_METHOD = "/scangate.v1.ScanService/Scan"
STREAM_METHOD = "/scangate.v1.ScanService/ScanStream"
RPS_TARGET = 0.8       # Scan >= 0.8x echo requests/s
P99_TARGET = 2.0       # Scan p99 <= 2x echo p99
CPU_TARGET = 1.5       # server CPU per Scan <= 1.5x echo's
STREAM_TARGET = 0.5    # ScanStream >= 0.5x raw LMDB's put + append group commit, same batch size
STORE_TARGET = 0.8     # Scan and ScanStream on a filled store >= 0.8x the same on a fresh one
REGION = 510104
START_TIMEOUT_S = 120
CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.use_local_subchannel_pool", 1),   # one TCP connection per channel
    ("grpc.max_receive_message_length", 256 << 20),
    ("grpc.max_send_message_length", 256 << 20),
]
CALL_TIMEOUT_S = 120.0


# ====================================================================== load generator (child process)
def _client_main(conn: multiprocessing.connection.Connection) -> None:
    """A load-generator process: runs the jobs the benchmark sends, one at a time."""
    try:
        asyncio.run(_client_loop(conn))
    except (EOFError, KeyboardInterrupt):
        pass


async def _client_loop(conn: multiprocessing.connection.Connection) -> None:
    import grpc

    loop = asyncio.get_running_loop()
    channels: list[Any] = []

    async def recv() -> Any:
        return await loop.run_in_executor(None, conn.recv)

    while True:
        job = await recv()
        kind = job[0]
        if kind == "exit":
            break
        try:
            if kind == "connect":
                _, target, n_channels = job
                for ch in channels:
                    await ch.close()
                channels = [grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS) for _ in range(n_channels)]
                await asyncio.wait_for(asyncio.gather(*(ch.channel_ready() for ch in channels)), 60)
                conn.send(("ok", None))
            elif kind == "close":
                for ch in channels:
                    await ch.close()
                channels = []
                conn.send(("ok", None))
            elif kind == "unary":
                _, requests, concurrency = job
                conn.send(("ready", None))
                if (await recv())[0] != "go":
                    raise RuntimeError("expected go")
                conn.send(("ok", await _run_unary(channels, requests, concurrency)))
            elif kind == "stream":
                _, batches, streams = job
                conn.send(("ready", None))
                if (await recv())[0] != "go":
                    raise RuntimeError("expected go")
                conn.send(("ok", await _run_stream(channels, batches, streams)))
            else:
                raise ValueError(f"unknown job {kind!r}")
        except Exception as exc:  # noqa: BLE001 - the benchmark reports it
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
    for ch in channels:
        await ch.close()


async def _run_unary(channels: list[Any], requests: list[bytes], concurrency: int
                     ) -> tuple[float, float, list[float], list[bytes]]:
    calls = [ch.unary_unary(SCAN_METHOD) for ch in channels]   # bytes in, bytes out
    latencies = [0.0] * len(requests)
    replies: list[bytes] = [b""] * len(requests)
    todo = iter(range(len(requests)))
    clock = time.perf_counter

    async def worker(k: int) -> None:
        call = calls[k % len(calls)]
        for i in todo:
            t = clock()
            replies[i] = await call(requests[i], timeout=CALL_TIMEOUT_S)
            latencies[i] = clock() - t

    t0 = time.monotonic()
    await asyncio.gather(*(worker(k) for k in range(min(concurrency, len(requests)))))
    t1 = time.monotonic()
    return t0, t1, latencies, replies


async def _run_stream(channels: list[Any], batches: list[bytes], streams: int
                      ) -> tuple[float, float, list[float], list[bytes]]:
    import grpc

    eof = grpc.aio.EOF
    latencies = [0.0] * len(batches)
    replies: list[bytes] = [b""] * len(batches)
    todo = iter(range(len(batches)))
    clock = time.perf_counter

    async def stream(k: int) -> None:
        call = channels[k % len(channels)].stream_stream(STREAM_METHOD)(timeout=CALL_TIMEOUT_S)
        for i in todo:
            t = clock()
            await call.write(batches[i])
            reply = await call.read()
            if reply is eof:
                raise RuntimeError(f"stream ended early: {await call.code()} {await call.details()}")
            replies[i] = reply
            latencies[i] = clock() - t
        await call.done_writing()
        if await call.read() is not eof:
            raise RuntimeError("unexpected extra reply on the stream")

    t0 = time.monotonic()
    await asyncio.gather(*(stream(k) for k in range(min(streams, len(batches)))))
    t1 = time.monotonic()
    return t0, t1, latencies, replies


class Clients:
    """K load-generator processes, driven in lock step: each gets its share of a job,
    says ready, and all start on one 'go'."""

    def __init__(self, k: int):
        ctx = multiprocessing.get_context("spawn")
        self.procs: list[multiprocessing.process.BaseProcess] = []
        self.conns: list[multiprocessing.connection.Connection] = []
        for i in range(k):
            parent, child = ctx.Pipe(duplex=True)
            p = ctx.Process(target=_client_main, args=(child,), name=f"bench-grpc-client-{i}", daemon=True)
            p.start()
            child.close()
            self.procs.append(p)
            self.conns.append(parent)

    def _gather(self, timeout: float = 600) -> list[Any]:
        out = []
        for i, c in enumerate(self.conns):
            if not c.poll(timeout):
                raise RuntimeError(f"load generator {i} did not answer within {timeout:.0f} s")
            status, value = c.recv()
            if status == "error":
                raise RuntimeError(f"load generator {i}: {value}")
            out.append(value)
        return out

    def connect(self, target: str, connections: Sequence[int]) -> None:
        for c, n in zip(self.conns, connections, strict=True):
            c.send(("connect", target, n))
        self._gather(90)

    def close_channels(self) -> None:
        for c in self.conns:
            c.send(("close",))
        self._gather(60)

    def run(self, kind: str, shares: Sequence[Any], width: Sequence[int]) -> list[Any]:
        for c, share, w in zip(self.conns, shares, width, strict=True):
            c.send((kind, share, w))
        self._gather(120)
        for c in self.conns:
            c.send(("go",))
        return self._gather()

    def stop(self) -> None:
        for c in self.conns:
            try:
                c.send(("exit",))
            except (OSError, ValueError):
                pass
        for p in self.procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join()
        for c in self.conns:
            c.close()


def _cpu_seconds(pids: Sequence[int] = (), pgid: int | None = None) -> float | None:
    """User + system CPU seconds of the given processes and of every process in
    process group ``pgid``, from /proc (None where there is no /proc)."""
    if not os.path.isdir("/proc/self"):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    wanted = set(pids)
    candidates = (os.listdir("/proc") if pgid is not None else [str(p) for p in wanted])
    for entry in candidates:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry) in wanted or (pgid is not None and int(fields[2]) == pgid):
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _tcp_sockets(port: int) -> tuple[set[int], set[int]]:
    """Socket inodes on local port ``port``: (listening, established), from /proc/net."""
    listening, established = set(), set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) < 10 or int(cols[1].rsplit(":", 1)[1], 16) != port:
                continue
            if cols[3] == "0A":
                listening.add(int(cols[9]))
            elif cols[3] == "01":
                established.add(int(cols[9]))
    return listening, established


def connections_per_worker(pgid: int, port: int) -> list[int] | None:
    """How many established connections each worker of the server in process group
    ``pgid`` holds on ``port`` (a worker: a process with a listening socket on it),
    most first; None where /proc does not tell."""
    if not os.path.isdir("/proc/net"):
        return None
    listening, established = _tcp_sockets(port)
    counts = [len(inodes & established) for inodes in _group_sockets(pgid).values() if inodes & listening]
    return sorted(counts, reverse=True) or None


def _group_sockets(pgid: int) -> dict[int, set[int]]:
    """The socket inodes each process of process group ``pgid`` holds, from /proc."""
    out: dict[int, set[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                if int(f.read().rsplit(")", 1)[1].split()[2]) != pgid:
                    continue
            inodes = set()
            for fd in os.listdir(f"/proc/{entry}/fd"):
                link = os.readlink(f"/proc/{entry}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(int(link[8:-1]))
        except OSError:
            continue
        out[int(entry)] = inodes
    return out


def writer_pid(pgid: int) -> int | None:
    """The writer process of the ``scangate serve`` in process group ``pgid``: the
    one that listens on the writer's Unix socket (server/main.py SOCKET_NAME);
    None where /proc does not tell."""
    from scangate.server.main import SOCKET_NAME

    listening = set()
    try:
        with open("/proc/net/unix", encoding="ascii", errors="replace") as f:
            next(f)     # Num RefCount Protocol Flags Type St Inode Path
            for line in f:
                parts = line.split()
                # flag 0x10000: accepting connections (listening)
                if len(parts) >= 8 and parts[7].endswith("/" + SOCKET_NAME) and int(parts[3], 16) & 0x10000:
                    listening.add(int(parts[6]))
    except OSError:
        return None
    pids = [pid for pid, inodes in _group_sockets(pgid).items() if inodes & listening]
    return pids[0] if len(pids) == 1 else None


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _slices(items: list[Any], weights: Sequence[int]) -> list[list[Any]]:
    """Cut ``items`` into contiguous pieces proportional to ``weights``."""
    total, out, start, acc = sum(weights), [], 0, 0
    for w in weights:
        acc += w
        end = len(items) * acc // total
        out.append(items[start:end])
        start = end
    return out


# ====================================================================== servers
class ServerProcess:
    """A server in its own process group, ready once its stdout announces the port."""

    def __init__(self, cmd: list[str], ready: re.Pattern[str], label: str, env: dict[str, str] | None = None):
        self.label = label
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, **(env or {})}, start_new_session=True)
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [self._drain(self.proc.stderr, self.err)]
        found = threading.Event()
        self.target = ""

        def read_stdout() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.out.append(line)
                m = ready.search(line)
                if m and not self.target:
                    self.target = f"{m.group('host')}:{m.group('port')}"
                    found.set()
            found.set()

        reader = threading.Thread(target=read_stdout, daemon=True)
        reader.start()
        self._readers.append(reader)
        found.wait(START_TIMEOUT_S)
        if not self.target:
            self.stop()
            raise RuntimeError(f"{label} did not start:\n{self.logs()}")

    @staticmethod
    def _drain(stream: Any, sink: list[str]) -> threading.Thread:
        def run() -> None:
            sink.extend(stream)     # list.extend appends line by line as the stream yields

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def logs(self, tail: int = 4000) -> str:
        return ("".join(self.out) + "".join(self.err))[-tail:]

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM, wait; then SIGKILL the whole process group (workers included)."""
        pgid = self.proc.pid   # start_new_session: the group is the server's own
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pgid, 0)          # anything left in the group (an orphaned worker)?
            except ProcessLookupError:
                break
            os.killpg(pgid, sig)
            time.sleep(1.0)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for reader in self._readers:     # the pipes end with the group: read to the end, then closed
            reader.join(10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


_SCANGATE_READY = re.compile(r"serving .+ on (?:tls://)?(?P<host>[\d.]+):(?P<port>\d+) with \d+ worker")
_ECHO_READY = re.compile(r"echo: serving on (?P<host>[\d.]+):(?P<port>\d+) with \d+ worker")


def start_scangate(data: Path, workers: int, prepare: str | None = None) -> ServerProcess:
    exe = Path(sys.executable).parent / "scangate"
    cmd = ([str(exe)] if exe.exists() else [sys.executable, "-c", "from scangate.cli import main; main()"])
    cmd += ["serve", "--data", str(data), "--port", "0", "--workers", str(workers), "--metrics-port", "0",
            "--log-level", "WARNING"]
    # the server's clock starts at the bench's T0, inside its campaign's window
    # (bench/rewards.py), whatever today's date: the scans carry no time of their own
    from .rewards import T0_TEXT

    env = {"SCANGATE_CLOCK": T0_TEXT, "SCANGATE_CLOCK_ANCHOR_MS": ""}
    if prepare is not None:     # else the server's own setting (its default: auto)
        env["SCANGATE_SERVER_PREPARE"] = prepare
    return ServerProcess(cmd, _SCANGATE_READY, f"scangate serve --workers {workers}", env)


def start_echo(workers: int, reply: bytes) -> ServerProcess:
    cmd = [sys.executable, "-m", "bench._echo", "--port", "0", "--workers", str(workers), "--reply-hex", reply.hex()]
    root = str(Path(__file__).resolve().parent.parent)
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    return ServerProcess(cmd, _ECHO_READY, f"echo --workers {workers}", env)


# ====================================================================== measurement
@dataclass
class Config:
    n: int
    warmup: int
    repeat: int
    concurrency: int
    clients: int
    connections: int
    workers: list[int]
    batch: int
    streams: int
    prepare: str | None = None
    store: Path | None = None



def _percentiles(latencies: list[float]) -> dict[str, float]:
    import numpy as np

    a = np.asarray(latencies) * 1000.0
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99), "max_ms": float(a.max()),
            "mean_ms": float(a.mean())}


def _merge(results: list[tuple[float, float, list[float], list[bytes]]], count: int) -> tuple[dict[str, Any], list[bytes]]:
    results = [r for r in results if r[2]]          # a client with no share did nothing
    t0 = min(r[0] for r in results)
    t1 = max(r[1] for r in results)
    latencies = [x for r in results for x in r[2]]
    replies = [x for r in results for x in r[3]]
    seconds = t1 - t0
    return {"count": count, "seconds": seconds, "rate": count / seconds, **_percentiles(latencies)}, replies


def _scan_requests(codes: list[str], tag: str, first: int) -> list[Any]:
    from scangate.v1 import common_pb2 as common
    from scangate.v1 import scan_pb2 as scan_pb

    return [scan_pb.ScanRequest(request_id=f"{tag}-{first + i}", code=code, actor=f"user-{tag}-{first + i}",
                                actor_type=common.ACTOR_TYPE_CONSUMER, region=REGION)
            for i, code in enumerate(codes)]


def _check_decisions(requests: list[Any], replies: list[bytes], what: str, batched: bool = False) -> None:
    """Parse the replies (ScanDecision, or ScanDecisionBatch if ``batched``); every
    decision must answer its request, in order, and find the code genuine."""
    from scangate.v1 import common_pb2 as common
    from scangate.v1 import scan_pb2 as scan_pb

    if batched:
        decisions = [d for raw in replies for d in scan_pb.ScanDecisionBatch.FromString(raw).decisions]
    else:
        decisions = [scan_pb.ScanDecision.FromString(raw) for raw in replies]
    if len(decisions) != len(requests):
        raise AssertionError(f"{what}: {len(decisions)} decisions for {len(requests)} requests")
    for req, d in zip(requests, decisions):
        if d.request_id != req.request_id or d.verdict.code_status != common.CODE_STATUS_GENUINE:
            raise AssertionError(f"{what}: reply {d.request_id!r} to {req.request_id!r}, code status "
                                 f"{d.verdict.code_status}")


class Bench:
    def __init__(self, cfg: Config, root: Path, clients: Clients, progress: Callable[[str], None]):
        self.cfg, self.root, self.clients, self.progress = cfg, root, clients, progress
        self.conc = _split(cfg.concurrency, cfg.clients)
        self.conns = [max(1, c) for c in _split(cfg.connections, cfg.clients)]
        self.stream_width = _split(cfg.streams, cfg.clients)
        self.echo_reply: bytes | None = None
        self.server_pgid: int | None = None
        self.writer_pid: int | None = None      # scangate serve's writer process (None: echo)
        self.scan_reply_sizes: list[int] = []

    def connect(self, server: ServerProcess, workers: int) -> list[int] | None:
        """Open the load generators' connections to ``server``. SO_REUSEPORT hashes
        each connection to a worker; with a few connections per worker the split is
        often lopsided, so reconnect (up to 20 times) until no worker has more than
        about half its fair share above another. Returns the split."""
        port = int(server.target.rsplit(":", 1)[1])
        total = sum(self.conns)
        slack = max(1, round(total / workers / 2))
        split = None
        for _ in range(20 if workers > 1 else 1):
            self.clients.connect(server.target, self.conns)
            split = connections_per_worker(server.proc.pid, port)
            if split is None or (len(split) == workers and split[0] - split[-1] <= slack):
                break
        return split

    def _timed(self, kind: str, shares: list[Any], width: list[int]) -> tuple[list[Any], dict[str, Any]]:
        """Run one job on the load generators; also the CPU time the server (its
        whole process group), its writer process and the load generators used
        meanwhile."""
        client_pids = [p.pid for p in self.clients.procs if p.pid is not None]
        writer = [self.writer_pid] if self.writer_pid is not None else None
        s0, c0 = _cpu_seconds(pgid=self.server_pgid), _cpu_seconds(client_pids)
        w0 = _cpu_seconds(writer) if writer else None
        results = self.clients.run(kind, shares, width)
        s1, c1 = _cpu_seconds(pgid=self.server_pgid), _cpu_seconds(client_pids)
        w1 = _cpu_seconds(writer) if writer else None
        cpu = {"server_cpu_s": None if s0 is None or s1 is None else s1 - s0,
               "client_cpu_s": None if c0 is None or c1 is None else c1 - c0,
               "writer_cpu_s": None if w0 is None or w1 is None else w1 - w0}
        return results, cpu

    @staticmethod
    def _per_item(stats: dict[str, Any], cpu: dict[str, Any]) -> dict[str, Any]:
        n = stats["count"]
        return {**stats, **cpu,
                "server_cpu_us": None if cpu["server_cpu_s"] is None else 1e6 * cpu["server_cpu_s"] / n,
                "client_cpu_us": None if cpu["client_cpu_s"] is None else 1e6 * cpu["client_cpu_s"] / n,
                "writer_cpu_us": None if cpu["writer_cpu_s"] is None else 1e6 * cpu["writer_cpu_s"] / n}

    def unary(self, requests_bytes: list[bytes]) -> tuple[dict[str, Any], list[bytes]]:
        results, cpu = self._timed("unary", _slices(requests_bytes, self.conc), self.conc)
        stats, replies = _merge(results, len(requests_bytes))
        return self._per_item(stats, cpu), replies

    def stream(self, batches: list[bytes], scans: int) -> tuple[dict[str, Any], list[bytes]]:
        results, cpu = self._timed("stream", _slices(batches, self.stream_width), self.stream_width)
        stats, replies = _merge(results, len(batches))
        stats = {**stats, "count": scans, "rate": scans / stats["seconds"], "batches": len(batches)}
        return self._per_item(stats, cpu), replies

    def best(self, runs: list[dict[str, Any]]) -> dict[str, Any]:
        best = max(runs, key=lambda r: r["rate"])
        return {**best, "runs": len(runs)}

    def measure_workers(self, workers: int, store: Path | None = None) -> dict[str, Any]:
        """Scan, ScanStream and echo at ``workers``; with ``store`` (a data directory
        ``python -m bench fill`` made), Scan and ScanStream only, on that store's
        unscanned bottles."""
        import scangate
        from scangate import rewards
        from scangate.v1 import scan_pb2 as scan_pb

        from .rewards import CAMPAIGN

        cfg = self.cfg
        stream_n = -(-cfg.n // cfg.batch) * cfg.batch
        stream_warm = max(1, cfg.streams) * cfg.batch
        total = cfg.warmup + cfg.repeat * cfg.n + stream_warm + cfg.repeat * stream_n
        if store is not None:
            from .fill import take_pool

            self.progress(f"workers={workers}: {total:_} unscanned bottles of the filled store {store}")
            data = store
            codes = take_pool(store, total)
        else:
            self.progress(f"workers={workers}: data directory with {total:_} codes")
            data = self.root / f"data-{workers}"
            dd = scangate.init_data_dir(data)
            try:
                rewards.put_campaign(dd, CAMPAIGN, "bench.toml")
                codes = dd.issue_codes("BENCH", "item", total).as_strings()
            finally:
                dd.close()
        tag = f"w{workers}" if store is None else f"s{workers}-{os.getpid()}-{time.time_ns()}"
        pos = 0

        def take(k: int) -> list[Any]:
            nonlocal pos
            reqs = _scan_requests(codes[pos : pos + k], tag, pos)
            pos += k
            return reqs

        out: dict[str, Any] = {"workers": workers}
        self.progress(f"workers={workers}: starting scangate serve")
        server = start_scangate(data, workers, cfg.prepare)
        self.server_pgid = server.proc.pid
        self.writer_pid = writer_pid(server.proc.pid)
        try:
            out["scan_connections"] = self.connect(server, workers)
            self.progress(f"workers={workers}: unary Scan warm-up ({cfg.warmup:_})")
            warm = take(cfg.warmup)
            _, replies = self.unary([r.SerializeToString() for r in warm])
            _check_decisions(warm, replies, "Scan warm-up")
            self.scan_reply_sizes += [len(r) for r in replies]
            if self.echo_reply is None:
                self.echo_reply = sorted(replies, key=len)[len(replies) // 2]
            runs, last_requests = [], None
            for k in range(cfg.repeat):
                self.progress(f"workers={workers}: unary Scan, {cfg.n:_} requests, {cfg.concurrency} in flight"
                              f" (run {k + 1} of {cfg.repeat})")
                reqs = take(cfg.n)
                raw = [r.SerializeToString() for r in reqs]
                stats, replies = self.unary(raw)
                _check_decisions(reqs, replies, "Scan")
                self.scan_reply_sizes += [len(r) for r in replies]
                runs.append(stats)
                last_requests = raw
            out["scan"] = self.best(runs)

            def batches(k: int) -> tuple[list[Any], list[bytes]]:
                reqs = take(k)
                return reqs, [scan_pb.ScanBatch(scans=reqs[i : i + cfg.batch]).SerializeToString()
                              for i in range(0, k, cfg.batch)]

            if cfg.streams:
                self.progress(f"workers={workers}: ScanStream warm-up")
                reqs, raw_batches = batches(stream_warm)
                _, replies = self.stream(raw_batches, len(reqs))
                _check_decisions(reqs, replies, "ScanStream warm-up", batched=True)
                runs = []
                for k in range(cfg.repeat):
                    self.progress(f"workers={workers}: ScanStream, {stream_n:_} scans in batches of {cfg.batch},"
                                  f" {cfg.streams} streams (run {k + 1} of {cfg.repeat})")
                    reqs, raw_batches = batches(stream_n)
                    stats, replies = self.stream(raw_batches, len(reqs))
                    _check_decisions(reqs, replies, "ScanStream", batched=True)
                    runs.append(stats)
                out["stream"] = self.best(runs)
            self.clients.close_channels()
        except BaseException:
            print(f"--- {server.label} log tail ---\n{server.logs()}", file=sys.stderr)
            raise
        finally:
            self.progress(f"workers={workers}: stopping scangate serve")
            server.stop()
        if store is not None:
            return out

        assert self.echo_reply is not None and last_requests is not None
        self.progress(f"workers={workers}: starting echo server")
        echo = start_echo(workers, self.echo_reply)
        self.server_pgid, self.writer_pid = echo.proc.pid, None
        try:
            out["echo_connections"] = self.connect(echo, workers)
            self.progress(f"workers={workers}: echo warm-up")
            self.unary(last_requests[: cfg.warmup])
            runs = []
            for k in range(cfg.repeat):
                self.progress(f"workers={workers}: echo, {cfg.n:_} requests (run {k + 1} of {cfg.repeat})")
                stats, replies = self.unary(last_requests)
                if any(r != self.echo_reply for r in replies):
                    raise AssertionError("echo: a reply differs from the pre-built decision")
                runs.append(stats)
            out["echo"] = self.best(runs)
            self.clients.close_channels()
        except BaseException:
            print(f"--- {echo.label} log tail ---\n{echo.logs()}", file=sys.stderr)
            raise
        finally:
            self.progress(f"workers={workers}: stopping echo server")
            echo.stop()
        out["scan_x_echo"] = out["scan"]["rate"] / out["echo"]["rate"]
        out["cpu_x_echo"] = out["scan"]["server_cpu_us"] / out["echo"]["server_cpu_us"]
        out["p99_x_echo"] = out["scan"]["p99_ms"] / out["echo"]["p99_ms"]
        if "stream" in out:
            out["stream_x_unary"] = out["stream"]["rate"] / out["scan"]["rate"]
        return out


def measure(cfg: Config, cpus: set[int] | None, progress: Callable[[str], None]) -> dict[str, Any]:
    previous = _harness.unpin_and_unwind_on_sigterm(cpus)
    root = Path(tempfile.mkdtemp(prefix="scangate-bench-grpc-"))
    clients = None
    try:
        progress(f"starting {cfg.clients} load-generator process(es)")
        clients = Clients(cfg.clients)
        bench = Bench(cfg, root, clients, progress)
        per_workers = [bench.measure_workers(w) for w in cfg.workers]
        if cfg.store is not None:   # the same figures on a full store, beside the fresh store's
            for fresh in per_workers:
                full = bench.measure_workers(fresh["workers"], cfg.store)
                fresh["store"] = full
                fresh["store_scan_x_fresh"] = full["scan"]["rate"] / fresh["scan"]["rate"]
                if "stream" in full:
                    fresh["store_stream_x_fresh"] = full["stream"]["rate"] / fresh["stream"]["rate"]
        if cfg.store is not None and cfg.streams:
            # the storage floor of the filled store's slowdown: raw LMDB with the
            # random puts of a decision, in databases of the filled store's sizes
            # and of the fresh store's, same disk, same run
            from .rewards import RANDOM_PUT_DATABASES, measure_raw_sized

            for fresh in per_workers:
                held = {"fresh": _entries(root / f"data-{fresh['workers']}"), "filled": _entries(cfg.store)}
                floor: dict[str, Any] = {"databases": list(RANDOM_PUT_DATABASES)}
                for which, counts in held.items():
                    progress(f"raw LMDB at the {which} store's sizes {counts}, batches of {cfg.batch}")
                    timing, cpu = measure_raw_sized(root, counts, -(-cfg.n // cfg.batch) * cfg.batch, cfg.batch)
                    floor[which] = {"entries": counts, **timing.as_dict(),
                                    "cpu_us_per_decision": cpu / timing.count * 1e6}
                floor["filled_x_fresh"] = floor["filled"]["rate"] / floor["fresh"]["rate"]
                fresh["store_raw"] = floor
        raw = None
        if cfg.streams:
            # the storage floor of ScanStream: raw LMDB's durable group commit of
            # one put and one append per decision, batches as ScanStream's
            # (bench/rewards.py decide/raw), on the same disk, in the same run
            from .rewards import measure_raw

            progress(f"raw LMDB put + append, batches of {cfg.batch}")
            timing, raw_cpu = measure_raw(root, -(-cfg.n // cfg.batch) * cfg.batch, cfg.batch)
            raw = {**timing.as_dict(), "cpu_us_per_decision": raw_cpu / timing.count * 1e6}
    finally:
        if clients is not None:
            clients.stop()
        shutil.rmtree(root, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous)
    head = per_workers[0]
    sizes = bench.scan_reply_sizes
    targets = [
        {"name": f"unary Scan vs echo requests/s ({head['workers']} worker(s))", "measured": head["scan_x_echo"],
         "required": f">= {RPS_TARGET}", "pass": head["scan_x_echo"] >= RPS_TARGET},
        {"name": f"unary Scan p99 vs echo p99 ({head['workers']} worker(s))", "measured": head["p99_x_echo"],
         "required": f"<= {P99_TARGET}", "pass": head["p99_x_echo"] <= P99_TARGET},
        {"name": f"server CPU per Scan vs echo's ({head['workers']} worker(s))", "measured": head["cpu_x_echo"],
         "required": f"<= {CPU_TARGET}", "pass": head["cpu_x_echo"] <= CPU_TARGET},
    ]
    if cfg.store is not None:
        for key, what in (("store_scan_x_fresh", "unary Scan"), ("store_stream_x_fresh", "ScanStream")):
            if key in head:
                targets.append({"name": f"{what} on the filled store vs a fresh store ({head['workers']} worker(s))",
                                "measured": head[key], "required": f">= {STORE_TARGET}",
                                "pass": head[key] >= STORE_TARGET})
    if raw is not None and "stream" in head:
        head["stream_x_raw"] = head["stream"]["rate"] / raw["rate"]
        targets.append({"name": f"ScanStream vs raw LMDB group commit ({head['workers']} worker(s))",
                        "measured": head["stream_x_raw"], "required": f">= {STREAM_TARGET}",
                        "pass": head["stream_x_raw"] >= STREAM_TARGET})
    assert bench.echo_reply is not None
    return {
        "params": {"n": cfg.n, "warmup": cfg.warmup, "repeat": cfg.repeat, "concurrency": cfg.concurrency,
                   "clients": cfg.clients, "connections": cfg.connections, "workers": cfg.workers,
                   "batch": cfg.batch, "streams": cfg.streams, "prepare": cfg.prepare or "the server's (auto)",
                   "store": None if cfg.store is None else str(cfg.store),
                   "cpus_used": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None},
        "reply_bytes": {"echo": len(bench.echo_reply), "scan_min": min(sizes), "scan_max": max(sizes),
                        "scan_mean": sum(sizes) / len(sizes)},
        "runs": per_workers,
        "raw_lmdb": raw,
        "loadavg_1min_end": os.getloadavg()[0],
        "targets": targets,
    }


def _entries(data: Path) -> list[int]:
    """How many records a data directory's databases that a decision puts random
    keys into hold (bench.rewards.RANDOM_PUT_DATABASES)."""
    import scangate
    from scangate.state import raw

    from .rewards import RANDOM_PUT_DATABASES

    with scangate.open_data_dir(data) as dd:
        return [raw.count(dd, name) for name in RANDOM_PUT_DATABASES]


# ====================================================================== report
def _rate(r: float, unit: str) -> str:
    return f"{_harness.format_rate(r)}{unit}"


def _us(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def print_report(report: dict[str, Any]) -> None:
    _harness.print_machine_info(report["machine"])
    p, sizes = report["params"], report["reply_bytes"]
    cpus = p["cpus_used"]
    print(f"(the driver's one-core pin is undone here: servers and load generators share CPUs "
          f"{','.join(map(str, cpus)) if cpus else 'all'}; load average {report['loadavg_1min_end']:.2f} at end)")
    print(f"Load generator: {p['clients']} process(es), asyncio grpc.aio, {p['concurrency']} calls in flight over "
          f"{p['connections']} connection(s); {p['n']:_} requests per figure after {p['warmup']:_} warm-up, "
          f"best of {p['repeat']}")
    print(f"Reply size: echo {sizes['echo']} bytes; Scan {sizes['scan_min']}..{sizes['scan_max']} "
          f"(mean {sizes['scan_mean']:.0f})\n")
    head = report["runs"][0]
    w = head["workers"]
    print(f"Unary Scan against echo, {w} worker(s) (CPU: microseconds of CPU time per request, all server "
          f"processes / the writer process alone / all load generators):")
    rows = []
    for key, label in (("scan", "Scan (scangate serve)"), ("echo", "echo (bare grpc.aio)")):
        f = head[key]
        rows.append([label, f"{f['count']:_}", f"{f['seconds']:.2f}", _rate(f["rate"], "req/s"),
                     f"{f['p50_ms']:.2f}", f"{f['p90_ms']:.2f}", f"{f['p99_ms']:.2f}", f"{f['max_ms']:.1f}",
                     _us(f["server_cpu_us"]), _us(f.get("writer_cpu_us")), _us(f["client_cpu_us"])])
    _harness.print_table(["figure", "requests", "seconds", "rate", "p50 ms", "p90 ms", "p99 ms", "max ms",
                          "server CPU us", "writer CPU us", "client CPU us"], rows)
    print()
    for t in report["targets"]:
        print(f"{t['name']}: {t['measured']:.3f}x (required {t['required']}x): {'PASS' if t['pass'] else 'FAIL'}")
    print(f"(who prepares each call's read-only half: server.prepare = {p.get('prepare')})")
    if "stream" in head:
        s = head["stream"]
        print(f"\nScanStream, {w} worker(s), batches of {p['batch']}, {p['streams']} streams: "
              f"{_rate(s['rate'], 'decisions/s')} ({s['count']:_} in {s['seconds']:.2f} s; per batch p50 "
              f"{s['p50_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms; server CPU {_us(s['server_cpu_us'])} us per "
              f"decision, the writer's {_us(s.get('writer_cpu_us'))}) = {head['stream_x_unary']:.2f}x unary Scan "
              f"({_rate(head['scan']['rate'], 'req/s')})")
    full = head.get("store")
    if full is not None:
        print(f"\nOn the filled store {p['store']} (unscanned bottles among its scanned ones), same run:")
        rows = [["fresh store", _rate(head["scan"]["rate"], "req/s"), f"{head['scan']['p99_ms']:.1f}",
                 _us(head["scan"]["server_cpu_us"]), _us(head["scan"].get("writer_cpu_us")),
                 _rate(head["stream"]["rate"], "dec/s") if "stream" in head else "",
                 _us(head["stream"].get("writer_cpu_us")) if "stream" in head else ""],
                ["filled store", _rate(full["scan"]["rate"], "req/s"), f"{full['scan']['p99_ms']:.1f}",
                 _us(full["scan"]["server_cpu_us"]), _us(full["scan"].get("writer_cpu_us")),
                 _rate(full["stream"]["rate"], "dec/s") if "stream" in full else "",
                 _us(full["stream"].get("writer_cpu_us")) if "stream" in full else ""]]
        _harness.print_table(["store", "Scan", "p99 ms", "server CPU us", "writer CPU us", "ScanStream",
                              "writer CPU us/decision"], rows)
        floor = head.get("store_raw")
        if floor is not None:
            fr, fi = floor["fresh"], floor["filled"]
            names = ", ".join(floor["databases"])
            print(f"raw LMDB, one put at a new random key in each of {len(floor['databases'])} databases ({names}) "
                  f"+ one append per decision, {p['batch']} per durable commit, same disk:")
            _harness.print_table(["databases sized as", "entries", "rate", "CPU us/decision"], [
                [label, " / ".join(f"{e:_}" for e in f["entries"]), _rate(f["rate"], "dec/s"),
                 f"{f['cpu_us_per_decision']:.1f}"] for label, f in (("fresh store", fr), ("filled store", fi))])
            print(f"raw LMDB filled vs fresh: {floor['filled_x_fresh']:.3f}x (the storage floor of the ratio); "
                  f"ScanStream filled vs fresh: {head['store_stream_x_fresh']:.3f}x")
    raw = report.get("raw_lmdb")
    if raw is not None and "stream_x_raw" in head:
        print(f"raw LMDB, one put + one append per decision, {p['batch']} per durable commit, same disk: "
              f"{_rate(raw['rate'], 'decisions/s')} (CPU {raw['cpu_us_per_decision']:.1f} us per decision); "
              f"ScanStream = {head['stream_x_raw']:.3f}x")
    print("\nWorker scaling (unary, same load generator; server CPU us per request):")
    base = report["runs"][0]
    rows = []
    for r in report["runs"]:
        row = [str(r["workers"]), _rate(r["scan"]["rate"], "req/s"), f"{r['scan']['rate'] / base['scan']['rate']:.2f}x",
               f"{r['scan']['p99_ms']:.1f}", _us(r["scan"]["server_cpu_us"]), _rate(r["echo"]["rate"], "req/s"),
               f"{r['echo']['rate'] / base['echo']['rate']:.2f}x", f"{r['echo']['p99_ms']:.1f}",
               _us(r["echo"]["server_cpu_us"]), f"{r['scan_x_echo']:.3f}x"]
        row += ([_rate(r["stream"]["rate"], "dec/s"), f"{r['stream_x_unary']:.2f}x"] if "stream" in r else ["", ""])
        row.append(f"{_split_text(r.get('scan_connections'))} / {_split_text(r.get('echo_connections'))}")
        rows.append(row)
    _harness.print_table(["workers", "Scan", "scaling", "p99 ms", "CPU us", "echo", "scaling", "p99 ms", "CPU us",
                          "Scan/echo", "ScanStream", "stream/unary", "conns per worker"], rows)


def _split_text(split: list[int] | None) -> str:
    return "?" if not split else "+".join(map(str, split))


def _workers(text: str) -> list[int]:
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma list of worker counts: {text!r}") from None
    if not out or any(not 1 <= w <= 256 for w in out):
        raise argparse.ArgumentTypeError(f"worker counts are 1 to 256: {text!r}")
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _harness.add_common_arguments(parser, default_n=5_000, default_repeat=1)
    parser.add_argument("--workers", type=_workers, default=[1, 2],
                        help="comma list of server worker counts (default 1,2); targets use the first")
    parser.add_argument("--concurrency", type=int, default=32, help="unary calls in flight in all (default 32)")
    parser.add_argument("--clients", type=int, default=1, help="load-generator processes (default 1)")
    parser.add_argument("--connections", type=int, default=None,
                        help="TCP connections in all (default max(8, 4 x the largest worker count), "
                             "at most --concurrency)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up requests per server (default n/10)")
    parser.add_argument("--batch", type=int, default=100, help="scans per ScanStream batch (default 100)")
    parser.add_argument("--streams", type=int, default=4, help="concurrent ScanStream calls (default 4; 0: skip)")
    parser.add_argument("--store", type=Path, default=None,
                        help="also measure Scan and ScanStream on this data directory (made by python -m bench fill), "
                             "beside the fresh store's")
    parser.add_argument("--prepare", choices=PREPARE_MODES, default=None,
                        help="the server's server.prepare (default: its own, auto)")


def run(args: argparse.Namespace) -> int:
    if args.n < 1 or args.repeat < 1 or args.concurrency < 1 or args.clients < 1 or args.batch < 1:
        raise SystemExit("--n, --repeat, --concurrency, --clients and --batch must be at least 1")
    if args.streams < 0:
        raise SystemExit("--streams must be 0 or more")
    if args.batch > 1000:
        raise SystemExit("--batch: the server takes at most 1000 scans per batch")
    if args.clients > args.concurrency:
        raise SystemExit("--clients must not exceed --concurrency")
    connections = args.connections or min(args.concurrency, max(8, 4 * max(args.workers)))
    if connections < 1:
        raise SystemExit("--connections must be at least 1")
    cfg = Config(n=args.n, warmup=args.warmup if args.warmup is not None else max(args.concurrency, args.n // 10),
                 repeat=args.repeat, concurrency=args.concurrency, clients=args.clients,
                 connections=max(connections, args.clients), workers=args.workers, batch=args.batch,
                 streams=args.streams, prepare=args.prepare, store=args.store)
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    return _harness.run_benchmark("grpc", args, lambda progress: measure(cfg, cpus, progress), print_report)
