"""The exception tree. Verdicts are data; these are for misuse and corruption.

    ScangateError
    ├── InvalidArgument (ValueError)   the caller passed something wrong
    │   └── BatchRejected               a file or upload had bad entries; none applied
    ├── NotFound (LookupError)         a named thing does not exist
    └── CorruptionError (RuntimeError) stored state is damaged or inconsistent
"""

from __future__ import annotations

__all__ = ["ScangateError", "InvalidArgument", "BatchRejected", "Problem", "NotFound", "CorruptionError"]

from dataclasses import dataclass


class ScangateError(Exception):
    """Base class of every error scangate raises on purpose."""


class InvalidArgument(ScangateError, ValueError):
    """An argument, a file line or a config value is wrong; nothing was changed."""


@dataclass(frozen=True)
class Problem:
    """One reason a batch was rejected: where (line or JSON path), which field, why."""

    where: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.field}: {self.message}"


class BatchRejected(InvalidArgument):
    """A batch (a file, an upload) had bad entries; none of it was applied."""

    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        self.problems = problems
        shown = "; ".join(str(p) for p in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        super().__init__(f"{source}: {len(problems)} problem(s), nothing applied: {shown}{more}")


class NotFound(ScangateError, LookupError):
    """A data directory, product line, key version or record does not exist."""


class CorruptionError(ScangateError, RuntimeError):
    """Stored state (LMDB, key file) is damaged or contradicts itself."""
