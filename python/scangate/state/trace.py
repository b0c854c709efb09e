"""Trace state in LMDB: bottle -> case -> pallet linkage, dealers, shipments.

Layout (all keys big-endian, so related records sit together and bulk loads in
serial order are sorted appends):

``links``     child bucket -> parents. Key: ``serial >> 3`` (7 bytes); value: 8 slots
              of 7-byte parent serials, slot ``serial & 7`` (0: no parent). Issued
              ranges are dense and packaging lines link nearly every code, so a
              bucket costs ~9.3 bytes per linked child on disk, against 24 for a
              key per child.
``children``  parent serial (7 bytes) -> its children, sorted 7-byte serials.
``dealers``   dealer id (UTF-8) -> records.DealerRecord (dealer_id, name, territory:
              adcode prefixes).
``shipped``   unit serial (7 bytes) -> records.ShipmentRecord of its current shipment
              (unit, dealer_id, shipped_at_ms, shipment_id).
``ship_log``  unit serial (7 bytes) + shipped-at ms (8 bytes, signed) ->
              records.ShipmentRecord: history.

The keys are built by scangate.state.layout (serial_key, serial_keys for many at
once, dealer_key, ship_log_key).

The records are msgpack (scangate.state.records; schema 1 wrote JSON, which
scangate.state.migrate converts); JSON only at the edges (to_json, the CLI).
Every change is applied in one write transaction by the functions here; the
callers (scangate.ingest) validate before, so a bad batch changes nothing.

The trace rules (text and dealer id checks, levels) live in scangate.trace, which
imports this module and re-exports its public names; nothing here imports it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import lmdb
import numpy as np

from ..errors import CorruptionError, InvalidArgument, NotFound
from ..results import Dealer
from .store import Store, iter_prefix
from . import layout, records

__all__ = [
    "ADD", "DELETE", "MAX_TIME_MS", "MIN_TIME_MS", "SERIAL_BYTES", "SLOTS", "SMALL_BATCH", "TRACE_PATH",
    "TRACE_PATHS", "TRACE_PATH_ENV", "LinkStep", "ShipStep", "Shipment", "TraceChain", "TraceStore",
    "apply_trace_steps", "check_time_ms",
]

ADD = 1             # apply_links actions (EPCIS AggregationEvent ADD, DELETE)
DELETE = 2
SLOTS = 8
SERIAL_BYTES = layout.SERIAL_BYTES

# Batches of up to SMALL_BATCH serials (a verdict batch) are traced with Python
# ints and bytes: at that size numpy's fixed cost per call (a few microseconds, a
# dozen calls per batch) outweighs the per-serial loop it saves. Larger ones use
# numpy. Both paths give the same answers.
SMALL_BATCH = 512
# The trace path every batch takes, read at each call (the test suite sets it, and
# SCANGATE_TRACE_PATH sets it in the processes a test starts), so that the suite
# runs the trace tests both ways (as py-lmdb runs its suite on both of its
# bindings): None, by size (above); "small": every batch, of any size, with Python
# ints (_parents_small); "array": every batch with numpy (ancestors).
TRACE_PATHS = ("small", "array")
TRACE_PATH_ENV = "SCANGATE_TRACE_PATH"
TRACE_PATH: str | None = os.environ.get(TRACE_PATH_ENV) or None
if TRACE_PATH is not None and TRACE_PATH not in TRACE_PATHS:
    raise InvalidArgument(f"{TRACE_PATH_ENV}: {TRACE_PATH!r} is not one of {', '.join(TRACE_PATHS)} (or unset)")


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists (a process of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _small(n: int) -> bool:
    """Whether a batch of ``n`` serials takes the Python-int path. TRACE_PATH is
    set by assignment, so a wrong value is caught here rather than taken for the
    default."""
    path = TRACE_PATH
    if path is None:
        return n <= SMALL_BATCH
    if path not in TRACE_PATHS:
        raise InvalidArgument(f"scangate.state.trace.TRACE_PATH: {path!r} is not one of {', '.join(TRACE_PATHS)} "
                              "or None")
    return path == "small"


_keys7 = layout.serial_keys     # concatenated 7-byte keys of uint64 serials


def _split(raw: bytes, width: int) -> list[bytes]:
    """Cut ``raw`` into ``width``-byte bytes objects. Through a void dtype: numpy's
    'S' dtype would strip trailing NUL bytes, 'V' keeps every byte."""
    return np.frombuffer(raw, dtype=f"V{width}").tolist()  # type: ignore[no-any-return]


def _unique_sorted(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unique values, index of each value's unique) for any array; a linear pass
    when it is already sorted (bulk loads arrive in serial order)."""
    if len(values) < 2 or bool((values[1:] >= values[:-1]).all()):
        new = np.empty(len(values), bool)
        new[:1] = True
        np.not_equal(values[1:], values[:-1], out=new[1:])
        return values[new], np.cumsum(new) - 1
    return np.unique(values, return_inverse=True)


