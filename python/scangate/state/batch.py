"""One batch of decisions against the LMDB store: read its state by keys, apply its mutations.

The decision engine (scangate.decide) never sees LMDB. For one batch it asks
``LmdbBatch`` for what it needs, by keys (``requests``, ``histories``,
``chains``, ``recalls``, ``campaigns``, then ``read`` for the claims, counters,
budgets and points of the scans that may win), decides against those values
(``Snapshot``: the values read, updated by the batch's own decisions, so a code
scanned twice in a batch sees its first scan), and hands back every write as a
``Mutations``, which ``apply`` writes: each changed key once, appends in number
order. All of it happens inside one LMDB write transaction that the caller
commits (group commit), so a batch is applied whole or not at all.

A second store (PostgreSQL) implements the same methods: its reads lock the rows
they read, in key order; ``apply`` is its set-based writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import starmap
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Protocol

import lmdb
from ..decision import Decision
from ..errors import CorruptionError
from . import layout
from .trace import Shipment, TraceStore
from .recalls import Recalls, read_recalls
from .records import (
    ACCOUNT,
    I64,
    U64,
    Claim,
    History,
    LedgerEntry,
    LogRecord,
    Payout,
    PointsEntry,
    encode,
    encode_decisions,
    COUNTS,
    unpack_account,
    unpack_counts,
)

if TYPE_CHECKING:
    from ..results import Dealer
    from .store import Store

__all__ = ["BatchState", "LmdbBatch", "Mutations", "Snapshot", "logged_decisions", "request_pointer", "scan_history",
           "write_batch"]

# a request record: the decision's number, then the request's fingerprint (scangate.decide.requests):
# none (8, written before fingerprints), version 1 (24: 16 bytes), or versioned (25: version byte, 16 bytes)
POINTER_SIZES = (8, 24, 25)


def request_pointer(key: bytes, raw: bytes | memoryview) -> tuple[int, bytes | None]:
    """A request record: (its decision's number in the log, the request's
    fingerprint; None in a record written before fingerprints)."""
    if len(raw) not in POINTER_SIZES:
        raise CorruptionError(f"request record {bytes(key)!r}: {len(raw)} bytes, not a decision number")
    return int(U64.unpack_from(raw)[0]), (bytes(raw[8:]) if len(raw) > 8 else None)
_NO_ACCOUNT = (0, 0)
_PACK = {n: s.pack for n, s in COUNTS.items()}     # pack_counts, by the value's length, without a call
_SEQ = attrgetter("seq")

@dataclass
class Snapshot:
    """The values of the keys a batch read (None: no record), updated by the
    batch's own decisions as it goes."""

    claims: dict[bytes, Claim | bytes | None] = field(default_factory=dict)   # read: the record's bytes
    counters: dict[bytes, tuple[int, ...] | None] = field(default_factory=dict)
    budgets: dict[bytes, tuple[int, ...] | None] = field(default_factory=dict)
    accounts: dict[bytes, tuple[int, int]] = field(default_factory=dict)    # b/ key -> (balance, earned)
    months: dict[bytes, int] = field(default_factory=dict)                  # m/ key -> points
    # t/ keys read absent: those actors have no d/ records either, so none is read
    new_totals: set[bytes] = field(default_factory=set)


@dataclass
class Mutations:
    """Every write of one batch, applied by ``LmdbBatch.apply`` in one transaction."""

    claims: dict[bytes, Claim] = field(default_factory=dict)
    counters: dict[bytes, tuple[int, ...]] = field(default_factory=dict)
    budgets: dict[bytes, tuple[int, ...]] = field(default_factory=dict)
    counter_adds: dict[bytes, int] = field(default_factory=dict)      # pf/ failure counts to add
    accounts: dict[bytes, tuple[int, int]] = field(default_factory=dict)
    months: dict[bytes, int] = field(default_factory=dict)
    points_history: list[tuple[bytes, PointsEntry]] = field(default_factory=list)   # (h/ prefix, entry), numbered here
    ledger: list[LedgerEntry] = field(default_factory=list)      # numbered from next_ledger_seq, in order
    outbox: dict[bytes, Payout] = field(default_factory=dict)
    decisions: list[tuple[bytes, bytes, Decision]] = field(default_factory=list)  # (request key, fingerprint, record)
    histories: list[tuple[bytes, bytes]] = field(default_factory=list)       # (serial key, History record)


