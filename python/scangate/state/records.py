"""The binary records of the decision state, defined once (layouts: scangate.state.layout).

Fixed-width big-endian integers through ``struct`` (a counter or a budget is a few
u64; the scan history a fixed part and a tail). JSON records (decisions, ledger,
claims, payouts, points history) are written by the decision engine's encoders
(scangate.decide.ledger) and read as JSON.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["ACCOUNT", "COUNTS", "History", "I64", "MAX_ACTOR_HASHES", "U64", "pack_counts", "unpack_counts"]

U64 = struct.Struct(">Q")
I64 = struct.Struct(">q")
ACCOUNT = struct.Struct(">qq")      # points b/<actor>: balance, earned

# counters and budgets: 2 (awards, fen), 3 (t/ without a day) or 6 (t/ with its day:
# awards, fen, eligible scans, day number, the day's awards, fen) unsigned 64-bit
# integers (the day number signed)
COUNTS = {2: struct.Struct(">QQ"), 3: struct.Struct(">QQQ"), 6: struct.Struct(">QQQqQQ")}


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
