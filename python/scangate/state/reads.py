"""The read model of the decision state, as the edges see it: ledger entries,
payout requests, claims and stored decisions as JSON-shaped dicts; counters,
budgets, points, scan histories, request records, secrets and shipments as the
typed values of scangate.state.records. For reports, the CLI, tests and tools;
the decision engine reads through scangate.state.batch instead (and the stored
bytes themselves, for repair and forensics, are scangate.state.raw's).

Every function reads one snapshot of its own (scangate.state.view: a read
transaction of the data directory, or of the PostgreSQL store where the
directory was opened with one); keys come from scangate.state.layout; a stored
record that is not what its database holds is CorruptionError naming it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

from ..datadir import DataDir
from ..decision import Decision
from ..errors import CorruptionError
from . import layout
from .batch import request_pointer
from .records import (COUNTS, I64, U64, History, LogRecord, PointsEntry, RedemptionRecord, decode_claim,
                      decode_ledger, decode_payout, decode_points_entry, decode_redemption,
                      to_json, unpack_account)
from .trace import Shipment, TraceStore
from .view import logged_decision, view

__all__ = ["ActorCounters", "budget", "budgets", "campaign_secret", "claims", "counters", "day_counters",
           "decision_of", "history_number", "ledger", "month_points", "outbox", "plugin_failures", "points_accounts",
           "points_histories", "points_history", "redemption", "request_record", "requests", "scan_history",
           "shipments_of"]


def ledger(data: DataDir, first: int = 1) -> Iterator[dict[str, Any]]:
    """Every ledger entry from ``first`` on, in order."""
    with view(data) as v:
        for _k, raw in v.items("ledger", layout.seq_key(first)):
            yield to_json(decode_ledger(raw))


def outbox(data: DataDir) -> dict[str, dict[str, Any]]:
    """Every payout request by its key."""
    with view(data) as v:
        return {k.decode(): to_json(decode_payout(raw)) for k, raw in v.items("outbox")}


def claims(data: DataDir) -> dict[int, dict[str, Any]]:
    """Every claim by the serial it was made on."""
    with view(data) as v:
        return {int.from_bytes(k, "big"): to_json(decode_claim(raw)) for k, raw in v.items("claims")}


def decision_of(data: DataDir, request_id: str, client: str = "") -> dict[str, Any] | None:
    """The stored decision of a request (``Decision.to_json()`` without its
    message), or None when it was never decided."""
    with view(data) as v:
        key = layout.request_key(client, request_id)
        pointer = v.get("requests", key)
        if pointer is None:
            return None
        number, _fingerprint = request_pointer(key, pointer)
        return to_json(logged_decision(v, number))



def decision_log(data: DataDir) -> list[tuple[int, Decision]]:
    """Every decision of the decision log with its number, in order (a record holds
    a batch's decisions: records.LogRecord)."""
    with view(data) as v:
        return [item for key, raw in v.items("decisions") for item in LogRecord(int(U64.unpack(key)[0]), raw).decisions()]


# ---------------------------------------------------------------------- requests
def request_record(data: DataDir, request_id: str, client: str = "") -> tuple[int, bytes | None] | None:
    """A request's record in the request index: (the number of its decision in the
    decision log, the request's fingerprint; None in a record written before
    fingerprints), or None when the request was never decided."""
    key = layout.request_key(client, request_id)
    with view(data) as v:
        raw = v.get("requests", key)
    return None if raw is None else request_pointer(key, raw)


def requests(data: DataDir) -> dict[bytes, tuple[int, bytes | None]]:
    """Every request record by its key (``layout.request_key``: a request without a
    client is keyed by its id's UTF-8), as ``request_record`` gives it."""
    with view(data) as v:
        return {k: request_pointer(k, raw) for k, raw in v.items("requests")}


# ---------------------------------------------------------------------- counters, budgets
class ActorCounters(NamedTuple):
    """An actor's totals in a campaign (counters t/): awards, fen and eligible
    scans, then the local day the record holds (days since 1970-01-01; None in a
    record written before it held its day, whose every day has a d/ record:
    ``day_counters``) with that day's awards and fen (0 without a day)."""

    awards: int
    fen: int
    eligible_scans: int
    day: int | None
    day_awards: int
    day_fen: int


def _counts(what: str, raw: bytes, sizes: tuple[int, ...]) -> tuple[int, ...]:
    if len(raw) not in tuple(8 * n for n in sizes):
        raise CorruptionError(f"{what}: {len(raw)} bytes, not {' or '.join(str(8 * n) for n in sizes)}")
    return tuple(int(v) for v in COUNTS[len(raw) // 8].unpack(raw))


def counters(data: DataDir, campaign_id: str, actor: str) -> ActorCounters | None:
    """An actor's totals in a campaign (``ActorCounters``); None before its first
    eligible scan there."""
    with view(data) as v:
        raw = v.get("counters", layout.total_key(campaign_id, actor))
    if raw is None:
        return None
    values = _counts(f"counters of {actor!r} in campaign {campaign_id!r}", bytes(raw), (3, 6))
    if len(values) == 3:
        return ActorCounters(values[0], values[1], values[2], None, 0, 0)
    awards, fen, scans, day, day_awards, day_fen = values
    return ActorCounters(awards, fen, scans, day, day_awards, day_fen)


def day_counters(data: DataDir, campaign_id: str, actor: str, day: str) -> tuple[int, int] | None:
    """(awards, fen) of an actor in a campaign on local day ``day`` (YYYY-MM-DD)
    from its own d/ record, kept for every day but the one ``counters`` holds;
    None without one."""
    key = layout.day_key(layout.total_key(campaign_id, actor), day)
    with view(data) as v:
        raw = v.get("counters", key)
    if raw is None:
        return None
    awards, fen = _counts(f"counters of {actor!r} in campaign {campaign_id!r} on {day}", bytes(raw), (2,))
    return awards, fen


def plugin_failures(data: DataDir, campaign_id: str, plugin: str) -> int:
    """How many times rule plugin ``plugin`` failed in a campaign's decisions."""
    with view(data) as v:
        raw = v.get("counters", layout.plugin_failure_key(campaign_id, plugin))
    if raw is None:
        return 0
    return _counts(f"failures of plugin {plugin!r} in campaign {campaign_id!r}", bytes(raw), (2,))[0]


def budget(data: DataDir, campaign_id: str, prize_id: str) -> tuple[int, int] | None:
    """(awards, fen) a campaign's prize has spent of its budget; None before its first award."""
    with view(data) as v:
        raw = v.get("budgets", layout.budget_key(campaign_id, prize_id))
    if raw is None:
        return None
    awards, fen = _counts(f"budget of prize {prize_id!r} of campaign {campaign_id!r}", bytes(raw), (2,))
    return awards, fen


def budgets(data: DataDir) -> dict[str, tuple[int, int]]:
    """(awards, fen) spent of every prize that was awarded, by "<campaign>/<prize>"."""
    with view(data) as v:
        out = {}
        for k, raw in v.items("budgets"):
            name = k.decode("utf-8", "replace")
            awards, fen = _counts(f"budget {name!r}", raw, (2,))
            out[name] = (awards, fen)
        return out


# ---------------------------------------------------------------------- points
def points_accounts(data: DataDir) -> dict[str, tuple[int, int]]:
    """(balance, points earned) of every actor with a points account, by actor."""
    with view(data) as v:
        out = {}
        for k, raw in v.items("points", prefix=layout.ACCOUNT_PREFIX):
            actor = k[len(layout.ACCOUNT_PREFIX):].decode("utf-8", "replace")
            out[actor] = unpack_account(actor, raw)
        return out


def points_history(data: DataDir, actor: str) -> list[PointsEntry]:
    """Every history entry of an actor, oldest first."""
    with view(data) as v:
        return [decode_points_entry(raw) for _, raw in v.items("points", prefix=layout.history_prefix(actor.encode()))]


def points_histories(data: DataDir) -> dict[str, list[PointsEntry]]:
    """Every actor's history entries (``points_history``), by actor."""
    out: dict[str, list[PointsEntry]] = {}
    with view(data) as v:
        for key, raw in v.items("points", prefix=layout.HISTORY_PREFIX):
            rest = key[len(layout.HISTORY_PREFIX):]
            # the actor, NUL, the 8-byte history number
            if len(rest) < 9 or rest[-9] != 0:
                raise CorruptionError(f"points history key {layout.HISTORY_PREFIX + rest!r}: "
                                      "not <actor> NUL <number>")
            out.setdefault(rest[:-9].decode("utf-8", "replace"), []).append(decode_points_entry(raw))
    return out


def history_number(data: DataDir) -> int | None:
    """The last points history number given out; None before the first entry.
    (On PostgreSQL, the sequence the numbers come from: no q record there.)"""
    if data.decisions is not None:
        return data.decisions.last_points_number()
    with view(data) as v:
        raw = v.get("points", layout.HISTORY_SEQ)
    if raw is None:
        return None
    if len(raw) != U64.size:
        raise CorruptionError(f"points history number: {len(raw)} bytes, not {U64.size}")
    return int(U64.unpack(raw)[0])


def redemption(data: DataDir, request_id: str) -> RedemptionRecord | None:
    """The stored result of redemption ``request_id``; None when it was never asked for."""
    with view(data) as v:
        raw = v.get("points", layout.redemption_key(request_id))
    return None if raw is None else decode_redemption(raw)


def month_points(data: DataDir, month: str) -> dict[str, int]:
    """The points each actor earned in ``month`` (YYYY-MM), by actor."""
    prefix = layout.month_prefix(month)
    with view(data) as v:
        return {k[len(prefix):].decode("utf-8", "replace"): int(I64.unpack(raw)[0])
                for k, raw in v.items("points", prefix=prefix)}


# ---------------------------------------------------------------------- scans, campaigns, trace
def scan_history(data: DataDir, serial: int) -> History | None:
    """The recorded scan state of a serial; None when it was never scanned."""
    with view(data) as v:
        raw = v.get("scans", layout.serial_key(serial))
    return None if raw is None else History.unpack(raw)


def campaign_secret(data: DataDir, campaign_id: str) -> bytes | None:
    """A campaign's secret (its draws' HMAC key); None for no such campaign."""
    with view(data) as v:
        raw = v.get("campaigns", layout.secret_key(campaign_id))
    return None if raw is None else bytes(raw)


def shipments_of(data: DataDir, serials: np.ndarray | Sequence[int]) -> dict[int, Shipment]:
    """The current shipment of each of ``serials`` that was shipped itself (not
    through a parent), by serial."""
    trace = TraceStore(data.store)
    with trace.env.begin() as txn:
        return trace.shipments_of(serials, txn)
