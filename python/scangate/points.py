"""Points: per-actor balance and history, cumulative points for tiers, a monthly
leaderboard, and redemption that cannot overdraw.

Keys in the ``points`` database (actor ids are UTF-8; "/" inside them is fine
because each key kind has a fixed prefix and the actor ends the key):

    b/<actor>              balance and cumulative points earned (tiers read it):
                           two signed 64-bit integers. In data written before
                           they shared the record it holds the balance alone
                           (8 bytes) and e/<actor> the points earned; such an
                           actor's next change writes both here, and e/ is no
                           longer read
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
from .results import Redemption
from .jsontext import esc as _esc
from .jsontext import number as _num
from .localtime import LocalClock
from .state import layout
from .store import iter_prefix
from .clock import now_ms

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
_I64 = struct.Struct(">q")
_U64 = struct.Struct(">Q")
_HISTORY_SEQ = b"q"


_ACCOUNT = struct.Struct(">qq")     # b/<actor>: balance, earned
_NO_ACCOUNT = (0, 0)


def _account(txn: lmdb.Transaction[bytes], db: Any, actor: bytes,
             raw: bytes | memoryview | None = None) -> tuple[int, int]:
    """An actor's (balance, earned) from its b/ record (``raw``, when the caller
    read it already), or from the older pair of b/ and e/ records."""
    if raw is None:
        raw = txn.get(b"b/" + actor, db=db)
        if raw is None:
            return _NO_ACCOUNT
    if len(raw) == _ACCOUNT.size:
        return _ACCOUNT.unpack(raw)
    earned_raw = txn.get(b"e/" + actor, db=db)
    return _I64.unpack(raw)[0], _I64.unpack(earned_raw)[0] if earned_raw else 0


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
    """Points changes inside one write transaction, for many actors: reads go
    through a cache that holds this writer's own changes, and the changed records
    are written once each by ``flush`` (before the commit). The
    result is the same as ``add_points`` call by call."""

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
            account = self._accounts[key] = _account(self.txn, self.db, key[2:])
        return account

    def _month(self, key: bytes) -> int:
        value = self._months.get(key)
        if value is None:
            raw = self.txn.get(key, db=self.db)
            value = self._months[key] = _I64.unpack(raw)[0] if raw else 0
        return value

    def prefetch_keys(self, wanted: Iterable[bytes]) -> None:
        """Read account (b/) and month (m/) records, keys as ``award_keys`` gives
        them, not cached yet, in one getmulti."""
        accounts, months = self._accounts, self._months
        keys = [k for k in set(wanted) if k not in accounts and k not in months]
        if not keys:
            return
        found = dict(self.txn.cursor(db=self.db).getmulti(keys))
        txn, db = self.txn, self.db
        for key in keys:
            raw = found.get(key)
            if key[:2] == b"b/":
                accounts[key] = _NO_ACCOUNT if raw is None else _account(txn, db, key[2:], raw)
            else:
                months[key] = _I64.unpack(raw)[0] if raw else 0

    def balance(self, actor: str) -> int:
        return self._account(b"b/" + actor.encode())[0]

    def earned(self, actor: str) -> int:
        return self._account(b"b/" + actor.encode())[1]

    def add(self, actor: str, delta: int, reason: str, ref: str, at_ms: int, month: str = "") -> int:
        """Change an actor's balance; earning also counts towards the cumulative
        total and the month (``month``: period(at_ms), when the caller has it).
        Returns the new balance."""
        a = actor.encode()
        keys = award_keys(a, month or period(at_ms)) if delta > 0 else (b"b/" + a, b"", b"h/" + a + b"\0")
        new = self._change(keys, delta)
        self._history(keys[2], f'{{"delta": {_num(delta)}, "balance": {_num(new)}, "reason": {_esc(reason)}, '
                               f'"ref": {_esc(ref)}, "at_ms": {_num(at_ms)}}}')
        return new

    def credit(self, keys: AwardKeys, delta: int, seq: str, at_ms_json: str) -> int:
        """``add(actor, delta, "award", f"ledger:{seq}", at_ms, month)`` for an
        integer ``delta`` of 0 or more, by the keys ``award_keys(actor, month)`` gave,
        the ledger number as text and the JSON text of ``at_ms``: the reward
        decision's form, which has them already. Writes the same records; returns
        the new balance."""
        new = self._change(keys, delta)
        # as add() writes it: ints are their own JSON text; "award" and "ledger:<n>"
        # need no escaping
        self._history(keys[2], f'{{"delta": {delta}, "balance": {new}, "reason": "award", "ref": "ledger:{seq}", '
                               f'"at_ms": {at_ms_json}}}')
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
            self._months[month_key], self._dirty[month_key] = month, _I64.pack(month)
        self._accounts[key], self._dirty[key] = (balance, earned), _ACCOUNT.pack(balance, earned)
        return balance

    def _history(self, prefix: bytes, text: str) -> None:
        """Append a history entry under the next history number."""
        number = self._seq
        if number is None:
            raw = self.txn.get(_HISTORY_SEQ, db=self.db)
            number = _U64.unpack(raw)[0] if raw else 0
        self._seq = number = number + 1
        self._dirty[prefix + _U64.pack(number)] = text.encode()

    def flush(self) -> None:
        if self._seq is not None:
            self._dirty[_HISTORY_SEQ] = _U64.pack(self._seq)
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
        return _account(txn, data.store.db("points"), actor.encode())[0]


def earned(txn: lmdb.Transaction[bytes], db: Any, actor: str) -> int:
    return _account(txn, db, actor.encode())[1]


def history(data: DataDir, actor: str, limit: int = 100) -> list[dict[str, Any]]:
    with data.store.env.begin() as txn:
        rows = iter_prefix(txn, data.store.db("points"), b"h/" + actor.encode() + b"\0")
        return [json.loads(v) for _, v in itertools.islice(rows, limit)]


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
        writer = PointsWriter(txn, db)
        have = writer.balance(actor)
        if have < points:
            result = Redemption(request_id, actor, points, False, have, "insufficient_points")
        else:
            new = writer.add(actor, -points, "redeem", note or request_id, now_ms())
            writer.flush()
            result = Redemption(request_id, actor, points, True, new, None)
        txn.put(b"r/" + request_id.encode(), json.dumps(result.to_json()).encode(), db=db)
    return result
