"""Schema migrations of the LMDB store: a data directory made by an earlier release
opens and is upgraded in place.

``migrate(txn, db, version, trace_env, trace_db)`` runs when
``scangate.store.Store`` opens an environment whose schema is older than
``SCHEMA_VERSION``: every step from the stored version up, all in ONE write
transaction of the main environment (step 3 -> 4 also writes the trace
environment first, see below), so a crash or a kill leaves either the old
schema or the new one, never a mix (LMDB's single writer also keeps every other
process out while it runs; a process that opens the store meanwhile waits, then
finds the new version). A migration needs free space for the records it
rewrites (LMDB's copy-on-write keeps the old pages until the commit).

Schema 1 -> 2: the decision state's JSON records become typed msgpack records
(scangate.state.records): decisions, ledger entries, claims, payout requests,
points history, redemptions, product lines, dealers, shipments (current and
log) and recalls; decisions stored inline in the request index (a format older
than the decision log) move into the log; points accounts kept as a balance
(b/) and a separate earned total (e/) become one b/ record.

Schema 2 -> 3: the decision log holds one record per batch (records.DecisionBatch,
keyed by its last decision's number). Nothing is rewritten: a schema 2 record,
one decision keyed by its own number, reads as a batch of one. The version moves
so that a release that reads only single records refuses the directory rather
than misreading it.

Schema 3 -> 4: the trace databases (linkage, dealers, shipments:
layout.TRACE_DATABASES) move to the trace environment (scangate.state.store), so
that a long upload never holds the lock decisions commit under. They are copied
in one write transaction of the trace environment, committed before this one
drops them here: a crash between the two leaves schema 3 whole (its trace still
here), and the next open copies again over what the first try left.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import lmdb
import msgspec

from ..errors import CorruptionError
from . import records
from .records import ACCOUNT, I64, U64

__all__ = ["MOVED_TO_TRACE", "SCHEMA_VERSION", "migrate"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 4


def _convert(kind: str, where: str, tag: int, struct: type[msgspec.Struct], d: dict[str, Any]) -> bytes:
    """A schema-1 JSON record's fields as the typed record, encoded; a record
    that does not fit is corruption, named with where it is."""
    fields = struct.__struct_fields__
    missing = [f for f in fields if f not in d]
    if missing:
        raise CorruptionError(f"migration: {kind} {where}: no {', '.join(missing)}")
    try:
        value = msgspec.convert([tag, *(d[f] for f in fields)], struct)
    except msgspec.ValidationError as exc:
        raise CorruptionError(f"migration: {kind} {where}: {exc}") from None
    return records.encode(value)


def _json(kind: str, where: str, raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        raise CorruptionError(f"migration: {kind} {where}: not the JSON record schema 1 wrote") from None


def _decision(where: str, raw: bytes) -> bytes:
    d = _json("decision", where, raw)
    award = d.get("award")
    if award is not None:
        award = [award.get(f) for f in records.Award.__struct_fields__]
    return _convert("decision", where, 1, records.DecisionRecordV1, {**d, "award": award})


def _dealer(key: bytes, raw: bytes) -> bytes:
    where = repr(key.decode("utf-8", "replace"))
    return _convert("dealer", where, 1, records.DealerRecord, _json("dealer", where, raw))


def _shipment(key: bytes, raw: bytes) -> bytes:
    """shipped (key: the unit) and ship_log (the unit, then the shipped-at ms)."""
    where = f"of unit {int.from_bytes(key[:7], 'big')}"
    if len(key) > 7:
        where += f" at {int.from_bytes(key[7:], 'big', signed=True)} ms"
    return _convert("shipment", where, 1, records.ShipmentRecord, _json("shipment", where, raw))


def _recall(key: bytes, raw: bytes) -> bytes:
    """revoked: a line's or a range's recall. The defaults are those schema 1's
    reader gave a record without the field (the first recall code wrote neither
    at_ms nor source). An older directory's range key (R + first only) is a key
    layout, not a record format: its value is converted, the key kept (still read)."""
    if key[:1] == b"L" and len(key) == 5:
        where = f"of line {int.from_bytes(key[1:], 'big')}"
        d = _json("recall", where, raw)
        return _convert("recall", where, 1, records.LineRecall, {"at_ms": 0, **d})
    if key[:1] == b"R" and len(key) in (9, 17):
        where = f"of serials from {int.from_bytes(key[1:9], 'big')}"
        d = _json("recall", where, raw)
        return _convert("recall", where, 1, records.RangeRecall, {"at_ms": 0, "source": "range", **d})
    raise CorruptionError(f"migration: recall {key!r}: not a line (L) or range (R) key")


def _rewrite(txn: lmdb.Transaction[bytes], db: Any, convert: Callable[[bytes, bytes], bytes | None]) -> int:
    """Rewrite every record of ``db`` through ``convert`` (None: leave it); the count rewritten."""
    puts = []
    for key, raw in txn.cursor(db=db):
        new = convert(bytes(key), bytes(raw))
        if new is not None:
            puts.append((bytes(key), new))
    if puts:
        txn.cursor(db=db).putmulti(puts)
    return len(puts)


def _to_2(txn: lmdb.Transaction[bytes], db: Callable[[str], Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    seq = U64.unpack
    log.info("upgrading to schema 2: decisions")
    counts["decisions"] = _rewrite(txn, db("decisions"), lambda k, v: _decision(f"#{seq(k)[0]}", v))
    # decisions once stored inline under their request key: appended to the log, the
    # index pointing at them (8 bytes: no fingerprint, as before)
    inline = [(bytes(k), bytes(v)) for k, v in txn.cursor(db=db("requests")) if len(v) not in (8, 24)]
    if inline:
        cur = txn.cursor(db=db("decisions"))
        number = seq(cur.key())[0] + 1 if cur.last() else 1
        for key, raw in inline:
            pointer = U64.pack(number)
            txn.put(pointer, _decision(f"of request {key!r}", raw), db=db("decisions"), append=True)
            txn.put(key, pointer, db=db("requests"))
            number += 1
    counts["inline decisions"] = len(inline)

    def ledger(key: bytes, raw: bytes) -> bytes:
        where = f"#{seq(key)[0]}"
        d = _json("ledger entry", where, raw)
        if "revision" in d:
            return _convert("ledger entry", where, 2, records.LedgerEntry, d)
        return _convert("ledger entry", where, 1, records.LegacyLedgerEntry, d)

    log.info("upgrading to schema 2: ledger")
    counts["ledger"] = _rewrite(txn, db("ledger"), ledger)
    counts["claims"] = _rewrite(txn, db("claims"), lambda k, v: _convert(
        "claim", f"of serial {int.from_bytes(k, 'big')}", 1, records.Claim, _json("claim", "", v)))

    def payout(key: bytes, raw: bytes) -> bytes:
        where = key.decode("utf-8", "replace")
        try:
            value = msgspec.convert({**_json("payout", where, raw), "type": 1}, records.Payout)
        except msgspec.ValidationError as exc:
            raise CorruptionError(f"migration: payout {where}: {exc}") from None
        return records.encode(value)

    log.info("upgrading to schema 2: outbox")
    counts["outbox"] = _rewrite(txn, db("outbox"), payout)

    points = db("points")
    earned = {bytes(k[2:]): I64.unpack(v)[0] for k, v in txn.cursor(db=points) if bytes(k[:2]) == b"e/"}

    def point(key: bytes, raw: bytes) -> bytes | None:
        kind = key[:2]
        if kind == b"h/":
            return _convert("points history entry", repr(key), 1, records.PointsEntry, _json("points", "", raw))
        if kind == b"r/":
            return _convert("redemption", repr(key[2:]), 1, records.RedemptionRecord, _json("redemption", "", raw))
        if kind == b"b/" and len(raw) == I64.size:     # the balance alone; earned under e/
            return ACCOUNT.pack(I64.unpack(raw)[0], earned.get(key[2:], 0))
        return None

    log.info("upgrading to schema 2: points")
    counts["points"] = _rewrite(txn, points, point)
    for actor in earned:
        txn.delete(b"e/" + actor, db=points)

    def line(key: bytes, raw: bytes) -> bytes:
        where = f"#{int.from_bytes(key, 'big')}"
        return _convert("product line", where, 1, records.LineRecord, _json("product line", where, raw))

    log.info("upgrading to schema 2: lines")
    counts["lines"] = _rewrite(txn, db("lines"), line)
    log.info("upgrading to schema 2: dealers")
    counts["dealers"] = _rewrite(txn, db("dealers"), _dealer)
    log.info("upgrading to schema 2: shipped")
    counts["shipped"] = _rewrite(txn, db("shipped"), _shipment)
    log.info("upgrading to schema 2: ship_log")
    counts["ship_log"] = _rewrite(txn, db("ship_log"), _shipment)
    log.info("upgrading to schema 2: revoked")
    counts["revoked"] = _rewrite(txn, db("revoked"), _recall)
    return counts


def _to_3(txn: lmdb.Transaction[bytes], db: Callable[[str], Any]) -> dict[str, int]:
    """Nothing to rewrite (see the module docstring): the decision records that
    stay as they are, for the log line."""
    return {"decision records kept as batches of one": txn.stat(db("decisions"))["entries"]}


# the trace databases schema 3 kept in the main environment
MOVED_TO_TRACE = ("links", "children", "dealers", "shipped", "ship_log")


def _to_4(txn: lmdb.Transaction[bytes], db: Callable[[str], Any], trace_env: lmdb.Environment,
          trace_db: Callable[[str], Any]) -> dict[str, int]:
    """Move the trace databases to the trace environment (see the module docstring)."""
    counts = {}
    with trace_env.begin(write=True) as trace_txn:
        for name in MOVED_TO_TRACE:
            target = trace_db(name)
            trace_txn.drop(target, delete=False)    # what an interrupted try copied: copied again
            # in key order, so appended: full pages, no splits
            _consumed, counts[name] = trace_txn.cursor(db=target).putmulti(
                ((bytes(k), bytes(v)) for k, v in txn.cursor(db=db(name))), append=True)
    for name in MOVED_TO_TRACE:
        txn.drop(db(name), delete=True)
    return counts


_STEPS: dict[int, Callable[..., dict[str, int]]] = {1: _to_2, 2: _to_3}


def migrate(txn: lmdb.Transaction[bytes], db: Callable[[str], Any], version: int, trace_env: lmdb.Environment,
            trace_db: Callable[[str], Any]) -> int:
    """Upgrade the store from schema ``version`` to SCHEMA_VERSION inside ``txn``
    (the caller writes the new version and commits); returns the new version.
    ``db``: the handles of ``txn``'s environment, the trace databases included
    (where schema 3 kept them); ``trace_env``, ``trace_db``: the trace environment
    and its handles, where step 3 -> 4 moves them."""
    while version < SCHEMA_VERSION:
        counts = _to_4(txn, db, trace_env, trace_db) if version == 3 else _STEPS[version](txn, db)
        log.warning("data directory upgraded from schema %d to %d: %s", version, version + 1,
                    ", ".join(f"{n} {what}" for what, n in counts.items()))
        version += 1
    return version
