"""Payouts: deliver the outbox's payout requests through an adapter, at the rate
the payment rail allows, retrying with the same idempotency key until confirmed.

Each request moves pending -> sending -> confirmed (or failed, then retried after
a back-off). The state change to ``sending`` commits before the adapter is called,
and the change to ``confirmed`` commits after it returns, so a crash anywhere
leaves a request pending or sending; both are sent again with the SAME key, and
the adapter (like WeChat Pay's out_trade_no) must treat a repeated key as the same
payment. Nothing is lost, nothing is paid twice.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from .datadir import DataDir, open_private_file
from .errors import InvalidArgument

__all__ = ["PayoutAdapter", "FileAdapter", "run_payouts", "list_payouts", "DEFAULT_RATE_PER_S"]

log = logging.getLogger(__name__)

DEFAULT_RATE_PER_S = 30.0     # WeChat red packets: 30 per second per merchant
MAX_ATTEMPTS = 10
BACKOFF_MS = (1_000, 5_000, 30_000, 120_000, 600_000)


class PayoutAdapter(Protocol):
    """A payment rail. ``send`` must be idempotent on request["key"]: the same key
    sent twice pays once and returns the same confirmation id."""

    def send(self, request: dict[str, Any]) -> str: ...


class FileAdapter:
    """The default adapter: appends each payout to a JSON-lines file (fsynced), and
    answers a repeated key with its first confirmation, as a real rail would."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._seen: dict[str, str] = {}
        if self.path.exists():
            raw = self.path.read_bytes()
            complete = raw[: raw.rfind(b"\n") + 1]
            if len(complete) != len(raw):
                # a line cut short by a crash was never a payment: drop it
                with open(self.path, "r+b") as f:
                    f.truncate(len(complete))
                    os.fsync(f.fileno())
            for line in complete.decode("utf-8").splitlines():
                if line.strip():
                    row = json.loads(line)
                    self._seen[row["key"]] = row["confirmation"]

    def send(self, request: dict[str, Any]) -> str:
        key = request["key"]
        if key in self._seen:
            return self._seen[key]
        confirmation = f"file-{len(self._seen) + 1}"
        row = {"key": key, "confirmation": confirmation, "actor": request["actor"], "kind": request["kind"],
               "amount_fen": request["amount_fen"], "prize_id": request["prize_id"], "at_ms": int(time.time() * 1000)}
        # created owner-only: it lists actor ids and amounts
        with os.fdopen(open_private_file(self.path, os.O_WRONLY | os.O_APPEND), "a", encoding="utf-8") as f:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self._seen[key] = confirmation
        return confirmation


def _rows(data: DataDir) -> Iterator[tuple[bytes, dict[str, Any]]]:
    with data.store.env.begin() as txn:
        for k, v in txn.cursor(db=data.store.db("outbox")):
            yield bytes(k), json.loads(bytes(v))


def list_payouts(data: DataDir, state: str | None = None) -> list[dict[str, Any]]:
    return [row for _, row in _rows(data) if state is None or row["state"] == state]


def _update(data: DataDir, key: bytes, **changes: Any) -> dict[str, Any]:
    with data.store.env.begin(write=True) as txn:
        row = json.loads(txn.get(key, db=data.store.db("outbox")))
        row.update(changes)
        txn.put(key, json.dumps(row).encode(), db=data.store.db("outbox"))
    return row  # type: ignore[no-any-return]


def run_payouts(data: DataDir, adapter: PayoutAdapter, *, rate_per_s: float = DEFAULT_RATE_PER_S,
                max_items: int | None = None, clock: Callable[[], float] = time.monotonic,
                sleep: Callable[[float], None] = time.sleep, now_ms: Callable[[], int] | None = None
                ) -> dict[str, int]:
    """Deliver due requests once through the outbox, at most ``rate_per_s`` a second
    (a token bucket of one second's burst). Returns counts by outcome."""
    if rate_per_s <= 0:
        raise InvalidArgument(f"rate_per_s: must be above 0, not {rate_per_s}")
    now_ms = now_ms or (lambda: int(time.time() * 1000))
    interval = 1.0 / rate_per_s
    next_slot = clock()
    counts = {"confirmed": 0, "failed": 0}
    due = [(k, r) for k, r in _rows(data)
           if r["state"] in ("pending", "sending") or (r["state"] == "failed" and r["attempts"] < MAX_ATTEMPTS
                                                       and r.get("next_attempt_ms", 0) <= now_ms())]
    for key, row in due[:max_items] if max_items is not None else due:
        wait = next_slot - clock()
        if wait > 0:
            sleep(wait)
        next_slot = max(next_slot, clock()) + interval
        row = _update(data, key, state="sending", attempts=row["attempts"] + 1)
        try:
            confirmation = adapter.send(row)
        except Exception as exc:  # any adapter failure: retry later with the same key
            backoff = BACKOFF_MS[min(row["attempts"] - 1, len(BACKOFF_MS) - 1)]
            _update(data, key, state="failed", error=f"{type(exc).__name__}: {exc}"[:500],
                    next_attempt_ms=now_ms() + backoff)
            log.warning("payout %s failed (attempt %d): %s", row["key"], row["attempts"], exc)
            counts["failed"] += 1
            continue
        _update(data, key, state="confirmed", confirmation=confirmation, confirmed_ms=now_ms())
        counts["confirmed"] += 1
    return counts
