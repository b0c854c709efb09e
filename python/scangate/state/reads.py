"""The read model of the decision state, as the edges see it (JSON-shaped dicts):
ledger entries, payout requests, claims and stored decisions. For reports, the CLI,
tests and tools; the decision engine reads through scangate.state.batch instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..datadir import DataDir
from ..errors import CorruptionError
from . import layout
from .batch import POINTER_SIZES
from .records import decode_claim, decode_decision, decode_ledger, decode_payout, to_json

__all__ = ["claims", "decision_of", "ledger", "outbox"]


def ledger(data: DataDir, first: int = 1) -> Iterator[dict[str, Any]]:
    """Every ledger entry from ``first`` on, in order."""
    with data.store.env.begin() as txn:
        cur = txn.cursor(db=data.store.db("ledger"))
        if cur.set_range(layout.seq_key(first)):
            for _k, raw in cur:
                yield to_json(decode_ledger(raw))


def outbox(data: DataDir) -> dict[str, dict[str, Any]]:
    """Every payout request by its key."""
    with data.store.env.begin() as txn:
        return {bytes(k).decode(): to_json(decode_payout(v)) for k, v in txn.cursor(db=data.store.db("outbox"))}


def claims(data: DataDir) -> dict[int, dict[str, Any]]:
    """Every claim by the serial it was made on."""
    with data.store.env.begin() as txn:
        return {int.from_bytes(k, "big"): to_json(decode_claim(v)) for k, v in txn.cursor(db=data.store.db("claims"))}


def decision_of(data: DataDir, request_id: str, client: str = "") -> dict[str, Any] | None:
    """The stored decision of a request (``Decision.to_json()`` without its
    message), or None when it was never decided."""
    with data.store.env.begin() as txn:
        pointer = txn.get(layout.request_key(client, request_id), db=data.store.db("requests"))
        if pointer is None:
            return None
        if len(pointer) not in POINTER_SIZES:
            raise CorruptionError(f"request record of {request_id!r}: {len(pointer)} bytes, not a decision number")
        raw = txn.get(bytes(pointer[:8]), db=data.store.db("decisions"))
        return None if raw is None else to_json(decode_decision(raw))
