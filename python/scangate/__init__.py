"""scangate: scan validation for one-item-one-code programmes.

Batch-first API::

    import scangate
    with scangate.open_data_dir("data", create=True) as dd:
        issued = scangate.issue_codes(dd, "SKU-1", "item", 1000, batch="L1")
        result = scangate.verify_codes(dd, issued.as_strings())
        verdicts = scangate.decide_verdicts(dd, [scangate.Scan(code, "user-1", region=440106)])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .datadir import CodeCheck, DataDir, IssuedCodes, VerifyResult, init_data_dir, open_data_dir
from .verdicts import Reason, Scan, ScanVerdict, Verdict, VerdictConfig, decide_verdicts
from .enums import CodeStatus, Level
from .errors import (CorruptionError, InvalidArgument, NotFound, PermissionDenied, RateLimited, RemoteError,
                     ScangateError, Unavailable)
from .store import IssuedRange, ProductLine

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "Client",
    "PermissionDenied",
    "RateLimited",
    "RemoteError",
    "Unavailable",
    "CodeCheck",
    "Reason",
    "Scan",
    "ScanVerdict",
    "Verdict",
    "VerdictConfig",
    "decide_verdicts",
    "CodeStatus",
    "CorruptionError",
    "DataDir",
    "InvalidArgument",
    "IssuedCodes",
    "IssuedRange",
    "Level",
    "NotFound",
    "ProductLine",
    "ScangateError",
    "VerifyResult",
    "init_data_dir",
    "issue_codes",
    "open_data_dir",
    "verify_code",
    "verify_codes",
]


def issue_codes(
    data: DataDir,
    sku: str,
    level: Level | str | int,
    count: int,
    *,
    batch: str = "",
    gtin: str = "",
    attributes: dict[str, Any] | None = None,
) -> IssuedCodes:
    """Issue ``count`` new codes for the product line (sku, batch, level)."""
    return data.issue_codes(sku, level, count, batch=batch, gtin=gtin, attributes=attributes)


def verify_codes(data: DataDir, codes: bytes | Sequence[str] | np.ndarray) -> VerifyResult:
    """Verify a batch of codes; one status per input, never an exception for bad codes."""
    return data.verify_codes(codes)


def verify_code(data: DataDir, code: str) -> CodeCheck:
    """Verify a single code."""
    return data.verify_code(code)


def __getattr__(name: str) -> Any:
    # the gRPC client loads grpc only when asked for
    if name in ("Client", "AsyncClient"):
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module 'scangate' has no attribute {name!r}")
