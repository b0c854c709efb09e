"""Where a decision's time goes, phase by phase, on a fresh store and on a filled one.

``python -m bench phases [--n N] [--batch B] [--store DIR] [--json]``

In one process, batch after batch of B scans (distinct genuine codes, distinct
users, the bench/rewards.py campaign), each batch the steps of
``rewards.decide_checked``, timed apart with getrusage (user and system CPU of the
process):

verify
    ``DataDir.verify_codes``: the codes' MACs and issued ranges.
decide
    ``decide.engine.decide_batch`` inside the batch's write transaction: every read
    (request index, histories, trace, campaigns, counters, budgets, points) and the
    decision itself.
apply
    ``LmdbBatch.apply``: the batch's records written into the transaction.
commit
    The transaction's durable commit: LMDB writes every page the batch dirtied and
    syncs them.

fresh
    A data directory made for the run: the campaign, N + 2B fresh codes, two
    warm-up batches decided untimed.
filled (``--store DIR``)
    A data directory ``python -m bench fill`` made (``bench.fill.take_pool``: its
    bottles never scanned, each used once), two warm-up batches untimed, then N.

--repeat R decides R runs of N after the warm-up on each store and reports the
fastest (the filled store's pool gives up 2B + R N bottles).

Each row gives CPU microseconds per decision (user, system) and, per store, the
rate over the wall time of the timed batches; with --store, the filled store's
figures as a multiple of the fresh store's. Where the filled store's pages are not
in the page cache, its reads wait for the disk: the "system" column and the rate
show it. ``python -m bench grpc --store`` gives the same stores' figures through a
server, beside raw LMDB's at the same sizes.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import scangate
from scangate import rewards
from scangate.clock import current as current_clock
from scangate.decide.engine import decide_batch
from scangate.rewards import ScanRequest
from scangate.state.batch import LmdbBatch
from scangate.verdicts import VerdictConfig

from . import _harness
from .rewards import CAMPAIGN, T0, _server_gc

PHASES = ("verify", "decide", "apply", "commit")


def _usage() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


def decide_in_phases(dd: scangate.DataDir, batches: Sequence[Sequence[ScanRequest]]) -> dict[str, Any]:
    """Decide ``batches`` one after the other as ``rewards.decide_checked`` does,
    each step's CPU summed apart: {phase: [user s, system s]}, "seconds" (wall)
    and "decisions"."""
    acc = {phase: [0.0, 0.0] for phase in PHASES}
    config, now = VerdictConfig(), current_clock()
    decided = 0

    def add(phase: str, before: tuple[float, float], after: tuple[float, float]) -> None:
        acc[phase][0] += after[0] - before[0]
        acc[phase][1] += after[1] - before[1]

    _server_gc()
    wall = time.perf_counter()
    for batch in batches:
        t0 = _usage()
        checks = dd.verify_codes([r.code for r in batch])
        t1 = _usage()
        txn = dd.store.env.begin(write=True)
        try:
            state = LmdbBatch(dd.store, txn)
            out, mutations = decide_batch(state, batch, checks, config, now())
            t2 = _usage()
            state.apply(mutations)
            t3 = _usage()
        except BaseException:
            txn.abort()
            raise
        txn.commit()
        t4 = _usage()
        refused = [r for r in out if isinstance(r, rewards.RequestRefused)]
        if refused:
            raise AssertionError(f"a fresh scan was refused: {refused[0]}")
        decided += len(out)
        for phase, a, b in zip(PHASES, (t0, t1, t2, t3), (t1, t2, t3, t4)):
            add(phase, a, b)
    return {"decisions": decided, "seconds": time.perf_counter() - wall, "cpu_s": acc}


def _requests(codes: Sequence[str], tag: str) -> list[ScanRequest]:
    return [ScanRequest(f"{tag}-{i}", code, f"user-{tag}-{i}", region=510104, time_ms=T0 + i)
            for i, code in enumerate(codes)]


def _batches(requests: Sequence[ScanRequest], batch: int) -> list[list[ScanRequest]]:
    return [list(requests[start : start + batch]) for start in range(0, len(requests), batch)]


def _figures(run: dict[str, Any]) -> dict[str, Any]:
    n = run["decisions"]
    return {"decisions": n, "seconds": run["seconds"], "rate": n / run["seconds"],
            "us_per_decision": {phase: {"user": u / n * 1e6, "system": s / n * 1e6}
                                for phase, (u, s) in run["cpu_s"].items()}}


def measure_store(dd: scangate.DataDir, codes: Sequence[str], n: int, batch: int, tag: str) -> dict[str, Any]:
    """Two warm-up batches of ``codes`` (untimed), then runs of ``n`` in phases
    while codes last: the figures of the fastest run."""
    warm = 2 * batch
    decide_in_phases(dd, _batches(_requests(codes[:warm], f"{tag}-warm"), batch))
    runs = [_figures(decide_in_phases(dd, _batches(_requests(codes[start : start + n], f"{tag}-{start}"), batch)))
            for start in range(warm, len(codes), n)]
    return max(runs, key=lambda r: float(r["rate"]))


def measure(n: int, batch: int, repeat: int, store: Path | None, progress: Callable[[str], None]) -> dict[str, Any]:
    tag = f"phases-{os.getpid()}-{time.time_ns()}"    # request ids no earlier run of this on a store used
    out: dict[str, Any] = {"params": {"n": n, "batch": batch, "repeat": repeat,
                                      "store": None if store is None else str(store)}}
    total = 2 * batch + repeat * n
    root = Path(tempfile.mkdtemp(prefix="scangate-bench-phases-"))
    try:
        progress(f"fresh store: {total:_} codes")
        dd = scangate.init_data_dir(root / "fresh")
        try:
            rewards.put_campaign(dd, CAMPAIGN, "bench.toml")
            codes = dd.issue_codes("BENCH", "item", total).as_strings()
            progress("fresh store: deciding")
            out["fresh"] = measure_store(dd, codes, n, batch, tag)
        finally:
            dd.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if store is not None:
        from .fill import take_pool

        progress(f"filled store {store}: {total:_} unscanned bottles")
        codes = take_pool(store, total)
        dd = scangate.open_data_dir(store)
        try:
            progress("filled store: deciding")
            out["filled"] = measure_store(dd, codes, n, batch, tag)
        finally:
            dd.close()
        out["filled_x_fresh"] = out["filled"]["rate"] / out["fresh"]["rate"]
    return out


def print_report(report: dict[str, Any]) -> None:
    _harness.print_machine_info(report["machine"])
    p = report["params"]
    stores = [name for name in ("fresh", "filled") if name in report]
    print(f"{p['n']:_} scans per run, {p['batch']} per committed transaction, the fastest of {p['repeat']} run(s)"
          + (f"; filled store {p['store']}" if p["store"] else "") + "\n")
    print("CPU microseconds per decision, user / system:")
    headers = ["phase", *stores] + (["filled / fresh (user + system)"] if len(stores) == 2 else [])
    rows = []
    for phase in (*PHASES, "all"):
        row, totals = [phase], []
        for name in stores:
            us = report[name]["us_per_decision"]
            user = sum(us[x]["user"] for x in PHASES) if phase == "all" else us[phase]["user"]
            system = sum(us[x]["system"] for x in PHASES) if phase == "all" else us[phase]["system"]
            row.append(f"{user:.1f} / {system:.1f}")
            totals.append(user + system)
        if len(totals) == 2:
            row.append(f"{totals[1] / totals[0]:.2f}x" if totals[0] else "n/a")
        rows.append(row)
    rows.append(["rate", *[f"{_harness.format_rate(report[name]['rate'])}decisions/s" for name in stores]]
                + ([f"{report['filled_x_fresh']:.3f}x"] if len(stores) == 2 else []))
    _harness.print_table(headers, rows)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _harness.add_common_arguments(parser, default_n=5_000, default_repeat=1)
    parser.add_argument("--batch", type=int, default=100, help="scans per write transaction (default 100)")
    parser.add_argument("--store", type=Path, default=None,
                        help="a data directory python -m bench fill made: its phases beside a fresh store's")


def run(args: argparse.Namespace) -> int:
    if args.n < 1 or args.batch < 1:
        raise SystemExit("--n and --batch must be at least 1")
    return _harness.run_benchmark("phases", args,
                                  lambda progress: measure(args.n, args.batch, args.repeat, args.store, progress),
                                  print_report)
