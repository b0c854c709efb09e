"""The binary records of the decision state, defined once (layouts: scangate.state.layout).

Fixed-width big-endian integers through ``struct`` (a counter or a budget is a few
u64; the scan history a fixed part and a tail); the other records of the decision
state (decisions, ledger, claims, payouts, points history and redemptions) are
msgspec Structs in msgpack, below.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from ..decision import Award, Decision, NoReward
from ..errors import CorruptionError
from ..verdict import ScanVerdict

__all__ = ["ACCOUNT", "COUNTS", "Claim", "DealerRecord", "DecisionBatch", "DecisionRecordV1", "History", "I64",
           "LedgerEntry", "LegacyLedgerEntry", "LineRecall", "LineRecord", "MAX_ACTOR_HASHES", "Payout", "PointsEntry",
           "RangeRecall", "RedemptionRecord", "ShipmentRecord", "U64", "decode_claim", "decode_dealer",
           "Award", "Decision", "decode_decision", "decode_ledger", "decode_line", "decode_line_recall", "decode_payout",
           "decode_points_entry", "decode_range_recall", "decode_redemption", "decode_shipment", "encode",
           "encode_decisions", "LogRecord",
           "pack_counts", "to_json", "unpack_account", "unpack_counts"]

U64 = struct.Struct(">Q")
I64 = struct.Struct(">q")
ACCOUNT = struct.Struct(">qq")      # points b/<actor>: balance, earned

# counters and budgets: 2 (awards, fen), 3 (t/ without a day) or 6 (t/ with its day:
# awards, fen, eligible scans, day number, the day's awards, fen) unsigned 64-bit
# integers (the day number signed)
COUNTS = {2: struct.Struct(">QQ"), 3: struct.Struct(">QQQ"), 6: struct.Struct(">QQQqQQ")}


def unpack_account(actor: str, raw: bytes) -> tuple[int, int]:
    """(balance, earned) from ``actor``'s points account record (b/), whatever
    the store. Only the 16-byte form: the schema 2 migration rewrote every older
    8-byte record, so another size is corruption."""
    if len(raw) != ACCOUNT.size:
        raise CorruptionError(f"points account {actor!r}: {len(raw)} bytes, not {ACCOUNT.size} "
                              "(a schema 1 record: migrate the data directory)")
    balance, earned = ACCOUNT.unpack(raw)
    return int(balance), int(earned)


def unpack_counts(raw: bytes) -> tuple[int, ...]:
    return COUNTS[len(raw) // 8].unpack(raw)


def pack_counts(values: tuple[int, ...]) -> bytes:
    return COUNTS[len(values)].pack(*values)


# ---------------------------------------------------------------------- history
# Scan state per scanned serial (written only for scanned codes):
#   first ms, first region, count, last ms, last region; the last scan that had a
#   place (ms, region, lat, lon, actor hash): the reference for impossible travel; distinct
#   actors (saturating), up to 16 actor hashes, then the first actor id (UTF-8, at
#   most 64 bytes).
HIST = struct.Struct(">qIIqIqIffQHB")
MAX_ACTOR_HASHES = 16
# the fixed part and n actor hashes, for every n a record can hold (the count is a byte)
HIST_WITH = [struct.Struct(f">qIIqIqIffQHB{n}Q") for n in range(256)]


@dataclass
class History:
    first_ms: int
    first_region: int
    count: int
    last_ms: int
    last_region: int
    loc_ms: int          # the last scan with a place
    loc_region: int
    loc_lat: float
    loc_lon: float
    loc_actor: int       # its actor's hash
    distinct: int
    hashes: list[int]
    first_actor: str

    def pack(self) -> bytes:
        hashes = self.hashes
        return (HIST_WITH[len(hashes)].pack(self.first_ms, self.first_region, self.count, self.last_ms,
                                           self.last_region, self.loc_ms, self.loc_region, self.loc_lat,
                                           self.loc_lon, self.loc_actor, self.distinct, len(hashes), *hashes)
                + self.first_actor.encode()[:64])

    @classmethod
    def unpack(cls, raw: bytes) -> History:
        n = raw[HIST.size - 1]
        f = HIST_WITH[n].unpack_from(raw)
        # mypy cannot count the fields a slice spreads
        return cls(*f[:11], list(f[12:]), raw[HIST.size + 8 * n:].decode(errors="replace"))  # type: ignore[call-arg]

    def has_place(self) -> bool:
        return self.loc_lat == self.loc_lat   # not NaN


def pack_first_scan(at: int, region: int, loc_ms: int, lat: float, lon: float, loc_actor: int, ahash: int,
                    actor: str) -> bytes:
    """``History(at, region, 1, at, region, loc_ms, region, lat, lon, loc_actor, 1, [ahash], actor).pack()``,
    without the object: most scanned codes are scanned once."""
    return HIST_WITH[1].pack(at, region, 1, at, region, loc_ms, region, lat, lon, loc_actor, 1, 1, ahash) \
        + actor.encode()[:64]


# ---------------------------------------------------------------------- msgpack records
# Schema 2 (scangate.state.migrate upgrades schema 1, whose records were JSON): the
# decision state's records are typed msgspec Structs in msgpack. Records read on
# the hot path or kept in bulk (decisions, ledger, claims, points history) are
# arrays (array_like: no field names stored) whose first element is the record's
# version tag, so a later format is told apart by its tag, never by its length;
# the payout request, which payout runners change field by field, is a map.
# JSON only at the edges: to_json() gives each record as the CLI, the audit and
# the payout rail see it.


# decisions: a request's decision, returned again to a retry. Version 2 is
# scangate.decision.Decision itself (tag 2; its verdict a typed ScanVerdict, its
# award an Award, both arrays): the engine stores the value it returns, with no
# copy into a record type. The message is derived from the rest
# (scangate.decision.decision_message). Since schema 3 the log holds one record
# per batch (DecisionBatch, tag 3), keyed by its last decision's number; a
# record of one decision (tag 1 or 2, schema 2) is keyed by its own number.


class DecisionRecordV1(msgspec.Struct, array_like=True, frozen=True, tag=1):
    """decisions, version 1 (written by schema 2's first release and by the
    upgrade from schema 1): the verdict as its reply JSON. Read as a Decision."""

    request_id: str
    verdict: dict[str, Any]
    award: Award | None
    no_reward: NoReward | None
    campaign_id: str | None

    def decision(self) -> Decision:
        return Decision(self.request_id, ScanVerdict.from_json(self.verdict), self.award, self.no_reward,
                        self.campaign_id)


class DecisionBatch(msgspec.Struct, array_like=True, frozen=True, tag=3):
    """decisions, schema 3: a batch's decisions, in number order, in one record
    keyed by the number of the last (one put per batch, not one per decision)."""

    decisions: list[Decision]


class _LoggedBatch(msgspec.Struct, array_like=True, frozen=True, tag=3):
    """A DecisionBatch read with its decisions left encoded: a retry decodes only its own."""

    decisions: list[msgspec.Raw]


class LedgerEntry(msgspec.Struct, array_like=True, frozen=True, tag=2):
    """ledger: a decided draw and every input audit needs to decide it again
    (scangate.audit.LEDGER_FIELDS, in this order)."""

    seq: int
    request_id: str
    client: str
    campaign_id: str
    revision: int
    serial: int
    actor: str
    time_ms: int
    draw_input: str
    hmac: str
    roll: int
    slot: int | None
    odds_from: str
    odds_ppm: int | float
    plugin: dict[str, Any] | None
    scan_number: int
    counters: list[int]
    how: str
    budgets: dict[str, list[int | None]] | None
    prize_id: str | None
    amount_fen: int
    tier_pct: int | None
    points: int
    payout_key: str | None
    no_reward: str | None


class LegacyLedgerEntry(msgspec.Struct, array_like=True, frozen=True, tag=1):
    """ledger: an entry written before decisions recorded their inputs (kept as
    written; audit checks what it can of it)."""

    seq: int
    request_id: str
    campaign_id: str
    serial: int
    actor: str
    time_ms: int
    draw_input: str
    hmac: str
    roll: int
    odds_ppm: int | float
    scan_number: int
    how: str
    prize_id: str | None
    amount_fen: int
    points: int
    payout_key: str | None
    no_reward: str | None


class Claim(msgspec.Struct, array_like=True, frozen=True, tag=1):
    """claims: the draw a code was used for (one per code)."""

    campaign_id: str
    ledger_seq: int


class PointsEntry(msgspec.Struct, array_like=True, frozen=True, tag=1):
    """points h/: one change of an actor's balance."""

    delta: int
    balance: int
    reason: str
    ref: str
    at_ms: int | float


