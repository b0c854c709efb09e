"""How deciding a scan can fail outside the scan itself: the writer process out of
reach (``LinkDown``), its refusal of an item (``RemoteStatus``), a deadline that
passed in the queue (``DeadlineExpired``), a writer that is stopping
(``WriterClosed``), and a full store (``storage_full``).

Raised in the writer process (server/writer.py, server/scanlink.py) and in the
workers (server/scanlink.py's ``WriterLink``, server/scan_service.py), mapped to
gRPC statuses in one place (server/errors.py). A leaf: it imports no other server
module, so every one of them can import it.
"""

from __future__ import annotations

import errno
import os

import grpc
import lmdb
from google.rpc import status_pb2

__all__ = ["LinkDown", "RemoteStatus", "DeadlineExpired", "WriterClosed", "storage_full"]


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


def storage_full(exc: BaseException) -> str | None:
    """What is full, when ``exc`` says the store ran out of room (the disk, a
    quota, the LMDB map); None for any other error. An operator's problem that
    goes away when they free space or grow the map: the store's transaction was
    aborted, nothing was written, and the same request can be retried."""
    if isinstance(exc, lmdb.MapFullError):
        return "the LMDB map size of the data directory is reached (grow it or move the data directory)"
    if isinstance(exc, lmdb.DiskError) or isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return "no space left on the data directory's disk"
    # EDQUOT has no lmdb class of its own: lmdb.Error with the system's message
    if isinstance(exc, OSError) and exc.errno == errno.EDQUOT or \
            isinstance(exc, lmdb.Error) and os.strerror(errno.EDQUOT) in str(exc):
        return "the disk quota of the data directory's owner is exceeded"
    # LMDB writes a commit's pages with one pwritev; on a full disk the kernel
    # writes what fits and LMDB reports the short write as EIO. EIO with the
    # environment's file system (nearly) full is that; with room left it is a
    # failing disk, an internal error.
    if isinstance(exc, lmdb.Error) and os.strerror(errno.EIO) in str(exc) and _lmdb_disk_nearly_full():
        return "no space left on the data directory's disk"
    return None


# Less free space than this, where LMDB's environment lives, makes an EIO a full disk
# (one commit writes at most a few MiB: a short write needs less room than that)
_NEARLY_FULL_BYTES = 64 << 20


def _lmdb_disk_nearly_full() -> bool:
    """Whether a file system holding an LMDB environment this process has open
    has under ``_NEARLY_FULL_BYTES`` free: its ``data.mdb`` is found among the
    process's open files (Linux /proc; elsewhere: False, an EIO stays internal)."""
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.endswith("/data.mdb"):
            try:
                st = os.statvfs(os.path.dirname(target))
            except OSError:
                continue
            if st.f_bavail * st.f_frsize < _NEARLY_FULL_BYTES:
                return True
    return False
