"""The payout outbox: reads and writes of the ``outbox`` database for the payout
runners (scangate.payouts holds their logic: which rows are due, the rate, the
adapter, the back-off).

Keys ``layout.payout_key`` (<campaign>:<serial>), each a ``records.Payout`` (a
map record: these functions change its fields). The reward decision adds rows
in its batch (scangate.state.batch); rows are never deleted.

A lease is the three fields a runner's write transaction sets together:
``state`` "sending", ``lease_owner`` the runner and ``lease_expires_ms``. A row
is still a runner's while it is ``sending`` under that runner's name (an expired
lease nobody took over is still its); ``renew`` and ``finish`` change only such
rows, so a runner whose lease was taken over never overwrites the new owner's
state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import lmdb
import msgspec

from ..datadir import DataDir
from ..errors import CorruptionError
from .records import Payout, decode_payout, encode

__all__ = ["Due", "LmdbOutbox", "Outbox", "candidates", "finish", "holds", "lease", "payouts", "renew"]

Due = Callable[[Payout], bool]


class Outbox(Protocol):
    """The outbox as the payout runners use it (scangate.payouts): ``LmdbOutbox``
    for a data directory, ``scangate.state.pg.PgOutbox`` for the PostgreSQL store;
    the functions below say what each method does."""

    def payouts(self) -> list[Payout]: ...

    def candidates(self, after: bytes | None, due: Due, limit: int) -> tuple[list[bytes], bytes | None, bool]: ...

    def lease(self, keys: list[bytes], due: Due, runner: str, now: int, lease_ms: int
              ) -> list[tuple[bytes, Payout]]: ...

    def renew(self, keys: list[bytes], runner: str, now: int, lease_ms: int) -> set[bytes]: ...

    def finish(self, key: bytes, runner: str, **changes: Any) -> bool: ...

_replace = msgspec.structs.replace


def payouts(data: DataDir) -> list[Payout]:
    """Every payout request, in key order."""
    with data.store.env.begin() as txn:
        return [decode_payout(v) for _, v in txn.cursor(db=data.store.db("outbox"))]


def candidates(data: DataDir, after: bytes | None, due: Due, limit: int) -> tuple[list[bytes], bytes | None, bool]:
    """Up to ``limit`` keys after ``after`` whose rows are ``due`` in a read
    snapshot (``lease`` checks them again), the last key looked at, and whether
    the outbox ended. Scanning outside the write transaction keeps writers
    unblocked."""
    keys: list[bytes] = []
    last = after
    with data.store.env.begin() as txn:
        cur = txn.cursor(db=data.store.db("outbox"))
        more = cur.set_range(after) if after is not None else cur.first()
        while more:
            key = bytes(cur.key())
            if key != after:
                last = key
                if due(decode_payout(cur.value())):
                    keys.append(key)
                    if len(keys) == limit:
                        return keys, last, False
            more = cur.next()
    return keys, last, True


def lease(data: DataDir, keys: list[bytes], due: Due, runner: str, now: int, lease_ms: int
          ) -> list[tuple[bytes, Payout]]:
    """Lease to ``runner`` those of ``keys`` still ``due``, in one write
    transaction: each becomes ``sending``, one attempt more, until ``now +
    lease_ms``. The leased rows, as written, in the order of ``keys``."""
    taken = []
    db = data.store.db("outbox")
    with data.store.env.begin(write=True) as txn:
        for key in keys:
            raw = txn.get(key, db=db)
            if raw is None:
                continue
            row = decode_payout(raw)
            if not due(row):        # leased or confirmed by another runner since the snapshot
                continue
            row = leased(row, runner, now, lease_ms)
            txn.put(key, encode(row), db=db)
            taken.append((key, row))
    return taken


# What a lease, a renewal and an outcome change in a row: one definition for every
# outbox (this module's on LMDB, scangate.state.pg.PgOutbox on PostgreSQL).
def leased(row: Payout, runner: str, now: int, lease_ms: int) -> Payout:
    """``row`` leased to ``runner``: sending, one attempt more, until ``now + lease_ms``."""
    return _replace(row, state="sending", attempts=row.attempts + 1, lease_owner=runner,
                    lease_expires_ms=now + lease_ms)


def renewed(row: Payout, now: int, lease_ms: int) -> Payout:
    """``row``'s lease extended to ``now + lease_ms``."""
    return _replace(row, lease_expires_ms=now + lease_ms)


def finished(row: Payout, changes: dict[str, Any]) -> Payout:
    """``row`` with a send's outcome (``changes``: Payout fields) and no lease;
    lease_owner stays: who sent it last."""
    return _replace(row, lease_expires_ms=None, **changes)


def holds(row: Payout, runner: str) -> bool:
    """Still ``runner``'s: nobody took the row over (an expired lease no one took is still its)."""
    return row.state == "sending" and row.lease_owner == runner


def _leased_row(txn: lmdb.Transaction[bytes], key: bytes, db: Any) -> Payout:
    """The row of a send a runner leased: rows are never deleted."""
    raw = txn.get(key, db=db)
    if raw is None:
        raise CorruptionError(f"outbox row {key.decode('utf-8', 'replace')!r} is missing")
    return decode_payout(raw)


def renew(data: DataDir, keys: list[bytes], runner: str, now: int, lease_ms: int) -> set[bytes]:
    """Extend ``runner``'s leases on ``keys`` to ``now + lease_ms`` (one write
    transaction); the keys still its."""
    kept = set()
    db = data.store.db("outbox")
    with data.store.env.begin(write=True) as txn:
        for key in keys:
            row = _leased_row(txn, key, db)
            if holds(row, runner):
                txn.put(key, encode(renewed(row, now, lease_ms)), db=db)
                kept.add(key)
    return kept


def finish(data: DataDir, key: bytes, runner: str, **changes: Any) -> bool:
    """Record a send's outcome (``changes``: Payout fields) and end the lease, if
    the row is still ``runner``'s; whether it was."""
    db = data.store.db("outbox")
    with data.store.env.begin(write=True) as txn:
        row = _leased_row(txn, key, db)
        if not holds(row, runner):
            return False
        txn.put(key, encode(finished(row, changes)), db=db)
    return True


class LmdbOutbox:
    """The outbox of a data directory (the functions above, as an ``Outbox``)."""

    def __init__(self, data: DataDir):
        self.data = data

    def payouts(self) -> list[Payout]:
        return payouts(self.data)

    def candidates(self, after: bytes | None, due: Due, limit: int) -> tuple[list[bytes], bytes | None, bool]:
        return candidates(self.data, after, due, limit)

    def lease(self, keys: list[bytes], due: Due, runner: str, now: int, lease_ms: int) -> list[tuple[bytes, Payout]]:
        return lease(self.data, keys, due, runner, now, lease_ms)

    def renew(self, keys: list[bytes], runner: str, now: int, lease_ms: int) -> set[bytes]:
        return renew(self.data, keys, runner, now, lease_ms)

    def finish(self, key: bytes, runner: str, **changes: Any) -> bool:
        return finish(self.data, key, runner, **changes)