class BatchState(Protocol):
    """What the decision engine asks of a store for one batch (scangate.decide.engine):
    reads by keys and the application of the batch's mutations, inside one
    transaction the store's caller commits. ``LmdbBatch`` is the LMDB one; a
    PostgreSQL one reads with row locks, in key order."""

    def stored_decisions(self, request_keys: Sequence[bytes]) -> dict[bytes, tuple[Decision, bytes | None]]: ...

    def histories(self, serials: Iterable[int]) -> tuple[dict[int, bytes], dict[int, History]]: ...

    def chains(self, serials: Sequence[int]) -> list[Any]: ...

    def recalls(self) -> Recalls: ...

    def campaigns(self) -> list[tuple[bytes, bytes | None]]: ...

    def next_ledger_seq(self) -> int: ...

    def read(self, snap: Snapshot, claims: Iterable[bytes] = (), counters: Iterable[bytes] = (),
             budgets: Iterable[bytes] = (), accounts: Iterable[bytes] = (), months: Iterable[bytes] = ()) -> None:
        """Add the values of these keys to ``snap``. The engine gives ``budgets``
        as a mapping: budget key -> (award limit, fen limit, fen of one award),
        None for no limit; a store may use the limits (PostgreSQL's budget slots),
        LMDB reads the keys."""

    def apply(self, m: Mutations) -> None: ...


def account_of(key: bytes, raw: bytes) -> tuple[int, int]:
    """(balance, earned) from the points account record at ``key`` (b/<actor>)."""
    return unpack_account(key[2:].decode("utf-8", "replace"), raw)


