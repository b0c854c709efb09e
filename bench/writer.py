"""The writer's ceiling: decisions per second of ``scangate serve``'s writer process, fed by several processes.

``python -m bench writer [--n N] [--feeders K] [--batch B] [--window W] [--repeat R] [--json]``

Every scan of a server passes through its one writer process, so the writer's
rate is the most any number of workers can get. Where no machine with many cores
is at hand to measure workers, this measures the writer itself: a real writer
process (server/scanlink.py ``writer_main``: the server's socket protocol and
group commit, durable commits) on a fresh data directory holding the
bench/rewards.py campaign, and K feeder processes, each with its own connection,
sending items of B scans (distinct genuine codes, distinct users), W items in
flight each, as fast as the writer answers. The feeders do their share of the
work before the timed run (the frames are built, and for writer/prepared the
scans prepared), so what is timed is the writer. In one run:

writer/prepared
    Items a worker prepared (``scangate.decide.prepared.prepare``: verification,
    trace, verdicts, campaign selection, the draw input; ``server.prepare =
    "workers"``): the writer checks their revisions and commits the serialised
    half only.
writer/plain
    The same scans as plain intents (``server.prepare = "writer"``): the writer
    decides them whole.
raw LMDB
    bench/rewards.py decide/raw, same disk, same run: one put at a random key and
    one append per decision, B per durable write transaction.

Each figure: decisions, seconds from the common start to the last reply (the best
of R runs), decisions per second, the rate as a multiple of raw LMDB's, and the
writer process's CPU microseconds per decision (user + system, from /proc), with
the feeders' preparing CPU per decision beside writer/prepared (the work that
moves to the workers). Target (the writer issue): the writer's CPU per decision at
most 15 µs; the ratios are reported.
"""

from __future__ import annotations

import argparse
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from . import _harness

CPU_TARGET_US = 15.0


def _writer_process(data_dir: str, path: str, ready: multiprocessing.connection.Connection) -> None:
    from scangate.config import Config
    from scangate.server.scanlink import writer_main

    writer_main(data_dir, Config(), path, ready, "WARNING")


def _feeder(data_dir: str, path: str, codes: list[str], tag: str, mode: str, batch: int, window: int,
            conn: multiprocessing.connection.Connection) -> None:
    """One feeder: build its frames (preparing them for writer/prepared), say how
    long that took, wait for "go", send them W in flight, report the wall time."""
    import scangate
    from scangate.clock import current as current_clock
    from scangate.decide.prepared import prepare
    from scangate.rewards import ScanRequest
    from scangate.server import scanlink
    from scangate.verdicts import VerdictConfig

    requests = [ScanRequest(f"{tag}-{i}", c, f"user-{tag}-{i}", region=510104) for i, c in enumerate(codes)]
    batches = [requests[i : i + batch] for i in range(0, len(requests), batch)]
    frames = []
    c0 = time.process_time()
    if mode == "prepared":
        dd = scangate.open_data_dir(data_dir)
        now = current_clock()()
        for item_id, b in enumerate(batches, 1):
            p = prepare(dd, b, VerdictConfig(), now)
            if p is None:
                raise AssertionError("a fresh batch was not prepared")
            frames.append(scanlink.item_frame(item_id, b, prepared=p))
        dd.close()
    else:
        frames = [scanlink.item_frame(item_id, b) for item_id, b in enumerate(batches, 1)]
    prepare_cpu = time.process_time() - c0
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    conn.send(("ready", prepare_cpu))
    assert conn.recv() == "go"
    t0 = time.perf_counter()
    sent = done = decisions = 0
    buf = bytearray()
    while done < len(frames):
        while sent < len(frames) and sent - done < window:
            sock.sendall(frames[sent])
            sent += 1
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("the writer closed the connection")
        buf += chunk
        for _item, ok, payload in scanlink.take_replies(buf):
            if not ok:
                raise AssertionError(f"the writer refused an item: {bytes(payload)!r}")
            decisions += len(scanlink.decode_decisions(payload))
            done += 1
    elapsed = time.perf_counter() - t0
    sock.close()
    conn.send(("done", elapsed, decisions))


def _measure_writer(root: Path, mode: str, codes: list[list[str]], batch: int, window: int,
                    tag: str) -> dict[str, Any]:
    """One timed run of ``mode`` with one feeder per list of codes."""
    from .grpc import _cpu_seconds

    ctx = multiprocessing.get_context("spawn")
    path = str(root / f"writer-{tag}.sock")
    ready_r, ready_w = ctx.Pipe(duplex=False)
    writer = ctx.Process(target=_writer_process, args=(str(root / "data"), path, ready_w), daemon=True)
    writer.start()
    ready_w.close()
    if not ready_r.poll(120):
        raise RuntimeError("the writer process did not start")
    writer_pid = ready_r.recv()
    feeders, conns = [], []
    try:
        for k, share in enumerate(codes):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_feeder, args=(str(root / "data"), path, share, f"{tag}{k}", mode, batch,
                                                  window, child), daemon=True)
            p.start()
            feeders.append(p)
            conns.append(parent)
        prepare_cpu = 0.0
        for c in conns:
            message = c.recv()
            assert message[0] == "ready", message
            prepare_cpu += message[1]
        cpu0 = _cpu_seconds([writer_pid])
        t0 = time.perf_counter()
        for c in conns:
            c.send("go")
        results = [c.recv() for c in conns]
        wall = time.perf_counter() - t0
        cpu1 = _cpu_seconds([writer_pid])
    finally:
        for p in feeders:
            p.join(30)
            if p.is_alive():
                p.kill()
        os.kill(writer_pid, signal.SIGTERM)
        writer.join(60)
    count = sum(r[2] for r in results)
    expected = sum(len(s) for s in codes)
    if count != expected:
        raise AssertionError(f"{mode}: {count} decisions for {expected} scans")
    writer_cpu = None if cpu0 is None or cpu1 is None else (cpu1 - cpu0) / count * 1e6
    return {"count": count, "best_s": wall, "rate": count / wall, "writer_cpu_us_per_decision": writer_cpu,
            "prepare_cpu_us_per_decision": prepare_cpu / count * 1e6 if mode == "prepared" else None}


