"""How the LMDB store fails outside any scan: which of its errors mean the store
ran out of room (``storage_full``), and which are the store's own, never a scan's
(``STORE_FAILURES``). The server maps them to statuses (server/failures.py,
server/errors.py) without knowing LMDB.
"""

from __future__ import annotations

import errno
import os
import sys

import lmdb

__all__ = ["STORE_FAILURES", "storage_full", "store_unreachable"]

# Errors of the store itself: deciding a batch again in parts would fail every
# part the same way (server/writer.py: a systemic error answers the whole batch).
STORE_FAILURES: tuple[type[BaseException], ...] = (
    lmdb.MapFullError, lmdb.DiskError, lmdb.CorruptedError, lmdb.PanicError, lmdb.ReadonlyError, lmdb.InvalidError,
    lmdb.VersionMismatchError, lmdb.ReadersFullError, lmdb.MapResizedError)


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


def store_unreachable(exc: BaseException) -> str | None:
    """What is wrong when ``exc`` says the PostgreSQL store cannot be used now (not
    reached, its connection lost, a commit whose wait for the synchronous standby
    was cancelled); None for any other error. Nothing was acknowledged: the same
    request, retried (scans: the same request_id), is decided once."""
    from .pg import StandbyUnconfirmed, StoreUnavailable

    if isinstance(exc, (StoreUnavailable, StandbyUnconfirmed)):
        return str(exc)
    psycopg = sys.modules.get("psycopg")         # loaded only where a PostgreSQL store is open
    if psycopg is not None and isinstance(exc, psycopg.OperationalError):
        return f"the PostgreSQL store's connection failed: {str(exc).strip().splitlines()[0] if str(exc) else ''}"
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
