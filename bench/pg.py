"""Reward decisions on PostgreSQL by 1, 2, 4 decider processes, against raw set-based PostgreSQL.

``python -m bench pg [--n N] [--batch B] [--deciders 1,2,4] [--url URL] [--json]``

The cluster: without --url, a fresh PostgreSQL cluster of Debian's server
binaries (bench/_pgcluster.py: initdb, a free loopback port, fsync and
synchronous_commit on, as a production server runs), stopped at the end; with
--url, that server (its user needs CREATEDB). Each figure runs in a database of
its own, created for it and dropped after.

For each decider count D, in one run:

pg/scangate
    D processes (``multiprocessing`` spawn), each with its own connection
    (``scangate.state.pg.PgStore``) and the same data directory (the campaign of
    bench/rewards.py: odds 20%, cash and points prizes, budgets; N fresh codes),
    each deciding its share of N scans (distinct codes, distinct users) in batches
    of B with ``rewards.decide_scans_on``: one transaction per batch, every row
    locked, the request index, history, claim, counters, budgets, points, ledger,
    outbox and decision log written set-based. Every reply is checked.
pg/raw
    The floor for the same durability and the same connections: per decision a
    claim insert, a counter upsert and a log insert, B decisions per transaction,
    each statement set-based (``unnest`` of arrays), D processes at once.

Each row: decisions, seconds from the common start to the last decider's end,
decisions per second, scangate as a multiple of raw at the same D, and the
decider processes' CPU microseconds per decision (the server's CPU is not in it:
it runs on the same machine, so the rates share its cores). Then the scaling
from 1 to the largest D, for both. Targets (the PostgreSQL issue): pg/scangate at
least 0.35x pg/raw at every D; from 1 to 4 deciders at least 3x, on a machine
with idle cores (on two cores, deciders, load and the server share them, and
the figure says what two cores allow).
"""

from __future__ import annotations

import argparse
import multiprocessing
import multiprocessing.connection
import os
import resource
import shutil
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from . import _harness
from .rewards import CAMPAIGN, T0

RATIO_TARGET = 0.35
SCALING_TARGET = 3.0

_RAW_SCHEMA = """
CREATE TABLE claims (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE counters (k bytea PRIMARY KEY, n bigint NOT NULL);
CREATE TABLE log (n bigint PRIMARY KEY, v bytea NOT NULL);
CREATE SEQUENCE log_numbers;
"""


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _scangate_decider(url: str, data: str, codes: list[str], tag: str, batch: int,
                      conn: multiprocessing.connection.Connection) -> None:
    import scangate
    from scangate import rewards
    from scangate.rewards import Decision, ScanRequest
    from scangate.state.pg import PgStore

    requests = [ScanRequest(f"{tag}-{i}", c, f"user-{tag}-{i}", region=510104, time_ms=T0 + i)
                for i, c in enumerate(codes)]
    batches = [requests[i : i + batch] for i in range(0, len(requests), batch)]
    with scangate.open_data_dir(data) as dd, PgStore(url) as store:
        conn.send("ready")
        assert conn.recv() == "go"
        c0, t0 = _cpu(), time.perf_counter()
        decided = 0
        for b in batches:
            out = rewards.decide_scans_on(store, dd, b)
            if not all(isinstance(d, Decision) and d.verdict.label == "genuine" for d in out):
                raise AssertionError(f"a fresh scan was not decided genuine: {out[0]!r}")
            decided += len(out)
        conn.send((time.perf_counter() - t0, _cpu() - c0, decided))