class RedemptionRecord(msgspec.Struct, array_like=True, frozen=True, tag=1):
    """points r/: a redemption's result, returned again to a retry."""

    request_id: str
    actor: str
    points: int
    ok: bool
    balance: int
    reason: str | None


class LineRecord(msgspec.Struct, array_like=True, frozen=True, tag=1):
    """lines: a product line (scangate.state.store.ProductLine), never changed once
    written. The level is stored as its label, as the JSON record held it: the
    label, not the code block's number, is what a person reads in an export."""

    line_id: int
    sku: str
    level: str
    batch: str
    gtin: str
    attributes: dict[str, Any]
    created_at: int     # unix seconds


class DealerRecord(msgspec.Struct, array_like=True, frozen=True, tag=1):
    """dealers: a dealer (scangate.results.Dealer) and the adcode prefixes it may sell in."""

    dealer_id: str
    name: str
    territory: list[str]


class ShipmentRecord(msgspec.Struct, array_like=True, frozen=True, tag=1):
    """shipped (a unit's current shipment) and ship_log (every shipment): one
    shipment of a unit (scangate.state.trace.Shipment); read on the verdict's
    hot path, so an array."""

    unit: int
    dealer_id: str
    shipped_at_ms: int
    shipment_id: str


class LineRecall(msgspec.Struct, array_like=True, frozen=True, tag=1):
    """revoked L+line: a recalled product line (the line id is the key)."""

    reason: str
    at_ms: int


