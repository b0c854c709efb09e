"""One read-only view of the decision state, whichever store holds it.

The read model (scangate.state.reads), the budget reports (state.campaigns), the
audit's snapshot (state.ledger) and the raw dumps (state.raw) read records by
database name and key, as scangate.state.layout lays them out. ``view(data)``
gives them one consistent snapshot to read from:

- LMDB (the default): one read transaction of the data directory;
- PostgreSQL (a data directory opened with a store URL: ``DataDir.decisions``):
  one ``REPEATABLE READ, READ ONLY`` transaction over the ``scangate`` tables
  for the databases the decision engine writes (``DECISION_DBS``), and the data
  directory's read transaction for the rest (campaigns, trace, recalls, the
  issuance ledger), which stay in LMDB.

Records are the same bytes in both stores (scangate.state.pg keeps LMDB's
encodings), with two differences this module hides: the ledger and the
decision log are keyed by number (``n bigint``) in PostgreSQL and by its 8 bytes
big-endian here, and a budget is split into slot rows there (escrow), summed
here into the one (awards, fen) record LMDB keeps per budget.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

import lmdb

from ..errors import CorruptionError
from .records import COUNTS, U64, LogRecord

if TYPE_CHECKING:
    from ..datadir import DataDir
    from ..decision import Decision

__all__ = ["DECISION_DBS", "LmdbView", "PgView", "View", "logged_decision", "view"]

# what the decision engine writes: in PostgreSQL when the data directory has a store URL
DECISION_DBS = frozenset({"requests", "scans", "claims", "counters", "budgets", "points", "outbox",
                          "ledger", "decisions"})
_NUMBERED = frozenset({"ledger", "decisions"})
_PAGE = 2_000                       # rows a scan's server-side cursor fetches at a time
_CURSORS = itertools.count()        # names of server-side cursors, unique in the process


class View(Protocol):
    """Reads of one snapshot. Keys and values are bytes as scangate.state.layout
    and scangate.state.records define them."""

    def get(self, db: str, key: bytes) -> bytes | None:
        """The record of ``key`` in ``db``; None when there is none."""

    def items(self, db: str, start: bytes = b"", prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """(key, value) in key order, from the first key at or after ``start``,
        while keys start with ``prefix`` (keys returned whole)."""


class LmdbView:
    """A read transaction of the data directory's LMDB environment."""

    def __init__(self, data: DataDir, txn: lmdb.Transaction[bytes]):
        self._store, self.txn = data.store, txn

    def get(self, db: str, key: bytes) -> bytes | None:
        raw = self.txn.get(key, db=self._store.db(db))
        return None if raw is None else bytes(raw)

    def items(self, db: str, start: bytes = b"", prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        cur = self.txn.cursor(db=self._store.db(db))
        first = max(start, prefix)
        if not (cur.set_range(first) if first else cur.first()):
            return
        for k, v in cur:
            key = bytes(k)
            if not key.startswith(prefix):
                return
            yield key, bytes(v)


class PgView:
    """One read-only snapshot of the PostgreSQL decision state, the data
    directory's LMDB view for everything else."""

    def __init__(self, conn: Any, rest: LmdbView):
        self._conn, self.rest = conn, rest

    def get(self, db: str, key: bytes) -> bytes | None:
        if db not in DECISION_DBS:
            return self.rest.get(db, key)
        for k, v in self._rows(db, key, key + b"\x00", b"", 1 if db != "budgets" else None):
            return v if k == key else None
        return None

    def items(self, db: str, start: bytes = b"", prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        if db not in DECISION_DBS:
            yield from self.rest.items(db, start, prefix)
            return
        yield from self._rows(db, max(start, prefix), None, prefix, None)

    def _rows(self, db: str, first: bytes, below: bytes | None, prefix: bytes, limit: int | None
              ) -> Iterator[tuple[bytes, bytes]]:
        """Rows from ``first`` on (below ``below``), placeholders (empty values) left
        out, keyed as in LMDB; budgets' slot rows summed per budget. A scan to
        the end (no ``limit``: a ledger, a table) streams through a server-side
        cursor, a page at a time, as an LMDB cursor would; a lookup fetches its
        rows at once."""
        with (self._conn.cursor(name=f"scangate_view_{next(_CURSORS)}") if limit is None
              else self._conn.cursor()) as cur:
            if limit is None:
                cur.itersize = _PAGE
            yield from self._query(cur, db, first, below, prefix, limit)

    def _query(self, cur: Any, db: str, first: bytes, below: bytes | None, prefix: bytes, limit: int | None
               ) -> Iterator[tuple[bytes, bytes]]:
        if db in _NUMBERED:
            low = U64.unpack(first.ljust(8, b"\x00")[:8])[0] if first else 0
            if len(first) > 8:      # a key past the 8-byte number: start after it
                low += 1
            sql = f"SELECT n, v FROM scangate.{db} WHERE n >= %s"
            params: list[Any] = [low]
            if below is not None:
                sql += " AND n < %s"
                params.append(U64.unpack(below[:8])[0] + (1 if len(below) > 8 else 0))
            cur.execute(sql + " ORDER BY n" + (f" LIMIT {limit}" if limit else ""), params)
            for n, v in cur:
                key = U64.pack(n)
                if not key.startswith(prefix):
                    return
                yield key, bytes(v)
            return
        sql = f"SELECT k, v FROM scangate.{db} WHERE k >= %b AND length(v) > 0"
        params = [first]
        if below is not None:
            sql += " AND k < %b"
            params.append(below if db != "budgets" else below[:-1] + b"\x01")
        elif prefix:
            sql += " AND substring(k from 1 for %s) = %b"
            params += [len(prefix), prefix]
        cur.execute(sql + " ORDER BY k" + (f" LIMIT {limit}" if limit else ""), params)
        rows: Iterator[tuple[bytes, bytes]] = ((bytes(k), bytes(v)) for k, v in cur)
        if db == "budgets":
            rows = sum_slots(rows)
        for key, value in rows:
            if not key.startswith(prefix):
                return
            yield key, value


def sum_slots(rows: Iterator[tuple[bytes, bytes]]) -> Iterator[tuple[bytes, bytes]]:
    """Budget slot rows (budget key, NUL, slot byte -> scangate.state.pg's slot
    record) as LMDB's one record per budget: awards and fen spent."""
    from .pg import slot_spent

    budget: bytes | None = None
    awards = fen = 0
    for key, raw in rows:
        name = key[:-2]
        if name != budget:
            if budget is not None:
                yield budget, COUNTS[2].pack(awards, fen)
            budget, awards, fen = name, 0, 0
        a, f = slot_spent(key, raw)
        awards, fen = awards + a, fen + f
    if budget is not None:
        yield budget, COUNTS[2].pack(awards, fen)


def logged_decision(v: View, number: int) -> Decision:
    """Decision ``number`` of the decision log: in the first record keyed at or
    after it (a batch's record is keyed by its last decision's number).
    CorruptionError for a number the log does not hold."""
    for key, raw in v.items("decisions", U64.pack(number)):
        return LogRecord(int(U64.unpack(key)[0]), raw).decision(number)
    raise CorruptionError(f"decision record: #{number} is past the end of the decision log")


@contextmanager
def view(data: DataDir) -> Iterator[View]:
    """A consistent read of the data directory's state (see the module docstring)."""
    with data.store.env.begin() as txn:
        rest = LmdbView(data, txn)
        store = data.decisions
        if store is None:
            yield rest
            return
        if store.views:
            # a view inside another on the same connection reads the outer one's snapshot
            # (one connection holds one transaction): the outer one ends it
            yield PgView(store.conn, rest)
            return
        store.live()
        conn = store.conn
        with conn.cursor() as cur:
            # the first statement of the transaction psycopg opens: one snapshot for every read
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            store.views += 1
            try:
                yield PgView(conn, rest)
            finally:
                store.views -= 1
                conn.rollback()
