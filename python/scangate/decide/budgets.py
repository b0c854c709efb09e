"""Budgets: which prize a win draws among those with budget left, and what the ledger records of them.

A budget is a prize's count of awards and fen (either may be unlimited); one
more award must stay within both. Budgets are read once per batch (every budget
of the batch's campaigns) and updated as the batch decides, so they are never
overspent, whatever the concurrency: the store applies a batch at a time.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from ..decision import NoReward
from .campaign import Compiled, Entry
from .draw import win_how

__all__ = ["budget_left", "budgets_left", "outcome", "pick_prize", "settle", "spend"]

_U64 = struct.Struct(">Q")
_ZERO2 = (0, 0)
Budgets = dict[bytes, "tuple[int, ...] | None"]
Rows = tuple[tuple[str, bytes, "int | None", "int | None"], ...]    # Compiled.budget_rows


def budget_left(budgets: Budgets, e: Entry) -> bool:
    """Whether one more award of the prize stays within its budgets (``budgets``:
    the batch's budget values, read for every prize of its campaigns)."""
    _p, key, count_max, fen_max, fen, _w = e
    count, amount = budgets[key] or _ZERO2
    return (count_max is None or count < count_max) and (fen_max is None or amount + fen <= fen_max)


def pick_prize(budgets: Budgets, entries: Sequence[Entry], mac: bytes) -> Entry | None:
    """The prize a win draws, by weight, among those with budget left (None: none)."""
    left = []
    total = 0
    for e in entries:    # budget_left, written out: a win's every prize, every win
        count, amount = budgets[e[1]] or _ZERO2
        if (e[2] is None or count < e[2]) and (e[3] is None or amount + e[4] <= e[3]):
            left.append(e)
            total += e[5]
    if total == 0:
        return None
    point = _U64.unpack_from(mac, 8)[0] % total     # int.from_bytes(mac[8:16], "big") % total
    for e in left:
        if point < e[5]:
            return e
        point -= e[5]
    return None  # unreachable


def spend(budgets: Budgets, key: bytes, amount: int) -> tuple[int, int]:
    """The budget record after one more award of ``amount`` fen."""
    count, spent = budgets[key] or _ZERO2
    value = budgets[key] = (count + 1, spent + amount)
    return value


def budgets_left(rows: Rows, budgets: Budgets) -> dict[str, list[int | None]]:
    """What is left of the budgets of ``rows`` (Compiled.budget_rows: prizes with a
    budget) before this decision, as the ledger entry records it: ``{"<prize>":
    [awards left, fen left], ...}`` in the campaign's prize order, None for no
    limit (negative when a reload cut a budget below what was already spent)."""
    out: dict[str, list[int | None]] = {}
    for prize_id, key, count_max, fen_max in rows:
        count, amount = budgets[key] or _ZERO2
        out[prize_id] = [None if count_max is None else count_max - count, None if fen_max is None else fen_max - amount]
    return out


_BUDGET_EXHAUSTED = NoReward.BUDGET_EXHAUSTED
_LOST_DRAW = NoReward.LOST_DRAW


def outcome(c: Compiled, budgets: Budgets, how: str, mac: bytes, wanted_id: str | None
            ) -> tuple[Entry | None, str, NoReward | None, bool]:
    """The prize a scan gets once its draw is known (``how``: draw.win_how), and
    why none: a win picks by weight among the prizes with budget left
    (BUDGET_EXHAUSTED when none has); a plugin's prize (``wanted_id``) replaces
    the pick while within its budget; a lost or unfunded draw gets the consolation
    prize while it has budget (``how`` becomes "consolation"); else LOST_DRAW.
    Returns (prize entry or None, how, why not, whether the pick found a prize).
    ``settle`` asks it."""
    won: Entry | None = None
    reason: NoReward | None = None
    if how != "lost":
        won = pick_prize(budgets, c.winning, mac)
        if won is None:
            reason = _BUDGET_EXHAUSTED
    picked = won is not None
    if won is not None and wanted_id is not None and wanted_id != won[0].id:
        wanted = c.entry.get(wanted_id)
        if wanted is not None and budget_left(budgets, wanted):
            won = wanted     # a plugin's prize, still within the campaign's budgets
    consolation = c.consolation
    if won is None and consolation is not None and budget_left(budgets, consolation):
        won, how, reason = consolation, "consolation", None
    if won is None and reason is None:
        reason = _LOST_DRAW
    return won, how, reason, picked


def settle(c: Compiled, budgets: Budgets, n: int, roll: int, odds: float, mac: bytes, wanted_id: str | None
           ) -> tuple[Rows | None, Entry | None, str, NoReward | None, bool]:
    """A scan's prize once its draw is known: the one function the engine
    (scangate.decide.engine) decides with and the audit (scangate.audit) decides
    again with. ``n``: the user's eligible scan number; ``wanted_id``: a plugin's
    prize. How the scan goes (draw.win_how: a guaranteed first or Nth scan, the
    draw won or lost), then ``outcome``. Returns (the budgets its ledger entry
    records; the prize entry or None; how; why none; whether the
    pick found a prize)."""
    how = win_how(n, c.first_scan_wins, c.nth, roll, odds)
    # the budgets read: every prize's (with a budget) when a win picks, the
    # consolation prize's when a lost draw may get it, none (None) else
    rows = c.budget_rows if how != "lost" else c.consolation_rows if c.consolation is not None else None
    won, how_won, reason, picked = outcome(c, budgets, how, mac, wanted_id)
    return rows, won, how_won, reason, picked
