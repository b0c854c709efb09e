"""The LMDB store: two environments, named databases, compact ordered binary keys.

The main environment holds the decision state and the issuance ledger; the trace
environment (``Store.trace_env``, the directory ``trace`` inside the main one)
holds the linkage, dealers and shipments (``layout.TRACE_DATABASES``). LMDB
has one writer per environment: apart, a link upload of millions of rows (one
write transaction, seconds long) never holds the lock that every group commit of
decisions takes, while a decision still reads the trace as of its batch (a read
transaction of the trace environment: LMDB readers never wait for a writer).
Nothing commits to both at once, so neither can hold half of a change.

This module opens the environments (``Store``) and holds the issuance ledger: product
lines (``records.LineRecord``), the line index, the serial ranges issued to them
(``_RANGE``, a struct) and the meta counters. LMDB runs with its durable defaults:
sync and metasync on, no writemap, so a committed write transaction survives a crash
of the process or the machine.

Each process opens the environment after it starts (never across fork) and runs at
most one write transaction at a time.
"""

from __future__ import annotations

import json
import logging
import struct
import threading
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import lmdb
import numpy as np

from .._core import MAX_SERIAL
from ..clock import now_ms
from ..enums import Level
from ..errors import CorruptionError, InvalidArgument, NotFound
from . import layout, records
from .layout import DATABASES, TRACE_DATABASES
from .migrate import MOVED_TO_TRACE, SCHEMA_VERSION, migrate

__all__ = ["DATABASES", "DEFAULT_MAP_SIZE", "IssuedRange", "ProductLine", "RangeTable", "SCHEMA_VERSION", "Store",
           "iter_prefix"]

log = logging.getLogger(__name__)

# Address space, not disk: the data file grows as it fills. 1 TiB holds tens of
# billions of scan records; set once, never grown under a running process.
DEFAULT_MAP_SIZE = 1 << 40
# The named databases of one environment: scangate.state.layout (max_dbs leaves room for more).
# Product lines: records.LineRecord (schema 2; schema 1 wrote JSON, which migrate upgrades).
_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")
# ranges value: first serial, line id, key version, level, flags, reserved-at (unix ms)
_RANGE = struct.Struct(">QIHBBq")
RANGE_COMPLETE = 1

_META_SCHEMA = layout.META_SCHEMA
_META_NEXT_SERIAL = layout.META_NEXT_SERIAL
_META_NEXT_LINE = layout.META_NEXT_LINE
_META_LEDGER_GEN = layout.META_LEDGER_GEN
_META_URL_PREFIX = layout.META_URL_PREFIX
_META_RULES_GEN = layout.META_RULES_GEN
T = TypeVar("T")


@dataclass(frozen=True)
class ProductLine:
    """A product line: what a range of serials was issued for."""

    line_id: int
    sku: str
    level: Level
    batch: str = ""
    gtin: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    created_at: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "line_id": self.line_id,
            "sku": self.sku,
            "level": self.level.label,
            "batch": self.batch,
            "gtin": self.gtin,
            "attributes": self.attributes,
            "created_at": self.created_at,
        }


@dataclass(frozen=True)
class IssuedRange:
    """Serials first..last (inclusive), reserved for one line under one key version."""

    first: int
    last: int
    line_id: int
    key_version: int
    level: Level
    reserved_at_ms: int
    complete: bool = False

    @property
    def count(self) -> int:
        return self.last - self.first + 1


@dataclass(frozen=True)
class RangeTable:
    """All issued ranges as sorted arrays, for vectorised serial lookups."""

    generation: int
    firsts: np.ndarray  # uint64
    lasts: np.ndarray  # uint64
    key_versions: np.ndarray  # uint16
    levels: np.ndarray  # uint8
    line_ids: np.ndarray  # int64


def _line_index_key(sku: str, level: Level, batch: str) -> bytes:
    # NUL cannot occur in sku or batch (validated), so the key is unambiguous and
    # lines of one SKU sort together.
    return f"{sku}\0{batch}\0".encode() + bytes([level])


