"""Scan latency while a big ``scangate link`` upload runs, and that upload's peak memory.

``python -m bench link [--rows R] [--rate Q] [--seconds S] [--workers W]
[--max-upload-seconds T] [--json]``

The issue's figure is ``python -m bench link --rows 10_000_000``: "Scan p99 during a
10M-row link upload: at most 2x its p99 without the upload; peak memory of that
upload printed." The default, --rows 1_000_000, finishes in well under a minute on
a 2-core machine (about 20 s).

In one run:

preparation (timed, not a figure)
    A fresh data directory, prepared as bench grpc prepares its own: the
    bench/rewards.py CAMPAIGN (odds 20%, cash and points prizes, budgets) and fresh
    ``BENCH`` item codes to scan, enough for Q scans a second for the whole run. Then
    the upload file: R item codes and ceil(R/6) case codes of another product line
    (``BENCH-LINK``), issued and written as a ``parent,child`` CSV of R rows (6
    bottles to a case) one chunk of about 1M rows at a time, so the bench itself
    never holds the whole file.
load
    ``scangate serve --workers W`` (bench.grpc.start_scangate) on that directory, and
    one load-generator process (``multiprocessing`` spawn, asyncio ``grpc.aio``,
    max(4, 4 W) connections) sending unary ``ScanService.Scan`` calls open-loop at Q
    a second: call i is sent at t0 + i/Q whatever became of the calls before it, each
    with a fresh request_id, a distinct genuine code and a distinct user. A call's
    latency runs from its scheduled send time to its reply, so a stalled server
    shows up in the figures instead of slowing the load down (no coordinated
    omission). A failed call's latency is the time until it failed; it counts in the
    percentiles and as an error.
phases (one continuous load, cut by send time)
    warm-up, 1 s, not reported; baseline, S seconds without an upload; upload: from
    the start of ``scangate link --data DIR FILE --json`` until it exits, and at
    least S seconds. "while link ran" is the part of the upload phase sent before the
    link process exited.
link
    Its exit status must be 0 and its JSON must say rows == R (else the bench
    fails). Peak RSS is ``ru_maxrss`` of the link process from ``os.wait4`` (KiB on
    Linux), printed beside the CSV's size: peak RSS / file size is the "memory
    bounded" figure. rows/s is rows over the process's wall time (start-up
    included); the link's own "seconds" is printed too.

The CSV and the data directory go to a temporary directory (TMPDIR picks where:
for --rows 10_000_000 the CSV is about 570 MiB, and a tmpfs /tmp holds it in memory).

Every reply is parsed as a ``ScanDecision`` and must answer its request and find
the code genuine; anything else (an RPC error, a reply that does not parse or does
not match) is counted as an error and reported, never dropped.

"server CPU s": user + system CPU seconds of every process of ``scangate serve``
(its process group) during each phase, from /proc.

The shared driver pins the benchmark to one core; this benchmark undoes that before
starting any process (as bench grpc does), so the server, the load generator and
the link process share every CPU the benchmark may use.

--n is another name for --rows; --repeat must be 1 (one run); --seed is accepted
like every benchmark's, but nothing here depends on it.

Targets (the link issue): Scan p99 during the upload <= 2x Scan p99 of the baseline;
every call answered with a genuine decision. A FAIL is reported, never turned into
a non-zero exit status.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import multiprocessing.connection
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import _harness
from .grpc import (CALL_TIMEOUT_S, CHANNEL_OPTIONS, SCAN_METHOD, _cpu_seconds, _percentiles, _scan_requests,
                   _split_text, connections_per_worker, start_scangate)

DEFAULT_ROWS = 1_000_000
CASE_SIZE = 6                     # bottles per case in the upload file
CHUNK_ROWS = CASE_SIZE * 166_667  # rows issued and written at a time (about 1M; whole cases)
P99_TARGET = 2.0                  # upload p99 <= 2x baseline p99
WARMUP_S = 1.0
CODE_MARGIN_S = 10.0              # scan codes issued beyond the planned run, in seconds of load
LINK_SKU, SCAN_SKU = "BENCH-LINK", "BENCH"


# ====================================================================== load generator (child process)
def _load_main(conn: multiprocessing.connection.Connection) -> None:
    """The load-generator process: connect, say ready, send paced Scan calls from
    'go' until 'stop', then send back what every call got."""
    try:
        asyncio.run(_load(conn))
    except (EOFError, KeyboardInterrupt):
        pass


async def _load(conn: multiprocessing.connection.Connection) -> None:
    import grpc

    loop = asyncio.get_running_loop()
    _, target, n_channels, codes, tag, rate = conn.recv()
    channels = [grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS) for _ in range(n_channels)]
    try:
        await asyncio.wait_for(asyncio.gather(*(ch.channel_ready() for ch in channels)), 60)
        conn.send(("ready", None))
        if (await loop.run_in_executor(None, conn.recv))[0] != "go":
            raise RuntimeError("expected go")
        stop = asyncio.Event()

        async def wait_for_stop() -> None:
            await loop.run_in_executor(None, conn.recv)     # ("stop",)
            stop.set()

        watcher = asyncio.create_task(wait_for_stop())
        result = await _paced([ch.unary_unary(SCAN_METHOD) for ch in channels], codes, tag, rate, stop)
        await watcher
        conn.send(("ok", result))
    except Exception as exc:  # noqa: BLE001 - the benchmark reports it
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        for ch in channels:
            await ch.close()


async def _paced(calls: list[Any], codes: Any, tag: str, rate: float, stop: asyncio.Event) -> dict[str, Any]:
    """Send call i at t0 + i/rate (time.monotonic: one clock for every process on
    the machine) until ``stop``; each call's latency is from its scheduled time."""
    clock = time.monotonic
    t0 = clock() + 0.01
    scheduled: list[float] = []
    latency: list[float] = []
    error: list[str | None] = []
    replies: list[bytes] = []
    tasks: list[asyncio.Task[None]] = []

    async def one(i: int, request: bytes) -> None:
        try:
            replies[i] = await calls[i % len(calls)](request, timeout=CALL_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - counted and reported as an error
            code = getattr(exc, "code", None)
            error[i] = (f"{code().name}: {exc.details()}" if callable(code) and hasattr(exc, "details")
                        else f"{type(exc).__name__}: {exc}")
        latency[i] = clock() - scheduled[i]

    exhausted = False
    i = 0
    while not stop.is_set():
        if i == len(codes):
            exhausted = True        # out of codes: stop sending, and say so
            await stop.wait()
            break
        t = t0 + i / rate
        delay = t - clock()
        if delay > 0:
            await asyncio.sleep(delay)
            if stop.is_set():
                break
        request = _scan_requests([codes[i].decode("ascii")], tag, i)[0].SerializeToString()
        scheduled.append(t)
        latency.append(0.0)
        error.append(None)
        replies.append(b"")
        tasks.append(asyncio.create_task(one(i, request)))
        i += 1
    await asyncio.gather(*tasks)
    return {"scheduled": scheduled, "latency": latency, "error": error, "replies": replies,
            "exhausted": exhausted}


class LoadGenerator:
    """The load-generator process, driven over a pipe."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_load_main, args=(child,), name="bench-link-load", daemon=True)
        self.proc.start()
        child.close()
        self.stopped = False

    def _answer(self, timeout: float) -> Any:
        if not self.conn.poll(timeout):
            raise RuntimeError(f"the load generator did not answer within {timeout:.0f} s")
        status, value = self.conn.recv()
        if status == "error":
            raise RuntimeError(f"load generator: {value}")
        return value

    def connect(self, target: str, channels: int, codes: Any, tag: str, rate: float) -> None:
        self.conn.send(("run", target, channels, codes, tag, rate))
        self._answer(90)

    def go(self) -> None:
        self.conn.send(("go",))

    def stop(self) -> dict[str, Any]:
        self.conn.send(("stop",))
        self.stopped = True
        return dict(self._answer(CALL_TIMEOUT_S + 60))

    def close(self) -> None:
        if not self.stopped:
            try:
                self.conn.send(("stop",))       # a run cut short: let it finish its calls and exit
            except (OSError, ValueError):
                pass
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()


# ====================================================================== preparation
def _prepare(data: Path, upload: Path, rows: int, scans: int, progress: Callable[[str], None]
             ) -> tuple[Any, int]:
    """The data directory (campaign, ``scans`` codes to scan) and the upload CSV of
    ``rows`` rows, written chunk by chunk. Returns the scan codes (an 'S29' array)
    and the CSV's size in bytes."""
    import numpy as np
    import scangate
    from scangate import rewards

    from .rewards import CAMPAIGN

    dd = scangate.init_data_dir(data)
    try:
        rewards.put_campaign(dd, CAMPAIGN, "bench.toml")
        codes = dd.issue_codes(SCAN_SKU, "item", scans).as_bytes_array().copy()
        with open(upload, "wb") as f:
            f.write(b"parent,child\n")
            for start in range(0, rows, CHUNK_ROWS):
                n = min(CHUNK_ROWS, rows - start)
                progress(f"upload file: rows {start:_}..{start + n:_} of {rows:_}")
                items = dd.issue_codes(LINK_SKU, "item", n).text
                cases = dd.issue_codes(LINK_SKU, "case", -(-n // CASE_SIZE)).text
                width = items.shape[1]
                line = np.empty((n, 2 * width + 2), np.uint8)        # parent,child\n
                line[:, :width] = cases[np.arange(n) // CASE_SIZE]
                line[:, width] = ord(",")
                line[:, width + 1 : -1] = items
                line[:, -1] = ord("\n")
                line.tofile(f)         # written without a copy
                del items, cases, line
    finally:
        dd.close()
    return codes, upload.stat().st_size


# ====================================================================== the link process
@dataclass
class LinkRun:
    returncode: int
    wall_s: float
    peak_rss_kib: int
    cpu_s: float
    stdout: str
    stderr: str
    ended_at: float          # time.monotonic() when it was reaped


class LinkProcess:
    """``scangate link --data DIR FILE --json`` in a subprocess, reaped with
    os.wait4 for its peak RSS."""

    def __init__(self, data: Path, upload: Path):
        exe = Path(sys.executable).parent / "scangate"
        cmd = ([str(exe)] if exe.exists() else [sys.executable, "-c", "from scangate.cli import main; main()"])
        cmd += ["link", "--data", str(data), str(upload), "--json"]
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self._out: list[str] = []
        self._err: list[str] = []
        self._readers = [threading.Thread(target=lambda s=s, o=o: o.append(s.read()), daemon=True)
                         for s, o in ((self.proc.stdout, self._out), (self.proc.stderr, self._err))]
        for r in self._readers:
            r.start()
        self.result: LinkRun | None = None

    def poll(self) -> LinkRun | None:
        """The run once the process has exited (reaped here), else None."""
        if self.result is None:
            pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
            if pid == 0:
                return None
            ended = time.monotonic()
            self.proc.returncode = os.waitstatus_to_exitcode(status)   # reaped: Popen must not wait
            self._finish(ended, usage)
        return self.result

    def _finish(self, ended: float, usage: Any) -> None:
        for r in self._readers:
            r.join(30)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        scale = 1 if sys.platform != "darwin" else 1024     # ru_maxrss: KiB on Linux, bytes on macOS
        assert self.proc.returncode is not None
        self.result = LinkRun(self.proc.returncode, ended - self.started, int(usage.ru_maxrss) // scale,
                              usage.ru_utime + usage.ru_stime, "".join(self._out), "".join(self._err), ended)

    def kill(self) -> None:
        if self.result is None:
            self.proc.kill()
            _, status, usage = os.wait4(self.proc.pid, 0)
            self.proc.returncode = os.waitstatus_to_exitcode(status)
            self._finish(time.monotonic(), usage)


def _link_summary(run: LinkRun, rows: int) -> dict[str, Any]:
    """The link's JSON summary; raises unless it exited 0 and linked ``rows`` rows."""
    tail = f"\n--- scangate link stdout ---\n{run.stdout[-2000:]}\n--- stderr ---\n{run.stderr[-4000:]}"
    if run.returncode != 0:
        raise RuntimeError(f"scangate link exited with status {run.returncode}{tail}")
    lines = [ln for ln in run.stdout.splitlines() if ln.strip().startswith("{")]
    try:
        summary = json.loads(lines[-1])
    except (IndexError, ValueError):
        raise RuntimeError(f"scangate link printed no JSON summary{tail}") from None
    if summary.get("rows") != rows:
        raise RuntimeError(f"scangate link says rows {summary.get('rows')!r}, expected {rows}{tail}")
    return dict(summary)


# ====================================================================== measurement
@dataclass
class Config:
    rows: int
    rate: float
    seconds: float
    workers: int
    max_upload_s: float


def _phase(calls: dict[str, Any], tag: str, start: float, end: float) -> dict[str, Any]:
    """Figures of the calls scheduled in [start, end): count, latency percentiles
    (failed calls included), errors; a reply must parse as the ScanDecision that
    answers its request and finds the code genuine."""
    from google.protobuf.message import DecodeError
    from scangate.v1 import common_pb2 as common
    from scangate.v1 import scan_pb2 as scan_pb

    latencies: list[float] = []
    errors: dict[str, int] = {}
    for i, t in enumerate(calls["scheduled"]):
        if not start <= t < end:
            continue
        latencies.append(calls["latency"][i])
        problem = calls["error"][i]
        if problem is None:
            try:
                d = scan_pb.ScanDecision.FromString(calls["replies"][i])
            except DecodeError as exc:
                problem = f"reply is not a ScanDecision: {exc}"
            else:
                if d.request_id != f"{tag}-{i}":
                    problem = "reply answers another request"
                elif d.verdict.code_status != common.CODE_STATUS_GENUINE:
                    problem = f"code status {common.CodeStatus.Name(d.verdict.code_status)}"
        if problem is not None:
            errors[problem] = errors.get(problem, 0) + 1
    out: dict[str, Any] = {"calls": len(latencies), "seconds": end - start,
                           "errors": sum(errors.values()),
                           "error_kinds": dict(sorted(errors.items(), key=lambda kv: -kv[1])[:5])}
    if latencies:
        out.update(_percentiles(latencies))
    return out


def measure(cfg: Config, cpus: set[int] | None, progress: Callable[[str], None]) -> dict[str, Any]:
    previous = _harness.unpin_and_unwind_on_sigterm(cpus)
    root = Path(tempfile.mkdtemp(prefix="scangate-bench-link-"))
    data, upload = root / "data", root / "upload.csv"
    planned_s = WARMUP_S + 2 * cfg.seconds + cfg.max_upload_s + CODE_MARGIN_S
    scans = math.ceil(cfg.rate * planned_s)
    tag = "link"
    load: LoadGenerator | None = None
    server = None
    link: LinkProcess | None = None
    try:
        progress(f"preparation: data directory with {scans:_} codes to scan, upload file of {cfg.rows:_} rows")
        t = time.perf_counter()
        codes, csv_bytes = _prepare(data, upload, cfg.rows, scans, progress)
        prepare_s = time.perf_counter() - t
        progress("starting the load generator and scangate serve")
        load = LoadGenerator()
        server = start_scangate(data, cfg.workers)
        pgid = server.proc.pid
        channels = max(4, 4 * cfg.workers)
        load.connect(server.target, channels, codes, tag, cfg.rate)
        del codes
        split = connections_per_worker(pgid, int(server.target.rsplit(":", 1)[1]))
        client = [load.proc.pid] if load.proc.pid is not None else []
        progress(f"warm-up, {WARMUP_S:g} s at {cfg.rate:g} Scan/s")
        load.go()
        time.sleep(WARMUP_S)
        t_a, cpu_a, ccpu_a = time.monotonic(), _cpu_seconds(pgid=pgid), _cpu_seconds(client)
        progress(f"baseline, {cfg.seconds:g} s at {cfg.rate:g} Scan/s")
        time.sleep(cfg.seconds)
        t_b, cpu_b, ccpu_b = time.monotonic(), _cpu_seconds(pgid=pgid), _cpu_seconds(client)
        progress(f"upload: scangate link of {cfg.rows:_} rows, {cfg.rate:g} Scan/s")
        link = LinkProcess(data, upload)
        run = None
        while True:
            now = time.monotonic()
            run = link.poll()
            if run is not None and now >= t_b + cfg.seconds:
                break
            if run is None and now - t_b > cfg.max_upload_s:
                link.kill()
                raise RuntimeError(f"scangate link ran past --max-upload-seconds {cfg.max_upload_s:g}")
            time.sleep(0.02)
        t_end, cpu_end, ccpu_end = time.monotonic(), _cpu_seconds(pgid=pgid), _cpu_seconds(client)
        calls = load.stop()
        summary = _link_summary(run, cfg.rows)
        if calls["exhausted"]:
            raise RuntimeError("the load generator ran out of codes to scan")
    except BaseException:
        if server is not None:
            print(f"--- {server.label} log tail ---\n{server.logs()}", file=sys.stderr)
        raise
    finally:
        if link is not None:
            link.kill()
        if server is not None:
            progress("stopping scangate serve")
            server.stop()
        if load is not None:
            load.close()
        shutil.rmtree(root, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous)

    def cpu(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else b - a

    baseline = {**_phase(calls, tag, t_a, t_b), "server_cpu_s": cpu(cpu_a, cpu_b), "client_cpu_s": cpu(ccpu_a, ccpu_b)}
    during = {**_phase(calls, tag, t_b, t_end), "server_cpu_s": cpu(cpu_b, cpu_end),
              "client_cpu_s": cpu(ccpu_b, ccpu_end)}
    while_link = _phase(calls, tag, t_b, run.ended_at)
    if baseline["calls"] == 0 or during["calls"] == 0:
        raise RuntimeError("a phase sent no calls: raise --rate or --seconds")
    ratio = during["p99_ms"] / baseline["p99_ms"]
    mib = 1 << 20
    peak_mib = run.peak_rss_kib / 1024
    errors = baseline["errors"] + during["errors"]       # "while link ran" is part of the upload phase
    self_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // (1 if sys.platform != "darwin" else 1024)
    return {
        "params": {"rows": cfg.rows, "rate": cfg.rate, "seconds": cfg.seconds, "workers": cfg.workers,
                   "warmup_s": WARMUP_S, "case_size": CASE_SIZE, "connections": channels,
                   "max_upload_s": cfg.max_upload_s,
                   "cpus_used": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None},
        "prepare": {"seconds": prepare_s, "scan_codes": scans, "bench_peak_rss_mib": self_kib / 1024},
        "connections_per_worker": split,
        "phases": {"baseline": baseline, "upload": during, "while_link_ran": while_link},
        "p99_ratio": ratio,
        "link": {"rows": summary["rows"], "summary": summary, "wall_s": run.wall_s,
                 "rows_per_s": summary["rows"] / run.wall_s, "cpu_s": run.cpu_s,
                 "peak_rss_mib": peak_mib, "csv_mib": csv_bytes / mib,
                 "peak_rss_x_csv": peak_mib / (csv_bytes / mib)},
        "loadavg_1min_end": os.getloadavg()[0],
        "targets": [
            {"name": "Scan p99 during the upload vs baseline p99", "measured": ratio,
             "required": f"<= {P99_TARGET}", "pass": ratio <= P99_TARGET},
            {"name": "calls without a genuine decision (errors)", "measured": errors,
             "required": "== 0", "pass": errors == 0},
        ],
    }


# ====================================================================== report
def print_report(report: dict[str, Any]) -> None:
    _harness.print_machine_info(report["machine"])
    p, prep, link = report["params"], report["prepare"], report["link"]
    cpus = p["cpus_used"]
    print(f"(the driver's one-core pin is undone here: server, load generator and link share CPUs "
          f"{','.join(map(str, cpus)) if cpus else 'all'}; load average {report['loadavg_1min_end']:.2f} at end)")
    print(f"Load: unary Scan open-loop at {p['rate']:g}/s (latency from each call's scheduled send time), "
          f"{p['connections']} connections to scangate serve --workers {p['workers']} "
          f"(conns per worker {_split_text(report['connections_per_worker'])}); {p['warmup_s']:g} s warm-up")
    print(f"Preparation (not a figure): {prep['seconds']:.1f} s for {prep['scan_codes']:_} scan codes and "
          f"{p['rows']:_} link rows ({link['csv_mib']:.1f} MiB CSV, {p['case_size']} per case); "
          f"bench peak RSS {prep['bench_peak_rss_mib']:.0f} MiB\n")
    rows = []
    for key, label in (("baseline", "baseline (no upload)"), ("upload", "upload (link, >= S s)"),
                       ("while_link_ran", "  of which while link ran")):
        f = report["phases"][key]
        cpu = f.get("server_cpu_s")
        rows.append([label, f"{f['calls']:_}", f"{f['seconds']:.2f}",
                     *([f"{f[k]:.2f}" for k in ("p50_ms", "p90_ms", "p99_ms")] if f["calls"] else ["", "", ""]),
                     f"{f['max_ms']:.1f}" if f["calls"] else "", str(f["errors"]),
                     "" if cpu is None else f"{cpu:.2f}"])
    _harness.print_table(["phase", "calls", "seconds", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors",
                          "server CPU s"], rows)
    for key in ("baseline", "upload"):
        for kind, n in report["phases"][key]["error_kinds"].items():
            print(f"  {key} error x{n}: {kind}")
    print(f"\nscangate link: {link['rows']:_} rows in {link['wall_s']:.2f} s (its own figure "
          f"{link['summary'].get('seconds', '?')} s) = {_harness.format_rate(link['rows_per_s'])}rows/s, "
          f"CPU {link['cpu_s']:.2f} s; peak RSS {link['peak_rss_mib']:.1f} MiB for a {link['csv_mib']:.1f} MiB "
          f"file ({link['peak_rss_x_csv']:.2f}x the file)")
    for t in report["targets"]:
        measured = f"{t['measured']:.3f}x" if isinstance(t["measured"], float) else str(t["measured"])
        print(f"{t['name']}: {measured} (required {t['required']}): {'PASS' if t['pass'] else 'FAIL'}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _harness.add_common_arguments(parser, default_n=DEFAULT_ROWS, default_repeat=1)
    parser.add_argument("--rows", type=int, default=None,
                        help=f"rows of the link upload (default {DEFAULT_ROWS:_}; the issue's figure: 10_000_000)")
    parser.add_argument("--rate", type=float, default=200.0, help="Scan calls per second (default 200)")
    parser.add_argument("--seconds", type=float, default=5.0,
                        help="baseline seconds, and the upload phase's least (default 5)")
    parser.add_argument("--workers", type=int, default=1, help="scangate serve workers (default 1)")
    parser.add_argument("--max-upload-seconds", type=float, default=600.0,
                        help="give up (kill the link, fail) after this long (default 600)")


def run(args: argparse.Namespace) -> int:
    rows = args.rows if args.rows is not None else args.n
    if rows < 1:
        raise SystemExit("--rows must be at least 1")
    if args.rate <= 0 or args.seconds <= 0 or args.max_upload_seconds <= 0:
        raise SystemExit("--rate, --seconds and --max-upload-seconds must be positive")
    if not 1 <= args.workers <= 256:
        raise SystemExit("--workers: 1 to 256")
    if args.repeat != 1:
        raise SystemExit("--repeat: this benchmark is one run (1)")
    cfg = Config(rows=rows, rate=args.rate, seconds=args.seconds, workers=args.workers,
                 max_upload_s=args.max_upload_seconds)
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    return _harness.run_benchmark("link", args, lambda progress: measure(cfg, cpus, progress), print_report)
