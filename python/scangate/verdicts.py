"""Verdicts: one decision per scan, with a stable reason code and its evidence.

What a verdict is lives in scangate.verdict (re-exported here), the deciding in
scangate.decide.verdicts, recalls in scangate.state.recalls (re-exported here).
``decide_verdicts`` decides the verdicts alone over a batch and records each scan
of a genuine code in the scan history (one write transaction per batch: group
commit), returning after it committed; ``scangate.rewards.decide_scans`` decides
rewards with the verdicts in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .clock import now_ms
from .datadir import DataDir, VerifyResult
from .decide.engine import judge_batch
from .decide.requests import check_scans
from .enums import Reason, Verdict
from .errors import InvalidArgument
from .recalls import Recall, RecallReport
from .state import batch as batch_state
from .state.batch import Mutations
from .state.recalls import (
    MAX_RECALL_REASON,
    RECALL_SOURCES,
    RecallIndex,
    list_recalls,
    recall_codes,
    recall_line,
    recall_range,
    revoke_line,
    revoke_range,
)
from .verdict import MESSAGES, TYPO_MESSAGE, Scan, ScanVerdict, VerdictConfig, verdict_message

__all__ = [
    "MAX_RECALL_REASON",
    "MESSAGES",
    "RECALL_SOURCES",
    "Recall",
    "RecallIndex",
    "RecallReport",
    "Verdict",
    "Reason",
    "Scan",
    "ScanVerdict",
    "TYPO_MESSAGE",
    "VerdictConfig",
    "decide_verdicts",
    "list_recalls",
    "recall_codes",
    "recall_line",
    "recall_range",
    "revoke_line",
    "revoke_range",
    "scan_history",
    "verdict_message",
]

# ---------------------------------------------------------------------- history
def scan_history(data: DataDir, code: str) -> dict[str, Any] | None:
    """The recorded scan state of one code, or None if never scanned."""
    check = data.verify_code(code)
    if check.serial is None:
        return None
    h = batch_state.scan_history(data.store, check.serial)
    if h is None:
        return None
    return {"first_ms": h.first_ms, "first_region": h.first_region or None, "first_actor": h.first_actor,
            "count": h.count, "distinct_actors": h.distinct, "last_ms": h.last_ms,
            "last_region": h.last_region or None}


# ---------------------------------------------------------------------- decide
def decide_verdicts(data: DataDir, scans: Sequence[Scan], config: VerdictConfig | None = None,
                    checks: VerifyResult | None = None) -> list[ScanVerdict]:
    """Decide a batch of scans and record the genuine ones, in one transaction,
    committed before returning. ``checks``: the scans' codes already verified by
    the caller (``data.verify_codes``), so they are not verified twice. The
    verdicts alone: ``scangate.rewards.decide_scans`` decides rewards with them.
    A field out of bounds raises InvalidArgument naming it (``scans[i].field``)
    before anything is read or written."""
    check_scans(scans)
    if checks is None:
        checks = data.verify_codes([s.code for s in scans])
    elif len(checks) != len(scans):
        raise InvalidArgument(f"checks: {len(checks)} results for {len(scans)} scans")
    with batch_state.write_batch(data.store) as batch:
        m = Mutations()
        out, _keys = judge_batch(batch, scans, checks, config or VerdictConfig(), now_ms(), m)
        batch.apply(m)
    return out
