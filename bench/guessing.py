"""How fast a hostile client can guess codes through ``scangate serve``, next to the
configured limits.

``python -m bench.guessing [--workers 1,2] [--seconds S] [--concurrency C]
[--connections M] [--batch B] [--json]``

For each worker count N: a real ``scangate serve --workers N`` on a fresh data
directory with tokens on, and a scanner-role token for each path, so that each
path starts with full client buckets:

scan, fresh actor
    Unary ``Scan`` calls, each with a fresh actor id, a fresh request id and a
    different well-formed code that is not genuine (random ciphertext with a correct
    check symbol: the verdict is ``counterfeit``). Per-actor limits never see the same
    actor twice; only the per-client limits can stop it.
VerifyCodes, Trace
    Calls of B such codes each (``--batch``).
VerifyCodes, genuine codes
    Calls of B genuine codes (issued in the data directory): not guessing, the
    volume a client may check (``client_codes_per_second``).

The client keeps C calls in flight over M connections (``grpc.use_local_subchannel_pool``,
so the kernel spreads the connections over the workers; the split is printed) and
retries a refused call at once, for S seconds per path. Reported per path: codes
answered (a decision or a check result: a guess whose answer came back), codes per
second over the whole run, the burst (codes answered before the first
``RESOURCE_EXHAUSTED``) and the rate after it (codes answered after the first refusal
over the time left: the sustained guessing rate the limits allow), and refused calls.
The limits the server runs with are read the way the server reads them (the data
directory's ``scangate.toml`` and ``SCANGATE_LIMITS_*``), so a run with other limits
is ``SCANGATE_LIMITS_CLIENT_FAILURES_PER_HOUR=... python -m bench.guessing``.

The client is one Python process: the scan figures before limits are bounded by it
and by the server, not by a limit. Nothing here depends on the date or on --seed.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import _harness
from .grpc import ServerProcess, _workers, connections_per_worker

CHANNEL_OPTIONS: list[tuple[str, Any]] = [("grpc.use_local_subchannel_pool", 1)]
_READY = r"serving .+ on (?:tls://)?(?P<host>[\d.]+):(?P<port>\d+) with \d+ worker"
PATHS = ("scan", "verify", "trace", "verify_genuine")
LABELS = {"scan": "Scan, a fresh actor per scan", "verify": "VerifyCodes", "trace": "Trace",
          "verify_genuine": "VerifyCodes, genuine codes"}
GENUINE = 100_000


def _guesses(n: int, seed: int) -> list[str]:
    """Well-formed texts of random blocks: right shape and check symbol, never genuine
    (a guesser computes the check symbol; it is not a secret)."""
    import numpy as np

    from scangate import _core

    blocks = np.random.default_rng(seed).integers(0, 256, (n, 16), dtype=np.uint8)
    out = np.zeros((n, _core.CODE_LEN), np.uint8)
    _core.encode_text(blocks, 1, out)
    return [bytes(row).decode("ascii") for row in out]


@dataclasses.dataclass
class _Tally:
    answered: int = 0
    refused: int = 0
    errors: int = 0
    first_refusal_s: float | None = None
    after_refusal: int = 0
    sample_refusal: str = ""
    sample_error: str = ""


async def _attack(target: str, token: str, path: str, seconds: float, concurrency: int, connections: int,
                  batch: int, pool: list[str], server_pgid: int) -> dict[str, Any]:
    import grpc

    from scangate.v1 import codes_pb2, scan_pb2, trace_pb2

    kinds: dict[str, tuple[str, Any, Any]] = {
        "scan": ("/scangate.v1.ScanService/Scan", scan_pb2.ScanRequest, scan_pb2.ScanDecision),
        "verify": ("/scangate.v1.CodeService/VerifyCodes", codes_pb2.VerifyCodesRequest,
                   codes_pb2.VerifyCodesReply),
        "trace": ("/scangate.v1.TraceService/Trace", trace_pb2.TraceRequest, trace_pb2.TraceReply),
        "verify_genuine": ("/scangate.v1.CodeService/VerifyCodes", codes_pb2.VerifyCodesRequest,
                           codes_pb2.VerifyCodesReply),
    }
    method, request_type, reply_type = kinds[path]
    channels = [grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS) for _ in range(connections)]
    try:
        await asyncio.wait_for(asyncio.gather(*(ch.channel_ready() for ch in channels)), 60)
        split = connections_per_worker(server_pgid, int(target.rsplit(":", 1)[1]))
        calls = [ch.unary_unary(method, request_serializer=request_type.SerializeToString,
                                response_deserializer=reply_type.FromString) for ch in channels]
        metadata = (("authorization", f"Bearer {token}"),)
        tally, counter = _Tally(), [0]
        per_call = 1 if path == "scan" else batch
        start = time.perf_counter()
        deadline = start + seconds

        def request() -> Any:
            i = counter[0]
            counter[0] += 1
            if path == "scan":
                return request_type(request_id=f"guess-{i}", code=pool[i % len(pool)], actor=f"fresh-{i}")
            first = (i * batch) % (len(pool) - batch)
            return request_type(codes=pool[first : first + batch])

        async def loop(k: int) -> None:
            call = calls[k % len(calls)]
            while time.perf_counter() < deadline:
                try:
                    await call(request(), timeout=60, metadata=metadata)
                except grpc.aio.AioRpcError as exc:
                    if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                        tally.refused += 1
                        if tally.first_refusal_s is None:
                            tally.first_refusal_s = time.perf_counter() - start
                            tally.sample_refusal = exc.details() or ""
                    else:
                        tally.errors += 1
                        tally.sample_error = tally.sample_error or f"{exc.code().name}: {exc.details()}"
                    continue
                tally.answered += per_call
                if tally.first_refusal_s is not None:
                    tally.after_refusal += per_call

        await asyncio.gather(*(loop(k) for k in range(concurrency)))
        elapsed = time.perf_counter() - start
    finally:
        for ch in channels:
            await ch.close()
    after_s = None if tally.first_refusal_s is None else elapsed - tally.first_refusal_s
    return {"path": path, "seconds": elapsed, "answered": tally.answered, "rate": tally.answered / elapsed,
            "burst": tally.answered - tally.after_refusal if tally.first_refusal_s is not None else None,
            "first_refusal_s": tally.first_refusal_s,
            "rate_after_refusal": tally.after_refusal / after_s if after_s else None,
            "refused_calls": tally.refused, "errors": tally.errors, "sample_refusal": tally.sample_refusal,
            "sample_error": tally.sample_error, "connections": split}


def measure_workers(root: Path, workers: int, args: argparse.Namespace, pool: list[str],
                    progress: Callable[[str], None]) -> dict[str, Any]:
    import scangate
    from scangate.config import load_config
    from scangate.server.auth import add_token

    data = root / f"data-{workers}"
    with scangate.init_data_dir(data) as dd:
        genuine = dd.issue_codes("BENCH", "item", GENUINE).as_strings()
    tokens = {path: add_token(data / "tokens.toml", f"guesser-{path}", "scanner") for path in PATHS}
    limits = dataclasses.asdict(load_config(None, data_dir=data).limits)
    exe = Path(sys.executable).parent / "scangate"
    cmd = ([str(exe)] if exe.exists() else [sys.executable, "-c", "from scangate.cli import main; main()"])
    cmd += ["serve", "--data", str(data), "--port", "0", "--workers", str(workers), "--metrics-port", "0",
            "--log-level", "WARNING"]
    progress(f"workers={workers}: starting scangate serve")
    server = ServerProcess(cmd, re.compile(_READY), f"scangate serve --workers {workers}")
    out: dict[str, Any] = {"workers": workers, "limits": limits, "paths": []}
    try:
        for path in args.paths:
            progress(f"workers={workers}: {LABELS[path]} for {args.seconds} s")
            result = asyncio.run(_attack(server.target, tokens[path], path, args.seconds, args.concurrency,
                                         args.connections, args.batch,
                                         genuine if path == "verify_genuine" else pool, server.proc.pid))
            out["paths"].append(result)
    except BaseException:
        print(f"--- {server.label} log tail ---\n{server.logs()}", file=sys.stderr)
        raise
    finally:
        server.stop()
    return out


def measure(args: argparse.Namespace, cpus: set[int] | None, progress: Callable[[str], None]) -> dict[str, Any]:
    if cpus is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cpus)    # undo the driver's pin: the server and this client share the CPUs

    def on_sigterm(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)   # unwind: the finally blocks stop the server

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    root = Path(tempfile.mkdtemp(prefix="scangate-bench-guessing-"))
    try:
        pool = _guesses(200_000, args.seed)
        runs = [measure_workers(root, w, args, pool, progress) for w in args.workers]
    finally:
        shutil.rmtree(root, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous)
    return {"params": {"paths": args.paths, "seconds": args.seconds, "concurrency": args.concurrency, "connections": args.connections,
                       "batch": args.batch, "workers": args.workers}, "runs": runs}


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


def print_report(report: dict[str, Any]) -> None:
    _harness.print_machine_info(report["machine"])
    p = report["params"]
    print(f"One client process: {p['concurrency']} calls in flight over {p['connections']} connections, "
          f"{p['seconds']} s per path, {p['batch']} codes per VerifyCodes/Trace call; a refused call is retried "
          f"at once\n")
    for run in report["runs"]:
        limits = ", ".join(f"{k} = {v}" for k, v in run["limits"].items())
        split = "; ".join(f"{r['path']} {r['connections'] or 'n/a'}" for r in run["paths"])
        print(f"{run['workers']} worker(s) (connections per worker: {split})\nlimits: {limits}")
        rows = [[LABELS[r["path"]], _fmt(r["answered"]), f"{r['seconds']:.1f}", _fmt(r["rate"]), _fmt(r["burst"]),
                 _fmt(r["rate_after_refusal"]), _fmt(r["refused_calls"]), _fmt(r["errors"])]
                for r in run["paths"]]
        _harness.print_table(["path (scanner token)", "codes answered", "s", "codes/s", "burst",
                              "codes/s after 1st refusal", "refused calls", "errors"], rows)
        for r in run["paths"]:
            if r["sample_refusal"]:
                print(f"  {r['path']}: refused with \"{r['sample_refusal']}\"")
            if r["sample_error"]:
                print(f"  {r['path']}: ERROR {r['sample_error']}")
        print()


def _paths(text: str) -> list[str]:
    out = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in out if p not in PATHS]
    if not out or unknown:
        raise argparse.ArgumentTypeError(f"paths are {', '.join(PATHS)}: {text!r}")
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _harness.add_common_arguments(parser, default_n=0, default_repeat=1)
    parser.add_argument("--workers", type=_workers, default=[1, 2], help="comma list of worker counts (default 1,2)")
    parser.add_argument("--paths", type=_paths, default=list(PATHS),
                        help=f"comma list of paths to run (default all: {','.join(PATHS)})")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds of guessing per path (default 5)")
    parser.add_argument("--concurrency", type=int, default=16, help="calls in flight (default 16)")
    parser.add_argument("--connections", type=int, default=8, help="TCP connections (default 8)")
    parser.add_argument("--batch", type=int, default=1000,
                        help="codes per VerifyCodes and Trace call (default 1000)")


def run(args: argparse.Namespace) -> int:
    if args.seconds <= 0 or args.concurrency < 1 or args.connections < 1 or not 1 <= args.batch <= 10_000:
        raise SystemExit("--seconds must be positive, --concurrency and --connections at least 1, "
                         "--batch 1 to 10000")
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    return _harness.run_benchmark("guessing", args, lambda progress: measure(args, cpus, progress), print_report)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.guessing", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
