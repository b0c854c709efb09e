"""Points: per-actor balance and history, cumulative points for tiers, a monthly
leaderboard, and redemption that cannot overdraw.

The rules live here: what a month is (``period``, Asia/Shanghai), how the
leaderboard ranks, when a redemption is refused. The records (b/ accounts, m/
months, h/ history, r/ redemptions in the ``points`` database) and every read
and write of them are scangate.state.points'; this module opens no transaction.

Writes happen inside one write transaction (redeem's own, or the one given to
``add_points``); the reward decision writes an award's points in its batch's
transaction (scangate.decide.points), with the ledger entry and the budgets, so
points, ledger and budgets always agree.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from .clock import now_ms
from .datadir import DataDir
from .errors import InvalidArgument
from .localtime import LocalClock
from .results import Redemption
from .state import layout
from .state import points as _state
from .state.records import RedemptionRecord, to_json

if TYPE_CHECKING:
    from .state.points import Txn

__all__ = [
    "PERIOD_ZONE",
    "AwardKeys",
    "PointsWriter",
    "Redemption",
    "add_points",
    "award_keys",
    "balance",
    "earned",
    "earned_of",
    "history",
    "leaderboard",
    "parse_period",
    "redeem",
    "statement",
]

PERIOD_ZONE = ZoneInfo("Asia/Shanghai")


def period_of(at_ms: int) -> str:
    return dt.datetime.fromtimestamp(at_ms / 1000, PERIOD_ZONE).strftime("%Y-%m")


_PERIOD_CLOCK = LocalClock(PERIOD_ZONE)


def period(at_ms: int, day: str | None = None) -> str:
    """period_of, from the cached clock; ``day``: the Asia/Shanghai date of
    ``at_ms`` (YYYY-MM-DD) when the caller has it already."""
    if day is None:
        day = _PERIOD_CLOCK.day(at_ms)
    return day[:7] if len(day) == 10 and day[0] != "0" else period_of(at_ms)


# The records an award of points changes: the actor's account (b/) and month
# (m/) keys, and the prefix of its history keys (h/).
AwardKeys = tuple[bytes, bytes, bytes]


def award_keys(actor: bytes, month: str) -> AwardKeys:
    """The keys of the records an award to ``actor`` (UTF-8) in ``month``
    (YYYY-MM) changes."""
    return layout.award_keys(actor, month)


class PointsWriter(_state.PointsWriter):
    """Points changes inside one write transaction (``add_points``', or a caller's):
    reads go through a cache that holds this writer's own changes, and the changed
    records are written once each by ``flush`` (before the commit). The reward
    decision writes its awards' points itself (scangate.decide.points, the same
    records)."""

    __slots__ = ()

    def add(self, actor: str, delta: int, reason: str, ref: str, at_ms: int, month: str = "") -> int:
        """Change an actor's balance; earning also counts towards the cumulative
        total and the month (``month``: period(at_ms), when the caller has it).
        Returns the new balance."""
        return super().add(actor, delta, reason, ref, at_ms, month or (period(at_ms) if delta > 0 else ""))


def add_points(txn: Txn, db: Any, actor: str, delta: int, reason: str, ref: str, at_ms: int) -> int:
    """Change an actor's balance inside ``txn`` (the ``points`` database ``db``);
    earning also counts towards the cumulative total and the month. Returns the
    new balance."""
    writer = PointsWriter(txn, db)
    new = writer.add(actor, delta, reason, ref, at_ms)
    writer.flush()
    return new


def balance(data: DataDir, actor: str) -> int:
    return _state.account(data, actor)[0]


def earned_of(data: DataDir, actor: str) -> int:
    """The points ``actor`` has earned in all (redeeming does not lower it): what
    store tiers read."""
    return _state.account(data, actor)[1]


def earned(txn: Txn, db: Any, actor: str) -> int:
    """``earned_of`` inside a caller's transaction (``db``: the ``points`` database)."""
    return _state.read_account(txn, db, layout.account_key(actor.encode()))[1]


def statement(data: DataDir, actor: str, limit: int = 100) -> tuple[int, int, list[dict[str, Any]]]:
    """(balance, earned, the first ``limit`` history entries as ``history`` gives
    them), all as of one moment."""
    (balance_now, earned_now), rows = _state.statement(data, actor, limit)
    return balance_now, earned_now, [to_json(entry) for entry in rows]


def history(data: DataDir, actor: str, limit: int = 100) -> list[dict[str, Any]]:
    """An actor's first ``limit`` history entries, oldest first, each the dict
    {delta, balance, reason, ref, at_ms}."""
    return [to_json(entry) for entry in _state.history(data, actor, limit)]


def parse_period(text: str) -> str:
    """``text`` when it is a real month, YYYY-MM (year 0001-9999, month 01-12);
    else InvalidArgument naming ``period``. Every caller that takes a period from
    outside (CLI, server) goes through it: a period is part of the m/ keys."""
    if not (isinstance(text, str) and len(text) == 7 and text[4] == "-" and text.isascii()
            and text[:4].isdigit() and text[5:].isdigit()):
        shown = repr(text[:20]) if isinstance(text, str) else type(text).__name__
        raise InvalidArgument(f"period: {shown} is not YYYY-MM")
    if not ("0001" <= text[:4] and "01" <= text[5:] <= "12"):
        raise InvalidArgument(f"period: {text!r} is not a month (YYYY-MM, month 01 to 12)")
    return text


def leaderboard(data: DataDir, period: str, top: int = 10, actor: str | None = None) -> dict[str, Any]:
    """The month's top ``top`` actors by points earned, and ``actor``'s own rank."""
    period = parse_period(period)
    rows = _state.month_rows(data, period)
    rows.sort(key=lambda r: (-r[1], r[0]))   # ties: by actor id, so ranks are stable
    result: dict[str, Any] = {"period": period, "top": [{"rank": i + 1, "actor": a, "points": p}
                                                         for i, (a, p) in enumerate(rows[:top])]}
    if actor is not None:
        mine = next(((i + 1, p) for i, (a, p) in enumerate(rows) if a == actor), None)
        result["actor"] = {"actor": actor, "rank": mine[0] if mine else None, "points": mine[1] if mine else 0,
                           "of": len(rows)}
    return result


def redeem(data: DataDir, actor: str, points: int, request_id: str, note: str = "") -> Redemption:
    """Spend points, in one transaction; refused (not raised) when the balance is
    short, so a redemption can never overdraw. A retry with the same request id
    returns the first result and spends nothing more."""
    if points <= 0:
        raise InvalidArgument(f"points: must be positive, not {points}")
    if not request_id or len(request_id) > 128:
        raise InvalidArgument("request_id: 1 to 128 characters")

    def spend(writer: _state.PointsWriter) -> RedemptionRecord:
        # decided in the redemption's write transaction: the balance read is the one changed
        have = writer.balance(actor)
        if have < points:
            return RedemptionRecord(request_id, actor, points, False, have, "insufficient_points")
        new = writer.add(actor, -points, "redeem", note or request_id, now_ms())
        return RedemptionRecord(request_id, actor, points, True, new, None)

    return Redemption(**to_json(_state.redeem(data, request_id, spend)))
