"""Points: per-actor balance and history, cumulative points for tiers, a monthly
leaderboard, and redemption that cannot overdraw.

Keys in the ``points`` database, built by ``scangate.state.layout`` (actor ids
are UTF-8; "/" inside them is fine because each key kind has a fixed prefix and
the actor ends the key); records from ``scangate.state.records``:

    b/<actor>              balance and cumulative points earned (tiers read it):
                           two signed 64-bit integers (``records.ACCOUNT``). Schema
                           1 data could hold the balance alone here (8 bytes) and
                           the points earned under e/<actor>; the migration to
                           schema 2 rewrites every such b/ to 16 bytes and deletes
                           e/, so neither form is read here (an 8-byte b/ is a
                           CorruptionError: the data directory was not migrated)
    m/<YYYY-MM>/<actor>    points earned in that month (Asia/Shanghai)
    h/<actor>\\0<seq>       history entry: ``records.PointsEntry`` (delta, balance,
                           reason, ref, at_ms) in msgpack; seq (64-bit) is the
                           database's running history number, so an actor's entries
                           sort in the order they were written
    q                      the last history number given out
    r/<request id>         a redemption's result (``records.RedemptionRecord``,
                           idempotency)

Writes here happen inside the caller's write transaction (redeem's own, or the
one given to ``add_points``); the reward decision writes an award's points in
its batch's transaction (scangate.decide.points), with the ledger entry and the
budgets, so points, ledger and budgets always agree.
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any
from zoneinfo import ZoneInfo

import lmdb

from .clock import now_ms
from .datadir import DataDir
from .errors import CorruptionError, InvalidArgument
from .localtime import LocalClock
from .results import Redemption
from .state import layout
from .state.records import (ACCOUNT, I64, U64, PointsEntry, RedemptionRecord, decode_points_entry,
                            decode_redemption, encode, to_json)
from .store import iter_prefix

__all__ = [
    "PERIOD_ZONE",
    "AwardKeys",
    "PointsWriter",
    "Redemption",
    "add_points",
    "award_keys",
    "balance",
    "earned",
    "history",
    "leaderboard",
    "parse_period",
    "redeem",
]

PERIOD_ZONE = ZoneInfo("Asia/Shanghai")
_NO_ACCOUNT = (0, 0)


def _account(txn: lmdb.Transaction[bytes], db: Any, key: bytes) -> tuple[int, int]:
    """(balance, earned) from the b/ record at ``key`` (``layout.account_key``).
    Only the 16-byte form: the schema 2 migration rewrote every older 8-byte b/
    (whose earned points were under e/), so another size is corruption."""
    raw = txn.get(key, db=db)
    if raw is None:
        return _NO_ACCOUNT
    if len(raw) != ACCOUNT.size:
        actor = key[2:].decode("utf-8", "replace")
        raise CorruptionError(f"points account {actor!r}: {len(raw)} bytes, not {ACCOUNT.size} "
                              "(a schema 1 record: migrate the data directory)")
    balance, earned = ACCOUNT.unpack(raw)
    return balance, earned


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
    return layout.account_key(actor), layout.month_key(month, actor), layout.history_prefix(actor)


class PointsWriter:
    """Points changes inside one write transaction (a redemption's, ``add_points``'):
    reads go through a cache that holds this writer's own changes, and the changed
    records are written once each by ``flush`` (before the commit). The reward
    decision writes its awards' points itself (scangate.decide.points, the same
    records)."""

    __slots__ = ("_accounts", "_dirty", "_months", "_seq", "db", "txn")

    def __init__(self, txn: lmdb.Transaction[bytes], db: Any):
        self.txn, self.db = txn, db
        self._accounts: dict[bytes, tuple[int, int]] = {}   # b/ key -> (balance, earned), read or changed
        self._months: dict[bytes, int] = {}                  # m/ key -> the month's points, read or changed
        self._dirty: dict[bytes, bytes] = {}
        self._seq: int | None = None            # the last history number, once read

    def _account(self, key: bytes) -> tuple[int, int]:
        account = self._accounts.get(key)
        if account is None:
            account = self._accounts[key] = _account(self.txn, self.db, key)
        return account

    def _month(self, key: bytes) -> int:
        value = self._months.get(key)
        if value is None:
            raw = self.txn.get(key, db=self.db)
            value = self._months[key] = int(I64.unpack(raw)[0]) if raw else 0
        return value

    def balance(self, actor: str) -> int:
        return self._account(layout.account_key(actor.encode()))[0]

    def earned(self, actor: str) -> int:
        return self._account(layout.account_key(actor.encode()))[1]

    def add(self, actor: str, delta: int, reason: str, ref: str, at_ms: int, month: str = "") -> int:
        """Change an actor's balance; earning also counts towards the cumulative
        total and the month (``month``: period(at_ms), when the caller has it).
        Returns the new balance."""
        a = actor.encode()
        # no earning, no month: its key is never read nor written
        keys = award_keys(a, month or period(at_ms)) if delta > 0 \
            else (layout.account_key(a), b"", layout.history_prefix(a))
        new = self._change(keys, delta)
        self._history(keys[2], PointsEntry(delta, new, reason, ref, at_ms))
        return new

    def _change(self, keys: AwardKeys, delta: int) -> int:
        """Add ``delta`` to the balance and, when it is positive, to the earned and
        month totals; the new balance."""
        key = keys[0]
        balance, earned = self._account(key)
        balance += delta
        if delta > 0:
            earned += delta
            month_key = keys[1]
            month = self._month(month_key) + delta
            self._months[month_key], self._dirty[month_key] = month, I64.pack(month)
        self._accounts[key], self._dirty[key] = (balance, earned), ACCOUNT.pack(balance, earned)
        return balance

    def _history(self, prefix: bytes, entry: PointsEntry) -> None:
        """Append a history entry under the next history number."""
        number = self._seq
        if number is None:
            raw = self.txn.get(layout.HISTORY_SEQ, db=self.db)
            number = int(U64.unpack(raw)[0]) if raw else 0
        self._seq = number = number + 1
        self._dirty[prefix + U64.pack(number)] = encode(entry)

    def flush(self) -> None:
        if self._seq is not None:
            self._dirty[layout.HISTORY_SEQ] = U64.pack(self._seq)
        if self._dirty:
            self.txn.cursor(db=self.db).putmulti(list(self._dirty.items()))
            self._dirty.clear()


def add_points(txn: lmdb.Transaction[bytes], db: Any, actor: str, delta: int, reason: str, ref: str,
               at_ms: int) -> int:
    """Change an actor's balance inside ``txn``; earning also counts towards the
    cumulative total and the month. Returns the new balance."""
    writer = PointsWriter(txn, db)
    new = writer.add(actor, delta, reason, ref, at_ms)
    writer.flush()
    return new


def balance(data: DataDir, actor: str) -> int:
    with data.store.env.begin() as txn:
        return _account(txn, data.store.db("points"), layout.account_key(actor.encode()))[0]


def earned(txn: lmdb.Transaction[bytes], db: Any, actor: str) -> int:
    return _account(txn, db, layout.account_key(actor.encode()))[1]


def history(data: DataDir, actor: str, limit: int = 100) -> list[dict[str, Any]]:
    """An actor's first ``limit`` history entries, oldest first, each the dict
    {delta, balance, reason, ref, at_ms}."""
    with data.store.env.begin() as txn:
        rows = iter_prefix(txn, data.store.db("points"), layout.history_prefix(actor.encode()))
        return [to_json(decode_points_entry(v)) for _, v in itertools.islice(rows, limit)]


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
    with data.store.env.begin() as txn:
        rows = [(k.decode(), int(I64.unpack(v)[0]))
                for k, v in iter_prefix(txn, data.store.db("points"), layout.month_prefix(period))]
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
    db = data.store.db("points")
    key = layout.redemption_key(request_id)
    with data.store.env.begin(write=True) as txn:
        done = txn.get(key, db=db)
        if done is not None:
            return Redemption(**to_json(decode_redemption(done)))
        writer = PointsWriter(txn, db)
        have = writer.balance(actor)
        if have < points:
            result = Redemption(request_id, actor, points, False, have, "insufficient_points")
        else:
            new = writer.add(actor, -points, "redeem", note or request_id, now_ms())
            writer.flush()
            result = Redemption(request_id, actor, points, True, new, None)
        txn.put(key, encode(RedemptionRecord(result.request_id, result.actor, result.points, result.ok,
                                             result.balance, result.reason)), db=db)
    return result
