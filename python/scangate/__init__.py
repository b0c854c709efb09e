"""scangate: scan validation for one-item-one-code programmes.

Batch-first API::

    import scangate
    with scangate.open_data_dir("data", create=True) as dd:
        issued = scangate.issue_codes(dd, "SKU-1", "item", 1000, batch="L1")
        result = scangate.verify_codes(dd, issued.as_strings())
        verdicts = scangate.decide_verdicts(dd, [scangate.Scan(code, "user-1", region=440106)])

Importing the package is light: its names are resolved on first use (PEP 562), so
an app that only calls a server through ``scangate.Client`` loads grpc and the
generated messages, and no LMDB, numpy, cryptography or native core
(tests/test_light_import.py). The data directory's names load them when first used.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from .client import AsyncClient, Client
    from .datadir import CodeCheck, DataDir, IssuedCodes, VerifyResult, init_data_dir, open_data_dir
    from .decision import Award, Decision, NoReward, ScanRequest
    from .enums import CodeStatus, Level, Reason, Verdict
    from .errors import (CorruptionError, InvalidArgument, NotFound, PermissionDenied, RateLimited, RemoteError,
                         ScangateError, Unavailable)
    from .store import IssuedRange, ProductLine
    from .verdicts import Scan, ScanVerdict, VerdictConfig, decide_verdicts

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "Award",
    "Client",
    "Decision",
    "NoReward",
    "PermissionDenied",
    "RateLimited",
    "RemoteError",
    "ScanRequest",
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

# public name -> the submodule that defines it, imported on first use. The light
# modules (client, decision, enums, errors) load no LMDB, numpy or native core;
# datadir, store and verdicts do.
_LAZY: dict[str, str] = {
    **dict.fromkeys(("AsyncClient", "Client"), "client"),
    **dict.fromkeys(("CodeCheck", "DataDir", "IssuedCodes", "VerifyResult", "init_data_dir", "open_data_dir"),
                    "datadir"),
    **dict.fromkeys(("Award", "Decision", "NoReward", "ScanRequest"), "decision"),
    **dict.fromkeys(("CodeStatus", "Level", "Reason", "Verdict"), "enums"),
    **dict.fromkeys(("CorruptionError", "InvalidArgument", "NotFound", "PermissionDenied", "RateLimited",
                     "RemoteError", "ScangateError", "Unavailable"), "errors"),
    **dict.fromkeys(("IssuedRange", "ProductLine"), "store"),
    **dict.fromkeys(("Scan", "ScanVerdict", "VerdictConfig", "decide_verdicts"), "verdicts"),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(importlib.import_module(f".{module}", __name__), name)
        globals()[name] = value     # later lookups skip this function
        return value
    if not name.startswith("__"):
        # ``scangate.rewards`` and the like once worked after a bare ``import
        # scangate`` because this module imported them: they still do.
        try:
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise       # the submodule exists and lacks a dependency: say so
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


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