def _serials7(raw: bytes | memoryview) -> np.ndarray:
    """uint64 serials from concatenated 7-byte big-endian values."""
    b = np.frombuffer(raw, np.uint8).reshape(-1, SERIAL_BYTES)
    out = np.zeros((len(b), 8), np.uint8)
    out[:, 1:] = b
    return out.view(">u8").reshape(-1).astype(np.uint64)


# ---------------------------------------------------------------- shipment times
# Times a shipment record may carry (CSV shipped_at, EPCIS eventTime, the Python
# API's shipped_at_ms): 2000-01-01T00:00:00Z inclusive to 2100-01-01T00:00:00Z
# exclusive. Nothing this engine traces was shipped before 2000, and a time far in
# the future (or int64's extremes) is a typo or an attack that would pin a unit's
# "latest shipment" for ever and overflow the 64-bit log key. Defined here, beside
# that key, because record_shipments refuses the others itself.
MIN_TIME_MS = 946_684_800_000
MAX_TIME_MS = 4_102_444_800_000


def check_time_ms(ms: object, field: str) -> int:
    """``ms`` (milliseconds since 1970 UTC) when it is an int in
    [MIN_TIME_MS, MAX_TIME_MS); else InvalidArgument naming ``field``."""
    if type(ms) is not int and not isinstance(ms, np.integer):
        raise InvalidArgument(f"{field}: must be an integer number of milliseconds, not {type(ms).__name__}")
    if not MIN_TIME_MS <= int(ms) < MAX_TIME_MS:
        raise InvalidArgument(f"{field}: {int(ms)} ms is outside 2000-01-01 .. 2100-01-01 UTC")
    return int(ms)


# ---------------------------------------------------------------- records
@dataclass(frozen=True)
class Shipment:
    """One shipment of a unit (stored in ``shipped`` and ``ship_log`` as records.ShipmentRecord)."""

    unit: int  # serial of the shipped unit
    dealer_id: str
    shipped_at_ms: int
    shipment_id: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"unit": self.unit, "dealer_id": self.dealer_id, "shipped_at_ms": self.shipped_at_ms,
                "shipment_id": self.shipment_id}


@dataclass(frozen=True)
class TraceChain:
    """Where one unit sits: its ancestors (nearest first) and the shipment that
    governs it (the most recent shipment of the unit or any ancestor)."""

    serial: int
    ancestors: tuple[int, ...]
    shipment: Shipment | None
    dealer: Dealer | None
    extra: dict[str, Any] = field(default_factory=dict)


def _encode_shipment(s: Shipment) -> bytes:
    return records.encode(records.ShipmentRecord(s.unit, s.dealer_id, s.shipped_at_ms, s.shipment_id))


def _decode_shipment(raw: bytes | memoryview) -> Shipment:
    r = records.decode_shipment(raw)
    return Shipment(r.unit, r.dealer_id, r.shipped_at_ms, r.shipment_id)


def _decode_dealer(raw: bytes | memoryview) -> Dealer:
    r = records.decode_dealer(raw)
    return Dealer(r.dealer_id, r.name, tuple(r.territory))


