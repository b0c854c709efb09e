"""Instructions per reward decision, counted by valgrind: a figure that, unlike
the wall clock, does not move with the disk or with other work on the machine.

``python -m bench.instructions [--n N] [--batch B] [--verify | --phase NAME]``

Runs this module twice under ``valgrind --tool=callgrind``: once deciding N scans
with ``decide_scans``, batch after batch (after the same set-up and two warm-up
batches as ``python -m bench rewards``, and under the same garbage-collector
settings: the server writer's), once stopping before deciding, and prints
(instructions of the first - of the second) / N. ``--verify`` counts instead the
instructions per code of ``scangate.codes.verify_text`` over N codes of one key
version (default N 1,000,000; no LMDB), the figure behind
``python -m bench codes``'s verify rate. ``--phase NAME`` counts only the
instructions inside one phase of deciding (``PHASES``: a function of the engine
or the store), per decision: the phase runs through ``sys.call_tracing`` and
callgrind collects inside that call alone, so the phases can be compared in one
session (each call adds about 1,000 instructions of wrapping: a phase called once
per scan reads about 1,000 high; once per batch, 10).
``OPENBLAS_NUM_THREADS=1`` and ``PYTHONHASHSEED=0`` are set so that repeated runs
agree to a few hundred instructions per decision. Needs valgrind
(Debian: ``apt-get install valgrind``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from scangate import rewards

from .rewards import _prepared, _server_gc

MAP_SIZE = 1 << 30      # valgrind cannot map the default terabyte

# --phase: name -> (module, attribute: a function, or Class.method)
PHASES: dict[str, tuple[str, str]] = {
    "check_requests": ("scangate.rewards", "check_requests"),       # once per batch
    "verify_codes": ("scangate.datadir", "DataDir.verify_codes"),   # once per batch
    "decide_batch": ("scangate.rewards", "decide_batch"),           # once per batch
    "fingerprints": ("scangate.decide.engine", "fingerprints"),     # once per batch
    "judge": ("scangate.decide.engine", "judge"),                   # once per batch: the verdicts
    "select": ("scangate.decide.engine", "select"),                 # once per scan
    "read": ("scangate.state.batch", "LmdbBatch.read"),             # twice per batch
    "decide_scan": ("scangate.decide.engine", "decide_scan"),       # once per scan with a draw
    "apply": ("scangate.state.batch", "LmdbBatch.apply"),           # once per batch
}


def _trace_phase(name: str, started: list[bool]) -> None:
    """Replace phase ``name`` with a wrapper that, once ``started[0]``, runs it
    through sys.call_tracing (the function callgrind toggles collection on)."""
    import importlib

    module_name, attribute = PHASES[name]
    owner: Any = importlib.import_module(module_name)
    *path, last = attribute.split(".")
    for part in path:
        owner = getattr(owner, part)
    original = getattr(owner, last)

    def traced(*args: Any, **kwargs: Any) -> Any:
        if not started[0]:
            return original(*args, **kwargs)
        return sys.call_tracing(lambda: original(*args, **kwargs), ())

    setattr(owner, last, traced)


def _child_verify(mode: str, n: int) -> None:
    """N newline-terminated codes of serials 1..N, rendered in memory; verified
    when ``mode`` is "verify" (the set-up alone otherwise)."""
    import numpy as np

    from scangate.codes import render_codes_into, verify_text
    from scangate.enums import Level
    from scangate.keys import Keyring, KeyVersion
    from scangate.store import RangeTable

    kv = KeyVersion(1, 0, bytes(range(16)))          # a fixed key: the count must not move
    keys = Keyring(Path(os.devnull), {1: kv})         # never read or written
    lines = np.empty((n, 30), np.uint8)
    lines[:, 29] = 10
    render_codes_into(kv, 1, Level.ITEM, lines)
    text = lines.tobytes()
    table = RangeTable(1, np.array([1], np.uint64), np.array([n], np.uint64), np.array([1], np.uint16),
                       np.array([int(Level.ITEM)], np.uint8), np.array([1], np.int64))
    if mode == "verify":
        result = verify_text(text, keys, table)
        if not (result.status == 0).all():
            raise SystemExit("verify_text: a code did not verify genuine")


def _child(mode: str, n: int, batch: int) -> None:
    if mode in ("verify-setup", "verify"):
        _child_verify(mode, n)
        return
    started = [False]
    if mode.startswith("phase:"):
        _trace_phase(mode[len("phase:"):], started)
    root = Path(tempfile.mkdtemp(prefix="scangate-bench-instructions-"))
    try:
        dd, batches = _prepared(root / "d", n, batch, map_size=MAP_SIZE)
        with dd:
            _server_gc()        # as bench rewards times it (both modes: the difference is deciding)
            started[0] = True
            if mode == "decide" or mode.startswith("phase:"):
                for b in batches:
                    rewards.decide_scans(dd, b)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _count(mode: str, n: int, batch: int) -> int:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    toggle = ["--collect-atstart=no", "--toggle-collect=sys_call_tracing"] if mode.startswith("phase:") else []
    with tempfile.TemporaryDirectory(prefix="scangate-callgrind-") as tmp:   # its profile: not kept
        done = subprocess.run(["valgrind", "--tool=callgrind", *toggle, f"--callgrind-out-file={tmp}/callgrind.out",
                               sys.executable, "-m", "bench.instructions", "--child", mode, "--n", str(n),
                               "--batch", str(batch)],
                              env=env, capture_output=True, text=True, check=False)
    m = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or m is None:
        raise SystemExit(f"valgrind run ({mode}) failed:\n{done.stderr[-3000:]}")
    return int(m.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=None,
                        help="decisions counted (default 3000), or codes with --verify (default 1,000,000)")
    parser.add_argument("--batch", type=int, default=100, help="scans per transaction (default 100)")
    parser.add_argument("--verify", action="store_true", help="instructions per code of verify_text")
    parser.add_argument("--phase", choices=sorted(PHASES),
                        help="instructions per decision inside one phase of deciding")
    parser.add_argument("--child", choices=("setup", "decide", "verify-setup", "verify",
                                            *(f"phase:{p}" for p in PHASES)),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.n is None:
        args.n = 1_000_000 if args.verify or args.child in ("verify-setup", "verify") else 3000
    if args.n < 1 or args.batch < 1:
        raise SystemExit("--n and --batch must be at least 1")
    if args.child:
        _child(args.child, args.n, args.batch)
        return 0
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    if args.phase:
        inside = _count(f"phase:{args.phase}", args.n, args.batch)
        print(f"{args.phase}: {inside / args.n:,.0f} instructions per decision inside it "
              f"({args.n:_} decisions, {args.batch} per transaction; callgrind)")
        return 0
    if args.verify:
        setup, verify = _count("verify-setup", args.n, args.batch), _count("verify", args.n, args.batch)
        print(f"verify_text: {(verify - setup) / args.n:,.1f} instructions per code ({args.n:_} codes; callgrind)")
        return 0
    setup, decide = _count("setup", args.n, args.batch), _count("decide", args.n, args.batch)
    print(f"decide_scans: {(decide - setup) / args.n:,.0f} "
          f"instructions per decision "
          f"({args.n:_} decisions, {args.batch} per transaction; callgrind)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
