"""gRPC errors of the server: ``RequestError`` (a status with field violations) and
the mapping of the package's exceptions (and server/failures.py's) onto it,
shared by the worker processes' servicers and the writer process (which answers
scans with statuses too, and so need not import the servicers).

Every status is bounded. It travels in the call's trailers (``grpc-message`` and
``grpc-status-details-bin``), and a gRPC client refuses trailers over 8 KiB (its
soft limit; 16 KiB hard): a message that echoed a 10 MB request value reached the
client as RESOURCE_EXHAUSTED instead of the status the server meant. Values are
quoted with ``scangate.trace.quote`` (a short prefix) where messages are made;
``RequestError`` cuts whatever still comes through too long (a library message
that quotes a whole value, a batch with a million bad rows).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from scangate.errors import BatchRejected, CorruptionError, InvalidArgument, NotFound

from .failures import DeadlineExpired, LinkDown, RemoteStatus, WriterClosed, storage_full, store_unreachable

__all__ = ["RequestError", "Malformed", "bad", "check_count", "to_request_error", "tolerant", "bounded_text",
           "MAX_MESSAGE_CHARS", "MAX_DETAILS_BYTES"]

log = logging.getLogger("scangate.server")

# A status's message, in characters: grpc-message is percent-encoded (a CJK
# character becomes 9 bytes), so 400 characters stay under 3.6 KiB on the wire.
MAX_MESSAGE_CHARS = 400
# The serialised google.rpc.Status (message and violations), before base64
# (4/3): with the message above, the trailers stay under 8 KiB.
MAX_DETAILS_BYTES = 3000
MAX_FIELD_CHARS = 120
MAX_DESCRIPTION_CHARS = 300
# A value quoted in a message keeps this many characters, as scangate.trace.quote does
_QUOTE_CHARS = 40
# A quoted value (a repr) of 200 characters or more (no words of ours run that
# long between two quotes), and an unbroken run of characters longer than a
# quote keeps (no word of ours is): both are values, cut to a prefix.
_LONG_QUOTED = re.compile(r"""(['"])([^'"\n]{%d})[^'"\n]{%d,}\1""" % (_QUOTE_CHARS, 200 - _QUOTE_CHARS))
_LONG_RUN = re.compile(r"(\S{%d})\S{8,}" % _QUOTE_CHARS)


def bounded_text(text: str, most: int) -> str:
    """``text`` at most ``most`` characters: quoted values and long runs cut to a
    prefix first (so the words after a value survive), then the tail."""
    if len(text) <= most:
        return text
    text = _LONG_QUOTED.sub(r"\1\2\1...", text)
    text = _LONG_RUN.sub(r"\1...", text)
    if len(text) > most:
        text = text[: most - 3] + "..."
    return text


class RequestError(Exception):
    """A request the server refuses, with its gRPC status and field violations;
    the message and the violations are cut to fit a status's trailers."""

    def __init__(self, code: grpc.StatusCode, message: str, violations: Iterable[tuple[str, str]] = ()):
        message = bounded_text(message, MAX_MESSAGE_CHARS)
        super().__init__(message)
        self.code, self.message = code, message
        self.violations = _bounded_violations(violations, MAX_DETAILS_BYTES - len(message.encode()))

    def status_proto(self) -> status_pb2.Status:
        st = status_pb2.Status(code=self.code.value[0], message=self.message)
        if self.violations:
            detail = error_details_pb2.BadRequest(field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=f, description=d) for f, d in self.violations])
            st.details.add().Pack(detail)
        return st

    def status(self) -> grpc.Status:
        return rpc_status.to_status(self.status_proto())

    @classmethod
    def from_proto(cls, st: status_pb2.Status) -> RequestError:
        violations = []
        for detail in st.details:
            bad = error_details_pb2.BadRequest()
            if detail.Unpack(bad):
                violations += [(v.field, v.description) for v in bad.field_violations]
        code = next((c for c in grpc.StatusCode if c.value[0] == st.code), grpc.StatusCode.UNKNOWN)
        return cls(code, st.message, violations)


def _bounded_violations(violations: Iterable[tuple[str, str]], budget: int) -> list[tuple[str, str]]:
    """As many violations as fit ``budget`` bytes, each cut, then one that says how
    many more there were. Reads the rest only to count it."""
    out: list[tuple[str, str]] = []
    it = iter(violations)
    for field, why in it:
        field, why = bounded_text(field, MAX_FIELD_CHARS), bounded_text(why, MAX_DESCRIPTION_CHARS)
        cost = len(field.encode()) + len(why.encode()) + 8      # + the FieldViolation's tags and lengths
        if cost > budget - 64:                                  # 64: room for the count below
            more = 1 + sum(1 for _ in it)
            out.append(("request", f"{more} more violation(s) not shown"))
            break
        budget -= cost
        out.append((field, why))
    return out


def bad(field: str, why: str) -> RequestError:
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"{field}: {why}", [(field, why)])


def check_count(n: int, field: str, most: int) -> None:
    """A count the caller chose (codes in a call, a page size): 1 to ``most``."""
    if not 1 <= n <= most:
        raise bad(field, f"1 to {most:,}, not {n}")


def _split_field(message: str) -> tuple[str, str]:
    """InvalidArgument messages read 'field: why' by convention."""
    head, sep, tail = message.partition(": ")
    return (head, tail) if sep and " " not in head else ("request", message)