# Shipment values parsed, by their stored bytes (a value is a pure function of its
# bytes and Shipment is immutable): a verdict batch reads the same few case and
# pallet shipments again and again.
_shipments_parsed: dict[bytes, Shipment] = {}


def _shipment(raw: bytes) -> Shipment:
    ship = _shipments_parsed.get(raw)
    if ship is None:
        ship = _decode_shipment(raw)
        if len(_shipments_parsed) >= 4096:
            _shipments_parsed.clear()
        _shipments_parsed[raw] = ship
    return ship


_MAX_KEY = layout.MAX_KEY


def _dealer_key(dealer_id: object) -> bytes | None:
    """The ``dealers`` key of a dealer id (surrounding white space ignored, as the
    loaders strip it), or None for one that no stored dealer can have: not text,
    empty, not encodable as UTF-8 (a lone surrogate), longer than a key. The
    loaders refuse such ids with their reasons (scangate.trace.check_dealer_id)."""
    if not isinstance(dealer_id, str):
        return None
    try:
        key = layout.dealer_key(dealer_id.strip())
    except UnicodeEncodeError:
        return None
    return key if 0 < len(key) <= _MAX_KEY else None


# ---------------------------------------------------------------- write batches
@dataclass(frozen=True)
class LinkStep:
    """ADD/DELETE of (parent, child) pairs, one action per child, and parents to
    unpack whole: one call of TraceStore.apply_links."""

    parents: np.ndarray
    children: np.ndarray
    actions: np.ndarray
    unpack_all: tuple[int, ...] = ()


@dataclass(frozen=True)
class ShipStep:
    """Shipments to record: one call of TraceStore.record_shipments."""

    shipments: tuple[Shipment, ...]


def apply_trace_steps(store: Store, steps: Iterable[LinkStep | ShipStep]) -> dict[str, int]:
    """Apply link and shipment steps in order, in one write transaction (an
    aggregation upload, an EPCIS document): all of them or, on an error, none.
    Returns the links added and removed and the shipments recorded."""
    trace = TraceStore(store)
    added = removed = shipments = 0
    with trace.env.begin(write=True) as txn:
        for step in steps:
            if isinstance(step, ShipStep):
                trace.record_shipments(step.shipments, txn)
                shipments += len(step.shipments)
            else:
                result = trace.apply_links(step.parents, step.children, step.actions, step.unpack_all, txn)
                added += result["added"]
                removed += result["removed"]
    return {"added": added, "removed": removed, "shipments": shipments}