def _check_label(name: str, value: str, max_len: int = 128) -> str:
    value = value.strip()
    if name == "sku" and not value:
        raise InvalidArgument("sku: must not be empty")
    if len(value) > max_len:
        raise InvalidArgument(f"{name}: longer than {max_len} characters")
    for c in value:
        # Cc: C0 and C1 controls and DEL; Cs: lone surrogates (undecodable bytes
        # in a command-line argument); neither belongs in a label.
        if unicodedata.category(c) in ("Cc", "Cs"):
            raise InvalidArgument(f"{name}: contains the control or invalid character U+{ord(c):04X}")
    return value


def _check_gtin(gtin: str) -> str:
    gtin = gtin.strip()
    if not gtin:
        return ""
    if not (gtin.isascii() and gtin.isdigit()) or len(gtin) not in (8, 12, 13, 14):
        raise InvalidArgument(f"gtin: {gtin!r} is not 8, 12, 13 or 14 digits")
    digits = [int(c) for c in gtin.zfill(14)]
    total = sum(d * (3 if i % 2 == 0 else 1) for i, d in enumerate(digits[:13]))
    if (10 - total % 10) % 10 != digits[13]:
        raise InvalidArgument(f"gtin: {gtin!r} has a wrong check digit")
    return gtin.zfill(14)


def _meta(txn: lmdb.Transaction[bytes], key: bytes, db: Any) -> bytes:
    """A counter record of the meta database, which init writes and nothing deletes."""
    raw = txn.get(key, db=db)
    if raw is None:
        raise CorruptionError(f"meta record {key.decode('ascii', 'replace')!r} is missing")
    return raw


def _open_env(path: Path, map_size: int, max_dbs: int) -> lmdb.Environment:
    """One environment of the store, with LMDB's durable defaults on purpose (sync,
    metasync, no writemap). mode: LMDB creates the directory with it and
    data.mdb, lock.mdb with it less the execute bits: owner-only, as they hold
    secrets and scans."""
    return lmdb.open(str(path), map_size=map_size, max_dbs=max_dbs, subdir=True, mode=0o700, sync=True,
                     metasync=True, writemap=False, readahead=False, max_readers=512)


def _open_dbs(env: lmdb.Environment, names: Sequence[str]) -> dict[str, Any]:
    """The handles of these databases of ``env``, opened (and created where
    missing) in a write transaction: py-lmdb ends a read transaction without
    committing it, which closes the handles it opened. So a process that opens
    the store while a link upload holds the trace environment's lock waits for
    the upload to commit (a CLI command, a server starting, a server's writer or
    worker restarting); processes that have it open (a running server) do not."""
    with env.begin(write=True) as txn:
        return {name: env.open_db(name.encode(), txn=txn) for name in names}


