"""Recalls (SG-R1, SG-R2): admin writes and reads of the ``revoked`` database, and
the index that tells which genuine codes a recall covers.

The "revoked" database holds one entry per recall (msgpack records,
scangate.state.records; schema 1 wrote JSON, which scangate.state.migrate converts;
the keys are scangate.state.layout's):
  line_recall_key: b"L" + line id (>I)            -> LineRecall (reason, at_ms)
  range_recall_key: b"R" + first (>Q) + last (>Q) -> RangeRecall (last, reason, at_ms, source)
Older data directories may hold range keys of b"R" + first only (one range per
first serial); they are read the same way (a key layout, not a record format:
the upgrade to schema 2 converts their values and keeps their keys). Keying a
range by first and last lets a range and a single code inside it (first ==
last) both exist: a key of the first serial alone made the later one replace
the earlier.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lmdb
import numpy as np

from ..clock import now_ms
from ..datadir import DataDir
from ..enums import CodeStatus, Reason
from ..errors import BatchRejected, InvalidArgument, NotFound, Problem
from ..recalls import Recall, RecallReport
from . import layout, records
from .records import LineRecall, RangeRecall

__all__ = ["MAX_RECALL_REASON", "RECALL_SOURCES", "RecallIndex", "Recalls", "list_recalls", "range_recalls",
           "read_recalls", "recall_codes", "recall_line", "recall_range", "revoke_line", "revoke_range"]


class _Stores:
    def __init__(self, data: DataDir):
        self.store = data.store
        self.env = data.store.env
        self.revoked = data.store.db("revoked")


class Recalls:
    """Every recall as of one read: recalled lines (id -> reason) and ranges,
    sorted by first serial."""

    __slots__ = ("first", "last", "lines", "reasons")

    def __init__(self, lines: dict[int, str], first: np.ndarray, last: np.ndarray, reasons: list[str]):
        self.lines, self.first, self.last, self.reasons = lines, first, last, reasons

    def __bool__(self) -> bool:
        return bool(self.lines) or len(self.first) > 0


def read_recalls(txn: lmdb.Transaction[bytes], db: Any) -> Recalls:
    lines: dict[int, str] = {}
    firsts, lasts, reasons = [], [], []
    for k, v in txn.cursor(db=db):
        line_id = layout.recalled_line(k)
        if line_id is not None:
            lines[line_id] = records.decode_line_recall(v).reason
        else:
            r = records.decode_range_recall(v)
            firsts.append(layout.recalled_first(k))
            lasts.append(r.last)
            reasons.append(r.reason)
    return Recalls(lines, np.array(firsts, np.uint64), np.array(lasts, np.uint64), reasons)


def range_recalls(serials: np.ndarray, r_first: np.ndarray, r_last: np.ndarray) -> np.ndarray:
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
    line_id = layout.recalled_line(key)
    if line_id is not None:
        line = records.decode_line_recall(raw)
        return Recall("line", line.reason, line.at_ms, line_id=line_id, source="line")
    r = records.decode_range_recall(raw)
    return Recall("range", r.reason, r.at_ms, first=layout.recalled_first(key), last=r.last, source=r.source)


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


def _put_recall(txn: lmdb.Transaction[bytes], st: _Stores, key: bytes, value: LineRecall | RangeRecall
                ) -> tuple[Recall, bool]:
    """Store one recall unless the same one is there: (the stored entry, added)."""
    old = txn.get(key, db=st.revoked)
    if old is None and isinstance(value, RangeRecall):
        legacy = key[:9]       # an older directory's key: range_recall_key's b"R" + first only
        raw = txn.get(legacy, db=st.revoked)
        if raw is not None and records.decode_range_recall(raw).last == value.last:
            key, old = legacy, raw
    if old is not None:
        return _decode_recall(key, bytes(old)), False
    raw = records.encode(value)
    txn.put(key, raw, db=st.revoked)
    st.store.bump_rules(txn)
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
        rec, added = _put_recall(txn, st, layout.line_recall_key(line_id), LineRecall(reason, now_ms()))
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
        rec, added = _put_recall(txn, st, layout.range_recall_key(first, last),
                                 RangeRecall(last, reason, now_ms(), source))
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
            key = layout.range_recall_key(first, last)
            rec, new = _put_recall(txn, st, key, RangeRecall(last, reason, at, "codes"))
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
            r = read_recalls(txn, st.revoked)
        self.lines, self.r_first, self.r_last, self.r_reason = r.lines, r.first, r.last, r.reasons

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
            out |= range_recalls(np.asarray(serials, np.uint64), self.r_first, self.r_last) >= 0
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
            hit = int(range_recalls(np.array([serial], np.uint64), self.r_first, self.r_last)[0])
            if hit >= 0:
                reasons.append(Reason.RANGE_RECALLED)
                evidence["recall_range"] = {"first": int(self.r_first[hit]), "last": int(self.r_last[hit]),
                                            "reason": self.r_reason[hit]}
        return reasons, evidence