# ---------------------------------------------------------------- the store
class TraceStore:
    """Linkage, dealers and shipments over the data directory's trace environment
    (``Store.trace_env``): a ``txn`` passed to a method here is one of it."""

    def __init__(self, store: Store):
        self.store = store
        env = store.trace_env
        self.env = env
        self.links_db = store.db("links")
        self.children_db = store.db("children")
        self.dealers_db = store.db("dealers")
        self.shipped_db = store.db("shipped")
        self.ship_log_db = store.db("ship_log")

    # ------------------------------------------------------------------ reads
    def parents_of(self, serials: np.ndarray, txn: lmdb.Transaction[bytes] | None = None) -> np.ndarray:
        """Parent serial of each serial (0: none), in one getmulti over its buckets."""
        serials = np.asarray(serials, np.uint64)
        if len(serials) == 0:
            return np.zeros(0, np.uint64)
        buckets, inverse = _unique_sorted(serials >> np.uint64(3))
        table = self._load_buckets(buckets, txn)
        parents: np.ndarray = table[inverse, (serials & np.uint64(7)).astype(np.intp)]
        return parents

    def _parents_small(self, serials: list[int], txn: lmdb.Transaction[bytes]) -> list[int]:
        """``parents_of`` for a small batch of Python ints: the same reads (one
        getmulti over the sorted buckets), decoded without numpy."""
        if not serials:
            return []
        # links: a bucket (serial >> 3) is keyed like a serial
        keys = list(map(layout.serial_key, sorted({s >> 3 for s in serials})))
        cur = txn.cursor(db=self.links_db)
        if not cur.set_range(keys[0]):   # nothing stored at or after the first bucket
            return [0] * len(serials)
        buckets = {int.from_bytes(k, "big"): bytes(v) for k, v in cur.getmulti(keys)}
        size = SLOTS * SERIAL_BYTES
        if any(len(v) != size for v in buckets.values()):
            # a damaged bucket: the array path raises (or decodes) exactly as always
            return self.parents_of(np.array(serials, np.uint64), txn).tolist()  # type: ignore[no-any-return]
        out = []
        for s in serials:
            bucket = buckets.get(s >> 3)
            if bucket is None:
                out.append(0)
            else:
                at = (s & 7) * SERIAL_BYTES
                out.append(int.from_bytes(bucket[at : at + SERIAL_BYTES], "big"))
        return out

    def _load_buckets(self, buckets: np.ndarray, txn: lmdb.Transaction[bytes] | None) -> np.ndarray:
        """(len(buckets) x 8) parent serials for sorted unique bucket keys."""
        table = np.zeros((len(buckets), SLOTS), np.uint64)
        keys = _split(_keys7(buckets), SERIAL_BYTES)
        own = txn is None
        txn = txn or self.env.begin()
        try:
            cur = txn.cursor(db=self.links_db)
            # nothing stored at or after the first bucket (a bulk load): skip the reads
            found = cur.getmulti(keys) if keys and cur.set_range(keys[0]) else []
        finally:
            if own:
                txn.abort()
        if found:
            index = {k: i for i, k in enumerate(keys)}
            rows = np.fromiter((index[bytes(k)] for k, _ in found), np.intp, len(found))
            values = b"".join(bytes(v) for _, v in found)
            if len(values) != len(found) * SLOTS * SERIAL_BYTES:
                raise CorruptionError("links: a bucket has the wrong size")
            table[rows] = _serials7(values).reshape(-1, SLOTS)
        return table

    def children_of(self, parent: int, txn: lmdb.Transaction[bytes] | None = None) -> np.ndarray:
        own = txn is None
        txn = txn or self.env.begin()
        try:
            raw = txn.get(layout.serial_key(int(parent)), db=self.children_db)
            return _serials7(raw) if raw else np.zeros(0, np.uint64)
        finally:
            if own:
                txn.abort()

    def ancestors(self, serials: np.ndarray, txn: lmdb.Transaction[bytes] | None = None) -> np.ndarray:
        """(N x 2) parent and grandparent serials (0: none): item -> case -> pallet."""
        if txn is None:
            with self.env.begin() as own:
                return self.ancestors(serials, own)
        p1 = self.parents_of(serials, txn)
        p2 = np.zeros_like(p1)
        has = p1 != 0
        if has.any():
            p2[has] = self.parents_of(p1[has], txn)
        return np.stack([p1, p2], axis=1)

    # ------------------------------------------------------------------ link
    def apply_links(self, parents: np.ndarray, children: np.ndarray, actions: np.ndarray,
                    unpack_all: Sequence[int] = (), txn: lmdb.Transaction[bytes] | None = None) -> dict[str, Any]:
        """Apply ADD/DELETE of (parent, child) pairs, in order of meaning, in one
        write transaction. ``unpack_all``: parents whose children all leave (an
        EPCIS DELETE with no childEPCs). The caller has validated codes and levels.

        Semantics (EPCIS): ADD puts the child under the parent, leaving any earlier
        parent (re-packing); DELETE takes the child out of that parent. Within one
        batch a child may appear once per action.
        """
        if txn is None:
            with self.env.begin(write=True) as own:
                return self.apply_links(parents, children, actions, unpack_all, own)
        parents = np.asarray(parents, np.uint64)
        children = np.asarray(children, np.uint64)
        actions = np.asarray(actions, np.uint8)
        moved: dict[int, set[int]] = {}   # parent -> children leaving it
        # unpack-all first: those children lose their parent
        all_gone = []
        for parent in unpack_all:
            kids = self.children_of(int(parent), txn)
            all_gone.append(kids)
            moved.setdefault(int(parent), set()).update(kids.tolist())
        deletes = actions == DELETE
        adds = actions == ADD
        touched = np.concatenate([children, *all_gone]) if all_gone else children
        if len(touched) == 0:
            return {"added": 0, "removed": 0, "parents": 0, "touched": np.zeros(0, np.uint64)}
        buckets, slot_row = _unique_sorted(touched >> np.uint64(3))
        table = self._load_buckets(buckets, txn)
        old = table[slot_row, (touched & np.uint64(7)).astype(np.intp)]
        # DELETE: only where the child sits under that parent
        n = len(children)
        del_ok = deletes & (old[:n] == parents)
        for kid, parent in zip(children[del_ok].tolist(), parents[del_ok].tolist()):
            moved.setdefault(parent, set()).add(kid)
        # ADD: leaving the old parent when different
        leaving = adds & (old[:n] != 0) & (old[:n] != parents)
        for kid, parent in zip(children[leaving].tolist(), old[:n][leaving].tolist()):
            moved.setdefault(parent, set()).add(kid)
        # new slot values: unpack-all and deletes clear, adds set
        new = table.copy()
        if all_gone:
            gone = np.concatenate(all_gone)
            new[np.searchsorted(buckets, gone >> np.uint64(3)), (gone & np.uint64(7)).astype(np.intp)] = 0
        rows = slot_row[:n]
        slots = (children & np.uint64(7)).astype(np.intp)
        new[rows[del_ok], slots[del_ok]] = 0
        new[rows[adds], slots[adds]] = parents[adds]
        ap, ac = parents[adds], children[adds]
        if len(ap) > 1 and not bool(((ap[1:] > ap[:-1]) | ((ap[1:] == ap[:-1]) & (ac[1:] > ac[:-1]))).all()):
            order = np.lexsort((ac, ap))   # not already in (parent, child) order
            ap, ac = ap[order], ac[order]
        self._write_buckets(txn, buckets, table, new)
        touched_parents = self._write_children(txn, moved, ap, ac)
        return {"added": int(adds.sum()), "removed": int(del_ok.sum()) + sum(len(g) for g in all_gone),
                "parents": len(touched_parents), "touched": touched_parents}

    def _write_buckets(self, txn: lmdb.Transaction[bytes], buckets: np.ndarray, old: np.ndarray,
                       new: np.ndarray) -> None:
        changed = (old != new).any(axis=1)
        empty = ~new.any(axis=1)
        for k in _split(_keys7(buckets[changed & empty]), SERIAL_BYTES):
            txn.delete(k, db=self.links_db)
        write = changed & ~empty
        keys = _split(_keys7(buckets[write]), SERIAL_BYTES)
        values = _split(_keys7(new[write].reshape(-1)), SLOTS * SERIAL_BYTES)
        cur = txn.cursor(db=self.links_db)
        puts = list(zip(keys, values))
        # Sorted keys beyond the current last key go in with MDB_APPEND: full pages,
        # no splits (the bulk-load case); otherwise ordinary puts.
        last = cur.key() if cur.last() else b""
        append = bool(puts) and puts[0][0] > last
        cur.putmulti(puts, append=append)

    def _write_children(self, txn: lmdb.Transaction[bytes], moved: dict[int, set[int]],
                        add_parents: np.ndarray, add_children: np.ndarray) -> np.ndarray:
        """Rewrite the children arrays of every parent that gains or loses one;
        return those parents (sorted serials).

        ``add_parents``/``add_children``: the ADDs sorted by (parent, child). A
        parent new to the store that loses nothing (the bulk-load case) gets its
        array straight from one vectorised encoding; the others are merged one by
        one with what is stored.
        """
        groups, group_index = _unique_sorted(add_parents)
        bounds = np.append(np.flatnonzero(np.diff(group_index, prepend=-1)), len(add_parents))
        parents = np.union1d(groups, np.fromiter(moved, np.uint64, len(moved))) if moved else groups
        if len(parents) == 0:
            return parents
        keys = _split(_keys7(parents), SERIAL_BYTES)
        cur = txn.cursor(db=self.children_db)
        existing = {bytes(k): bytes(v) for k, v in cur.getmulti(keys)} if cur.set_range(keys[0]) else {}
        encoded = _keys7(add_children)
        cut = (bounds * SERIAL_BYTES).tolist()
        if not existing and not moved:
            # bulk load: every parent is new and only gains children
            puts = [(k, encoded[a:b]) for k, a, b in zip(keys, cut[:-1], cut[1:])]
        else:
            group_of = dict(zip(groups.tolist(), range(len(groups))))
            puts = []
            for parent, key in zip(parents.tolist(), keys):
                g = group_of.get(parent)
                if g is not None and key not in existing and parent not in moved:
                    # new to the store, only gaining: as in a bulk load (the other
                    # parents of a chunked upload, around the one its chunks share)
                    puts.append((key, encoded[cut[g] : cut[g + 1]]))
                    continue
                kids = _serials7(existing[key]) if key in existing else np.zeros(0, np.uint64)
                gone = moved.get(parent)
                if gone:
                    kids = kids[~np.isin(kids, np.fromiter(gone, np.uint64, len(gone)))]
                if g is not None:
                    kids = np.union1d(kids, add_children[bounds[g] : bounds[g + 1]])
                if len(kids):
                    puts.append((key, _keys7(kids)))
                elif key in existing:
                    txn.delete(key, db=self.children_db)
        last = cur.key() if cur.last() else b""
        cur.putmulti(puts, append=bool(puts) and puts[0][0] > last and not existing)
        return parents

    # ------------------------------------------------------------------ uploads
    @contextmanager
    def upload_scratch(self) -> Iterator[UploadScratch]:
        """A scratch table for one upload (scangate.ingest.link_csv keeps each
        child's parent and line there): a write transaction of an LMDB
        environment of its own, in ``trace/uploads/<pid>-*``, that is never synced
        nor committed (its pages reach the disk only where LMDB spills them, so
        its memory is bounded) and is deleted when the block ends. Apart from the
        trace environment, the upload's commit writes and syncs the trace alone:
        every page it syncs is a page the commits of scans wait behind. A killed
        upload's directory is deleted by the next upload."""
        root = self.store.path / "trace" / "uploads"
        root.mkdir(mode=0o700, exist_ok=True)
        for stale in root.iterdir():
            pid = stale.name.partition("-")[0]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(stale, ignore_errors=True)
        path = tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=root)
        try:
            env = lmdb.open(path, map_size=self.store.map_size, subdir=True, sync=False, metasync=False,
                            lock=False, readahead=False, max_dbs=0)
            try:
                txn = env.begin(write=True)
                try:
                    yield UploadScratch(txn.cursor())
                finally:
                    txn.abort()
            finally:
                env.close()
        finally:
            shutil.rmtree(path, ignore_errors=True)

    # ------------------------------------------------------------------ dealers
    def put_dealers(self, dealers: Sequence[Dealer]) -> None:
        """Load or replace dealers (one transaction). The caller has checked them
        (scangate.ingest.load_dealers)."""
        with self.env.begin(write=True) as txn:
            for d in dealers:
                record = records.DealerRecord(d.dealer_id, d.name, list(d.territory))
                txn.put(layout.dealer_key(d.dealer_id), records.encode(record), db=self.dealers_db)

    def dealer(self, dealer_id: str, txn: lmdb.Transaction[bytes] | None = None) -> Dealer | None:
        """The loaded dealer of that id, or None (also for an id no dealer can
        have: see _dealer_key)."""
        key = _dealer_key(dealer_id)
        if key is None:
            return None
        own = txn is None
        txn = txn or self.env.begin()
        try:
            raw = txn.get(key, db=self.dealers_db)
        finally:
            if own:
                txn.abort()
        return None if raw is None else _decode_dealer(raw)

    def list_dealers(self) -> list[Dealer]:
        with self.env.begin() as txn:
            return [_decode_dealer(bytes(v)) for _, v in txn.cursor(db=self.dealers_db)]

    # ------------------------------------------------------------------ shipments
    def record_shipments(self, shipments: Sequence[Shipment], txn: lmdb.Transaction[bytes] | None = None) -> None:
        """Record shipments (one transaction). A later shipment of a unit supersedes
        the earlier one; every shipment stays in the log. A time outside
        [MIN_TIME_MS, MAX_TIME_MS) is InvalidArgument, a dealer not loaded NotFound."""
        if txn is None:
            with self.env.begin(write=True) as own:
                return self.record_shipments(shipments, own)
        for s in shipments:
            check_time_ms(s.shipped_at_ms, "shipped_at_ms")
            key = _dealer_key(s.dealer_id)
            if key is None or txn.get(key, db=self.dealers_db) is None:
                raise NotFound(f"dealer {s.dealer_id!r} is not loaded")
            unit = layout.serial_key(int(s.unit))
            value = _encode_shipment(s)
            txn.put(layout.ship_log_key(int(s.unit), s.shipped_at_ms), value, db=self.ship_log_db)
            current = txn.get(unit, db=self.shipped_db)
            if current is None or records.decode_shipment(current).shipped_at_ms <= s.shipped_at_ms:
                txn.put(unit, value, db=self.shipped_db)

    def shipments_of(self, serials: np.ndarray | Sequence[int], txn: lmdb.Transaction[bytes]) -> dict[int, Shipment]:
        cur = txn.cursor(db=self.shipped_db)
        if len(serials) == 0 or not cur.first():   # none asked for, or none recorded
            return {}
        if _small(len(serials)):
            units = serials.tolist() if isinstance(serials, np.ndarray) else serials
            keys = list(map(layout.serial_key, sorted(set(units))))
        else:
            keys = _split(_keys7(_unique_sorted(np.sort(np.asarray(serials, np.uint64)))[0]), SERIAL_BYTES)
        out = {}
        for _, v in cur.getmulti(keys):
            ship = _shipment(bytes(v))
            out[ship.unit] = ship
        return out

    def shipment_history(self, serial: int) -> list[Shipment]:
        with self.env.begin() as txn:
            rows = iter_prefix(txn, self.ship_log_db, layout.serial_key(int(serial)))   # every ship_log_key of it
            return [_decode_shipment(v) for _, v in rows]

    # ------------------------------------------------------------------ trace
    def trace(self, serials: np.ndarray, txn: lmdb.Transaction[bytes] | None = None) -> list[TraceChain]:
        """The chain up from each serial: ancestors and the governing shipment.
        ``txn``: read inside the caller's transaction (a verdict batch's)."""
        if txn is None:
            with self.env.begin() as own:
                return self.trace(serials, own)
        return [TraceChain(*parts) for parts in self.chains(serials, txn)]

    def chains(self, serials: np.ndarray | Sequence[int], txn: lmdb.Transaction[bytes]
               ) -> list[tuple[int, tuple[int, ...], Shipment | None, Dealer | None]]:
        """``trace`` as plain tuples (serial, ancestors, shipment, dealer), for batches."""
        ship_units: list[int] | np.ndarray   # the units and their ancestors, without 0
        if _small(len(serials)):
            units = serials.tolist() if isinstance(serials, np.ndarray) else list(serials)
            p1s = self._parents_small(units, txn)
            linked = [p for p in p1s if p]
            grand = dict(zip(linked, self._parents_small(linked, txn))) if linked else {}
            pairs = [(p, grand[p]) if p else (0, 0) for p in p1s] if linked else [(0, 0)] * len(units)
            ship_units = [s for s in units if s] + [p for pair in pairs for p in pair if p]
        else:
            array = np.asarray(serials, np.uint64)
            anc = self.ancestors(array, txn)
            flat = np.concatenate([array, anc[:, 0], anc[:, 1]])
            ship_units = flat[flat != 0]
            units, pairs = array.tolist(), anc.tolist()
        ups = [(p1, p2) if p2 else (p1,) if p1 else () for p1, p2 in pairs]
        ships = self.shipments_of(ship_units, txn)
        if not ships:
            return [(s, up, None, None) for s, up in zip(units, ups)]
        dealers: dict[str, Dealer | None] = {}
        out: list[tuple[int, tuple[int, ...], Shipment | None, Dealer | None]] = []
        for s, up in zip(units, ups):
            # the most recent shipment of the unit or an ancestor; on a tie the
            # first in (unit, parent, grandparent) order
            ship = ships.get(s)
            for u in up:
                other = ships.get(u)
                if other is not None and (ship is None or other.shipped_at_ms > ship.shipped_at_ms):
                    ship = other
            dealer = None
            if ship is not None:
                if ship.dealer_id not in dealers:
                    dealers[ship.dealer_id] = self.dealer(ship.dealer_id, txn)
                dealer = dealers[ship.dealer_id]
            out.append((s, up, ship, dealer))
        return out

    def shipped_chains(self, serials: Sequence[int], txn: lmdb.Transaction[bytes]
                       ) -> list[tuple[tuple[int, ...], Shipment, Dealer] | None]:
        """For each serial, (ancestors, governing shipment, its dealer), or None when
        no shipment governs it or its dealer is not loaded: what a verdict needs.
        When no shipment is recorded at all (no trace data) nothing else is read."""
        if not serials or not txn.cursor(db=self.shipped_db).first():
            return [None] * len(serials)
        return [(up, ship, dealer) if ship is not None and dealer is not None else None
                for _s, up, ship, dealer in self.chains(serials, txn)]