class RangeRecall(msgspec.Struct, array_like=True, frozen=True, tag=1):
    """revoked R+first+last (or an older directory's R+first): recalled serials
    first..last; ``source``: how it was asked for (range, codes)."""

    last: int
    reason: str
    at_ms: int
    source: str


class Payout(msgspec.Struct, omit_defaults=True, tag=1):
    """outbox: a payout request and its sending state (scangate.payouts changes it)."""

    key: str
    state: str
    attempts: int
    ledger_seq: int
    actor: str
    prize_id: str
    kind: str
    amount_fen: int
    coupon: dict[str, Any] | None
    created_ms: int
    lease_owner: str | None = None
    lease_expires_ms: int | None = None
    next_attempt_ms: int | None = None
    error: str | None = None
    confirmation: str | None = None
    confirmed_ms: int | None = None


_ENCODER = msgspec.msgpack.Encoder()
encode = _ENCODER.encode
_LEDGER = msgspec.msgpack.Decoder(LedgerEntry | LegacyLedgerEntry)
_DECISION = msgspec.msgpack.Decoder(Decision | DecisionRecordV1)
_DECISION_LOG = msgspec.msgpack.Decoder(Decision | DecisionRecordV1 | _LoggedBatch)
_CLAIM = msgspec.msgpack.Decoder(Claim)
_POINTS = msgspec.msgpack.Decoder(PointsEntry)
_REDEMPTION = msgspec.msgpack.Decoder(RedemptionRecord)
_DEALER = msgspec.msgpack.Decoder(DealerRecord)
_SHIPMENT = msgspec.msgpack.Decoder(ShipmentRecord)
_LINE_RECALL = msgspec.msgpack.Decoder(LineRecall)
_RANGE_RECALL = msgspec.msgpack.Decoder(RangeRecall)
_PAYOUT = msgspec.msgpack.Decoder(Payout)
_LINE = msgspec.msgpack.Decoder(LineRecord)


def _decoder(decode: Any, name: str) -> Any:
    def read(raw: bytes | memoryview) -> Any:
        try:
            return decode(raw)
        except msgspec.DecodeError as exc:
            raise CorruptionError(f"{name} record: {exc}") from None
    return read


decode_ledger: Callable[[bytes | memoryview], LedgerEntry | LegacyLedgerEntry] = _decoder(_LEDGER.decode, "ledger")


