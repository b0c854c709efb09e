"""Reward decisions per second with durable group commit, against raw LMDB.

``python -m bench rewards [--n N] [--batch B] [--repeat K] [--json]``

decide/scangate
    ``rewards.decide_scans`` on batches of B scans of distinct genuine codes by
    distinct users, under one active campaign (odds 20%, cash and points prizes,
    budgets and caps): each batch is one committed write transaction (sync on
    commit) holding every scan's verdict, history, claim, counters, budgets, ledger
    entry and payout request.
decide/raw
    The LMDB floor for the same durability: per decision, one put at a random
    8-byte key (a claim) and one append (a ledger entry of 200 bytes), B decisions
    per committed write transaction, same environment settings.

Target (the rewards issue): scangate >= 0.4x raw; the absolute rate is reported too.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import struct
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lmdb

import scangate
from scangate import rewards
from scangate.rewards import ScanRequest

from . import _harness

CAMPAIGN = """
id = "bench"
name = "Bench campaign"
start = 2026-01-01
end = 2027-01-01
actor = "consumer"
odds = "20%"
consolation = "points-5"

[[prizes]]
id = "cny-1"
kind = "cash"
weight = 9
amount_fen = 100
budget_amount_fen = 1_000_000_000

[[prizes]]
id = "cny-10"
kind = "cash"
weight = 1
amount_fen = 1_000
budget_count = 100_000

[[prizes]]
id = "points-5"
kind = "points"
points = 5
"""
T0 = int(dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=8))).timestamp() * 1000)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _harness.add_common_arguments(parser, default_n=20_000, default_repeat=1)
    parser.add_argument("--batch", type=int, default=100, help="scans per write transaction (default 100)")


def measure_scangate(root: Path, n: int, batch: int) -> _harness.Timing:
    dd = scangate.init_data_dir(root / "scangate")
    rewards.put_campaign(dd, CAMPAIGN, "bench.toml")
    codes = dd.issue_codes("BENCH", "item", n).as_strings()
    requests = [ScanRequest(f"r{i}", c, f"user-{i}", region=510104, time_ms=T0 + i) for i, c in enumerate(codes)]
    t0 = time.perf_counter()
    decided = 0
    for start in range(0, n, batch):
        decided += len(rewards.decide_scans(dd, requests[start : start + batch]))
    elapsed = time.perf_counter() - t0
    dd.close()
    if decided != n:
        raise AssertionError(f"decided {decided} of {n}")
    return _harness.Timing(n, elapsed, 1)


def measure_raw(root: Path, n: int, batch: int) -> _harness.Timing:
    path = root / "raw"
    env = lmdb.open(str(path), map_size=1 << 40, max_dbs=4, sync=True, metasync=True, writemap=False)
    claims, ledger = env.open_db(b"claims"), env.open_db(b"ledger")
    keys = [os.urandom(8) for _ in range(n)]
    entry = b"x" * 200
    t0 = time.perf_counter()
    seq = 0
    for start in range(0, n, batch):
        with env.begin(write=True) as txn:
            for k in keys[start : start + batch]:
                seq += 1
                txn.put(k, struct.pack(">Q", seq), db=claims)
                txn.put(struct.pack(">Q", seq), entry, db=ledger, append=True)
    elapsed = time.perf_counter() - t0
    env.close()
    return _harness.Timing(n, elapsed, 1)


def measure(n: int, batch: int, repeat: int, progress: Callable[[str], None]) -> dict[str, Any]:
    best_s = best_r = None
    for _ in range(repeat):
        root = Path(tempfile.mkdtemp(prefix="scangate-bench-rewards-"))
        try:
            progress("scangate decide_scans")
            s = measure_scangate(root, n, batch)
            progress("raw LMDB put + append")
            r = measure_raw(root, n, batch)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        best_s = s if best_s is None or s.best_s < best_s.best_s else best_s
        best_r = r if best_r is None or r.best_s < best_r.best_s else best_r
    assert best_s is not None and best_r is not None
    ratio = best_s.rate / best_r.rate
    return {"params": {"n": n, "batch": batch, "repeat": repeat},
            "figures": {"decide/scangate": best_s.as_dict(), "decide/raw": best_r.as_dict()},
            "ratio": ratio,
            "targets": [{"name": "decisions vs raw LMDB", "measured": ratio, "required": 0.4, "pass": ratio >= 0.4}]}


def print_report(report: dict[str, Any]) -> None:
    _harness.print_machine_info(report["machine"])
    p, f = report["params"], report["figures"]
    print(f"N = {p['n']:_} scans, {p['batch']} per committed transaction\n")
    _harness.print_table(
        ["figure", "count", "seconds", "rate", "x raw"],
        [["scangate decide_scans (durable group commit)", f"{f['decide/scangate']['count']:_}",
          f"{f['decide/scangate']['best_s']:.2f}", f"{_harness.format_rate(f['decide/scangate']['rate'])}decisions/s",
          f"{report['ratio']:.3f}x"],
         ["raw LMDB: random put + append per decision", f"{f['decide/raw']['count']:_}",
          f"{f['decide/raw']['best_s']:.2f}", f"{_harness.format_rate(f['decide/raw']['rate'])}decisions/s", ""]])
    print()
    t = report["targets"][0]
    print(f"{t['name']}: {t['measured']:.3f}x (required >= {t['required']}x): {'PASS' if t['pass'] else 'FAIL'}")


def run(args: argparse.Namespace) -> int:
    if args.n < 1 or args.batch < 1:
        raise SystemExit("--n and --batch must be at least 1")
    return _harness.run_benchmark("rewards", args, lambda progress: measure(args.n, args.batch, args.repeat, progress),
                                  print_report)
