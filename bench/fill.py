"""A data directory filled as a national programme's would be, for ``python -m bench grpc --store DIR``.

``python -m bench fill --out DIR [--bottles B] [--scanned S] [--actors A] [--batch K]``

Makes DIR (which must not exist): the bench/rewards.py campaign; B bottles of
one line issued, 20 to a case, and every case->bottle link loaded into the trace
(``TraceStore.apply_links``, in chunks); then S of those bottles scanned through
the library's own decision path (``rewards.decide_scans``, K per transaction)
by A distinct consumers, so every record a decision writes exists as many times
as in such a programme: scan histories, claims, per-user counters, points
accounts and their history, ledger entries, payout requests, decision records,
the request index. The scanned bottles are every tenth one (serial = first + 10 i),
visited in a shuffled order of runs of 1,000, so the histories and claims are
spread over the whole range.

Bottles with serial = first + 10 i + 5 are never scanned here: ``bench grpc
--store DIR`` scans them, picked in a shuffled order, so a benchmark's decisions
land all over a full store's B-trees, as consumers' scans do, not at its end.
DIR/bench-fill.json records what was made and how far the benchmarks have used
that pool.

Prints each stage's rows per second and the data directory's size at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

FILL_FILE = "bench-fill.json"
PER_CASE = 20
RUN = 1_000          # bottles scanned in a row (every tenth of 10,000 serials) before a jump


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def fill(out: Path, bottles: int, scanned: int, actors: int, batch: int, seed: int) -> dict[str, Any]:
    import scangate
    from scangate import rewards
    from scangate.codes import render_codes_into
    from scangate.enums import Level
    from scangate.rewards import ScanRequest
    from scangate.state.trace import ADD, TraceStore

    from .rewards import CAMPAIGN, T0

    if scanned > bottles // 10:
        raise SystemExit("--scanned: at most a tenth of --bottles (every tenth bottle is scanned)")
    rng = np.random.default_rng(seed)
    t_start = time.perf_counter()
    dd = scangate.init_data_dir(out)
    rewards.put_campaign(dd, CAMPAIGN, "bench.toml")
    cases = -(-bottles // PER_CASE)
    _, bottle_range, key = dd.reserve("FILL-500", "item", bottles)
    _, case_range, _ = dd.reserve("FILL-500-CASE", "case", cases)
    first, case_first = bottle_range.first, case_range.first
    trace = TraceStore(dd.store)
    t0 = time.perf_counter()
    chunk = 10_000_000
    for start in range(0, bottles, chunk):
        n = min(chunk, bottles - start)
        child = np.arange(first + start, first + start + n, dtype=np.uint64)
        parent = (case_first + (np.arange(start, start + n, dtype=np.uint64) // PER_CASE)).astype(np.uint64)
        trace.apply_links(parent, child, np.full(n, ADD, np.uint8))
        _log(f"fill: linked {start + n:_} of {bottles:_} bottles ({(start + n) / (time.perf_counter() - t0):,.0f}/s)")
    link_s = time.perf_counter() - t0
    # the scanned bottles: runs of RUN tenth-serials, in a shuffled order
    runs = scanned // RUN
    order = rng.permutation(bottles // (10 * RUN))[:runs]
    text = np.empty((10 * RUN, 29), np.uint8)
    t0 = time.perf_counter()
    done = 0
    pending: list[ScanRequest] = []
    for k, r in enumerate(order.tolist()):
        base = first + r * 10 * RUN
        render_codes_into(key, base, Level.ITEM, text)
        codes = np.ascontiguousarray(text[::10]).view("S29").reshape(-1)
        for i, code in enumerate(codes.tolist()):
            serial_index = (base - first) // 10 + i
            actor = f"fill-{int(rng.integers(actors))}"
            pending.append(ScanRequest(f"fill-{serial_index}", code.decode(), actor, region=510104,
                                       time_ms=T0 + serial_index % 86_400_000))
            if len(pending) == batch:
                rewards.decide_scans(dd, pending)
                done += len(pending)
                pending = []
        if k % 100 == 99:
            _log(f"fill: decided {done:_} of {runs * RUN:_} scans ({done / (time.perf_counter() - t0):,.0f}/s)")
    if pending:
        rewards.decide_scans(dd, pending)
        done += len(pending)
    scan_s = time.perf_counter() - t0
    dd.close()
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    record = {"bottles": bottles, "scanned": done, "actors": actors, "first_serial": first,
              "key_version": key.version, "seed": seed, "link_s": link_s, "scan_s": scan_s,
              "total_s": time.perf_counter() - t_start, "bytes": size, "pool_used": 0}
    _write_record(out, record)
    return record


def _write_record(data: Path, record: dict[str, Any]) -> None:
    """DIR/bench-fill.json, owner-only like everything in a data directory."""
    fd = os.open(data / FILL_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(record, indent=1))


def take_pool(data: Path, count: int) -> list[str]:
    """``count`` codes of bottles the fill left unscanned (serial = first + 10 i + 5),
    in a shuffled order, none that an earlier benchmark took; their texts."""
    import scangate
    from scangate.codes import render_codes_into
    from scangate.enums import Level

    record = json.loads((data / FILL_FILE).read_text())
    slots = record["bottles"] // 10
    used = record["pool_used"]
    if used + count > slots:
        raise SystemExit(f"{data}: its pool of unscanned bottles is used up; fill a new one")
    # a fixed permutation of the slots (the fill's seed), taken in order
    order = np.random.default_rng(record["seed"] + 1).permutation(slots)[used : used + count]
    dd = scangate.open_data_dir(data)
    try:
        key = dd.keys.get(record["key_version"])
        assert key is not None
        text = np.empty((1, 29), np.uint8)
        codes = []
        for i in order.tolist():
            render_codes_into(key, record["first_serial"] + 10 * i + 5, Level.ITEM, text)
            codes.append(text.tobytes().decode())
    finally:
        dd.close()
    record["pool_used"] = used + count
    _write_record(data, record)
    return codes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="the data directory to make (must not exist)")
    parser.add_argument("--bottles", type=int, default=100_000_000, help="bottles linked (default 100,000,000)")
    parser.add_argument("--scanned", type=int, default=10_000_000, help="bottles scanned (default 10,000,000)")
    parser.add_argument("--actors", type=int, default=2_000_000, help="distinct consumers (default 2,000,000)")
    parser.add_argument("--batch", type=int, default=1_000, help="scans per transaction (default 1,000)")
    parser.add_argument("--seed", type=int, default=20261207)


def run(args: argparse.Namespace) -> int:
    if args.out.exists():
        raise SystemExit(f"--out: {args.out} exists")
    if args.bottles < 10 * RUN or args.scanned < RUN or args.actors < 1 or args.batch < 1:
        raise SystemExit(f"--bottles at least {10 * RUN}, --scanned at least {RUN}, --actors and --batch at least 1")
    record = fill(args.out, args.bottles, args.scanned, args.actors, args.batch, args.seed)
    print(json.dumps(record, indent=1))
    return 0
