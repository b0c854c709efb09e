"""Payouts: deliver the outbox's payout requests through an adapter, at the rate
the payment rail allows, retrying with the same idempotency key until confirmed,
with any number of runners at once.

Each request (an outbox row: a ``state.records.Payout`` in msgpack, read and
written by ``scangate.state.outbox``; the rail, the CLI and ``list_payouts`` see
it as the dict ``records.to_json`` gives) moves
pending -> sending -> confirmed (or failed, then retried after a back-off). A
runner LEASES a small batch of due requests in one write transaction: each
becomes ``sending`` with ``lease_owner`` (the runner's id, unique per run) and
``lease_expires_ms``. That commits before the adapter is called, and
``confirmed`` (or ``failed``) commits after it returns, only while the row is still
this runner's. Another runner skips a row whose lease has not expired; a crashed
runner's lease expires and the next runner sends the row again with the SAME key.
The adapter (like WeChat Pay's out_trade_no) must treat a repeated key as the same
payment. Nothing is lost, nothing is paid twice.

The lease must outlast a send: a send starts with at least half a lease left, so
keep ``lease_ms`` above twice the adapter's timeout (plus the clock skew between
runner hosts). A runner whose lease ran out mid-send and was taken over still
counts its send, but does not overwrite the new owner's state; the adapter's
idempotency makes the second send harmless.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from .clock import now_ms as _clock_ms
from .datadir import DataDir, open_private_file
from .errors import InvalidArgument
from .state import outbox
from .state.records import Payout, to_json

__all__ = ["PayoutAdapter", "FileAdapter", "run_payouts", "list_payouts", "new_runner_id", "DEFAULT_RATE_PER_S",
           "DEFAULT_LEASE_MS"]

log = logging.getLogger(__name__)

DEFAULT_RATE_PER_S = 30.0     # WeChat red packets: 30 per second per merchant
DEFAULT_LEASE_MS = 60_000     # well above a payment rail's usual 10-30 s timeout
LEASE_BATCH = 16              # rows leased per write transaction: few commits, little held by a crashed runner
MAX_ATTEMPTS = 10
BACKOFF_MS = (1_000, 5_000, 30_000, 120_000, 600_000)


class PayoutAdapter(Protocol):
    """A payment rail. ``send`` must be idempotent on request["key"]: the same key
    sent twice pays once and returns the same confirmation id."""

    def send(self, request: dict[str, Any]) -> str: ...


class FileAdapter:
    """The default adapter: appends each payout to a JSON-lines file (fsynced), and
    answers a repeated key with its first confirmation, as a real rail would.

    Safe with several processes on one file: each send holds an exclusive flock on
    the file while it reads what others appended since its last look, checks the
    key and appends, so a key is written once whatever the number of writers."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._seen: dict[str, str] = {}
        self._lines = 0               # payments in the file: numbers the confirmations
        self._offset = 0              # bytes read so far, always at the end of a line
        if self.path.exists():
            with self._locked(create=False) as fd:
                self._catch_up(fd)

    @contextmanager
    def _locked(self, *, create: bool) -> Iterator[int]:
        flags = os.O_RDWR | os.O_APPEND
        # created owner-only: it lists actor ids and amounts
        fd = open_private_file(self.path, flags) if create else os.open(self.path, flags)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)      # released by close, or by the kernel if we die
            yield fd
        finally:
            os.close(fd)

    def _catch_up(self, fd: int) -> None:
        """Read the lines appended since our last look (the lock held)."""
        size = os.fstat(fd).st_size
        if size < self._offset:     # cut back or replaced under us: read it all again
            self._offset = self._lines = 0
        tail = _pread_all(fd, size - self._offset, self._offset)
        end = tail.rfind(b"\n") + 1
        if end != len(tail):
            # no writer is mid-line while we hold the lock: a line cut short was a
            # writer's crash, never a payment; drop it
            os.ftruncate(fd, self._offset + end)
            os.fsync(fd)
        for line in tail[:end].decode("utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                self._seen.setdefault(row["key"], row["confirmation"])
                self._lines += 1
        self._offset += end

    def send(self, request: dict[str, Any]) -> str:
        key = request["key"]
        if key in self._seen:           # a key once in the file stays there: no lock needed
            return self._seen[key]
        with self._locked(create=True) as fd:
            self._catch_up(fd)
            if key in self._seen:       # another process paid it since our last look
                return self._seen[key]
            confirmation = f"file-{self._lines + 1}"
            row = {"key": key, "confirmation": confirmation, "actor": request["actor"], "kind": request["kind"],
                   "amount_fen": request["amount_fen"], "prize_id": request["prize_id"],
                   "at_ms": _clock_ms()}
            line = (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")
            try:
                _write_all(fd, line)
                os.fsync(fd)
            except BaseException:
                os.ftruncate(fd, self._offset)   # a failed write (disk full) leaves no half line
                raise
        self._offset += len(line)
        self._lines += 1
        self._seen[key] = confirmation
        return confirmation


def _pread_all(fd: int, n: int, offset: int) -> bytes:
    chunks = []
    while n > 0:
        chunk = os.pread(fd, n, offset)
        if not chunk:
            break
        chunks.append(chunk)
        n -= len(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def new_runner_id() -> str:
    """host:pid:random, unique per run (a pid comes back; the random part does not)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _outbox(data: DataDir | outbox.Outbox) -> outbox.Outbox:
    """A data directory's outbox, or the outbox given (scangate.state.pg.PgOutbox)."""
    if not isinstance(data, DataDir):
        return data
    if data.decisions is not None:
        from .state.pg import PgOutbox

        return PgOutbox(data.decisions)
    return outbox.LmdbOutbox(data)


def list_payouts(data: DataDir | outbox.Outbox, state: str | None = None) -> list[dict[str, Any]]:
    """The payout requests (``state``: only those in it), oldest key first, as the
    CLI and the payment rail see them (``records.to_json``: the lease fields only
    once set)."""
    return [to_json(row) for row in _outbox(data).payouts() if state is None or row.state == state]


def _due(row: Payout, now: int, runner: str) -> bool:
    """Whether ``runner`` may lease the row at ``now``. A row without a lease owner
    was never leased (or was written before leases existed: a ``sending`` one is
    then a crashed send, due again)."""
    if row.lease_owner not in (None, runner) and (row.lease_expires_ms or 0) > now:
        return False                    # another runner holds it
    if row.state in ("pending", "sending"):
        return True
    return row.state == "failed" and row.attempts < MAX_ATTEMPTS and (row.next_attempt_ms or 0) <= now


def _due_at(now: int, runner: str) -> outbox.Due:
    """``_due`` at ``now`` for ``runner``, as the outbox's scan and lease take it."""
    return lambda row: _due(row, now, runner)


def run_payouts(data: DataDir | outbox.Outbox, adapter: PayoutAdapter, *, rate_per_s: float = DEFAULT_RATE_PER_S,
                max_items: int | None = None, clock: Callable[[], float] = time.monotonic,
                sleep: Callable[[float], None] = time.sleep, now_ms: Callable[[], int] | None = None,
                lease_ms: int = DEFAULT_LEASE_MS, runner_id: str | None = None) -> dict[str, int]:
    """Deliver due requests once through the outbox, at most ``rate_per_s`` a second
    (a token bucket of one second's burst), leasing them ``lease_ms`` at a time so
    that other runners leave them alone. ``now_ms`` is the clock of leases and
    back-offs (wall time: runners on several hosts must agree on it); ``clock`` and
    ``sleep`` pace the sends. Returns counts by outcome of this runner's sends.
    ``data``: a data directory (its outbox), or an ``outbox.Outbox`` (the
    PostgreSQL store's: scangate.state.pg.PgOutbox, any number of runners)."""
    box = _outbox(data)
    if rate_per_s <= 0:
        raise InvalidArgument(f"rate_per_s: must be above 0, not {rate_per_s}")
    if lease_ms <= 0:
        raise InvalidArgument(f"lease_ms: must be above 0, not {lease_ms}")
    now_ms = now_ms or _clock_ms
    runner = runner_id or new_runner_id()
    pace = _Pacer(rate_per_s, clock, sleep)
    # no more than half a lease's worth of sends at the rate: a batch is sent
    # before its leases need renewing, unless the adapter is slow
    batch_size = max(1, min(LEASE_BATCH, int(rate_per_s * lease_ms / 2000)))
    counts = {"confirmed": 0, "failed": 0}
    after: bytes | None = None
    at_end = False
    while not at_end:
        left = None if max_items is None else max_items - counts["confirmed"] - counts["failed"]
        limit = batch_size if left is None else min(batch_size, left)
        if limit <= 0:
            break
        keys, after, at_end = box.candidates(after, _due_at(now_ms(), runner), limit)
        if not keys:
            break
        now = now_ms()
        batch = box.lease(keys, _due_at(now, runner), runner, now, lease_ms)
        _send_batch(box, adapter, batch, runner, now + lease_ms, lease_ms, pace, now_ms, counts)
    return counts


class _Pacer:
    """A token bucket of one second's burst: ``wait`` returns when the next send may go."""

    def __init__(self, rate_per_s: float, clock: Callable[[], float], sleep: Callable[[float], None]):
        self.interval = 1.0 / rate_per_s
        self.clock, self.sleep = clock, sleep
        self.next_slot = clock()

    def wait(self) -> None:
        wait = self.next_slot - self.clock()
        if wait > 0:
            self.sleep(wait)
        self.next_slot = max(self.next_slot, self.clock()) + self.interval


def _send_batch(box: outbox.Outbox, adapter: PayoutAdapter, batch: list[tuple[bytes, Payout]], runner: str,
                expires: int, lease_ms: int, pace: _Pacer, now_ms: Callable[[], int], counts: dict[str, int]) -> None:
    lost: set[bytes] = set()
    for i, (key, row) in enumerate(batch):
        pace.wait()
        now = now_ms()
        if now >= expires - lease_ms // 2:      # fell behind: renew the rest, so every send starts with half a lease
            rest = [k for k, _ in batch[i:] if k not in lost]
            lost.update(set(rest) - box.renew(rest, runner, now, lease_ms))
            expires = now + lease_ms
        if key in lost:
            log.warning("payout %s: lease lost before sending; left to its new owner", row.key)
            continue
        _send_one(box, adapter, key, row, runner, now_ms, counts)


def _send_one(box: outbox.Outbox, adapter: PayoutAdapter, key: bytes, row: Payout, runner: str,
              now_ms: Callable[[], int], counts: dict[str, int]) -> None:
    try:
        # the rail sees the request as it always has: a dict of the row's fields
        confirmation = adapter.send(to_json(row))
    except Exception as exc:  # any adapter failure: retry later with the same key
        backoff = BACKOFF_MS[min(row.attempts - 1, len(BACKOFF_MS) - 1)]
        if not box.finish(key, runner, state="failed", error=f"{type(exc).__name__}: {exc}"[:500],
                          next_attempt_ms=now_ms() + backoff):
            _log_taken_over(row)
        log.warning("payout %s failed (attempt %d): %s", row.key, row.attempts, exc)
        counts["failed"] += 1
        return
    if not box.finish(key, runner, state="confirmed", confirmation=confirmation, confirmed_ms=now_ms()):
        _log_taken_over(row)
    counts["confirmed"] += 1


def _log_taken_over(row: Payout) -> None:
    log.warning("payout %s: the lease ran out during the send and another runner took it over; its state stands "
                "(same key: the rail pays once). Make the lease longer than twice the adapter's timeout", row.key)
