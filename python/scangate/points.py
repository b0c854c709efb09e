"""Points: per-actor balance and history, cumulative points for tiers, a monthly
leaderboard, and redemption that cannot overdraw.

Keys in the ``points`` database (actor ids are UTF-8; "/" inside them is fine
because each key kind has a fixed prefix and the actor ends the key):

    b/<actor>              balance (signed 64-bit)
    e/<actor>              cumulative points earned (tiers read this)
    m/<YYYY-MM>/<actor>    points earned in that month (Asia/Shanghai)
    h/<actor>\\0<seq>       history entry: JSON {delta, balance, reason, ref, at_ms}; seq
                           (64-bit) is the database's running history number, so an
                           actor's entries sort in the order they were written
    q                      the last history number given out
    r/<request id>         a redemption's result (idempotency)

All writes happen inside the caller's write transaction (the reward decision's,
or redeem's own), so points, ledger and budgets always agree.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import lmdb

from .datadir import DataDir
from .errors import InvalidArgument
from .jsontext import esc as _esc
from .jsontext import number as _num
from .localtime import LocalClock
from .store import iter_prefix
from .trace import now_ms

__all__ = ["PointsWriter", "add_points", "balance", "earned", "history", "leaderboard", "redeem", "Redemption",
           "PERIOD_ZONE"]

PERIOD_ZONE = ZoneInfo("Asia/Shanghai")
_I64 = struct.Struct(">q")
_U64 = struct.Struct(">Q")
_HISTORY_SEQ = b"q"


def _get(txn: lmdb.Transaction, db: Any, key: bytes) -> int:
    raw = txn.get(key, db=db)
    return _I64.unpack(raw)[0] if raw else 0


def period_of(at_ms: int) -> str:
    return dt.datetime.fromtimestamp(at_ms / 1000, PERIOD_ZONE).strftime("%Y-%m")


_PERIOD_CLOCK = LocalClock(PERIOD_ZONE)


def period(at_ms: int, day: str | None = None) -> str:
    """period_of, from the cached clock; ``day``: the Asia/Shanghai date of
    ``at_ms`` (YYYY-MM-DD) when the caller has it already."""
    if day is None:
        day = _PERIOD_CLOCK.day(at_ms)
    return day[:7] if len(day) == 10 and day[0] != "0" else period_of(at_ms)


class PointsWriter:
    """Points changes inside one write transaction, for many actors: reads go
    through a cache that holds this writer's own changes, and the changed records
    are written once each by ``flush`` (before the commit). The
    result is the same as ``add_points`` call by call."""

    __slots__ = ("_dirty", "_seq", "_values", "db", "txn")

    def __init__(self, txn: lmdb.Transaction, db: Any):
        self.txn, self.db = txn, db
        self._values: dict[bytes, int] = {}     # balance, earned and month totals read or changed
        self._dirty: dict[bytes, bytes] = {}
        self._seq: int | None = None            # the last history number, once read

    def _get(self, key: bytes) -> int:
        value = self._values.get(key)
        if value is None:
            raw = self.txn.get(key, db=self.db)
            value = self._values[key] = _I64.unpack(raw)[0] if raw else 0
        return value

    def prefetch(self, awards: Iterable[tuple[str, str]]) -> None:
        """Read the records that awards of points to (actor, month) would change,
        in one getmulti."""
        wanted = []
        for actor, month in awards:
            a = actor.encode()
            wanted += (b"b/" + a, b"e/" + a, b"m/" + month.encode() + b"/" + a)
        keys = list(set(wanted).difference(self._values))
        if keys:
            values = self._values
            values.update(dict.fromkeys(keys, 0))
            for k, v in self.txn.cursor(db=self.db).getmulti(keys):
                values[k] = _I64.unpack(v)[0]

    def earned(self, actor: str) -> int:
        return self._get(b"e/" + actor.encode())

    def add(self, actor: str, delta: int, reason: str, ref: str, at_ms: int, month: str = "") -> int:
        """Change an actor's balance; earning also counts towards the cumulative
        total and the month (``month``: period(at_ms), when the caller has it).
        Returns the new balance."""
        a = actor.encode()
        values, dirty = self._values, self._dirty
        key = b"b/" + a
        new = values[key] + delta if key in values else self._get(key) + delta
        values[key], dirty[key] = new, _I64.pack(new)
        if delta > 0:
            for key in (b"e/" + a, f"m/{month or period(at_ms)}/".encode() + a):
                value = values[key] + delta if key in values else self._get(key) + delta
                values[key], dirty[key] = value, _I64.pack(value)
        seq = self._seq
        if seq is None:
            raw = self.txn.get(_HISTORY_SEQ, db=self.db)
            seq = _U64.unpack(raw)[0] if raw else 0
        self._seq = seq = seq + 1
        dirty[b"h/" + a + b"\0" + _U64.pack(seq)] = (
            f'{{"delta": {_num(delta)}, "balance": {_num(new)}, "reason": {_esc(reason)}, "ref": {_esc(ref)}, '
            f'"at_ms": {_num(at_ms)}}}').encode()
        return new

    def flush(self) -> None:
        if self._seq is not None:
            self._dirty[_HISTORY_SEQ] = _U64.pack(self._seq)
        if self._dirty:
            self.txn.cursor(db=self.db).putmulti(list(self._dirty.items()))
            self._dirty.clear()


def add_points(txn: lmdb.Transaction, db: Any, actor: str, delta: int, reason: str, ref: str,
               at_ms: int) -> int:
    """Change an actor's balance inside ``txn``; earning also counts towards the
    cumulative total and the month. Returns the new balance."""
    writer = PointsWriter(txn, db)
    new = writer.add(actor, delta, reason, ref, at_ms)
    writer.flush()
    return new


def balance(data: DataDir, actor: str) -> int:
    with data.store.env.begin() as txn:
        return _get(txn, data.store.db("points"), b"b/" + actor.encode())


def earned(txn: lmdb.Transaction, db: Any, actor: str) -> int:
    return _get(txn, db, b"e/" + actor.encode())


def history(data: DataDir, actor: str, limit: int = 100) -> list[dict[str, Any]]:
    with data.store.env.begin() as txn:
        rows = iter_prefix(txn, data.store.db("points"), b"h/" + actor.encode() + b"\0")
        return [json.loads(v) for _, v in itertools.islice(rows, limit)]


def leaderboard(data: DataDir, period: str, top: int = 10, actor: str | None = None) -> dict[str, Any]:
    """The month's top ``top`` actors by points earned, and ``actor``'s own rank."""
    if len(period) != 7 or period[4] != "-":
        raise InvalidArgument(f"period: {period!r} is not YYYY-MM")
    with data.store.env.begin() as txn:
        rows = [(k.decode(), _I64.unpack(v)[0])
                for k, v in iter_prefix(txn, data.store.db("points"), f"m/{period}/".encode())]
    rows.sort(key=lambda r: (-r[1], r[0]))   # ties: by actor id, so ranks are stable
    result: dict[str, Any] = {"period": period, "top": [{"rank": i + 1, "actor": a, "points": p}
                                                         for i, (a, p) in enumerate(rows[:top])]}
    if actor is not None:
        mine = next(((i + 1, p) for i, (a, p) in enumerate(rows) if a == actor), None)
        result["actor"] = {"actor": actor, "rank": mine[0] if mine else None, "points": mine[1] if mine else 0,
                           "of": len(rows)}
    return result


@dataclass(frozen=True)
class Redemption:
    request_id: str
    actor: str
    points: int
    ok: bool
    balance: int
    reason: str | None   # "insufficient_points" when refused

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def redeem(data: DataDir, actor: str, points: int, request_id: str, note: str = "") -> Redemption:
    """Spend points, in one transaction; refused (not raised) when the balance is
    short, so a redemption can never overdraw. A retry with the same request id
    returns the first result and spends nothing more."""
    if points <= 0:
        raise InvalidArgument(f"points: must be positive, not {points}")
    if not request_id or len(request_id) > 128:
        raise InvalidArgument("request_id: 1 to 128 characters")
    db = data.store.db("points")
    with data.store.env.begin(write=True) as txn:
        done = txn.get(b"r/" + request_id.encode(), db=db)
        if done is not None:
            return Redemption(**json.loads(done))
        have = _get(txn, db, b"b/" + actor.encode())
        if have < points:
            result = Redemption(request_id, actor, points, False, have, "insufficient_points")
        else:
            new = add_points(txn, db, actor, -points, "redeem", note or request_id, now_ms())
            result = Redemption(request_id, actor, points, True, new, None)
        txn.put(b"r/" + request_id.encode(), json.dumps(result.to_json()).encode(), db=db)
    return result
