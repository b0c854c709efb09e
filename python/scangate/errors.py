"""The exception tree. Verdicts are data; these are for misuse and corruption.

    ScangateError
    ├── InvalidArgument (ValueError)   the caller passed something wrong
    ├── NotFound (LookupError)         a named thing does not exist
    └── CorruptionError (RuntimeError) stored state is damaged or inconsistent
"""

from __future__ import annotations

__all__ = ["ScangateError", "InvalidArgument", "NotFound", "CorruptionError"]


class ScangateError(Exception):
    """Base class of every error scangate raises on purpose."""


class InvalidArgument(ScangateError, ValueError):
    """An argument, a file line or a config value is wrong; nothing was changed."""


class NotFound(ScangateError, LookupError):
    """A data directory, product line, key version or record does not exist."""


class CorruptionError(ScangateError, RuntimeError):
    """Stored state (LMDB, key file) is damaged or contradicts itself."""
