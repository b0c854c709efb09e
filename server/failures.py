"""How deciding a scan can fail outside the scan itself: the writer process out of
reach (``LinkDown``), its refusal of an item (``RemoteStatus``), a deadline that
passed in the queue (``DeadlineExpired``), a writer that is stopping
(``WriterClosed``), and a full store (``storage_full``, which
scangate.state.failures defines: what the store's errors mean is the store's).

Raised in the writer process (server/writer.py, server/scanlink.py) and in the
workers (server/scanlink.py's ``WriterLink``, server/scan_service.py), mapped to
gRPC statuses in one place (server/errors.py). A leaf: it imports no other server
module, so every one of them can import it.
"""

from __future__ import annotations

import grpc
from google.rpc import status_pb2

from scangate.state.failures import storage_full, store_unreachable

__all__ = ["LinkDown", "RemoteStatus", "DeadlineExpired", "WriterClosed", "storage_full", "store_unreachable"]


class LinkDown(Exception):
    """The writer process is not reachable (restarting, or the server is stopping)."""


class RemoteStatus(Exception):
    """The writer refused an item with this google.rpc.Status."""

    def __init__(self, status: status_pb2.Status):
        super().__init__(status.message)
        self.status = status

    @property
    def code(self) -> grpc.StatusCode:
        return next(c for c in grpc.StatusCode if c.value[0] == self.status.code)


class DeadlineExpired(Exception):
    """The caller's deadline passed before its scans were decided; nothing was written."""


class WriterClosed(Exception):
    """The writer is shutting down and takes no new work."""
