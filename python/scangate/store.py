"""The LMDB store and the issuance ledger, re-exported: they live in
scangate.state.store, since only the state layer knows the store. This module keeps
``from scangate.store import ...`` working for callers, tests and benchmarks."""

from __future__ import annotations

from .state.store import (
    DATABASES,
    DEFAULT_MAP_SIZE,
    SCHEMA_VERSION,
    IssuedRange,
    ProductLine,
    RangeTable,
    Store,
    iter_prefix,
)

__all__ = ["DATABASES", "DEFAULT_MAP_SIZE", "IssuedRange", "ProductLine", "RangeTable", "SCHEMA_VERSION", "Store",
           "iter_prefix"]