def measure(n: int, feeders: int, batch: int, window: int, repeat: int,
            progress: Any) -> dict[str, Any]:
    import scangate
    from scangate import rewards

    from .rewards import CAMPAIGN, T0_TEXT, measure_raw

    os.environ["SCANGATE_CLOCK"] = T0_TEXT       # the writer's clock, inside the campaign's window
    os.environ.pop("SCANGATE_CLOCK_ANCHOR_MS", None)
    per = -(-n // (feeders * batch)) * batch      # each feeder's scans: whole batches
    best: dict[str, dict[str, Any]] = {}
    for run in range(repeat):
        root = Path(tempfile.mkdtemp(prefix="scangate-bench-writer-"))
        try:
            progress(f"data directory with {2 * feeders * per:_} codes (run {run + 1} of {repeat})")
            dd = scangate.init_data_dir(root / "data")
            rewards.put_campaign(dd, CAMPAIGN, "bench.toml")
            codes = dd.issue_codes("BENCH", "item", 2 * feeders * per).as_strings()
            dd.close()
            for i, mode in enumerate(("plain", "prepared")):
                progress(f"writer/{mode}: {feeders} feeder(s), {feeders * per:_} scans in items of {batch}")
                mine = codes[i * feeders * per : (i + 1) * feeders * per]
                fig = _measure_writer(root, mode, [mine[k * per : (k + 1) * per] for k in range(feeders)], batch,
                                      window, f"{mode[:2]}{run}")
                name = f"writer/{mode}"
                if name not in best or fig["rate"] > best[name]["rate"]:
                    best[name] = fig
            progress("raw LMDB put + append")
            timing, raw_cpu = measure_raw(root, feeders * per, batch)
            raw = {**timing.as_dict(), "writer_cpu_us_per_decision": raw_cpu / timing.count * 1e6}
            if "raw" not in best or raw["rate"] > best["raw"]["rate"]:
                best["raw"] = raw
        finally:
            shutil.rmtree(root, ignore_errors=True)
    for name in ("writer/plain", "writer/prepared"):
        best[name]["x_raw"] = best[name]["rate"] / best["raw"]["rate"]
    cpu = best["writer/prepared"]["writer_cpu_us_per_decision"]
    return {"params": {"n": feeders * per, "feeders": feeders, "batch": batch, "window": window, "repeat": repeat},
            "figures": best,
            "targets": [{"name": "the writer's CPU per prepared decision, us", "measured": cpu,
                         "required": CPU_TARGET_US, "pass": cpu is not None and cpu <= CPU_TARGET_US}]}


def print_report(report: dict[str, Any]) -> None:
    _harness.print_machine_info(report["machine"])
    p, f = report["params"], report["figures"]
    print(f"{p['feeders']} feeder process(es), {p['n']:_} scans per figure in items of {p['batch']}, "
          f"{p['window']} items in flight per feeder, best of {p['repeat']}\n")
    rows = []
    for name, label in (("writer/prepared", "writer: prepared items (the writer's half)"),
                        ("writer/plain", "writer: plain intents (decided whole)"),
                        ("raw", "raw LMDB: random put + append per decision")):
        x = f[name]
        prep = x.get("prepare_cpu_us_per_decision")
        rows.append([label, f"{x['count']:_}", f"{x['best_s']:.2f}", f"{_harness.format_rate(x['rate'])}decisions/s",
                     f"{x['x_raw']:.3f}x" if "x_raw" in x else "", f"{x['writer_cpu_us_per_decision']:.1f}",
                     "" if prep is None else f"{prep:.1f}"])
    _harness.print_table(["figure", "decisions", "seconds", "rate", "x raw", "writer CPU us/decision",
                          "feeders' prepare CPU us/decision"], rows)
    print("\nwriter CPU: the writer process's user + system time (raw LMDB: the benchmark process's).")
    for t in report["targets"]:
        measured = "n/a" if t["measured"] is None else f"{t['measured']:.1f}"
        print(f"{t['name']}: {measured} (required <= {t['required']}): {'PASS' if t['pass'] else 'FAIL'}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _harness.add_common_arguments(parser, default_n=20_000, default_repeat=1)
    parser.add_argument("--feeders", type=int, default=2, help="feeder processes (default 2)")
    parser.add_argument("--batch", type=int, default=100, help="scans per item (default 100)")
    parser.add_argument("--window", type=int, default=4, help="items in flight per feeder (default 4)")


def run(args: argparse.Namespace) -> int:
    if min(args.n, args.feeders, args.batch, args.window, args.repeat) < 1:
        raise SystemExit("--n, --feeders, --batch, --window and --repeat must be at least 1")
    if args.batch > 1000:
        raise SystemExit("--batch: a worker sends at most 1000 scans per item")
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None

    def measured(progress: Any) -> dict[str, Any]:
        previous = _harness.unpin_and_unwind_on_sigterm(cpus)
        try:
            return measure(args.n, args.feeders, args.batch, args.window, args.repeat, progress)
        finally:
            signal.signal(signal.SIGTERM, previous)

    return _harness.run_benchmark("writer", args, measured, print_report)
