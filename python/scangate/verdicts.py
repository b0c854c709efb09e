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

import json
import logging
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import lmdb
import numpy as np
import xxhash

from . import geo
from .clock import now_ms
from .datadir import DataDir, VerifyResult
from .enums import CodeStatus, Reason, Verdict
from .errors import BatchRejected, InvalidArgument, NotFound, Problem
from .jsontext import esc as _esc
from .jsontext import number as _number
from .recalls import Recall, RecallReport
from .trace import SERIAL_BYTES, TraceStore, _keys7

__all__ = [
    "MESSAGES",
    "Recall",
    "RecallIndex",
    "RecallReport",
    "Verdict",
    "Reason",
    "Scan",
    "ScanVerdict",
    "VerdictConfig",
    "decide_verdicts",
    "list_recalls",
    "recall_codes",
    "recall_line",
    "recall_range",
    "revoke_line",
    "revoke_range",
    "scan_history",
]

log = logging.getLogger(__name__)


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


# A misread or mistyped code (its check character fails): not evidence of a fake.
TYPO_MESSAGE = ("此码识别或输入有误，请核对后重新扫码。", "This code was misread or mistyped; please check it and scan again.")
_HOTLINE = ("如有疑问，请拨打品牌热线 {}。", " Questions? Call the brand's hotline {}.")
_REPEAT = ("正品。此码已于{when}{where}首次扫码，这是第 {n} 次扫码。",
           "Genuine. This code was first scanned on {when} (Beijing time){where}; this is scan {n}.")
MESSAGE_ZONE = ZoneInfo("Asia/Shanghai")     # consumers' local time in the messages (China programmes)


def verdict_message(verdict: Verdict, reasons: Sequence[Reason], first_scan: dict[str, Any] | None = None,
                    scan_count: int = 0, hotline: str | None = None) -> tuple[str, str]:
    """What a consumer or store app shows for a verdict, (zh-CN, en): a typo asks
    to scan again; a counterfeit warns and gives the brand's hotline when a
    campaign names one; a repeat scan of a genuine code says when and where it
    was first scanned (the district's name from the geo data; in English, its
    adcode)."""
    if verdict is _V_COUNTERFEIT:
        if _TYPO in reasons:
            return TYPO_MESSAGE
        zh, en = MESSAGES[verdict]
        return (zh + _HOTLINE[0].format(hotline), en + _HOTLINE[1].format(hotline)) if hotline else (zh, en)
    if verdict is _V_GENUINE and first_scan is not None and first_scan.get("time_ms"):
        when = datetime.fromtimestamp(first_scan["time_ms"] / 1000, MESSAGE_ZONE).strftime("%Y-%m-%d %H:%M")
        region = first_scan.get("region")
        place = _place(region)      # the data's names are Chinese: English names the adcode
        return (_REPEAT[0].format(when=when, where=f"在{place}" if place else "", n=scan_count),
                _REPEAT[1].format(when=when, where=f" in the district with adcode {region}" if place else "",
                                  n=scan_count))
    return MESSAGES[verdict]


