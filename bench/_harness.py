"""Shared helpers for benchmarks: CPU pinning, machine info, best-of-k timing, a
plain-text table and JSON output. Nothing here knows about a particular benchmark."""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

DEFAULT_SEED = 20240601


def unpin_and_unwind_on_sigterm(cpus: set[int] | None) -> Any:
    """For a benchmark that starts processes: undo the driver's one-core pin
    (``cpus``: the CPUs it may use; the processes it starts inherit them) and make
    SIGTERM unwind (SystemExit), so that its finally blocks stop every process it
    started. Returns the previous SIGTERM handler, for the caller to restore."""
    if cpus is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cpus)

    def on_sigterm(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    return signal.signal(signal.SIGTERM, on_sigterm)


def add_common_arguments(parser: argparse.ArgumentParser, *, default_n: int, default_repeat: int = 5) -> None:
    """--n, --repeat, --seed and --json, shared by every benchmark."""
    parser.add_argument("--n", type=int, default=default_n, help=f"items per run (default {default_n:_})")
    parser.add_argument("--repeat", type=int, default=default_repeat,
                        help=f"timed runs at least (more for fast figures, up to 1 s in all); "
                             f"the best is reported (default {default_repeat})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed for keys and data")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")


def pin_to_one_core() -> int | None:
    """Pin this process to the first CPU it may run on; return that CPU, or None
    where the platform has no sched_setaffinity."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(pinned_cpu: int | None) -> dict[str, Any]:
    """CPU, core count, pinning and library versions, for the report."""
    import cryptography
    import numpy
    from cryptography.hazmat.backends.openssl import backend

    return {
        "cpu": cpu_model(),
        "cpus_online": os.cpu_count(),
        "pinned_cpu": pinned_cpu,
        "loadavg_1min": os.getloadavg()[0],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "cryptography": cryptography.__version__,
        "openssl": backend.openssl_version_text(),
    }


def print_machine_info(info: dict[str, Any]) -> None:
    pinned = (f"pinned to CPU {info['pinned_cpu']} (one core)" if info["pinned_cpu"] is not None
              else "not pinned (no sched_setaffinity)")
    print(f"CPU:      {info['cpu']} ({info['cpus_online']} online; {pinned}; "
          f"load average {info['loadavg_1min']:.2f} at start)")
    print(f"Platform: {info['platform']}")
    print(f"Python {info['python']}, numpy {info['numpy']}, cryptography {info['cryptography']}, "
          f"{info['openssl']}")


@dataclass(frozen=True)
class Timing:
    """The best of ``runs`` timed runs that each processed ``count`` items."""

    count: int
    best_s: float
    runs: int

    @property
    def rate(self) -> float:
        """Items per second of the best run."""
        return self.count / self.best_s

    def as_dict(self) -> dict[str, float | int]:
        return {"count": self.count, "best_s": self.best_s, "runs": self.runs, "rate": self.rate}


def best_of(fn: Callable[[], T], count: int, repeat: int, min_time_s: float = 1.0) -> tuple[Timing, T]:
    """Run ``fn`` at least ``repeat`` times (and at least once), and more until the
    runs add up to ``min_time_s``, so fast figures get enough samples to shrug off
    a scheduler hiccup. The garbage collector is paused, as timeit does. Returns the
    fastest wall-clock time and the last run's result (so callers can check what was
    timed without running it again)."""
    best, total, runs = float("inf"), 0.0, 0
    result: T | None = None
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        while runs < max(1, repeat) or total < min_time_s:
            result = None  # free the previous result outside the timed region
            t0 = time.perf_counter()
            result = fn()
            elapsed = time.perf_counter() - t0
            best, total, runs = min(best, elapsed), total + elapsed, runs + 1
    finally:
        if gc_was_enabled:
            gc.enable()
    return Timing(count, best, runs), result  # type: ignore[return-value]


def format_rate(rate: float) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if rate >= scale:
            return f"{rate / scale:.2f} {suffix}"
    return f"{rate:.0f} "


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A left-aligned first column, right-aligned others, one rule under the header."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))


def print_json(obj: dict[str, Any]) -> None:
    print(json.dumps(obj, indent=2, sort_keys=False))


def run_benchmark(name: str, args: Any, measure: Callable[[Callable[[str], None]], dict[str, Any]],
                  print_report: Callable[[dict[str, Any]], None]) -> int:
    """The driver every benchmark shares: pin to one core, measure (progress on
    stderr), then print the report as tables or, with --json, one JSON object."""
    pinned = pin_to_one_core()

    def progress(stage: str) -> None:
        print(f"measuring {stage} ...", file=sys.stderr, flush=True)

    report = {"benchmark": name, "machine": machine_info(pinned), **measure(progress)}
    if args.json:
        print_json(report)
    else:
        print_report(report)
    return 0