def _raw_decider(url: str, first: int, count: int, batch: int, conn: multiprocessing.connection.Connection) -> None:
    import psycopg

    value, entry = b"c" * 24, b"x" * 200
    with psycopg.connect(url) as pg:
        conn.send("ready")
        assert conn.recv() == "go"
        c0, t0 = _cpu(), time.perf_counter()
        with pg.cursor() as cur:
            for start in range(first, first + count, batch):
                keys = [os.urandom(8) for _ in range(min(batch, first + count - start))]
                actors = [f"actor-{i}".encode() for i in range(start, start + len(keys))]
                cur.execute("INSERT INTO claims (k, v) SELECT k, %s FROM unnest(%s::bytea[]) AS t(k)", [value, keys])
                cur.execute("INSERT INTO counters (k, n) SELECT k, 1 FROM unnest(%s::bytea[]) AS t(k) "
                            "ON CONFLICT (k) DO UPDATE SET n = counters.n + 1", [actors])
                cur.execute("INSERT INTO log (n, v) SELECT nextval('log_numbers'), %s FROM generate_series(1, %s)",
                            [entry, len(keys)])
                pg.commit()
        conn.send((time.perf_counter() - t0, _cpu() - c0, count))


def _run(targets: list[tuple[Any, tuple[Any, ...]]]) -> dict[str, Any]:
    """Start one process per (function, args), wait until all are ready, start
    them together; the figure from the common start to the last one's end."""
    ctx = multiprocessing.get_context("spawn")
    procs, conns = [], []
    for fn, args in targets:
        here, there = ctx.Pipe()
        p = ctx.Process(target=fn, args=(*args, there), daemon=True)
        p.start()
        there.close()
        procs.append(p)
        conns.append(here)
    try:
        for c in conns:
            if not c.poll(300) or c.recv() != "ready":
                raise RuntimeError("a decider process did not start")
        for c in conns:
            c.send("go")
        results = []
        for c in conns:
            if not c.poll(3600):
                raise RuntimeError("a decider process did not finish")
            results.append(c.recv())
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
    seconds = max(r[0] for r in results)
    count = sum(r[2] for r in results)
    return {"count": count, "seconds": seconds, "rate": count / seconds,
            "cpu_us_per_decision": sum(r[1] for r in results) / count * 1e6}


class _Databases:
    """Databases made for the run on the server at ``url`` (dropped at the end)."""

    def __init__(self, url: str):
        import psycopg

        self.url = url
        self.admin = psycopg.connect(url, autocommit=True)
        self.made: list[str] = []

    def new(self) -> str:
        name = f"bench_{uuid.uuid4().hex[:12]}"
        self.admin.execute(f"CREATE DATABASE {name}")
        self.made.append(name)
        base, _slash, _db = self.url.rpartition("/")
        return f"{base}/{name}"

    def close(self) -> None:
        for name in self.made:
            self.admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self.admin.close()


def measure(n: int, batch: int, deciders: list[int], url: str | None, cpus: set[int] | None,
            progress: Any) -> dict[str, Any]:
    import signal

    import psycopg

    import scangate
    from scangate import rewards
    from scangate.state.pg import PgStore

    from ._pgcluster import pg_cluster

    figures: dict[str, dict[str, Any]] = {}
    own = url is None
    with ExitStack() as stack:
        # the deciders and the server share every CPU the benchmark may use
        stack.callback(signal.signal, signal.SIGTERM, _harness.unpin_and_unwind_on_sigterm(cpus))
        if url is None:
            progress("starting a PostgreSQL cluster")
            cluster = stack.enter_context(pg_cluster())
            url = cluster.url
        dbs = _Databases(url)
        stack.callback(dbs.close)
        root = Path(tempfile.mkdtemp(prefix="scangate-bench-pg-"))
        stack.callback(shutil.rmtree, root, True)
        for d in deciders:
            share = n // d
            progress(f"{d} decider(s): data directory with {share * d:_} codes")
            data = root / f"data-{d}"
            with scangate.init_data_dir(data) as dd:
                rewards.put_campaign(dd, CAMPAIGN, "bench.toml")
                codes = dd.issue_codes("BENCH", "item", share * d).as_strings()
            db = dbs.new()
            with PgStore(db) as store:
                store.migrate()
            progress(f"{d} decider(s): scangate, {share * d:_} scans in batches of {batch}")
            figures[f"pg/scangate/{d}"] = _run([(_scangate_decider, (db, str(data), codes[i * share : (i + 1) * share],
                                                                     f"d{d}-{i}", batch)) for i in range(d)])
            raw_db = dbs.new()
            with psycopg.connect(raw_db) as pg:
                pg.execute(_RAW_SCHEMA)
            progress(f"{d} decider(s): raw set-based PostgreSQL, {share * d:_} decisions in batches of {batch}")
            figures[f"pg/raw/{d}"] = _run([(_raw_decider, (raw_db, i * share, share, batch)) for i in range(d)])
    ratios = {d: figures[f"pg/scangate/{d}"]["rate"] / figures[f"pg/raw/{d}"]["rate"] for d in deciders}
    lo, hi = min(deciders), max(deciders)
    scaling = {kind: figures[f"pg/{kind}/{hi}"]["rate"] / figures[f"pg/{kind}/{lo}"]["rate"]
               for kind in ("scangate", "raw")}
    targets = [{"name": f"scangate vs raw set-based PostgreSQL, {d} decider(s)", "measured": r,
                "required": f">= {RATIO_TARGET}", "pass": r >= RATIO_TARGET} for d, r in ratios.items()]
    if lo == 1 and hi >= 4:
        targets.append({"name": f"scangate from 1 to {hi} deciders (on a machine with idle cores)",
                        "measured": scaling["scangate"], "required": f">= {SCALING_TARGET}",
                        "pass": scaling["scangate"] >= SCALING_TARGET})
    return {"params": {"n": n, "batch": batch, "deciders": deciders, "server": "own cluster" if own else "url",
                       "cpus": os.cpu_count()},
            "figures": figures, "ratios": {str(d): r for d, r in ratios.items()}, "scaling": scaling,
            "targets": targets}


