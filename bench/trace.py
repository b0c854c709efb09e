"""Linkage load and trace lookup throughput, against raw LMDB on the same keys.

``python -m bench trace [--n N] [--repeat K] [--json]``

N bottles (serials 1..N) go 20 to a case and the cases 50 to a pallet, as a
packaging line links them; everything runs in one process pinned to one core, on
real LMDB environments with scangate's durable settings (sync on commit).

link/scangate
    ``TraceStore.apply_links`` of all N + N/20 links in one call into a fresh
    environment: bucketed child->parent entries, parent->children arrays, one
    committed transaction. Each run starts from an empty environment.
link/raw
    The LMDB ceiling for the naive layout: ``Cursor.putmulti(append=True)`` of the
    same N + N/20 child keys (7 bytes) -> parent (7 bytes), pre-sorted, the item
    list built before the clock starts, one committed transaction.
trace/scangate
    ``TraceStore.ancestors`` for all N bottles in serial order: parent and
    grandparent (case and pallet) of each.
trace/raw
    ``Cursor.getmulti`` of the same N sorted child keys on the raw layout: one
    level only.
bytes per linked bottle
    Growth of data.mdb for the load divided by N (the case->pallet links included),
    for both layouts.

Targets (the trace issue): link load >= 2 M links/s and >= 0.5x raw putmulti;
trace lookups >= 0.5x raw getmulti; <= 32 bytes on disk per linked bottle.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lmdb
import numpy as np

from scangate.store import Store
from scangate.trace import ADD, TraceStore, _keys7, _split

from . import _harness

CASE_SIZE, PALLET_SIZE = 20, 50


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _harness.add_common_arguments(parser, default_n=2_000_000, default_repeat=3)


def _layout(n: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(parents, children) serial arrays for n bottles, n/20 cases, n/1000 pallets."""
    cases = -(-n // CASE_SIZE)
    pallets = -(-cases // PALLET_SIZE)
    bottles = np.arange(1, n + 1, dtype=np.uint64)
    case_ids = np.arange(n + 1, n + cases + 1, dtype=np.uint64)
    pallet_ids = np.arange(n + cases + 1, n + cases + pallets + 1, dtype=np.uint64)
    parents = np.concatenate([case_ids[(bottles - 1) // CASE_SIZE], pallet_ids[np.arange(cases) // PALLET_SIZE]])
    children = np.concatenate([bottles, case_ids])
    return parents, children, pallets


def _file_size(path: Path) -> int:
    return (path / "data.mdb").stat().st_size


def _fresh(root: Path, name: str) -> Path:
    path = root / name
    shutil.rmtree(path, ignore_errors=True)
    return path


def measure_scangate_link(root: Path, parents: np.ndarray, children: np.ndarray, repeat: int
                          ) -> tuple[_harness.Timing, int, Path]:
    best, runs, grown, path = float("inf"), 0, 0, root
    for _ in range(repeat):
        path = _fresh(root, "scangate")
        store = Store(path, create=True)
        trace = TraceStore(store)
        before = _file_size(path)
        t0 = time.perf_counter()
        trace.apply_links(parents, children, np.full(len(children), ADD, np.uint8))
        best = min(best, time.perf_counter() - t0)
        runs += 1
        grown = _file_size(path) - before
        store.close()
    return _harness.Timing(len(children), best, runs), grown, path


def measure_raw_link(root: Path, parents: np.ndarray, children: np.ndarray, repeat: int
                     ) -> tuple[_harness.Timing, int, Path]:
    order = np.argsort(children, kind="stable")
    items = list(zip(_split(_keys7(children[order]), 7), _split(_keys7(parents[order]), 7)))
    best, runs, grown, path = float("inf"), 0, 0, root
    for _ in range(repeat):
        path = _fresh(root, "raw")
        env = lmdb.open(str(path), map_size=1 << 40, max_dbs=4, sync=True, metasync=True, writemap=False)
        db = env.open_db(b"raw")
        with env.begin(write=True):
            pass
        before = _file_size(path)
        t0 = time.perf_counter()
        with env.begin(write=True) as txn:
            consumed, added = txn.cursor(db=db).putmulti(items, append=True)
        best = min(best, time.perf_counter() - t0)
        runs += 1
        if added != len(items):
            raise AssertionError(f"raw putmulti added {added} of {len(items)}")
        grown = _file_size(path) - before
        env.close()
    return _harness.Timing(len(items), best, runs), grown, path


def measure_scangate_trace(path: Path, bottles: np.ndarray, expect_case: np.ndarray, repeat: int
                           ) -> _harness.Timing:
    store = Store(path)
    trace = TraceStore(store)
    timing, anc = _harness.best_of(lambda: trace.ancestors(bottles), len(bottles), repeat)
    store.close()
    if not (anc[:, 0] == expect_case).all() or not (anc[:, 1] != 0).all():
        raise AssertionError("ancestors disagree with the layout")
    return timing


def measure_raw_trace(path: Path, bottles: np.ndarray, repeat: int) -> _harness.Timing:
    keys = _split(_keys7(bottles), 7)
    env = lmdb.open(str(path), map_size=1 << 40, max_dbs=4, readonly=True, lock=False)
    db = env.open_db(b"raw", create=False)

    def work() -> int:
        with env.begin() as txn:
            return len(txn.cursor(db=db).getmulti(keys))

    timing, found = _harness.best_of(work, len(bottles), repeat)
    env.close()
    if found != len(bottles):
        raise AssertionError(f"raw getmulti found {found} of {len(bottles)}")
    return timing


def measure(n: int, repeat: int, progress: Callable[[str], None]) -> dict[str, Any]:
    parents, children, pallets = _layout(n)
    bottles = children[:n]
    root = Path(tempfile.mkdtemp(prefix="scangate-bench-trace-"))
    try:
        progress("scangate link load")
        link_s, grown_s, path_s = measure_scangate_link(root, parents, children, repeat)
        progress("raw putmulti")
        link_r, grown_r, path_r = measure_raw_link(root, parents, children, repeat)
        progress("scangate trace lookups")
        trace_s = measure_scangate_trace(path_s, bottles, parents[:n], repeat)
        progress("raw getmulti")
        trace_r = measure_raw_trace(path_r, bottles, repeat)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    figures = {"link/scangate": link_s.as_dict(), "link/raw": link_r.as_dict(),
               "trace/scangate": trace_s.as_dict(), "trace/raw": trace_r.as_dict()}
    bytes_s, bytes_r = grown_s / n, grown_r / n
    ratios = {"link_vs_raw": link_s.rate / link_r.rate, "trace_vs_raw": trace_s.rate / trace_r.rate}
    targets = [
        {"name": "link load (links/s)", "measured": link_s.rate, "required": 2e6, "pass": link_s.rate >= 2e6},
        {"name": "link vs raw putmulti", "measured": ratios["link_vs_raw"], "required": 0.5,
         "pass": ratios["link_vs_raw"] >= 0.5},
        {"name": "trace vs raw getmulti", "measured": ratios["trace_vs_raw"], "required": 0.5,
         "pass": ratios["trace_vs_raw"] >= 0.5},
        {"name": "bytes per linked bottle", "measured": bytes_s, "required": 32, "pass": bytes_s <= 32},
    ]
    return {"params": {"n": n, "cases": len(children) - n, "pallets": pallets, "repeat": repeat},
            "figures": figures, "bytes_per_bottle": {"scangate": bytes_s, "raw": bytes_r},
            "ratios": ratios, "targets": targets}


def print_report(report: dict[str, Any]) -> None:
    _harness.print_machine_info(report["machine"])
    p = report["params"]
    print(f"N = {p['n']:_} bottles, {p['cases']:_} cases, {p['pallets']:_} pallets; best of >= {p['repeat']} runs\n")
    f, b = report["figures"], report["bytes_per_bottle"]
    rows = [
        ["scangate link load (apply_links)", f["link/scangate"], "links/s", report["ratios"]["link_vs_raw"], b["scangate"]],
        ["raw putmulti(append), same keys", f["link/raw"], "links/s", None, b["raw"]],
        ["scangate trace (ancestors, 2 levels)", f["trace/scangate"], "codes/s", report["ratios"]["trace_vs_raw"], None],
        ["raw getmulti, same keys (1 level)", f["trace/raw"], "codes/s", None, None],
    ]
    _harness.print_table(
        ["figure", "count", "runs", "best ms", "rate", "x raw", "bytes/bottle"],
        [[name, f"{x['count']:_}", str(x["runs"]), f"{x['best_s'] * 1e3:.1f}",
          f"{_harness.format_rate(x['rate'])}{unit}", f"{ratio:.2f}x" if ratio is not None else "",
          f"{bpb:.1f}" if bpb is not None else ""] for name, x, unit, ratio, bpb in rows])
    print()
    _harness.print_table(
        ["target", "measured", "required", "verdict"],
        [[t["name"], f"{t['measured']:,.2f}", f"{'<=' if 'bytes' in t['name'] else '>='} {t['required']:,g}",
          "PASS" if t["pass"] else "FAIL"] for t in report["targets"]])


def run(args: argparse.Namespace) -> int:
    if args.n < CASE_SIZE * PALLET_SIZE or args.repeat < 1:
        raise SystemExit(f"--n must be at least {CASE_SIZE * PALLET_SIZE} and --repeat at least 1")
    return _harness.run_benchmark("trace", args, lambda progress: measure(args.n, args.repeat, progress),
                                  print_report)



