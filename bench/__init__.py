"""Benchmarks for scangate. Run from the repository root: ``python -m bench --help``.

Each benchmark is a module of this package exposing ``add_arguments(parser)`` and
``run(args) -> int``; ``bench.__main__`` lists them in ``BENCHMARKS``. Shared timing,
table and JSON helpers live in ``bench._harness``.
"""
