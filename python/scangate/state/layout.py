"""Every key layout of the LMDB store, defined once.

Two environments, these named databases (``DATABASES``): the trace databases
(``TRACE_DATABASES``: linkage, dealers, shipments) in their own environment, so
that a long upload's write transaction never holds the lock every decision
commits under (schema 4; scangate.state.store); the rest in the main one. Keys
are compact binary,
ordered so that related records sit together (an actor's history entries, a
campaign's budgets, the scans of neighbouring serials). Serials are 7 bytes
big-endian (serials stay below 2^56), so key order is serial order.

    meta        schema, next_serial, next_line, ledger_gen, url_prefix, rules_gen (moved by every
                write to campaigns or revoked: Store.rules_cached)
    lines       line id (u32) -> records.LineRecord
    line_index  sku NUL batch NUL level -> line id
    ranges      last serial (u64) -> first, line id, key version, level, flags, reserved at
    links       child serial's bucket (serial >> 3, 7 bytes) -> 8 parent serials
    children    parent serial -> its children's serials
    dealers     dealer id -> records.DealerRecord
    shipped     top-level unit serial -> records.ShipmentRecord (its current shipment)
    ship_log    unit serial, time -> records.ShipmentRecord (every shipment)
    scans       serial -> scan history (records.History)
    revoked     L<line id> -> records.LineRecall | R<first><last> -> records.RangeRecall
    campaigns   c/<id> current record, s/<id> secret, r/<id>/<revision u32> every revision
    requests    request key (``request_key``) -> decision number (u64) + fingerprint
                (scangate.decide.requests.fingerprint: a version byte and 16 bytes; schema 2
                wrote version 1, 16 bytes without a version byte; absent in records
                written before fingerprints: 8 bytes)
    decisions   last decision number (u64) -> records.DecisionBatch: one batch's decisions, appended
                only (schema 2 wrote a scangate.decision.Decision per record, under its own number:
                read as a batch of one); a number's record is the first keyed at or after it
    claims      serial -> records.Claim
    budgets     <campaign>/<prize> -> awards, fen (2 x u64)
    counters    t/<campaign>/<actor> -> awards, fen, eligible scans (3 x u64), then the
                awards of the local day it holds: day number (i64), awards, fen
                d/<campaign>/<actor>/<YYYY-MM-DD> -> awards, fen of any other day
                pf/<campaign>/<plugin> -> failures, 0
    ledger      seq (u64) -> records.LedgerEntry (or LegacyLedgerEntry), appended only
    outbox      <campaign>:<serial> -> records.Payout
    points      b/<actor> balance, earned (2 x i64); m/<YYYY-MM>/<actor> month's points
                (i64); h/<actor> NUL <n u64> records.PointsEntry; q the last history
                number; r/<request id> records.RedemptionRecord

Records are defined in scangate.state.records (schema 2 and 3: typed msgpack;
the schema 1 JSON records are upgraded by scangate.state.migrate); only campaign
records (a campaign's own definition, as loaded) are still JSON. Nothing outside
``scangate.state`` builds a key: it calls these functions.
"""

from __future__ import annotations

import hashlib
import struct

import numpy as np

__all__ = [
    "DATABASES", "TRACE_DATABASES", "SERIAL_BYTES", "CAMPAIGN_PREFIX", "MAX_KEY",
    "account_key", "budget_key", "budget_prefix", "campaign_key", "day_key", "history_prefix",
    "month_key", "month_prefix", "payout_key", "plugin_failure_key", "redemption_key", "request_key",
    "revision_key", "revision_prefix", "secret_key", "seq_key", "seq_of", "serial_key", "serial_keys",
    "total_key", "total_prefix", "award_keys", "HISTORY_SEQ",
    "ACCOUNT_PREFIX", "HISTORY_PREFIX", "dealer_key", "line_key", "line_of", "line_recall_key", "range_recall_key",
    "recalled_first", "recalled_line", "ship_log_key",
]

DATABASES = (
    "meta", "lines", "line_index", "ranges",                      # issuance ledger
    "links", "children", "dealers", "shipped", "ship_log",         # trace (TRACE_DATABASES)
    "scans", "revoked",                                            # verdicts
    "campaigns", "requests", "claims", "budgets", "counters",      # rewards
    "ledger", "outbox", "points", "decisions",
)

# the databases of the trace environment (Store.trace_env): every other one is in the main environment
TRACE_DATABASES = ("links", "children", "dealers", "shipped", "ship_log")
SERIAL_BYTES = 7
_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")
_I64 = struct.Struct(">q")
_blake2b = hashlib.blake2b


# ---------------------------------------------------------------- serials
def serial_key(serial: int) -> bytes:
    """The 7-byte key of one serial (scans, claims, children, shipped)."""
    return serial.to_bytes(SERIAL_BYTES, "big")


def serial_keys(serials: np.ndarray) -> bytes:
    """Concatenated 7-byte big-endian keys for uint64 serials (< 2^56)."""
    return np.asarray(serials, ">u8").view(np.uint8).reshape(-1, 8)[:, 1:].tobytes()


# ---------------------------------------------------------------- lines, trace, recalls
def line_key(line_id: int) -> bytes:
    """lines: a product line's key (its id, u32)."""
    return _U32.pack(line_id)


def line_of(key: bytes) -> int:
    """lines: the line id of a ``line_key``."""
    return int(_U32.unpack(key)[0])


def dealer_key(dealer_id: str) -> bytes:
    """dealers: a dealer's key, its id's UTF-8 (the loaders strip and check the id first)."""
    return dealer_id.encode()


def ship_log_key(serial: int, at_ms: int) -> bytes:
    """ship_log: one shipment of a unit; a unit's shipments sort by time."""
    return serial_key(serial) + _I64.pack(at_ms)


