"""The points records: reads and writes of the ``points`` database (the rules of
points, periods and redemption are scangate.points').

Keys (``scangate.state.layout``; actor ids are UTF-8, and "/" inside them is fine
because each key kind has a fixed prefix and the actor ends the key); records
from ``scangate.state.records``:

    b/<actor>              balance and cumulative points earned (tiers read it):
                           two signed 64-bit integers (``records.ACCOUNT``). Schema
                           1 data could hold the balance alone here (8 bytes) and
                           the points earned under e/<actor>; the migration to
                           schema 2 rewrites every such b/ to 16 bytes and deletes
                           e/, so neither form is read here (an 8-byte b/ is a
                           CorruptionError: the data directory was not migrated)
    m/<YYYY-MM>/<actor>    points earned in that month (Asia/Shanghai)
    h/<actor>\\0<seq>       history entry: ``records.PointsEntry`` (delta, balance,
                           reason, ref, at_ms) in msgpack; seq (64-bit) is the
                           database's running history number, so an actor's entries
                           sort in the order they were written
    q                      the last history number given out
    r/<request id>         a redemption's result (``records.RedemptionRecord``,
                           idempotency)

Writes happen inside one write transaction (``redeem``'s own, or the one given
to ``PointsWriter``); the reward decision writes an award's points in its
batch's transaction (scangate.state.batch), with the ledger entry and the
budgets, so points, ledger and budgets always agree.

On PostgreSQL (a data directory opened with a store URL) the same records are
rows of ``scangate.points``; the reads here read one snapshot of them
(scangate.state.view), and ``redeem`` runs in one PostgreSQL transaction that
locks the rows it reads (the redemption's, then the account's) as the deciders
lock theirs, its history numbers from the sequence the deciders draw from (so
there is no q record there).
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable
from typing import Any, TypeAlias

import lmdb

from ..datadir import DataDir
from . import layout
from .records import (ACCOUNT, I64, U64, PointsEntry, RedemptionRecord, decode_points_entry, decode_redemption,
                      encode, unpack_account)
from .view import view

__all__ = ["PointsWriter", "Txn", "account", "history", "month_rows", "read_account", "redeem"]

# what a caller that brings its own transaction holds (a string: lmdb's classes
# are generic only in its stubs)
Txn: TypeAlias = "lmdb.Transaction[bytes]"

_NO_ACCOUNT = (0, 0)


def read_account(txn: Txn, db: Any, key: bytes) -> tuple[int, int]:
    """(balance, earned) from the b/ record at ``key`` (``layout.account_key``).
    Only the 16-byte form: the schema 2 migration rewrote every older 8-byte b/
    (whose earned points were under e/), so another size is corruption."""
    raw = txn.get(key, db=db)
    if raw is None:
        return _NO_ACCOUNT
    return unpack_account(key[2:].decode("utf-8", "replace"), raw)


def account(data: DataDir, actor: str) -> tuple[int, int]:
    """An actor's (balance, cumulative points earned); (0, 0) without an account."""
    key = layout.account_key(actor.encode())
    with view(data) as v:
        raw = v.get("points", key)
    return _NO_ACCOUNT if raw is None else unpack_account(actor, raw)


def statement(data: DataDir, actor: str, limit: int) -> tuple[tuple[int, int], list[PointsEntry]]:
    """An actor's (balance, earned) and first ``limit`` history entries, read in
    one transaction: the balance is the one the entries lead to."""
    with view(data) as v:
        prefix = layout.history_prefix(actor.encode())
        rows = [decode_points_entry(raw) for _, raw in itertools.islice(v.items("points", prefix=prefix), limit)]
        raw = v.get("points", layout.account_key(actor.encode()))
    return (_NO_ACCOUNT if raw is None else unpack_account(actor, raw)), rows


def history(data: DataDir, actor: str, limit: int) -> list[PointsEntry]:
    """An actor's first ``limit`` history entries, oldest first."""
    with view(data) as v:
        rows = v.items("points", prefix=layout.history_prefix(actor.encode()))
        return [decode_points_entry(raw) for _, raw in itertools.islice(rows, limit)]


def month_rows(data: DataDir, period: str) -> list[tuple[str, int]]:
    """(actor, points earned) of every actor who earned in ``period`` (YYYY-MM,
    checked by the caller), in key order."""
    prefix = layout.month_prefix(period)
    with view(data) as v:
        return [(k[len(prefix):].decode(), int(I64.unpack(raw)[0])) for k, raw in v.items("points", prefix=prefix)]


