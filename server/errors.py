"""gRPC errors of the server: ``RequestError`` (a status with field violations) and
the mapping of the package's exceptions onto it, shared by the worker processes'
servicers and the writer process (which answers scans with statuses too, and so
need not import the servicers)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from scangate.errors import BatchRejected, CorruptionError, InvalidArgument, NotFound

from .scanlink import LinkDown, RemoteStatus
from .writer import DeadlineExpired, WriterClosed

__all__ = ["RequestError", "bad", "to_request_error"]

log = logging.getLogger("scangate.server")


class RequestError(Exception):
    """A request the server refuses, with its gRPC status and field violations."""

    def __init__(self, code: grpc.StatusCode, message: str, violations: Iterable[tuple[str, str]] = ()):
        super().__init__(message)
        self.code, self.message, self.violations = code, message, list(violations)

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


def bad(field: str, why: str) -> RequestError:
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"{field}: {why}", [(field, why)])


def _split_field(message: str) -> tuple[str, str]:
    """InvalidArgument messages read 'field: why' by convention."""
    head, sep, tail = message.partition(": ")
    return (head, tail) if sep and " " not in head else ("request", message)


def to_request_error(exc: BaseException) -> RequestError:
    if isinstance(exc, RequestError):
        return exc
    if isinstance(exc, BatchRejected):
        violations = [(f"{p.where}.{p.field}" if p.field else p.where, p.message) for p in exc.problems]
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
    log.exception("internal error", exc_info=exc)
    return RequestError(grpc.StatusCode.INTERNAL, "internal error; see the server log")
