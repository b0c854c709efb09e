"""Verdicts: one decision per scan, with a stable reason code and its evidence.

    counterfeit    the code does not authenticate or was never issued
    revoked        its product line or serial range was recalled
    suspect_clone  a genuine code scanned by too many distinct actors, or from
                   places too far apart for the time between them (a score)
    diverted       scanned outside the territory of the dealer its unit shipped to
    genuine        otherwise; a repeat scan carries the first scan's time and place

Precedence is the order above; every signal that fired is kept in ``reasons``.
Reason codes are documented in docs/verdicts.md and never change meaning.

``decide_verdicts`` records each scan of a genuine code in the scan history (one
write transaction per batch: group commit) and returns after it committed.
"""

from __future__ import annotations

import enum
import json
import logging
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import lmdb
import numpy as np
import xxhash

from . import geo
from .datadir import DataDir, VerifyResult
from .enums import CodeStatus
from .errors import InvalidArgument
from .trace import TraceStore, _keys7, now_ms

__all__ = [
    "MESSAGES",
    "Verdict",
    "Reason",
    "Scan",
    "ScanVerdict",
    "VerdictConfig",
    "decide_verdicts",
    "revoke_line",
    "revoke_range",
    "scan_history",
]

log = logging.getLogger(__name__)


class Verdict(enum.IntEnum):
    GENUINE = 0
    COUNTERFEIT = 1
    REVOKED = 2
    SUSPECT_CLONE = 3
    DIVERTED = 4

    @property
    def label(self) -> str:
        return self.name.lower()


# What a consumer or store app shows for each verdict: (zh-CN, en).
MESSAGES: dict[Verdict, tuple[str, str]] = {
    Verdict.GENUINE: ("正品验证通过，感谢您的扫码。", "Genuine product. Thank you for scanning."),
    Verdict.COUNTERFEIT: ("未能验证此码，可能是假冒产品，请谨慎购买。",
                          "This code could not be verified; the product may be counterfeit."),
    Verdict.REVOKED: ("该产品批次已召回，请勿使用，并联系购买渠道。",
                      "This product batch has been recalled. Please do not use it; contact the seller."),
    Verdict.SUSPECT_CLONE: ("此码已被多次异常扫描，可能被复制，请谨慎。",
                            "This code has been scanned in unusual ways and may have been copied."),
    Verdict.DIVERTED: ("正品，但不在授权销售区域内。", "Genuine, but sold outside its authorised sales region."),
}


class Reason(str, enum.Enum):
    """Stable, machine-readable reason codes (docs/verdicts.md)."""

    GENUINE_FIRST_SCAN = "SG-G1"
    GENUINE_REPEAT_SCAN = "SG-G2"
    NOT_SHIPPED = "SG-G3"
    MALFORMED = "SG-C1"
    TYPO = "SG-C2"
    COUNTERFEIT_TAG = "SG-C3"
    UNKNOWN_KEY_VERSION = "SG-C4"
    NOT_ISSUED = "SG-C5"
    LINE_RECALLED = "SG-R1"
    RANGE_RECALLED = "SG-R2"
    CLONE_DISTINCT_ACTORS = "SG-K1"
    CLONE_IMPOSSIBLE_TRAVEL = "SG-K2"
    DIVERTED_OUTSIDE_TERRITORY = "SG-D1"


_STATUS_REASON = {
    CodeStatus.MALFORMED: Reason.MALFORMED,
    CodeStatus.TYPO: Reason.TYPO,
    CodeStatus.COUNTERFEIT: Reason.COUNTERFEIT_TAG,
    CodeStatus.UNKNOWN_KEY: Reason.UNKNOWN_KEY_VERSION,
    CodeStatus.NOT_ISSUED: Reason.NOT_ISSUED,
}


@dataclass(frozen=True)
class VerdictConfig:
    """Thresholds (configuration, not code)."""

    max_distinct_actors: int = 3        # more distinct scanners than this: clone signal
    max_speed_kmh: float = 900.0        # faster travel between scans: clone signal
    min_travel_km: float = 100.0        # ignore jumps shorter than this (centroids, GPS)
    clone_score_threshold: float = 0.5  # score at or above this: suspect clone

    def __post_init__(self) -> None:
        if self.max_distinct_actors < 1:
            raise InvalidArgument("max_distinct_actors: must be at least 1")
        if self.max_speed_kmh <= 0:
            raise InvalidArgument("max_speed_kmh: must be above 0")
        if self.min_travel_km < 0:
            raise InvalidArgument("min_travel_km: must be 0 or more")
        if not 0 < self.clone_score_threshold <= 1:
            raise InvalidArgument("clone_score_threshold: must be in (0, 1]")


