"""The exception tree. Verdicts are data; these are for misuse and corruption.

    ScangateError
    ├── InvalidArgument (ValueError)   the caller passed something wrong
    │   └── BatchRejected               a file or upload had bad entries; none applied
    ├── NotFound (LookupError)         a named thing does not exist
    ├── CorruptionError (RuntimeError) stored state is damaged or inconsistent
    └── RemoteError                    the gRPC server refused or could not answer
        ├── PermissionDenied            no token, a wrong token, or a role without the right
        ├── RateLimited                 a rate limit refused the call; retry later
        └── Unavailable                 server down or stopping, storage full, deadline passed: retry

The client raises InvalidArgument (with ``violations``: the fields the server
named), NotFound and CorruptionError for the matching gRPC status codes too.
"""

from __future__ import annotations

__all__ = ["ScangateError", "InvalidArgument", "BatchRejected", "Problem", "NotFound", "CorruptionError",
           "RemoteError", "PermissionDenied", "RateLimited", "Unavailable", "quote"]

from dataclasses import dataclass


def quote(value: object, limit: int = 40) -> str:
    """A short, printable, ASCII-safe quotation of an untrusted value for a
    message: repr escapes control characters and lone surrogates (which stderr
    and JSON output could not encode), and a long value is cut, so no error
    message echoes a huge input. The one quoting every error message uses."""
    if isinstance(value, str):
        return repr(value[:limit]) + ("..." if len(value) > limit else "")
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


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


class RemoteError(ScangateError):
    """The server answered a call with an error status (``code``: its name)."""

    def __init__(self, message: str, code: str = ""):
        super().__init__(message)
        self.code = code


class PermissionDenied(RemoteError):
    """UNAUTHENTICATED or PERMISSION_DENIED: the token is missing, unknown, or its
    role may not make this call."""


class RateLimited(RemoteError):
    """RESOURCE_EXHAUSTED: a per-actor or per-client limit refused the call."""


class Unavailable(RemoteError):
    """UNAVAILABLE, DEADLINE_EXCEEDED or CANCELLED: the server is restarting or
    stopping, its storage is full (a disk, a quota or the LMDB map: "storage
    full: ..." until an operator frees space), or the deadline passed. Retry,
    with a growing pause: a scan with the same request id (a retry returns the
    decision if one was committed, and decides the scan if not)."""