def decode_decision(raw: bytes | memoryview) -> Decision:
    """A stored decision (either version) as the Decision it records."""
    try:
        d: Decision | DecisionRecordV1 = _DECISION.decode(raw)
    except msgspec.DecodeError as exc:
        raise CorruptionError(f"decision record: {exc}") from None
    return _as_decision(d)


def _as_decision(d: Decision | DecisionRecordV1) -> Decision:
    """A decoded decision record as the Decision it records (version 1: its
    verdict JSON read back, CorruptionError when it is none)."""
    if isinstance(d, Decision):
        return d
    try:
        return d.decision()
    except (KeyError, ValueError, TypeError) as exc:
        raise CorruptionError(f"decision record: {exc}") from None


class LogRecord:
    """One record of the decision log, keyed ``last``: a batch's (DecisionBatch,
    its decisions numbered up to ``last``) or a single decision's (schema 2,
    number ``last``). A decision is decoded when asked for: a retry decodes only
    its own."""

    __slots__ = ("first", "last", "_items")

    def __init__(self, last: int, raw: bytes | memoryview):
        try:
            record = _DECISION_LOG.decode(raw)
        except msgspec.DecodeError as exc:
            raise CorruptionError(f"decision record: {exc}") from None
        items: list[msgspec.Raw | Decision | DecisionRecordV1]
        items = list(record.decisions) if isinstance(record, _LoggedBatch) else [record]
        if not items:
            raise CorruptionError(f"decision record: #{last} holds no decision")
        self.first, self.last, self._items = last - len(items) + 1, last, items

    def decisions(self) -> list[tuple[int, Decision]]:
        """Every decision of the record, with its number, in order."""
        return [(n, self.decision(n)) for n in range(self.first, self.last + 1)]

    def decision(self, number: int) -> Decision:
        """Decision ``number``; CorruptionError when this record does not hold it."""
        if not self.first <= number <= self.last:
            raise CorruptionError(f"decision record: #{self.last} holds #{self.first} to #{self.last}, "
                                  f"not #{number}")
        item = self._items[number - self.first]
        return decode_decision(item) if isinstance(item, msgspec.Raw) else _as_decision(item)


def encode_decisions(decisions: list[Decision]) -> bytes:
    """A batch's decision log record."""
    return encode(DecisionBatch(decisions))


decode_claim: Callable[[bytes | memoryview], Claim] = _decoder(_CLAIM.decode, "claim")
decode_points_entry: Callable[[bytes | memoryview], PointsEntry] = _decoder(_POINTS.decode, "points history")
decode_redemption: Callable[[bytes | memoryview], RedemptionRecord] = _decoder(_REDEMPTION.decode, "redemption")
decode_dealer: Callable[[bytes | memoryview], DealerRecord] = _decoder(_DEALER.decode, "dealer")
decode_shipment: Callable[[bytes | memoryview], ShipmentRecord] = _decoder(_SHIPMENT.decode, "shipment")
decode_line_recall: Callable[[bytes | memoryview], LineRecall] = _decoder(_LINE_RECALL.decode, "line recall")
decode_range_recall: Callable[[bytes | memoryview], RangeRecall] = _decoder(_RANGE_RECALL.decode, "range recall")
decode_payout: Callable[[bytes | memoryview], Payout] = _decoder(_PAYOUT.decode, "payout")
decode_line: Callable[[bytes | memoryview], LineRecord] = _decoder(_LINE.decode, "product line")


def to_json(record: msgspec.Struct) -> dict[str, Any]:
    """A record as a dict of its fields (the edge form: CLI, audit, payout rail),
    without its version tag; a map record without the fields left at their
    default (a payout's lease fields before it was leased). A decision: its
    ``to_json`` without the message (derived, not stored)."""
    out: dict[str, Any]
    if isinstance(record, Decision):
        out = record.to_json()
        del out["message"]
        return out
    if not record.__struct_config__.array_like:
        out = msgspec.to_builtins(record)
        out.pop(record.__struct_config__.tag_field or "type", None)
        return out
    out = msgspec.structs.asdict(record)
    for name, value in out.items():
        if isinstance(value, msgspec.Struct):
            out[name] = msgspec.structs.asdict(value)
    return out