class PointsWriter:
    """Points changes inside one write transaction (a redemption's, ``add_points``'):
    reads go through a cache that holds this writer's own changes, and the changed
    records are written once each by ``flush`` (before the commit). The reward
    decision writes its awards' points itself (scangate.decide.points, the same
    records)."""

    __slots__ = ("_accounts", "_dirty", "_months", "_numbers", "_seq", "db", "txn")

    def __init__(self, txn: Txn, db: Any, numbers: Callable[[], int] | None = None):
        """``numbers``: where history numbers come from when not the q record
        (PostgreSQL's sequence)."""
        self.txn, self.db = txn, db
        self._numbers = numbers
        self._accounts: dict[bytes, tuple[int, int]] = {}   # b/ key -> (balance, earned), read or changed
        self._months: dict[bytes, int] = {}                  # m/ key -> the month's points, read or changed
        self._dirty: dict[bytes, bytes] = {}
        self._seq: int | None = None            # the last history number, once read

    def _account(self, key: bytes) -> tuple[int, int]:
        account = self._accounts.get(key)
        if account is None:
            account = self._accounts[key] = read_account(self.txn, self.db, key)
        return account

    def _month(self, key: bytes) -> int:
        value = self._months.get(key)
        if value is None:
            raw = self.txn.get(key, db=self.db)
            value = self._months[key] = int(I64.unpack(raw)[0]) if raw else 0
        return value

    def balance(self, actor: str) -> int:
        return self._account(layout.account_key(actor.encode()))[0]

    def earned(self, actor: str) -> int:
        return self._account(layout.account_key(actor.encode()))[1]

    def add(self, actor: str, delta: int, reason: str, ref: str, at_ms: int, month: str = "") -> int:
        """Change an actor's balance; earning also counts towards the cumulative
        total and ``month`` (YYYY-MM: scangate.points.period(at_ms), which
        scangate.points.PointsWriter fills in). Returns the new balance."""
        a = actor.encode()
        if delta > 0:
            if not month:
                raise ValueError("month: required when points are earned (the m/ record it counts in)")
            month_key = layout.month_key(month, a)
        else:
            month_key = b""     # no earning, no month: its key is never read nor written
        new = self._change(layout.account_key(a), month_key, delta)
        self._history(layout.history_prefix(a), PointsEntry(delta, new, reason, ref, at_ms))
        return new

    def _change(self, key: bytes, month_key: bytes, delta: int) -> int:
        """Add ``delta`` to the balance and, when it is positive, to the earned and
        month totals; the new balance."""
        balance, earned = self._account(key)
        balance += delta
        if delta > 0:
            earned += delta
            month = self._month(month_key) + delta
            self._months[month_key], self._dirty[month_key] = month, I64.pack(month)
        self._accounts[key], self._dirty[key] = (balance, earned), ACCOUNT.pack(balance, earned)
        return balance

    def _history(self, prefix: bytes, entry: PointsEntry) -> None:
        """Append a history entry under the next history number."""
        if self._numbers is not None:
            self._dirty[prefix + U64.pack(self._numbers())] = encode(entry)
            return
        number = self._seq
        if number is None:
            raw = self.txn.get(layout.HISTORY_SEQ, db=self.db)
            number = int(U64.unpack(raw)[0]) if raw else 0
        self._seq = number = number + 1
        self._dirty[prefix + U64.pack(number)] = encode(entry)

    def flush(self) -> None:
        if self._seq is not None:
            self._dirty[layout.HISTORY_SEQ] = U64.pack(self._seq)
        if self._dirty:
            self.txn.cursor(db=self.db).putmulti(list(self._dirty.items()))
            self._dirty.clear()


def redeem(data: DataDir, request_id: str, spend: Callable[[PointsWriter], RedemptionRecord]
           ) -> RedemptionRecord:
    """The redemption stored under ``request_id`` if there is one (a retry spends
    nothing more); else ``spend``'s, decided and written in one write transaction
    with the points it changed, so the balance it read is the balance it changes.
    An exception from ``spend`` aborts the transaction: nothing is written."""
    key = layout.redemption_key(request_id)
    if data.decisions is not None:
        return _redeem_on_pg(data, key, spend)
    db = data.store.db("points")
    with data.store.env.begin(write=True) as txn:
        done = txn.get(key, db=db)
        if done is not None:
            return decode_redemption(done)
        writer = PointsWriter(txn, db)
        record = spend(writer)
        writer.flush()
        txn.put(key, encode(record), db=db)
    return record


class _PgPoints:
    """What ``PointsWriter`` asks of a transaction, on one PostgreSQL transaction:
    a read locks its row (inserted empty first when missing: upsert-then-lock,
    as scangate.state.pg's batches do), the writes are one upsert."""

    def __init__(self, cur: Any):
        self.cur = cur

    def get(self, key: bytes, db: Any = None) -> bytes | None:
        self.cur.execute("INSERT INTO scangate.points (k, v) VALUES (%b, '') ON CONFLICT (k) DO NOTHING", [key])
        self.cur.execute("SELECT v FROM scangate.points WHERE k = %b FOR UPDATE", [key])
        row = self.cur.fetchone()
        return bytes(row[0]) if row and row[0] else None

    def cursor(self, db: Any = None) -> _PgPoints:
        return self

    def putmulti(self, items: list[tuple[bytes, bytes]]) -> None:
        keys, values = zip(*sorted(items))
        self.cur.execute("INSERT INTO scangate.points (k, v) SELECT * FROM unnest(%b::bytea[], %b::bytea[]) "
                         "ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v", [list(keys), list(values)])

    def number(self) -> int:
        self.cur.execute("SELECT nextval('scangate.points_numbers')")
        row = self.cur.fetchone()
        assert row is not None
        return int(row[0])


def _redeem_on_pg(data: DataDir, key: bytes, spend: Callable[[PointsWriter], RedemptionRecord],
                  attempts: int = 30) -> RedemptionRecord:
    """``redeem`` on PostgreSQL: the redemption's row locked first (two retries of
    one request id queue on it), then what ``spend`` reads; a deadlock with a
    decider (which locks an account among its batch's rows) rolls back and tries
    again."""
    from .pg import abort, retryable

    assert data.decisions is not None
    conn = data.decisions.conn
    for attempt in range(attempts):
        try:
            with conn.cursor() as cur:
                txn = _PgPoints(cur)
                done = txn.get(key)
                if done is not None:
                    conn.rollback()
                    return decode_redemption(done)
                writer = PointsWriter(txn, None, numbers=txn.number)     # type: ignore[arg-type]
                record = spend(writer)
                writer.flush()
                txn.putmulti([(key, encode(record))])
            conn.commit()
            return record
        except BaseException as exc:
            abort(conn)
            if not retryable(exc) or attempt + 1 == attempts:
                raise
            time.sleep(random.uniform(0, 0.002 * (attempt + 1)))
    raise AssertionError("unreachable")