@dataclass(frozen=True)
class Scan:
    """One scan. Region: an adcode, or latitude/longitude resolved offline."""

    code: str
    actor: str
    actor_type: str = "consumer"     # consumer | store
    region: int | None = None        # 6-digit adcode
    lat: float | None = None
    lon: float | None = None
    time_ms: int | None = None       # default: now


@dataclass
class ScanVerdict:
    verdict: Verdict
    reasons: list[Reason]
    code_status: CodeStatus
    region: int | None               # the scan's adcode (given or resolved)
    region_source: str               # "adcode" | "geo:<package>@<version>" | "none"
    clone_score: float = 0.0
    first_scan: dict[str, Any] | None = None   # on a repeat scan: time, region, actor
    scan_count: int = 0
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def message(self) -> dict[str, str]:
        zh, en = MESSAGES[self.verdict]
        return {"zh-CN": zh, "en": en}

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict.label,
            "message": self.message,
            "reasons": [r.value for r in self.reasons],
            "code_status": self.code_status.label,
            "region": self.region,
            "region_source": self.region_source,
            "clone_score": round(self.clone_score, 3),
            "first_scan": self.first_scan,
            "scan_count": self.scan_count,
            "evidence": self.evidence,
        }


# ---------------------------------------------------------------------- history
# Scan state per scanned serial (written only for scanned codes):
#   first ms, first region, count, last ms, last region; the last scan that had a
#   place (ms, region, lat, lon, actor hash): the reference for impossible travel; distinct
#   actors (saturating), up to 16 actor hashes, then the first actor id (UTF-8, at
#   most 64 bytes).
_HIST = struct.Struct(">qIIqIqIffQHB")
MAX_ACTOR_HASHES = 16


@dataclass
class _History:
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
        actor = self.first_actor.encode()[:64]
        return (_HIST.pack(self.first_ms, self.first_region, self.count, self.last_ms, self.last_region,
                           self.loc_ms, self.loc_region, self.loc_lat, self.loc_lon, self.loc_actor,
                           self.distinct,
                           len(self.hashes))
                + struct.pack(f">{len(self.hashes)}Q", *self.hashes) + actor)

    @classmethod
    def unpack(cls, raw: bytes) -> _History:
        f = _HIST.unpack_from(raw)
        n = f[11]
        hashes = list(struct.unpack_from(f">{n}Q", raw, _HIST.size))
        return cls(*f[:11], hashes, raw[_HIST.size + 8 * n :].decode(errors="replace"))

    def has_place(self) -> bool:
        return not np.isnan(self.loc_lat)


def _actor_hash(actor: str) -> int:
    return xxhash.xxh64_intdigest(actor.encode())


class _Stores:
    def __init__(self, data: DataDir):
        env = data.store.env
        self.env = env
        self.scans = data.store.db("scans")
        self.revoked = data.store.db("revoked")


def scan_history(data: DataDir, code: str) -> dict[str, Any] | None:
    """The recorded scan state of one code, or None if never scanned."""
    check = data.verify_code(code)
    if check.serial is None:
        return None
    st = _Stores(data)
    with st.env.begin() as txn:
        raw = txn.get(_keys7(np.array([check.serial], np.uint64)), db=st.scans)
    if raw is None:
        return None
    h = _History.unpack(raw)
    return {"first_ms": h.first_ms, "first_region": h.first_region or None, "first_actor": h.first_actor,
            "count": h.count, "distinct_actors": h.distinct, "last_ms": h.last_ms,
            "last_region": h.last_region or None}


# ---------------------------------------------------------------------- recalls
def revoke_line(data: DataDir, line_id: int, reason: str) -> None:
    data.store.get_line(line_id)  # NotFound if absent
    st = _Stores(data)
    with st.env.begin(write=True) as txn:
        txn.put(b"L" + struct.pack(">I", line_id), json.dumps({"reason": reason, "at_ms": now_ms()}).encode(),
                db=st.revoked)


def revoke_range(data: DataDir, first: int, last: int, reason: str) -> None:
    if not 1 <= first <= last:
        raise InvalidArgument("range: need 1 <= first <= last")
    st = _Stores(data)
    with st.env.begin(write=True) as txn:
        txn.put(b"R" + struct.pack(">Q", first),
                json.dumps({"last": last, "reason": reason, "at_ms": now_ms()}).encode(), db=st.revoked)


def _recalls(txn: lmdb.Transaction, st: _Stores) -> tuple[dict[int, str], np.ndarray, np.ndarray, list[str]]:
    lines: dict[int, str] = {}
    firsts, lasts, reasons = [], [], []
    for k, v in txn.cursor(db=st.revoked):
        k, d = bytes(k), json.loads(bytes(v))
        if k[:1] == b"L":
            lines[struct.unpack(">I", k[1:])[0]] = d["reason"]
        else:
            firsts.append(struct.unpack(">Q", k[1:])[0])
            lasts.append(d["last"])
            reasons.append(d["reason"])
    return lines, np.array(firsts, np.uint64), np.array(lasts, np.uint64), reasons