def print_report(report: dict[str, Any]) -> None:
    _harness.print_machine_info(report["machine"])
    p, f = report["params"], report["figures"]
    where = (f"a cluster of its own on this machine ({p['cpus']} CPUs, shared with the deciders)"
             if p["server"] == "own cluster" else "the server at --url")
    print(f"N = {p['n']:_} decisions per figure, {p['batch']} per transaction; deciders {p['deciders']}; {where}\n")
    rows = []
    for d in p["deciders"]:
        for kind in ("scangate", "raw"):
            x = f[f"pg/{kind}/{d}"]
            rows.append([f"pg/{kind}", str(d), f"{x['count']:_}", f"{x['seconds']:.2f}",
                         f"{_harness.format_rate(x['rate'])}decisions/s",
                         f"{report['ratios'][str(d)]:.3f}x" if kind == "scangate" else "",
                         f"{x['cpu_us_per_decision']:.1f}"])
    _harness.print_table(["figure", "deciders", "count", "seconds", "rate", "x raw", "decider CPU us/decision"], rows)
    lo, hi = min(p["deciders"]), max(p["deciders"])
    print(f"\nfrom {lo} to {hi} deciders: scangate {report['scaling']['scangate']:.2f}x, "
          f"raw {report['scaling']['raw']:.2f}x")
    for t in report["targets"]:
        print(f"{t['name']}: {t['measured']:.3f}x (required {t['required']}x): {'PASS' if t['pass'] else 'FAIL'}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _harness.add_common_arguments(parser, default_n=8_000, default_repeat=1)
    parser.add_argument("--batch", type=int, default=100, help="scans per transaction (default 100)")
    parser.add_argument("--deciders", default="1,2,4", help="decider process counts (default 1,2,4)")
    parser.add_argument("--url", default=None, help="a PostgreSQL server to use instead of a cluster of its own "
                                                    "(postgresql://user@host:port/db; the user needs CREATEDB)")


def run(args: argparse.Namespace) -> int:
    try:
        deciders = sorted({int(x) for x in args.deciders.split(",")})
    except ValueError:
        raise SystemExit("--deciders: numbers separated by commas") from None
    if args.n < 1 or args.batch < 1 or not deciders or min(deciders) < 1:
        raise SystemExit("--n, --batch and every --deciders count must be at least 1")
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None   # before the driver's pin
    return _harness.run_benchmark("pg", args, lambda progress: measure(args.n, args.batch, deciders, args.url, cpus,
                                                                       progress), print_report)