class UploadScratch:
    """What one link upload keeps across its chunks (TraceStore.upload_scratch):
    each child's parent and line (key ``c`` + child), and the parents it wrote
    children to (key ``p`` + parent), so that a child listed twice is checked and a
    parent counted once however far apart their rows are."""

    def __init__(self, cur: lmdb.Cursor[bytes]):
        self._cur = cur

    def earlier(self, children: np.ndarray) -> tuple[list[bytes], dict[int, tuple[int, int]]]:
        """Each child's key here, and for those an earlier chunk listed, by
        index: (their parent's serial, the line that put them there)."""
        keys = _scratch_keys(b"c", children)
        found = dict(self._cur.getmulti(keys)) if keys else {}
        if not found:
            return keys, {}
        out = {}
        for i, key in enumerate(keys):
            before = found.get(key)
            if before is not None:
                out[i] = (int.from_bytes(before[:SERIAL_BYTES], "big"), int.from_bytes(before[SERIAL_BYTES:], "big"))
        return keys, out

    def remember(self, keys: list[bytes], parents: np.ndarray, lines: np.ndarray) -> None:
        """Keep each child's (``keys``: earlier's) parent and line."""
        self._cur.putmulti(list(zip(keys, _scratch_keys(b"", parents, lines))))

    def count_new_parents(self, parents: np.ndarray) -> int:
        """How many of these (distinct) parents no earlier call named."""
        _consumed, new = self._cur.putmulti([(key, b"") for key in _scratch_keys(b"p", parents)], overwrite=False)
        return int(new)


def _scratch_keys(prefix: bytes, serials: np.ndarray, numbers: np.ndarray | None = None) -> list[bytes]:
    """``prefix`` + each serial's 7-byte key (+ its number as u64), as bytes objects."""
    if len(serials) == 0:
        return []
    parts = [np.frombuffer(layout.serial_keys(serials), np.uint8).reshape(-1, SERIAL_BYTES)]
    if prefix:
        parts.insert(0, np.full((len(serials), len(prefix)), np.frombuffer(prefix, np.uint8)))
    if numbers is not None:
        parts.append(np.asarray(numbers, ">u8").view(np.uint8).reshape(-1, 8))
    rows = np.ascontiguousarray(np.hstack(parts))
    return rows.view(f"V{rows.shape[1]}").reshape(-1).tolist()