class LmdbBatch:
    """The decision state of one LMDB write transaction (see the module docstring)."""

    def __init__(self, store: Store, txn: lmdb.Transaction[bytes]):
        self.store, self.txn = store, txn
        # what the last histories() and chains() read: the keys and the records
        # found, and the trace's transaction (a decision prepared in a read
        # transaction is checked against them at commit: scangate.decide.prepared)
        self.histories_read: tuple[dict[int, bytes], dict[bytes, bytes]] = ({}, {})
        self.trace_read: int | None = None
        db = store.db
        self._requests, self._decisions, self._ledger = db("requests"), db("decisions"), db("ledger")
        self._claims, self._counters, self._budgets = db("claims"), db("counters"), db("budgets")
        self._points, self._outbox, self._scans = db("points"), db("outbox"), db("scans")
        self._campaigns, self._revoked = db("campaigns"), db("revoked")

    # ------------------------------------------------------------------ reads
    def stored_decisions(self, request_keys: Sequence[bytes]) -> dict[bytes, tuple[Decision, bytes | None]]:
        """The stored decisions of the request keys that have one, with the
        fingerprint of the request decided (None: stored before fingerprints)."""
        txn = self.txn
        index = [(key, request_pointer(key, value))
                 for key, value in txn.cursor(db=self._requests).getmulti(list(set(request_keys)))]
        if not index:
            return {}
        log = logged_decisions(txn, self._decisions, [number for _key, (number, _fp) in index])
        return {key: (log[number], fingerprint) for key, (number, fingerprint) in index}

    def histories(self, serials: Iterable[int]) -> tuple[dict[int, bytes], dict[int, History]]:
        """Each serial's key, and the scan history of those scanned before."""
        keys = {s: s.to_bytes(layout.SERIAL_BYTES, "big") for s in serials}
        if not keys:
            return keys, {}
        stored = dict(self.txn.cursor(db=self._scans).getmulti(sorted(keys.values())))
        self.histories_read = (keys, stored)
        if not stored:
            return keys, {}
        return keys, {s: History.unpack(raw) for s, k in keys.items() if (raw := stored.get(k)) is not None}

    def chains(self, serials: Sequence[int]) -> list[tuple[tuple[int, ...], Shipment, Dealer] | None]:
        """For each serial, (ancestors, governing shipment, its dealer), or None:
        the trace as its environment holds it now (a read transaction of its own,
        which no link upload can hold up)."""
        trace = TraceStore(self.store)
        with trace.env.begin() as txn:
            self.trace_read = txn.id()
            return trace.shipped_chains(serials, txn)

    def recalls(self) -> Recalls:
        """Every recall (read again only when one was added: Store.rules_cached)."""
        return self.store.rules_cached(self.txn, "recalls", lambda: read_recalls(self.txn, self._revoked))

    def campaigns(self) -> list[tuple[bytes, bytes | None]]:
        """Every stored campaign record (JSON), in id order, with its secret (read
        again only when one changed: Store.rules_cached)."""
        return self.store.rules_cached(self.txn, "campaigns", self._read_campaigns)

    def _read_campaigns(self) -> list[tuple[bytes, bytes | None]]:
        txn, db = self.txn, self._campaigns
        out = []
        cur = txn.cursor(db=db)
        prefix = layout.CAMPAIGN_PREFIX
        if cur.set_range(prefix):
            for key, raw in cur:
                if not key.startswith(prefix):
                    break
                out.append((bytes(raw), txn.get(b"s/" + key[len(prefix):], db=db)))
        return out

    def revision(self) -> tuple[int, int, int]:
        """(rules generation, ledger generation, the trace's last committed
        transaction): what a prepared decision read must still hold at commit."""
        return (*self.store.generations(self.txn), self.store.trace_env.info()["last_txnid"])

    def known_requests(self, request_keys: Sequence[bytes]) -> set[bytes]:
        """Those of these keys the request index holds."""
        return {bytes(key) for key, _value in self.txn.cursor(db=self._requests).getmulti(list(request_keys))}

    def history_records(self, keys: Sequence[bytes]) -> dict[bytes, bytes]:
        """The scan history records of these serial keys that exist, as stored."""
        return dict(self.txn.cursor(db=self._scans).getmulti(sorted(keys)))

    def next_ledger_seq(self) -> int:
        cur = self.txn.cursor(db=self._ledger)
        return layout.seq_of(cur.key()) + 1 if cur.last() else 1

    def read(self, snap: Snapshot, claims: Iterable[bytes] = (), counters: Iterable[bytes] = (),
             budgets: Iterable[bytes] = (), accounts: Iterable[bytes] = (), months: Iterable[bytes] = ()) -> None:
        """Add the values of these keys to ``snap`` (those not in it yet), a
        getmulti per database. ``accounts``, ``months``: points account (b/) and
        month (m/) keys."""
        txn = self.txn
        missing = _missing(snap.claims, claims)
        if missing:
            snap.claims.update(dict.fromkeys(missing))
            snap.claims.update(txn.cursor(db=self._claims).getmulti(missing))
        for db, values, keys in ((self._counters, snap.counters, counters), (self._budgets, snap.budgets, budgets)):
            missing = _missing(values, keys)
            if missing:
                values.update(dict.fromkeys(missing))
                values.update([(key, unpack_counts(raw)) for key, raw in txn.cursor(db=db).getmulti(missing)])
        missing = _missing(snap.accounts, accounts)
        if missing:
            snap.accounts.update(dict.fromkeys(missing, _NO_ACCOUNT))
            snap.accounts.update([(key, account_of(key, raw))
                                  for key, raw in txn.cursor(db=self._points).getmulti(missing)])
        missing = _missing(snap.months, months)
        if missing:
            snap.months.update(dict.fromkeys(missing, 0))
            snap.months.update([(key, I64.unpack(raw)[0] if raw else 0)
                                for key, raw in txn.cursor(db=self._points).getmulti(missing)])

    # ------------------------------------------------------------------ writes
    def apply(self, m: Mutations) -> None:
        """Write one batch's mutations (inside the caller's write transaction)."""
        txn = self.txn
        # (key, record) pairs zipped from maps where no record needs more than one
        # call: no Python code runs per record (this runs for every decision)
        if m.claims:
            txn.cursor(db=self._claims).putmulti(zip(m.claims.keys(), map(encode, m.claims.values())))
        counters = m.counters
        if m.counter_adds:
            counters = dict(counters)
            for key, add in m.counter_adds.items():
                raw = txn.get(key, db=self._counters)
                count, amount = unpack_counts(raw) if raw is not None else (0, 0)
                counters[key] = (count + add, amount)
        if counters:
            txn.cursor(db=self._counters).putmulti([(k, _PACK[len(v)](*v)) for k, v in counters.items()])
        if m.budgets:
            txn.cursor(db=self._budgets).putmulti([(k, _PACK[len(v)](*v)) for k, v in m.budgets.items()])
        if m.accounts or m.points_history:
            puts = [*zip(m.accounts.keys(), starmap(ACCOUNT.pack, m.accounts.values())),
                    *zip(m.months.keys(), map(I64.pack, m.months.values()))]
            if m.points_history:
                raw = txn.get(layout.HISTORY_SEQ, db=self._points)
                number = U64.unpack(raw)[0] if raw else 0
                puts += [(prefix + U64.pack(n), encode(entry))
                         for n, (prefix, entry) in enumerate(m.points_history, number + 1)]
                puts.append((layout.HISTORY_SEQ, U64.pack(number + len(m.points_history))))
            txn.cursor(db=self._points).putmulti(puts)
        if m.ledger:   # sequence numbers past the last entry: appended
            if m.ledger[0].seq != self.next_ledger_seq():
                raise CorruptionError("ledger: a batch's entries must follow the last entry")
            txn.cursor(db=self._ledger).putmulti(zip(map(U64.pack, map(_SEQ, m.ledger)), map(encode, m.ledger)),
                                                 append=True)
        if m.outbox:
            txn.cursor(db=self._outbox).putmulti(zip(m.outbox.keys(), map(encode, m.outbox.values())))
        if m.decisions:   # one record of the batch's decisions appended to the log, the request index pointing at each
            cur = txn.cursor(db=self._decisions)
            first = U64.unpack(cur.key())[0] + 1 if cur.last() else 1
            cur.put(U64.pack(first + len(m.decisions) - 1), encode_decisions([d for _k, _fp, d in m.decisions]),
                    append=True)
            txn.cursor(db=self._requests).putmulti(
                [(rid, U64.pack(n) + fingerprint) for n, (rid, fingerprint, _d) in enumerate(m.decisions, first)])
        if m.histories:
            txn.cursor(db=self._scans).putmulti(sorted(m.histories))