def iter_prefix(txn: lmdb.Transaction[bytes], db: Any, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(key without the prefix, value) of every record whose key starts with
    ``prefix``, in key order: the one range scan the stores share."""
    cur = txn.cursor(db=db)
    if not cur.set_range(prefix):
        return
    for key, value in cur:
        key = bytes(key)
        if not key.startswith(prefix):
            return
        yield key[len(prefix):], bytes(value)


class Store:
    """The LMDB environment of a data directory."""

    def __init__(self, path: Path, *, map_size: int = DEFAULT_MAP_SIZE, create: bool = False):
        self.path = Path(path)
        if not create and not (self.path / "data.mdb").exists():
            raise NotFound(f"no LMDB environment at {self.path}")
        self.map_size = map_size
        self.env = _open_env(self.path, map_size, 64)
        self.trace_env = _open_env(self.path / "trace", map_size, 16)
        # Every named database is opened here, once per environment: py-lmdb's
        # open_db runs a write transaction of its own, which would deadlock if it
        # ran later inside a caller's write transaction.
        self._dbs = _open_dbs(self.trace_env, TRACE_DATABASES)
        self._dbs.update(_open_dbs(self.env, [name for name in DATABASES if name not in TRACE_DATABASES]))
        self.meta = self._dbs["meta"]
        self.lines_db = self._dbs["lines"]
        self.line_index_db = self._dbs["line_index"]
        self.ranges_db = self._dbs["ranges"]
        self._range_cache: RangeTable | None = None
        self._line_cache: dict[int, ProductLine] = {}
        self._rules_cache: dict[str, tuple[int, Any]] = {}
        self._cache_lock = threading.Lock()
        with self.env.begin(write=True) as txn:
            schema = txn.get(_META_SCHEMA, db=self.meta)
            if schema is None:
                txn.put(_META_SCHEMA, _U32.pack(SCHEMA_VERSION), db=self.meta)
                txn.put(_META_NEXT_SERIAL, _U64.pack(1), db=self.meta)
                txn.put(_META_NEXT_LINE, _U32.pack(1), db=self.meta)
                txn.put(_META_LEDGER_GEN, _U64.pack(0), db=self.meta)
            elif (version := _U32.unpack(schema)[0]) > SCHEMA_VERSION:
                raise CorruptionError(
                    f"{self.path}: schema version {version}, written by a newer scangate; this one reads "
                    f"up to {SCHEMA_VERSION}"
                )
            elif version < SCHEMA_VERSION:    # an earlier release's data: upgraded in this transaction
                # before schema 4 the trace databases were in this environment: the steps read them here
                legacy = {name: self.env.open_db(name.encode(), txn=txn) for name in MOVED_TO_TRACE}

                def old_db(name: str) -> Any:
                    return legacy[name] if name in legacy else self.db(name)

                txn.put(_META_SCHEMA, _U32.pack(migrate(txn, old_db, version, self.trace_env, self.db)),
                        db=self.meta)

    def bump_rules(self, txn: lmdb.Transaction[bytes]) -> None:
        """Inside a write transaction that changes the campaigns or the recalls:
        move the rules generation, so that every process re-reads them."""
        raw = txn.get(_META_RULES_GEN, db=self.meta)
        txn.put(_META_RULES_GEN, _U64.pack((_U64.unpack(raw)[0] if raw is not None else 0) + 1), db=self.meta)

    def generations(self, txn: lmdb.Transaction[bytes]) -> tuple[int, int]:
        """(the rules generation, the ledger generation) as ``txn`` sees them: what a
        decision read elsewhere checks at commit (scangate.decide.prepared). The
        first moves with every change to the campaigns or the recalls, the second
        with every range of codes reserved (what verification reads)."""
        rules = txn.get(_META_RULES_GEN, db=self.meta)
        return (_U64.unpack(rules)[0] if rules is not None else 0,
                _U64.unpack(_meta(txn, _META_LEDGER_GEN, self.meta))[0])

    def rules_cached(self, txn: lmdb.Transaction[bytes], name: str, read: Callable[[], T]) -> T:
        """``read()`` (the campaigns or the recalls, as ``txn`` sees them), kept as
        ``name`` until the rules generation moves: a batch reads one key, not every
        campaign and recall. Every write to them moves it in its own transaction
        (bump_rules: scangate.state.campaigns, recalls, raw), so a kept value is
        what ``read()`` would give."""
        raw = txn.get(_META_RULES_GEN, db=self.meta)
        gen = _U64.unpack(raw)[0] if raw is not None else 0
        kept = self._rules_cache.get(name)
        if kept is not None and kept[0] == gen:
            return kept[1]  # type: ignore[no-any-return]
        value = read()
        self._rules_cache[name] = (gen, value)
        return value

    def db(self, name: str):  # type: ignore[no-untyped-def]
        """The handle of a named database (one of DATABASES), for a transaction of
        its environment (``env_of``)."""
        try:
            return self._dbs[name]
        except KeyError:
            raise CorruptionError(f"no database {name!r}: add it to scangate.state.layout.DATABASES") from None

    def env_of(self, name: str) -> lmdb.Environment:
        """The environment that holds database ``name``."""
        return self.trace_env if name in TRACE_DATABASES else self.env

    def close(self) -> None:
        self.trace_env.close()
        self.env.close()

    # ------------------------------------------------------------------ meta
    def get_setting(self, name: bytes) -> str | None:
        with self.env.begin() as txn:
            raw = txn.get(name, db=self.meta)
        return None if raw is None else raw.decode()

    def set_setting(self, name: bytes, value: str) -> None:
        with self.env.begin(write=True) as txn:
            txn.put(name, value.encode(), db=self.meta)

    @property
    def url_prefix(self) -> str | None:
        return self.get_setting(_META_URL_PREFIX)

    @url_prefix.setter
    def url_prefix(self, value: str) -> None:
        self.set_setting(_META_URL_PREFIX, value)

    # ------------------------------------------------------------------ lines
    def line_for(
        self,
        sku: str,
        level: Level | str | int,
        *,
        batch: str = "",
        gtin: str = "",
        attributes: dict[str, Any] | None = None,
        create: bool = True,
    ) -> ProductLine:
        """Return the line (sku, batch, level), creating it if asked."""
        try:
            level = Level.parse(level)
        except ValueError as exc:
            raise InvalidArgument(f"level: {exc}") from None
        sku = _check_label("sku", sku)
        batch = _check_label("batch", batch)
        gtin = _check_gtin(gtin)
        try:
            # as JSON holds them (string keys, lists for tuples): what a read of the
            # line returns, the same in the ProductLine returned now
            attrs = json.loads(json.dumps(attributes or {}))
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(f"attributes: not JSON-serialisable ({exc})") from None
        if not isinstance(attrs, dict):
            raise InvalidArgument(f"attributes: a JSON object, not {type(attributes).__name__}")
        try:
            records.encode(attrs)
        except OverflowError:    # msgpack holds integers of 64 bits, JSON any
            raise InvalidArgument("attributes: an integer below -2**63 or above 2**64 - 1 cannot be stored") from None
        index_key = _line_index_key(sku, level, batch)
        with self.env.begin(write=create) as txn:
            raw_id = txn.get(index_key, db=self.line_index_db)
            if raw_id is not None:
                line = self._load_line(txn, _U32.unpack(raw_id)[0])
                if gtin and line.gtin and gtin != line.gtin:
                    raise InvalidArgument(
                        f"gtin: line {sku}/{batch or '-'}/{level.label} has GTIN {line.gtin}, not {gtin}"
                    )
                return line
            if not create:
                raise NotFound(f"no product line sku={sku} batch={batch!r} level={level.label}")
            line_id = _U32.unpack(_meta(txn, _META_NEXT_LINE, self.meta))[0]
            line = ProductLine(line_id, sku, level, batch, gtin, attrs, now_ms() // 1000)
            txn.put(layout.line_key(line_id), records.encode(records.LineRecord(**line.to_json())), db=self.lines_db)
            txn.put(index_key, _U32.pack(line_id), db=self.line_index_db)
            txn.put(_META_NEXT_LINE, _U32.pack(line_id + 1), db=self.meta)
        return line

    def _load_line(self, txn: lmdb.Transaction[bytes], line_id: int) -> ProductLine:
        raw = txn.get(layout.line_key(line_id), db=self.lines_db)
        if raw is None:
            raise NotFound(f"no product line {line_id}")
        try:
            rec = records.decode_line(raw)
            level = Level.parse(rec.level)
        except (CorruptionError, ValueError) as exc:
            raise CorruptionError(f"product line {line_id} is unreadable: {exc}") from None
        return ProductLine(rec.line_id, rec.sku, level, rec.batch, rec.gtin, rec.attributes, rec.created_at)

    def get_line(self, line_id: int) -> ProductLine:
        with self.env.begin() as txn:
            return self._load_line(txn, line_id)

    def get_lines(self, line_ids: np.ndarray | list[int]) -> dict[int, ProductLine]:
        """The lines of these ids; a line never changes once written, so each is read
        from LMDB once per Store (verification asks for the same few every batch)."""
        ids = [int(i) for i in set(np.asarray(line_ids).tolist())]
        cache = self._line_cache
        missing = [i for i in ids if i not in cache]
        if missing:
            with self.env.begin() as txn:
                loaded = {i: self._load_line(txn, i) for i in missing}
            with self._cache_lock:
                cache.update(loaded)
        return {i: cache[i] for i in ids}

    def list_lines(self) -> list[ProductLine]:
        with self.env.begin() as txn:
            return [self._load_line(txn, layout.line_of(k)) for k, _ in txn.cursor(db=self.lines_db)]

    # ------------------------------------------------------------------ ranges
    def reserve_range(self, line: ProductLine, count: int, key_version: int) -> IssuedRange:
        """Durably reserve ``count`` fresh serials for ``line``.

        The commit (with LMDB's fsync) happens before the caller encrypts any of
        them, so no crash can make a serial leave the process twice.
        """
        if count < 1:
            raise InvalidArgument(f"count: must be at least 1, not {count}")
        at_ms = now_ms()
        with self.env.begin(write=True) as txn:
            first = _U64.unpack(_meta(txn, _META_NEXT_SERIAL, self.meta))[0]
            last = first + count - 1
            if last > MAX_SERIAL:
                raise InvalidArgument(f"count: {count} would pass the last serial {MAX_SERIAL}")
            # ranges are keyed by their last serial: one set_range finds a serial's range.
            txn.put(
                _U64.pack(last),
                _RANGE.pack(first, line.line_id, key_version, line.level, 0, at_ms),
                db=self.ranges_db,
                overwrite=False,
            )
            txn.put(_META_NEXT_SERIAL, _U64.pack(last + 1), db=self.meta)
            gen = _U64.unpack(_meta(txn, _META_LEDGER_GEN, self.meta))[0]
            txn.put(_META_LEDGER_GEN, _U64.pack(gen + 1), db=self.meta)
        log.info("reserved serials %d..%d for line %d", first, last, line.line_id)
        return IssuedRange(first, last, line.line_id, key_version, line.level, at_ms)

    def complete_range(self, rng: IssuedRange) -> IssuedRange:
        """Mark a range as fully written out (informational: a crashed job's range
        stays reserved and its codes stay genuine, since some may be printed)."""
        with self.env.begin(write=True) as txn:
            txn.put(
                _U64.pack(rng.last),
                _RANGE.pack(rng.first, rng.line_id, rng.key_version, rng.level, RANGE_COMPLETE,
                            rng.reserved_at_ms),
                db=self.ranges_db,
            )
        return IssuedRange(rng.first, rng.last, rng.line_id, rng.key_version, rng.level, rng.reserved_at_ms, True)

    def list_ranges(self) -> list[IssuedRange]:
        with self.env.begin() as txn:
            out = []
            for k, v in txn.cursor(db=self.ranges_db):
                first, line_id, kv, level, flags, at = _RANGE.unpack(v)
                out.append(IssuedRange(first, _U64.unpack(k)[0], line_id, kv, Level(level), at,
                                       bool(flags & RANGE_COMPLETE)))
            return out

    def next_serial(self) -> int:
        with self.env.begin() as txn:
            serial: int = _U64.unpack(_meta(txn, _META_NEXT_SERIAL, self.meta))[0]
            return serial

    def levels_of(self, serials: np.ndarray) -> np.ndarray:
        """The level (uint8, 0: not issued) of each serial, from the issued ranges."""
        table = self.range_table()
        serials = np.asarray(serials, np.uint64)
        idx = np.searchsorted(table.lasts, serials)
        found = idx < len(table.lasts)
        found[found] &= table.firsts[idx[found]] <= serials[found]
        out = np.zeros(len(serials), np.uint8)
        out[found] = table.levels[idx[found]]
        return out

    def range_table(self) -> RangeTable:
        """The ranges as arrays, re-read only when the ledger generation moved."""
        with self.env.begin() as txn:
            gen = _U64.unpack(_meta(txn, _META_LEDGER_GEN, self.meta))[0]
            cached = self._range_cache
            if cached is not None and cached.generation == gen:
                return cached
            n = txn.stat(self.ranges_db)["entries"]
            firsts = np.empty(n, np.uint64)
            lasts = np.empty(n, np.uint64)
            versions = np.empty(n, np.uint16)
            levels = np.empty(n, np.uint8)
            line_ids = np.empty(n, np.int64)
            for i, (k, v) in enumerate(txn.cursor(db=self.ranges_db)):
                first, line_id, kv, level, _flags, _at = _RANGE.unpack(v)
                firsts[i], lasts[i], versions[i], levels[i], line_ids[i] = (
                    first, _U64.unpack(k)[0], kv, level, line_id)
        table = RangeTable(gen, firsts, lasts, versions, levels, line_ids)
        with self._cache_lock:
            self._range_cache = table
        return table
