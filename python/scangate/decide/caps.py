"""Caps: a user's awards per local day and in total, by count and by fen, in one campaign.

An actor's counters in a campaign are one record (awards, fen, eligible scans,
and the awards of the local day it holds) plus a record per other day that had
awards (scangate.state.layout: t/ and d/). Count caps are checked before the
draw; fen caps once the prize is known (consolation prizes are not capped).
"""

from __future__ import annotations

from ..campaigns import Caps
from ..decision import NoReward
from ..errors import CorruptionError
from ..state import layout
from ..state.batch import Mutations, Snapshot

__all__ = ["Counts", "cash_capped", "count_capped", "count_award", "count_scan", "counts", "day_keys"]

_DAILY_CAP_REACHED = NoReward.DAILY_CAP_REACHED
_TOTAL_CAP_REACHED = NoReward.TOTAL_CAP_REACHED
_UNREAD = ()    # not a counter value (a record is 2 to 6 integers, or None)

# (awards, fen, eligible scans before this one, the day's awards, fen, the day the
# t/ record holds: (day number, awards, fen) or ())
Counts = tuple[int, int, int, int, int, tuple[int, ...]]


def day_keys(snap: Snapshot, scans: list[tuple[bytes, tuple[int, str]]]) -> list[bytes]:
    """The d/ records a batch must read, given its t/ records read: the day of each
    scan (total key, (day number, day)) that its t/ record does not hold. A day a
    record takes within the batch is written into the snapshot when it moves."""
    out = []
    for total_key, (number, day) in scans:
        total = snap.counters[total_key]
        if total is None:   # no record, so no day records either: known absent without a read
            snap.new_totals.add(total_key)
        elif len(total) < 6 or total[3] != number:
            out.append(layout.day_key(total_key, day))
    return out


def counts(snap: Snapshot, total_key: bytes, today: tuple[int, str]) -> tuple[Counts, bool]:
    """An actor's counts before this scan, and whether it had a record at all."""
    total = snap.counters[total_key]
    if total is None:       # no awards, no scans: no day records either
        return (0, 0, 0, 0, 0, ()), False
    held = total[3:]    # the day the record holds: (day number, awards, fen), or ()
    if held and held[0] == today[0]:
        return (total[0], total[1], total[2], held[1], held[2], held), True
    key = layout.day_key(total_key, today[1])
    day = snap.counters.get(key, _UNREAD)
    if day is _UNREAD:
        if total_key not in snap.new_totals:    # day_keys names every other one
            raise CorruptionError("caps: a day record the batch did not read")
        day = None      # an actor new in this batch: no day records before it
    d_count, d_amount = day if day is not None else (0, 0)
    return (total[0], total[1], total[2], d_count, d_amount, held), True


def count_capped(caps: Caps, k: Counts) -> NoReward | None:
    if caps.per_user_daily_count is not None and k[3] >= caps.per_user_daily_count:
        return _DAILY_CAP_REACHED
    if caps.per_user_total_count is not None and k[0] >= caps.per_user_total_count:
        return _TOTAL_CAP_REACHED
    return None


def cash_capped(caps: Caps, k: Counts, amount_fen: int) -> NoReward | None:
    if caps.per_user_daily_amount_fen is not None and k[4] + amount_fen > caps.per_user_daily_amount_fen:
        return _DAILY_CAP_REACHED
    if caps.per_user_total_amount_fen is not None and k[1] + amount_fen > caps.per_user_total_amount_fen:
        return _TOTAL_CAP_REACHED
    return None


def _put(snap: Snapshot, m: Mutations, key: bytes, value: tuple[int, ...]) -> None:
    snap.counters[key] = m.counters[key] = value


def count_scan(snap: Snapshot, m: Mutations, total_key: bytes, k: Counts, n: int) -> None:
    """A scan that drew without a capped award (lost, or a consolation prize): its
    number ``n`` is used; awards and the held day unchanged."""
    _put(snap, m, total_key, (k[0], k[1], n, *k[5]))


def count_award(snap: Snapshot, m: Mutations, total_key: bytes, k: Counts, n: int, today: tuple[int, str],
                amount: int, held_day: str) -> None:
    """An award on ``today``: it takes the record's day place, and the day the
    record held keeps its awards in its own d/ record (``held_day``: that day)."""
    held = k[5]
    if held and held[0] != today[0] and (held[1] or held[2]):
        _put(snap, m, layout.day_key(total_key, held_day), (held[1], held[2]))
    _put(snap, m, total_key, (k[0] + 1, k[1] + amount, n, today[0], k[3] + 1, k[4] + amount))