# ---------------------------------------------------------------------- decide
def _resolve_regions(scans: Sequence[Scan]) -> tuple[list[int | None], list[str], np.ndarray, np.ndarray]:
    """Adcode and coordinates of each scan; lat/lon resolved to the nearest district."""
    n = len(scans)
    regions: list[int | None] = [s.region for s in scans]
    sources = ["adcode" if s.region is not None else "none" for s in scans]
    lat = np.array([s.lat if s.lat is not None else np.nan for s in scans], np.float64)
    lon = np.array([s.lon if s.lon is not None else np.nan for s in scans], np.float64)
    need_geo = [i for i in range(n) if scans[i].region is None and scans[i].lat is not None]
    has_region = [i for i in range(n) if scans[i].region is not None and scans[i].lat is None]
    if need_geo or has_region:
        index = geo.default_index()
        src = f"geo:{index.source.package}@{index.source.version}"
        if need_geo:
            codes, _dist = index.nearest(lat[need_geo], lon[need_geo])
            for i, c in zip(need_geo, codes.tolist()):
                regions[i] = int(c) or None
                sources[i] = src if c else "none"
        if has_region:
            clat, clon = index.centroid(np.array([scans[i].region for i in has_region], np.int64))
            lat[has_region], lon[has_region] = clat, clon
    return regions, sources, lat, lon


