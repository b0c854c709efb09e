"""``python -m bench <benchmark> [options]``: dispatch to one benchmark module."""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, one-line help). A module provides add_arguments() and run().
BENCHMARKS: dict[str, tuple[str, str]] = {
    "codes": ("bench.codes", "issue and verify throughput against naive Python and raw AES"),
    "fill": ("bench.fill", "a data directory filled as a national programme's (linked bottles, scan histories), "
                           "for bench grpc --store"),
    "grpc": ("bench.grpc", "scangate serve Scan and ScanStream against a bare grpcio echo server, by worker count"),
    "guessing": ("bench.guessing", "guesses, VerifyCodes and Trace codes per second a client gets past the shared limits"),
    "link": ("bench.link", "Scan p99 while a big scangate link upload runs, against without; the upload's peak RSS"),
    "pg": ("bench.pg", "reward decisions on PostgreSQL by 1, 2, 4 decider processes against raw set-based "
                       "PostgreSQL"),
    "phases": ("bench.phases", "a decision's CPU by phase (verify, decide, apply, commit), fresh store "
                               "against a filled one"),
    "rewards": ("bench.rewards", "reward decisions with durable group commit against raw LMDB put + append"),
    "trace": ("bench.trace", "linkage load and trace lookups against raw LMDB putmulti/getmulti"),
    "writer": ("bench.writer", "the writer process's ceiling, fed prepared or plain items by several processes, "
                               "against raw LMDB"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description="scangate benchmarks")
    sub = parser.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    modules = {}
    for name, (module_name, help_text) in BENCHMARKS.items():
        module = importlib.import_module(module_name)
        module.add_arguments(sub.add_parser(name, help=help_text, description=module.__doc__,
                                            formatter_class=argparse.RawDescriptionHelpFormatter))
        modules[name] = module
    args = parser.parse_args(argv)
    return int(modules[args.benchmark].run(args))


if __name__ == "__main__":
    sys.exit(main())