class _OncePer:
    """One log line per ``period_s`` seconds for a condition that can repeat on
    every call (a client sending garbage, a full disk under load); the next line
    says how many were not logged. Thread-safe: the writer answers from its
    thread, a worker from its event loop."""

    def __init__(self, period_s: float):
        self.period_s = period_s
        self._lock = threading.Lock()
        self._last = -float("inf")
        self._quiet = 0

    def due(self) -> int | None:
        """None: stay quiet; else log now, with this many not logged before."""
        now = time.monotonic()
        with self._lock:
            if now - self._last < self.period_s:
                self._quiet += 1
                return None
            self._last, quiet, self._quiet = now, self._quiet, 0
            return quiet


_STORAGE_FULL_LOG = _OncePer(60.0)
_STORE_DOWN_LOG = _OncePer(60.0)
_MALFORMED_LOG = _OncePer(10.0)


def to_request_error(exc: BaseException) -> RequestError:
    if isinstance(exc, RequestError):
        return exc
    if isinstance(exc, BatchRejected):
        violations = ((f"{p.where}.{p.field}" if p.field else p.where, p.message) for p in exc.problems)
        return RequestError(grpc.StatusCode.INVALID_ARGUMENT, str(exc).splitlines()[0], violations)
    if isinstance(exc, InvalidArgument):
        return RequestError(grpc.StatusCode.INVALID_ARGUMENT, str(exc), [_split_field(str(exc))])
    if isinstance(exc, NotFound):
        return RequestError(grpc.StatusCode.NOT_FOUND, str(exc))
    if isinstance(exc, DeadlineExpired):
        return RequestError(grpc.StatusCode.DEADLINE_EXCEEDED, str(exc))
    if isinstance(exc, (WriterClosed, LinkDown)):
        return RequestError(grpc.StatusCode.UNAVAILABLE, str(exc))
    if isinstance(exc, RemoteStatus):
        return RequestError.from_proto(exc.status)
    if isinstance(exc, CorruptionError):
        log.error("data corruption: %s", exc)
        return RequestError(grpc.StatusCode.DATA_LOSS, "stored data is damaged; see the server log")
    down = store_unreachable(exc)
    if down is not None:        # a restart, a failover
        return _operators(_STORE_DOWN_LOG, f"decision store unavailable: {down}", "until it is back",
                          f"decision store unavailable: {down}; retry with the same request")
    full = storage_full(exc)
    if full is not None:
        return _operators(_STORAGE_FULL_LOG, f"storage full: {full}", "until space is freed",
                          f"storage full: {full}; nothing was written: retry later with the same request")
    log.exception("internal error", exc_info=exc)
    return RequestError(grpc.StatusCode.INTERNAL, "internal error; see the server log")


def _operators(gate: _OncePer, what: str, until: str, reply: str) -> RequestError:
    """A failure that is the operator's problem, not the caller's and not a bug (a
    full store, a store that is down): no traceback, one line a minute however
    many calls it fails, and UNAVAILABLE, which clients retry."""
    quiet = gate.due()
    if quiet is not None:
        log.error("%s; scans and uploads answer UNAVAILABLE %s%s", what, until,
                  f" ({quiet} more calls refused since the last report)" if quiet else "")
    return RequestError(grpc.StatusCode.UNAVAILABLE, f"{reply} (scans: the same request_id)")


# ---------------------------------------------------------------------- malformed requests
class Malformed:
    """What a request deserializer returns for bytes that are not its message
    type, instead of raising: grpc would answer a raising deserializer UNKNOWN (a
    stream INTERNAL) and log a traceback for every such message. The guard answers
    it INVALID_ARGUMENT naming the type."""

    __slots__ = ("type_name",)

    def __init__(self, type_name: str):
        self.type_name = type_name

    def error(self, method: str, peer: str) -> RequestError:
        quiet = _MALFORMED_LOG.due()
        if quiet is not None:
            # a client's mistake: one short line, never a traceback, at most one per 10 s
            log.info("malformed %s refused", self.type_name,
                     extra={"method": method, "peer": peer, "not_logged_before": quiet})
        why = f"not a valid {self.type_name} message (protobuf wire format)"
        return RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"request: {why}", [("request", why)])


def _type_name(parse: Callable[[bytes], Any]) -> str:
    cls = getattr(parse, "__self__", None)              # Message.FromString is bound to its class
    descriptor = getattr(cls, "DESCRIPTOR", None)
    return str(getattr(descriptor, "full_name", "request"))


def tolerant(parse: Callable[[bytes], Any] | None, type_name: str | None = None
             ) -> Callable[[bytes], Any] | None:
    """``parse`` that returns ``Malformed`` for bytes it cannot parse (``parse``
    itself if it is one already: a request is parsed through one wrapper)."""
    if parse is None or getattr(parse, "tolerant", False):
        return parse
    name = type_name or _type_name(parse)

    def parse_or_mark(raw: bytes) -> Any:
        try:
            return parse(raw)
        except (DecodeError, ValueError):    # ValueError: invalid UTF-8 in a string field, in some runtimes
            return Malformed(name)

    parse_or_mark.tolerant = True  # type: ignore[attr-defined]
    return parse_or_mark