def _place(region: int | None) -> str | None:
    """A district's name with its city's (成都市武侯区), or None when unknown."""
    if not region:
        return None
    index = geo.default_index()
    district = index.name(region)
    if district is None:
        return None
    city = index.name(region // 100 * 100)
    return district if city is None or district.startswith(city) or city == district else city + district


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
    hotline: str | None = None       # the brand's, for a counterfeit's message (rewards sets it)

    @property
    def message(self) -> dict[str, str]:
        zh, en = verdict_message(self.verdict, self.reasons, self.first_scan, self.scan_count, self.hotline)
        return {"zh-CN": zh, "en": en}

    def to_json(self) -> dict[str, Any]:
        verdict = self.verdict
        label = _LABEL[verdict]
        if self.first_scan is None and self.hotline is None and verdict is not _V_COUNTERFEIT:
            zh, en = MESSAGES[verdict]     # most scans: the verdict's own words (verdict_message says so too)
        else:
            zh, en = verdict_message(verdict, self.reasons, self.first_scan, self.scan_count, self.hotline)
        score = self.clone_score
        return {
            "verdict": label,
            "message": {"zh-CN": zh, "en": en},
            "reasons": list(map(_REASON_VALUE.__getitem__, self.reasons)),
            "code_status": _STATUS_LABEL[self.code_status],
            "region": self.region,
            "region_source": self.region_source,
            "clone_score": score if score == 0.0 and type(score) is float else round(score, 3),
            "first_scan": self.first_scan,
            "scan_count": self.scan_count,
            "evidence": self.evidence,
        }

    def json_text(self) -> str:
        """``json.dumps(self.to_json())``, byte for byte, without the generic encoder:
        the fields by a template, evidence by ``_evidence_json`` (json.dumps for what
        it does not write); tests/test_rewards_encoding.py holds the two equal. The
        text up to the evidence of a verdict without a first scan (most first scans)
        is kept by its fields."""
        first, region, evidence, count = self.first_scan, self.region, self.evidence, self.scan_count
        score = self.clone_score
        # a float zero (most scans) is its own round(score, 3), and its repr is its JSON
        score_text = repr(score) if score == 0.0 and type(score) is float else _number(round(score, 3))
        key = None
        if first is None and (region is None or type(region) is int) and type(count) is int:
            key = (self.verdict, self.code_status, self.region_source, region, count, score_text, self.hotline,
                   *self.reasons)
            kept = _json_heads.get(key)
            if kept is not None:
                return f"{kept[0]}{_evidence_json(evidence)}}}" if evidence else kept[1]
        if first is None:
            first_text = "null"
        elif tuple(first) == _FIRST_SCAN_KEYS:
            fr = first["region"]
            first_text = (f'{{"time_ms": {_number(first["time_ms"])}, '
                          f'"region": {"null" if fr is None else _number(fr)}, "actor": {_esc(first["actor"])}}}')
        else:
            first_text = json.dumps(first)
        if first is None and self.hotline is None and self.verdict is not _V_COUNTERFEIT:
            message_json = _MESSAGE_JSON[self.verdict]
        else:
            zh, en = verdict_message(self.verdict, self.reasons, first, count, self.hotline)
            message_json = f'{{"zh-CN": {_esc(zh)}, "en": {_esc(en)}}}'
        head = (f'{{"verdict": {_VERDICT_JSON[self.verdict]}, "message": {message_json}, '
                f'"reasons": [{", ".join([_REASON_JSON[r] for r in self.reasons])}], '
                f'"code_status": {_STATUS_JSON[self.code_status]}, '
                f'"region": {"null" if region is None else _number(region)}, '
                f'"region_source": {_esc(self.region_source)}, '
                f'"clone_score": {score_text}, "first_scan": {first_text}, '
                f'"scan_count": {_number(count)}, "evidence": ')
        if key is not None:
            if len(_json_heads) >= 20_000:
                _json_heads.clear()
            _json_heads[key] = (head, head + "{}}")
        return f"{head}{_evidence_json(evidence) if evidence else '{}'}}}"


# json_text's text up to the evidence, and the whole text with no evidence, by the
# fields that make them (verdicts without a first scan)
_json_heads: dict[tuple[Any, ...], tuple[str, str]] = {}
_STATUS_LABEL = {s: s.label for s in CodeStatus}
_REASON_VALUE = {r: r.value for r in Reason}
_VERDICT_JSON = {v: _esc(v.label) for v in Verdict}
_LABEL = {v: v.label for v in Verdict}
_STATUS_JSON = {s: _esc(s.label) for s in CodeStatus}
_REASON_JSON = {r: _esc(r.value) for r in Reason}
_MESSAGE_JSON = {v: f'{{"zh-CN": {_esc(zh)}, "en": {_esc(en)}}}' for v, (zh, en) in MESSAGES.items()}
_FIRST_SCAN_KEYS = ("time_ms", "region", "actor")


def _evidence_json(evidence: dict[str, Any]) -> str:
    """``json.dumps(evidence)``, byte for byte. The evidence of most shipped scans is
    just their trace, with the value types _decide_verdicts gives it: that is
    written by a template, far cheaper than json.dumps's set-up per call;
    anything else (other keys, other types, a caller's changes) by json.dumps."""
    if len(evidence) == 1:
        trace = evidence.get("trace")
        if type(trace) is dict and tuple(trace) == _TRACE_KEYS:
            ancestors, unit, shipment_id, dealer_id, territory = trace.values()
            if (type(ancestors) is list and type(territory) is list and type(dealer_id) is str
                    and type(unit) is int and type(shipment_id) is str
                    and all(type(a) is int for a in ancestors) and all(type(p) is str for p in territory)):
                return (f'{{"trace": {{"ancestors": [{", ".join(map(repr, ancestors))}], '
                        f'"shipped_unit": {unit!r}, "shipment_id": {_esc(shipment_id)}, '
                        f'"dealer_id": {_esc(dealer_id)}, '
                        f'"territory": [{", ".join(map(_esc, territory))}]}}}}')
    return json.dumps(evidence)


_TRACE_KEYS = ("ancestors", "shipped_unit", "shipment_id", "dealer_id", "territory")


# ---------------------------------------------------------------------- history
# Scan state per scanned serial (written only for scanned codes):
#   first ms, first region, count, last ms, last region; the last scan that had a
#   place (ms, region, lat, lon, actor hash): the reference for impossible travel; distinct
#   actors (saturating), up to 16 actor hashes, then the first actor id (UTF-8, at
#   most 64 bytes).
_HIST = struct.Struct(">qIIqIqIffQHB")
MAX_ACTOR_HASHES = 16
# the fixed part and n actor hashes, for every n a record can hold (the count is a byte)
_HIST_WITH = [struct.Struct(f">qIIqIqIffQHB{n}Q") for n in range(256)]
_NAN = float("nan")
_GENUINE = int(CodeStatus.GENUINE)


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
        hashes = self.hashes
        return (_HIST_WITH[len(hashes)].pack(self.first_ms, self.first_region, self.count, self.last_ms,
                                            self.last_region, self.loc_ms, self.loc_region, self.loc_lat,
                                            self.loc_lon, self.loc_actor, self.distinct, len(hashes), *hashes)
                + self.first_actor.encode()[:64])

    @classmethod
    def unpack(cls, raw: bytes) -> _History:
        n = raw[_HIST.size - 1]
        f = _HIST_WITH[n].unpack_from(raw)
        # mypy cannot count the fields a slice spreads
        return cls(*f[:11], list(f[12:]), raw[_HIST.size + 8 * n :].decode(errors="replace"))  # type: ignore[call-arg]

    def has_place(self) -> bool:
        return self.loc_lat == self.loc_lat   # not NaN


_xxh64 = xxhash.xxh64_intdigest   # an actor's hash: _xxh64(actor.encode())


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
# The "revoked" database holds one entry per recall:
#   b"L" + line id (>I)                      -> {"reason", "at_ms"}
#   b"R" + first (>Q) + last (>Q)            -> {"last", "reason", "at_ms", "source"}
# Older data directories may hold range keys of b"R" + first only (one range per
# first serial); they are read the same way. Keying a range by first and last
# lets a range and a single code inside it (first == last) both exist: a key of
# the first serial alone made the later one replace the earlier.
MAX_RECALL_REASON = 500
RECALL_SOURCES = ("line", "range", "codes")


def _check_reason(reason: str) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidArgument("reason: must not be empty (it is kept with the recall and shown as evidence)")
    if len(reason) > MAX_RECALL_REASON:
        raise InvalidArgument(f"reason: {len(reason)} characters, at most {MAX_RECALL_REASON}")
    if any(c in reason for c in "\r\n\0"):
        raise InvalidArgument("reason: one line, without newlines or NUL")
    return reason


def _decode_recall(key: bytes, raw: bytes) -> Recall:
    d = json.loads(raw)
    if key[:1] == b"L":
        return Recall("line", d["reason"], d.get("at_ms", 0), line_id=struct.unpack(">I", key[1:5])[0],
                      source="line")
    return Recall("range", d["reason"], d.get("at_ms", 0), first=struct.unpack(">Q", key[1:9])[0],
                  last=int(d["last"]), source=d.get("source", "range"))


def _range_key(first: int, last: int) -> bytes:
    return b"R" + struct.pack(">QQ", first, last)


def _check_issued(data: DataDir, first: int, last: int, field: str) -> None:
    """InvalidArgument naming the first serial of first..last that was never issued."""
    table = data.store.range_table()
    firsts, lasts = table.firsts, table.lasts
    pos = first
    idx = int(np.searchsorted(lasts, np.uint64(pos)))
    while pos <= last:
        if idx >= len(lasts) or int(firsts[idx]) > pos:
            raise InvalidArgument(f"{field}: serial {pos} of {first}..{last} was never issued; "
                                  f"a recall covers issued serials only (see `scangate ledger`)")
        pos = int(lasts[idx]) + 1
        idx += 1


def _put_recall(txn: lmdb.Transaction[bytes], st: _Stores, key: bytes, value: dict[str, Any]) -> tuple[Recall, bool]:
    """Store one recall unless the same one is there: (the stored entry, added)."""
    old = txn.get(key, db=st.revoked)
    if old is None and key[:1] == b"R":
        legacy = key[:9]       # an older directory's key: first serial only
        raw = txn.get(legacy, db=st.revoked)
        if raw is not None and json.loads(raw).get("last") == value["last"]:
            key, old = legacy, raw
    if old is not None:
        return _decode_recall(key, bytes(old)), False
    raw = json.dumps(value, ensure_ascii=False).encode()
    txn.put(key, raw, db=st.revoked)
    return _decode_recall(key, raw), True


def recall_line(data: DataDir, line_id: int, reason: str) -> RecallReport:
    """Recall a whole product line: every genuine code of it verdicts ``revoked``
    (SG-R1). Recalling it again changes nothing (the first recall's reason and
    time stay). NotFound for a line that does not exist."""
    _check_reason(reason)
    if not 0 <= line_id < 2**32:
        raise InvalidArgument(f"line: {line_id} is not a product line id")
    try:
        data.store.get_line(line_id)
    except NotFound:
        raise NotFound(f"line: no product line {line_id} (see `scangate ledger`)") from None
    st = _Stores(data)
    with st.env.begin(write=True) as txn:
        rec, added = _put_recall(txn, st, b"L" + struct.pack(">I", line_id),
                                 {"reason": reason, "at_ms": now_ms()})
    return RecallReport([rec], int(added))


def recall_range(data: DataDir, first: int, last: int, reason: str, *, source: str = "range") -> RecallReport:
    """Recall serials first..last (inclusive; every one of them issued): their
    codes verdict ``revoked`` (SG-R2). Idempotent: the same range again changes
    nothing."""
    _check_reason(reason)
    if first < 1 or last < 1:
        raise InvalidArgument(f"range: serials start at 1, not {min(first, last)}")
    if first > last:
        raise InvalidArgument(f"range: FIRST {first} is after LAST {last}")
    _check_issued(data, first, last, "range")
    st = _Stores(data)
    with st.env.begin(write=True) as txn:
        rec, added = _put_recall(txn, st, _range_key(first, last),
                                 {"last": last, "reason": reason, "at_ms": now_ms(), "source": source})
    return RecallReport([rec], int(added))


def recall_codes(data: DataDir, codes: Sequence[str], reason: str, source: str = "codes",
                 lines: Sequence[int] | None = None) -> RecallReport:
    """Recall single codes, by their serials. Every code must verify genuine, else
    BatchRejected names each line that does not and why (``lines``: each code's
    line number in its file; default 1, 2, ...), and nothing is recalled.
    Consecutive serials are kept as one range entry (SG-R2); all entries are
    written in one transaction; codes already recalled this way are not added
    again."""
    _check_reason(reason)
    if not codes:
        raise InvalidArgument(f"{source}: no codes given")
    if lines is not None and len(lines) != len(codes):
        raise InvalidArgument(f"lines: {len(lines)} line numbers for {len(codes)} codes")
    numbers = list(lines) if lines is not None else list(range(1, len(codes) + 1))
    checks = data.verify_codes(list(codes))
    problems = [Problem(f"line {numbers[i]}", "code",
                        f"{CodeStatus(int(s)).label}: not a genuine code of ours, so it cannot be recalled")
                for i, s in enumerate(checks.status.tolist()) if s != CodeStatus.GENUINE]
    if problems:
        raise BatchRejected(source, problems)
    serials = np.unique(checks.serial)
    # runs of consecutive serials: one range entry each
    breaks = np.flatnonzero(np.diff(serials) != 1) + 1
    starts = np.concatenate(([0], breaks)).tolist()
    ends = np.concatenate((breaks - 1, [len(serials) - 1])).tolist()
    st = _Stores(data)
    at = now_ms()
    out: list[Recall] = []
    added = 0
    with st.env.begin(write=True) as txn:
        for s, e in zip(starts, ends):
            first, last = int(serials[s]), int(serials[e])
            rec, new = _put_recall(txn, st, _range_key(first, last),
                                   {"last": last, "reason": reason, "at_ms": at, "source": "codes"})
            out.append(rec)
            added += new
    return RecallReport(out, added)


def list_recalls(data: DataDir) -> list[Recall]:
    """Every recall: lines first (by id), then ranges by first and last serial."""
    st = _Stores(data)
    with st.env.begin() as txn:
        return [_decode_recall(bytes(k), bytes(v)) for k, v in txn.cursor(db=st.revoked)]


def revoke_line(data: DataDir, line_id: int, reason: str) -> None:
    """Recall a product line (kept for callers of the first API: see recall_line)."""
    recall_line(data, line_id, reason)


def revoke_range(data: DataDir, first: int, last: int, reason: str) -> None:
    """Recall serials first..last (kept for callers of the first API: see recall_range)."""
    recall_range(data, first, last, reason)


class RecallIndex:
    """The recalls as of one read, for looking up many codes (verify, trace):
    which genuine codes are revoked and by which recall, with the reason codes and
    evidence a scan's verdict would carry."""

    def __init__(self, data: DataDir):
        st = _Stores(data)
        with st.env.begin() as txn:
            self.lines, self.r_first, self.r_last, self.r_reason = _recalls(txn, st)

    def __bool__(self) -> bool:
        return bool(self.lines) or len(self.r_first) > 0

    def revoked(self, genuine: np.ndarray, serials: np.ndarray, line_ids: np.ndarray) -> np.ndarray:
        """A bool per code: genuine and under a recall."""
        out = np.zeros(len(serials), bool)
        if not self:
            return out
        if self.lines:
            out |= np.isin(line_ids, np.fromiter(self.lines, np.int64, len(self.lines)))
        if len(self.r_first):
            out |= _range_recalls(np.asarray(serials, np.uint64), self.r_first, self.r_last) >= 0
        revoked: np.ndarray = out & genuine
        return revoked

    def evidence(self, serial: int, line_id: int) -> tuple[list[Reason], dict[str, Any]]:
        """The recall reason codes and evidence of one genuine code, as a scan's
        verdict reports them (empty: not recalled)."""
        reasons: list[Reason] = []
        evidence: dict[str, Any] = {}
        if line_id in self.lines:
            reasons.append(Reason.LINE_RECALLED)
            evidence["recall_line"] = {"line_id": line_id, "reason": self.lines[line_id]}
        if len(self.r_first):
            hit = int(_range_recalls(np.array([serial], np.uint64), self.r_first, self.r_last)[0])
            if hit >= 0:
                reasons.append(Reason.RANGE_RECALLED)
                evidence["recall_range"] = {"first": int(self.r_first[hit]), "last": int(self.r_last[hit]),
                                            "reason": self.r_reason[hit]}
        return reasons, evidence


def _recalls(txn: lmdb.Transaction[bytes], st: _Stores) -> tuple[dict[int, str], np.ndarray, np.ndarray, list[str]]:
    lines: dict[int, str] = {}
    firsts, lasts, reasons = [], [], []
    for k, v in txn.cursor(db=st.revoked):
        k, d = bytes(k), json.loads(bytes(v))
        if k[:1] == b"L":
            lines[struct.unpack(">I", k[1:5])[0]] = d["reason"]
        else:
            firsts.append(struct.unpack(">Q", k[1:9])[0])
            lasts.append(d["last"])
            reasons.append(d["reason"])
    return lines, np.array(firsts, np.uint64), np.array(lasts, np.uint64), reasons


# ---------------------------------------------------------------------- decide
_centroids: dict[int, tuple[float, float]] = {}   # adcode -> centroid, from the (immutable) default index


def _check_and_place(scans: Sequence[Scan]) -> tuple[list[int | None], list[str], list[Any], list[Any],
                                                    list[int], list[int], list[int]]:
    """Check every scan's fields (InvalidArgument naming the first bad one) and,
    in the same pass, take its place: adcode, source, lat and lon (an adcode's
    cached centroid; NaN: unknown), and which scans ``_resolve_places`` must
    complete (lat/lon given, to convert; lat/lon without an adcode; an adcode
    whose centroid is not cached)."""
    regions: list[int | None] = []
    sources: list[str] = []
    lat: list[float] = []
    lon: list[float] = []
    given: list[int] = []
    need_geo: list[int] = []
    unplaced: list[int] = []
    centroids = _centroids
    for i, s in enumerate(scans):
        region, s_lat, s_lon = s.region, s.lat, s.lon
        if region is not None and not (100000 <= region <= 999999):
            raise InvalidArgument(f"scans[{i}].region: {region} is not a 6-digit adcode")
        if (s_lat is None) != (s_lon is None):
            raise InvalidArgument(f"scans[{i}]: give both lat and lon, or neither")
        if not s.actor:
            raise InvalidArgument(f"scans[{i}].actor: must not be empty")
        regions.append(region)
        if s_lat is not None and s_lon is not None:   # converted to float by _resolve_places, after the checks
            lat.append(s_lat)
            lon.append(s_lon)
            given.append(i)
            if region is None:
                need_geo.append(i)
                sources.append("none")
            else:
                sources.append("adcode")
        elif region is not None:
            sources.append("adcode")
            c = centroids.get(region)
            if c is None:
                unplaced.append(i)
                c = (_NAN, _NAN)
            lat.append(c[0])
            lon.append(c[1])
        else:
            sources.append("none")
            lat.append(_NAN)
            lon.append(_NAN)
    return regions, sources, lat, lon, given, need_geo, unplaced


def _resolve_places(regions: list[int | None], sources: list[str], lat: list[Any], lon: list[Any],
                    given: list[int], need_geo: list[int], unplaced: list[int]) -> None:
    """Complete ``_check_and_place``'s lists in place: lat/lon given made floats,
    resolved to the nearest district without an adcode; an adcode without lat/lon
    placed at its district's centroid."""
    for i in given:   # every lat, then every lon: a bad value raises as it always did
        lat[i] = float(lat[i])
    for i in given:
        lon[i] = float(lon[i])
    if need_geo:
        index = geo.default_index()
        src = f"geo:{index.source.package}@{index.source.version}"
        codes, _dist = index.nearest(np.array([lat[i] for i in need_geo], np.float64),
                                     np.array([lon[i] for i in need_geo], np.float64))
        for i, c in zip(need_geo, codes.tolist()):
            regions[i] = int(c) or None
            sources[i] = src if c else "none"
    # Every adcode given must be a real district (geo.DistrictIndex.is_district):
    # a made-up one (999999) would otherwise be "outside every territory", that is
    # evidence of diversion. The cache holds only checked districts, so a code is
    # checked once per process.
    to_check = [i for i in given if sources[i] == "adcode" and regions[i] not in _centroids] + unplaced
    if to_check:
        index = geo.default_index()
        adcodes = sorted({regions[i] for i in to_check})  # type: ignore[type-var]
        real = index.is_district(np.array(adcodes, np.int64))
        if not real.all():
            bad = {c for c, ok in zip(adcodes, real.tolist()) if not ok}
            i = next(i for i in sorted(to_check) if regions[i] in bad)
            raise InvalidArgument(f"scans[{i}].region: {regions[i]} is not a district adcode "
                                  f"(not in {index.source.package} {index.source.version}'s district table)")
        clat, clon = index.centroid(np.array(adcodes, np.int64))
        if len(_centroids) > 100_000:
            _centroids.clear()
        _centroids.update(zip(adcodes, zip(clat.tolist(), clon.tolist())))  # type: ignore[arg-type]
        for i in unplaced:
            lat[i], lon[i] = _centroids[regions[i]]  # type: ignore[index]


def _range_recalls(serials: np.ndarray, r_first: np.ndarray, r_last: np.ndarray) -> np.ndarray:
    """For each serial, the index of the first recalled range (in key order, by first
    serial) that contains it, or -1. Vectorised: among the ranges starting at or
    before a serial, the first whose last reaches it is where the running maximum of
    ``last`` first reaches it."""
    out = np.full(len(serials), -1, np.int64)
    if len(r_first) == 0 or len(serials) == 0:
        return out
    starts_before = np.searchsorted(r_first, serials, side="right")
    first_reaching = np.searchsorted(np.maximum.accumulate(r_last), serials, side="left")
    hit = first_reaching < starts_before
    out[hit] = first_reaching[hit]
    return out


def decide_verdicts(data: DataDir, scans: Sequence[Scan], config: VerdictConfig | None = None,
                    txn: lmdb.Transaction[bytes] | None = None, checks: VerifyResult | None = None
                    ) -> list[ScanVerdict]:
    """Decide a batch of scans and record the genuine ones, in one transaction:
    ``txn`` when given (the caller commits: rewards join the same transaction),
    else one of its own, committed before returning. ``checks``: the scans' codes
    already verified by the caller (``data.verify_codes``), so they are not
    verified twice."""
    if txn is None:
        with data.store.env.begin(write=True) as own:
            return decide_verdicts(data, scans, config, own, checks)
    return _decide_verdicts(data, scans, config or VerdictConfig(), txn, checks)


# Enum members read by the per-scan loop, as module constants: on Python 3.11 each
# ``Enum.MEMBER`` lookup goes through EnumType.__getattr__'s slow attribute hook.
_S_GENUINE = CodeStatus.GENUINE
_R_CLONE_DISTINCT_ACTORS = Reason.CLONE_DISTINCT_ACTORS
_R_CLONE_IMPOSSIBLE_TRAVEL = Reason.CLONE_IMPOSSIBLE_TRAVEL
_R_DIVERTED_OUTSIDE_TERRITORY = Reason.DIVERTED_OUTSIDE_TERRITORY
_R_GENUINE_FIRST_SCAN = Reason.GENUINE_FIRST_SCAN
_R_GENUINE_REPEAT_SCAN = Reason.GENUINE_REPEAT_SCAN
_R_LINE_RECALLED = Reason.LINE_RECALLED
_R_NOT_SHIPPED = Reason.NOT_SHIPPED
_R_RANGE_RECALLED = Reason.RANGE_RECALLED
_TYPO = Reason.TYPO
_V_COUNTERFEIT = Verdict.COUNTERFEIT
_V_DIVERTED = Verdict.DIVERTED
_V_GENUINE = Verdict.GENUINE
_V_REVOKED = Verdict.REVOKED
_V_SUSPECT_CLONE = Verdict.SUSPECT_CLONE


def _decide_verdicts(data: DataDir, scans: Sequence[Any], config: VerdictConfig, txn: lmdb.Transaction[bytes],
                     checks: VerifyResult | None) -> list[ScanVerdict]:
    """decide_verdicts inside ``txn``. ``scans``: Scan objects, or anything with their
    attributes (the rewards engine passes its requests)."""
    regions, sources, lat, lon, given, need_geo, unplaced = _check_and_place(scans)
    if checks is None:
        checks = data.verify_codes([s.code for s in scans])
    elif len(checks) != len(scans):
        raise InvalidArgument(f"checks: {len(checks)} results for {len(scans)} scans")
    _resolve_places(regions, sources, lat, lon, given, need_geo, unplaced)
    st = _Stores(data)
    status = checks.status.tolist()
    serials = checks.serial.tolist()
    line_ids = checks.line_id.tolist()
    genuine = [i for i, c in enumerate(status) if c == _GENUINE]
    chains = dict(zip(genuine, TraceStore(data.store).shipped_chains([serials[i] for i in genuine], txn)))
    revoked_lines, r_first, r_last, r_reason = _recalls(txn, st)
    range_hit = _range_recalls(checks.serial, r_first, r_last).tolist() if len(r_first) else None
    # every genuine code's history before this batch, in one sorted getmulti
    keys = {serials[i]: serials[i].to_bytes(SERIAL_BYTES, "big") for i in genuine}
    stored = dict(txn.cursor(db=st.scans).getmulti(sorted(keys.values()))) if keys else {}
    histories: dict[int, _History] = {}   # codes scanned again within the batch: their state
    # codes scanned once so far in the batch, never before: their first scan's fields
    firsts: dict[int, tuple[int, int, int, float, float, int, int, str]] = {}
    out: list[ScanVerdict] = []
    max_actors = config.max_distinct_actors
    clone_threshold = config.clone_score_threshold
    covered: dict[tuple[str, int], bool] = {}   # (dealer, region) -> inside the territory
    for i, scan in enumerate(scans):
        code_status = status[i]
        if code_status != _GENUINE:
            st_enum = CodeStatus(code_status)
            out.append(ScanVerdict(_V_COUNTERFEIT, [_STATUS_REASON[st_enum]], st_enum,
                                   regions[i], sources[i]))
            continue
        serial = serials[i]
        at = scan.time_ms
        if at is None:
            at = now_ms()
        h = histories.get(serial)
        if h is None:
            first = firsts.pop(serial, None) if firsts else None
            if first is not None:     # scanned before in this batch, for the first time
                t0, r0, loc_ms, lat0, lon0, loc_actor, hash0, actor0 = first
                h = _History(t0, r0, 1, t0, r0, loc_ms, r0, lat0, lon0, loc_actor, 1, [hash0], actor0)
            elif stored:
                raw = stored.get(keys[serial])
                h = _History.unpack(raw) if raw is not None else None
        region = regions[i]
        reasons: list[Reason] = [_R_GENUINE_FIRST_SCAN if h is None else _R_GENUINE_REPEAT_SCAN]
        evidence: dict[str, Any] = {}
        ahash = _xxh64(scan.actor.encode())
        # ---- recalls
        revoked = False
        if revoked_lines:
            line_id = line_ids[i]
            if line_id in revoked_lines:
                revoked = True
                reasons.append(_R_LINE_RECALLED)
                evidence["recall_line"] = {"line_id": line_id, "reason": revoked_lines[line_id]}
        if range_hit is not None and (hit := range_hit[i]) >= 0:
            revoked = True
            reasons.append(_R_RANGE_RECALLED)
            evidence["recall_range"] = {"first": int(r_first[hit]), "last": int(r_last[hit]),
                                        "reason": r_reason[hit]}
        # ---- clone signals, against the history before this scan
        here_lat, here_lon = lat[i], lon[i]
        placed = here_lat == here_lat  # noqa: PLR0124 - not NaN, without a call per scan
        first_scan = None
        clone_score = 0.0
        if h is not None:
            score_actors = score_travel = 0.0
            known = ahash in h.hashes
            distinct = h.distinct + (0 if known else 1)
            # Only a new actor is evidence: an actor already seen (the first
            # scanner among them) scanning again is a repeat, not a clone.
            if not known and distinct > max_actors:
                over = (distinct - max_actors) / max_actors
                score_actors = min(1.0, 0.5 + 0.5 * over)
                reasons.append(_R_CLONE_DISTINCT_ACTORS)
                evidence["distinct_actors"] = {"count": distinct, "threshold": max_actors}
            if ahash != h.loc_actor and placed and h.has_place():
                km = float(geo.haversine_km(np.array([h.loc_lat]), np.array([h.loc_lon]),
                                            np.array([here_lat]), np.array([here_lon]))[0])
                # the real gap between the two placed scans, in either order
                # (an offline scanner may upload late)
                hours = max(abs(at - h.loc_ms) / 3.6e6, 1e-6)
                speed = km / hours
                if km >= config.min_travel_km and speed > config.max_speed_kmh:
                    over = (speed - config.max_speed_kmh) / config.max_speed_kmh
                    score_travel = min(1.0, 0.5 + 0.5 * over)
                    reasons.append(_R_CLONE_IMPOSSIBLE_TRAVEL)
                    evidence["travel"] = {"from_region": h.loc_region or None, "from_time_ms": h.loc_ms,
                                          "to_region": region,
                                          "km": round(km, 1), "hours": round(hours, 3),
                                          "speed_kmh": round(speed, 1),
                                          "max_speed_kmh": config.max_speed_kmh}
            first_scan = {"time_ms": h.first_ms, "region": h.first_region or None, "actor": h.first_actor}
            clone_score = 1.0 - (1.0 - score_actors) * (1.0 - score_travel)
        # ---- diversion
        diverted = False
        chain = chains[i]
        if chain is None:
            reasons.append(_R_NOT_SHIPPED)
        else:
            ancestors, shipment, dealer = chain
            evidence["trace"] = {"ancestors": list(ancestors),
                                 "shipped_unit": shipment.unit,
                                 "shipment_id": shipment.shipment_id,
                                 "dealer_id": dealer.dealer_id,
                                 "territory": list(dealer.territory)}
            if region is not None:
                inside = covered.get((dealer.dealer_id, region))
                if inside is None:
                    inside = covered[dealer.dealer_id, region] = dealer.covers(region)
                if not inside:
                    diverted = True
                    reasons.append(_R_DIVERTED_OUTSIDE_TERRITORY)
                    evidence["diversion"] = {"dealer_id": dealer.dealer_id,
                                             "territory": list(dealer.territory),
                                             "scan_region": region, "region_source": sources[i]}
        # ---- verdict by precedence
        if revoked:
            verdict = _V_REVOKED
        elif clone_score >= clone_threshold:
            verdict = _V_SUSPECT_CLONE
        elif diverted:
            verdict = _V_DIVERTED
        else:
            verdict = _V_GENUINE
        # ---- record
        if not placed:
            here_lat = here_lon = _NAN
        if h is None:   # the first scan: its fields, packed at the end (no _History for most codes)
            firsts[serial] = (at, region or 0, at if placed else 0, here_lat, here_lon, ahash if placed else 0,
                              ahash, scan.actor)
            count = 1
        else:
            if ahash not in h.hashes:
                h.distinct = min(h.distinct + 1, 65535)
                if len(h.hashes) < MAX_ACTOR_HASHES:
                    h.hashes.append(ahash)
            h.count += 1
            h.last_ms, h.last_region = at, region or 0
            if placed:   # a placeless scan leaves the travel reference alone
                h.loc_ms, h.loc_region, h.loc_lat, h.loc_lon, h.loc_actor = (
                    at, region or 0, here_lat, here_lon, ahash)
            histories[serial] = h
            count = h.count
        # ScanVerdict(verdict, reasons, CodeStatus.GENUINE, ...), the same value, without
        # the dataclass's attribute-by-attribute __init__
        v = _new(ScanVerdict)
        _set_attr(v, "__dict__", {"verdict": verdict, "reasons": reasons, "code_status": _S_GENUINE,
                                  "region": region, "region_source": sources[i], "clone_score": clone_score,
                                  "first_scan": first_scan, "scan_count": count, "evidence": evidence})
        out.append(v)
    # one write per scanned code, its state after the batch, in key order
    records = [(keys[serial], h.pack()) for serial, h in histories.items()]
    first_record = _HIST_WITH[1].pack
    records += [(keys[serial], first_record(t0, r0, 1, t0, r0, loc_ms, r0, lat0, lon0, loc_actor, 1, 1, hash0)
                 + actor0.encode()[:64])    # as _History(...).pack()
                for serial, (t0, r0, loc_ms, lat0, lon0, loc_actor, hash0, actor0) in firsts.items()]
    if records:
        txn.cursor(db=st.scans).putmulti(sorted(records))
    return out


_new, _set_attr = object.__new__, object.__setattr__