def decide_verdicts(data: DataDir, scans: Sequence[Scan], config: VerdictConfig | None = None,
                    txn: lmdb.Transaction | None = None, checks: VerifyResult | None = None
                    ) -> list[ScanVerdict]:
    """Decide a batch of scans and record the genuine ones, in one transaction:
    ``txn`` when given (the caller commits: rewards join the same transaction),
    else one of its own, committed before returning. ``checks``: the scans' codes
    already verified by the caller (``data.verify_codes``), so they are not
    verified twice."""
    if txn is None:
        with data.store.env.begin(write=True) as own:
            return decide_verdicts(data, scans, config, own, checks)
    config = config or VerdictConfig()
    for i, s in enumerate(scans):
        if s.region is not None and not (100000 <= s.region <= 999999):
            raise InvalidArgument(f"scans[{i}].region: {s.region} is not a 6-digit adcode")
        if (s.lat is None) != (s.lon is None):
            raise InvalidArgument(f"scans[{i}]: give both lat and lon, or neither")
        if not s.actor:
            raise InvalidArgument(f"scans[{i}].actor: must not be empty")
    if checks is None:
        checks = data.verify_codes([s.code for s in scans])
    elif len(checks) != len(scans):
        raise InvalidArgument(f"checks: {len(checks)} results for {len(scans)} scans")
    regions, sources, lat, lon = _resolve_regions(scans)
    trace = TraceStore(data.store)
    genuine = np.flatnonzero(checks.status == CodeStatus.GENUINE)
    chains = dict(zip(genuine.tolist(), trace.trace(checks.serial[genuine]))) if len(genuine) else {}
    st = _Stores(data)
    out: list[ScanVerdict] = []
    revoked_lines, r_first, r_last, r_reason = _recalls(txn, st)
    histories: dict[int, _History | None] = {}
    for i, scan in enumerate(scans):
        status = CodeStatus(int(checks.status[i]))
        if status is not CodeStatus.GENUINE:
            out.append(ScanVerdict(Verdict.COUNTERFEIT, [_STATUS_REASON[status]], status,
                                   regions[i], sources[i]))
            continue
        serial = int(checks.serial[i])
        at = scan.time_ms if scan.time_ms is not None else now_ms()
        key = _keys7(np.array([serial], np.uint64))
        if serial not in histories:
            raw = txn.get(key, db=st.scans)
            histories[serial] = _History.unpack(raw) if raw else None
        h = histories[serial]
        v = ScanVerdict(Verdict.GENUINE, [], status, regions[i], sources[i])
        ahash = _actor_hash(scan.actor)
        # ---- recalls
        line_id = int(checks.line_id[i])
        if line_id in revoked_lines:
            v.reasons.append(Reason.LINE_RECALLED)
            v.evidence["recall_line"] = {"line_id": line_id, "reason": revoked_lines[line_id]}
        hit = np.flatnonzero((r_first <= serial) & (serial <= r_last))
        if len(hit):
            v.reasons.append(Reason.RANGE_RECALLED)
            v.evidence["recall_range"] = {"first": int(r_first[hit[0]]), "last": int(r_last[hit[0]]),
                                    "reason": r_reason[hit[0]]}
        # ---- clone signals, against the history before this scan
        score_actors = score_travel = 0.0
        if h is not None:
            known = ahash in h.hashes
            distinct = h.distinct + (0 if known else 1)
            # Only a new actor is evidence: an actor already seen (the first
            # scanner among them) scanning again is a repeat, not a clone.
            if not known and distinct > config.max_distinct_actors:
                over = (distinct - config.max_distinct_actors) / config.max_distinct_actors
                score_actors = min(1.0, 0.5 + 0.5 * over)
                v.reasons.append(Reason.CLONE_DISTINCT_ACTORS)
                v.evidence["distinct_actors"] = {"count": distinct, "threshold": config.max_distinct_actors}
            if ahash != h.loc_actor and not np.isnan(lat[i]) and h.has_place():
                km = float(geo.haversine_km(np.array([h.loc_lat]), np.array([h.loc_lon]),
                                            np.array([lat[i]]), np.array([lon[i]]))[0])
                # the real gap between the two placed scans, in either order
                # (an offline scanner may upload late)
                hours = max(abs(at - h.loc_ms) / 3.6e6, 1e-6)
                speed = km / hours
                if km >= config.min_travel_km and speed > config.max_speed_kmh:
                    over = (speed - config.max_speed_kmh) / config.max_speed_kmh
                    score_travel = min(1.0, 0.5 + 0.5 * over)
                    v.reasons.append(Reason.CLONE_IMPOSSIBLE_TRAVEL)
                    v.evidence["travel"] = {"from_region": h.loc_region or None, "from_time_ms": h.loc_ms,
                                            "to_region": regions[i],
                                            "km": round(km, 1), "hours": round(hours, 3),
                                            "speed_kmh": round(speed, 1),
                                            "max_speed_kmh": config.max_speed_kmh}
            v.first_scan = {"time_ms": h.first_ms, "region": h.first_region or None,
                            "actor": h.first_actor}
        v.clone_score = 1.0 - (1.0 - score_actors) * (1.0 - score_travel)
        # ---- diversion
        chain = chains[i]
        if chain.dealer is None:
            v.reasons.append(Reason.NOT_SHIPPED)
        else:
            v.evidence["trace"] = {"ancestors": list(chain.ancestors),
                                   "shipped_unit": chain.shipment.unit if chain.shipment else None,
                                   "shipment_id": chain.shipment.shipment_id if chain.shipment else None,
                                   "dealer_id": chain.dealer.dealer_id,
                                   "territory": list(chain.dealer.territory)}
            if regions[i] is not None and not chain.dealer.covers(regions[i]):
                v.reasons.append(Reason.DIVERTED_OUTSIDE_TERRITORY)
                v.evidence["diversion"] = {"dealer_id": chain.dealer.dealer_id,
                                           "territory": list(chain.dealer.territory),
                                           "scan_region": regions[i], "region_source": sources[i]}
        # ---- verdict by precedence
        if Reason.LINE_RECALLED in v.reasons or Reason.RANGE_RECALLED in v.reasons:
            v.verdict = Verdict.REVOKED
        elif v.clone_score >= config.clone_score_threshold:
            v.verdict = Verdict.SUSPECT_CLONE
        elif Reason.DIVERTED_OUTSIDE_TERRITORY in v.reasons:
            v.verdict = Verdict.DIVERTED
        v.reasons.insert(0, Reason.GENUINE_FIRST_SCAN if h is None else Reason.GENUINE_REPEAT_SCAN)
        # ---- record
        placed = not np.isnan(lat[i])
        here_lat = float(lat[i]) if placed else float("nan")
        here_lon = float(lon[i]) if placed else float("nan")
        if h is None:
            h = _History(at, regions[i] or 0, 1, at, regions[i] or 0, at if placed else 0,
                         regions[i] or 0, here_lat, here_lon, ahash if placed else 0, 1, [ahash], scan.actor)
        else:
            if ahash not in h.hashes:
                h.distinct = min(h.distinct + 1, 65535)
                if len(h.hashes) < MAX_ACTOR_HASHES:
                    h.hashes.append(ahash)
            h.count += 1
            h.last_ms, h.last_region = at, regions[i] or 0
            if placed:   # a placeless scan leaves the travel reference alone
                h.loc_ms, h.loc_region, h.loc_lat, h.loc_lon, h.loc_actor = (
                    at, regions[i] or 0, here_lat, here_lon, ahash)
        histories[serial] = h
        v.scan_count = h.count
        txn.put(key, h.pack(), db=st.scans)
        out.append(v)
    return out