def logged_decisions(txn: lmdb.Transaction[bytes], db: Any, numbers: Iterable[int]) -> dict[int, Decision]:
    """The decisions of these numbers in the decision log (``db``): each number's
    record is the first keyed at or after it (a batch's record is keyed by its
    last decision's number). CorruptionError for a number the log does not hold."""
    out: dict[int, Decision] = {}
    cur = txn.cursor(db=db)
    record: LogRecord | None = None
    for n in sorted(set(numbers)):
        if record is None or n > record.last:
            if not cur.set_range(U64.pack(n)):
                raise CorruptionError(f"decision record: #{n} is past the end of the decision log")
            record = LogRecord(U64.unpack(cur.key())[0], cur.value())
        out[n] = record.decision(n)
    return out


def _missing(values: Mapping[bytes, object], keys: Iterable[bytes]) -> list[bytes]:
    """The keys not read yet, each once."""
    return list(set(keys).difference(values))


@contextmanager
def write_batch(store: Store) -> Iterator[LmdbBatch]:
    """One batch in its own write transaction, committed when the block ends
    without an exception (aborted otherwise: nothing of the batch is written)."""
    with store.env.begin(write=True) as txn:
        yield LmdbBatch(store, txn)


def scan_history(store: Store, serial: int) -> History | None:
    """The recorded scan state of one serial, or None if never scanned."""
    with store.env.begin() as txn:
        raw = txn.get(layout.serial_key(serial), db=store.db("scans"))
    return None if raw is None else History.unpack(raw)