def line_recall_key(line_id: int) -> bytes:
    """revoked: the recall of a product line."""
    return b"L" + _U32.pack(line_id)


def range_recall_key(first: int, last: int) -> bytes:
    """revoked: the recall of serials first..last (an older directory's key holds first only)."""
    return b"R" + _U64.pack(first) + _U64.pack(last)


def recalled_line(key: bytes) -> int | None:
    """revoked: the line id of a ``line_recall_key``; None for a range recall's key."""
    return int(_U32.unpack_from(key, 1)[0]) if key[:1] == b"L" else None


def recalled_first(key: bytes) -> int:
    """revoked: the first serial of a ``range_recall_key`` (or of an older directory's key)."""
    return int(_U64.unpack_from(key, 1)[0])


# ---------------------------------------------------------------- sequences
seq_key = _U64.pack     # ledger, decisions: appended in number order


def seq_of(key: bytes) -> int:
    return int(_U64.unpack(key)[0])


# ---------------------------------------------------------------- campaigns
CAMPAIGN_PREFIX = b"c/"


def campaign_key(campaign_id: str) -> bytes:
    return b"c/" + campaign_id.encode()


def secret_key(campaign_id: str) -> bytes:
    return b"s/" + campaign_id.encode()


def revision_prefix(campaign_id: str) -> bytes:
    return b"r/" + campaign_id.encode() + b"/"


def revision_key(campaign_id: str, revision: int) -> bytes:
    return revision_prefix(campaign_id) + _U32.pack(revision)


# ---------------------------------------------------------------- counters, budgets
def total_key(campaign_id: str, actor: str) -> bytes:
    """An actor's totals in a campaign (and the day it holds)."""
    return total_prefix(campaign_id) + actor.encode()


def total_prefix(campaign_id: str) -> bytes:
    """What every ``total_key`` of the campaign starts with: a total key is it and
    the actor's UTF-8 (the decision joins the two, with the prefix compiled once)."""
    return b"t/" + campaign_id.encode() + b"/"


def day_key(total: bytes, day: str) -> bytes:
    """The record of one other local day (YYYY-MM-DD) beside a ``total_key``."""
    return b"d/" + total[2:] + b"/" + day.encode()


def plugin_failure_key(campaign_id: str, plugin: str) -> bytes:
    return f"pf/{campaign_id}/{plugin}".encode()


def budget_prefix(campaign_id: str) -> bytes:
    return campaign_id.encode() + b"/"


def budget_key(campaign_id: str, prize_id: str) -> bytes:
    return f"{campaign_id}/{prize_id}".encode()


def payout_key(campaign_id: str, serial: int) -> str:
    """The outbox key (and the payment rail's idempotency key) of a campaign's award on a serial."""
    return f"{campaign_id}:{serial}"


# ---------------------------------------------------------------- requests
_client_prefix: dict[str, bytes] = {}
MAX_KEY = 511      # LMDB's longest key (its default build)

# meta's keys (scangate.state.store reads and writes them)
META_SCHEMA = b"schema"             # the data directory's schema version (u32)
META_NEXT_SERIAL = b"next_serial"   # the next serial to reserve (u64)
META_NEXT_LINE = b"next_line"       # the next product line id (u32)
META_LEDGER_GEN = b"ledger_gen"     # moved by every range reserved (u64): what verification reads
META_URL_PREFIX = b"url_prefix"     # the codes' URL prefix (UTF-8)
# moved by every write to the campaigns and the recalls (the rules every decision
# reads): a batch re-reads them only when it moved (Store.rules_cached)
META_RULES_GEN = b"rules_gen"


def request_key(client: str, request_id: str) -> bytes:
    """The request record key of ``request_id`` sent by ``client``. Without a
    client: the id's UTF-8. With one: 0xFF (never in UTF-8, so the two cannot meet),
    16 bytes of BLAKE2b of the client's name (a fixed length, whatever the name's),
    then the id; an id too long for an LMDB key after the prefix (511 bytes)
    becomes 0xFE (never in UTF-8 either) and 32 bytes of its BLAKE2b, so no length
    of id fails the batch's write."""
    if not client:
        return request_id.encode()
    prefix = _client_prefix.get(client)
    if prefix is None:
        if len(_client_prefix) >= 10_000:
            _client_prefix.clear()
        prefix = _client_prefix[client] = b"\xff" + _blake2b(
            client.encode("utf-8", "surrogatepass"), digest_size=16, person=b"scangate-client").digest()
    rid = request_id.encode()
    if len(rid) > MAX_KEY - len(prefix):
        rid = b"\xfe" + _blake2b(rid, digest_size=32, person=b"scangate-longid").digest()
    return prefix + rid


# ---------------------------------------------------------------- points
HISTORY_SEQ = b"q"
ACCOUNT_PREFIX = b"b/"      # every account_key starts with it
HISTORY_PREFIX = b"h/"      # every history_prefix starts with it


def account_key(actor: bytes) -> bytes:
    return b"b/" + actor


def month_prefix(month: str) -> bytes:
    return b"m/" + month.encode() + b"/"


def month_key(month: str, actor: bytes) -> bytes:
    return b"m/" + month.encode() + b"/" + actor


def history_prefix(actor: bytes) -> bytes:
    return b"h/" + actor + b"\0"


def award_keys(actor: bytes, month: str) -> tuple[bytes, bytes, bytes]:
    """The records an award of points to ``actor`` (UTF-8) in ``month`` (YYYY-MM)
    changes: ``account_key``, ``month_key``, ``history_prefix``, in one call (one
    per award)."""
    return b"b/" + actor, b"m/" + month.encode() + b"/" + actor, b"h/" + actor + b"\0"


def redemption_key(request_id: str) -> bytes:
    return b"r/" + request_id.encode()
