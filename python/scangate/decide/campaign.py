"""A stored campaign compiled for deciding: its rules as sets, integers and keys.

Compiled once per stored record and secret (a reload or a status change is a new
record, compiled anew), so deciding a scan reads attributes, not the campaign's
rules.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import json
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from ..campaigns import Campaign, Prize, campaign_from_json
from ..localtime import LocalClock
from ..points import PERIOD_ZONE, period
from ..state import layout

__all__ = ["Compiled", "Entry", "compile_campaigns"]

# CPython's own SHA-256 for the draw's HMAC where the build has it: a copy and a
# digest of its state are plain struct copies, where OpenSSL 3's EVP contexts
# allocate and free on each (1,400 fewer instructions per draw, measured with
# callgrind); the same function, so the same MAC (tests/test_audit_proof.py checks
# every draw against the standard library's hmac).
def _builtin_sha256() -> Callable[[bytes], Any]:
    for name in ("_sha2", "_sha256"):      # CPython 3.12 and later; 3.11
        try:
            return importlib.import_module(name).sha256  # type: ignore[no-any-return]
        except (ImportError, AttributeError):
            continue
    return hashlib.sha256                   # a build without the builtin hashes


_sha256 = _builtin_sha256()

_UTC_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US = dt.timedelta(microseconds=1)

# A prize compiled for deciding (Compiled.entry): the prize, its budget key, its count
# and fen budgets (None: unlimited), the fen one award costs, its weight in the draw.
Entry = tuple[Prize, bytes, "int | None", "int | None", int, int]


class Hmac:
    """HMAC-SHA256 under one key (RFC 2104) with the padded key's hash states made
    once: a draw costs two hash copies, not a fresh HMAC set-up. ``audit_entry``
    recomputes every draw with the standard library's hmac instead."""

    __slots__ = ("inner", "outer")

    def __init__(self, key: bytes):
        if len(key) > 64:
            key = hashlib.sha256(key).digest()
        key = key.ljust(64, b"\0")
        self.inner = _sha256(bytes(b ^ 0x36 for b in key))
        self.outer = _sha256(bytes(b ^ 0x5C for b in key))

    def digest(self, message: bytes) -> bytes:
        inner = self.inner.copy()
        inner.update(message)
        outer = self.outer.copy()
        outer.update(inner.digest())
        mac: bytes = outer.digest()
        return mac


class Compiled:
    """A stored campaign compiled for deciding: its rules as sets, integers and
    encoded keys. Cached per stored record and secret, so a
    reload or a status change (a new record) compiles anew."""

    def __init__(self, campaign: Campaign, secret: bytes | None, revision: int = 0):
        c = self.campaign = campaign
        self.revision = revision    # the stored record's: each ledger entry names it
        self.secret = secret
        self.hmac = Hmac(secret) if secret is not None else None
        self.id = c.id
        self.actor = c.actor
        self.active = c.status == "active"
        self.start_us = (c.start - _UTC_EPOCH) // _US
        self.end_us = (c.end - _UTC_EPOCH) // _US
        self.blacklist = frozenset(c.blacklist)
        self.diverted_ok = c.verdict_policy.diverted_can_win
        self.clone_ok = c.verdict_policy.suspect_clone_can_win
        self.caps = c.caps
        # whether any count or fen cap is set: most campaigns have none, and then
        # the decision asks no cap question
        self.count_caps = c.caps.per_user_daily_count is not None or c.caps.per_user_total_count is not None
        self.cash_caps = c.caps.per_user_daily_amount_fen is not None or c.caps.per_user_total_amount_fen is not None
        self.odds = c.odds_ppm
        self.slots = tuple((s.start.hour * 60 + s.start.minute, s.end.hour * 60 + s.end.minute, s.odds_ppm)
                           for s in c.slots)
        self.nth = frozenset(c.win_on_nth_scan)
        self.budget_key = {p.id: layout.budget_key(c.id, p.id) for p in c.prizes}
        # per prize: (prize, budget key, count budget, fen budget, fen per award, weight)
        self.entry = {p.id: (p, self.budget_key[p.id], p.budget_count, p.budget_amount_fen, p.amount_fen, p.weight)
                      for p in c.prizes}
        self.winning = tuple(self.entry[p.id] for p in c.winning_prizes)
        self.consolation = self.entry[c.consolation] if c.consolation is not None else None
        self.plugins = c.plugins
        self.first_scan_wins = c.first_scan_always_wins
        self.tiers = bool(c.store_tiers)
        self.has_points = any(p.kind == "points" for p in c.prizes)
        self.coupon = {p.id: asdict(p.coupon) if p.coupon else None for p in c.prizes}
        self.clock = LocalClock(c.zone)
        self.total_prefix = layout.total_prefix(c.id)     # + an actor's UTF-8: its counters' key
        self.month_from_day = c.zone == PERIOD_ZONE
        self._regions: dict[int | None, bool] = {}
        # days_at's answers by the second: a batch's scans share a second or a few
        self.days: dict[int, tuple[tuple[int, str], str]] = {}
        # the prizes with a budget (id, key, awards, fen: their budgets left are
        # recorded in the ledger; a prize without one cannot run out), all of them
        # for a pick, the consolation prize's alone for a lost draw
        rows = {pid: (pid, key, count_max, fen_max)
                for pid, (_p, key, count_max, fen_max, _fen, _w) in self.entry.items()
                if count_max is not None or fen_max is not None}
        self.budget_rows = tuple(rows.values())
        self.consolation_rows = (rows[c.consolation],) if c.consolation in rows else ()

    def days_at(self, time_ms: int) -> tuple[tuple[int, str], str]:
        """The scan's local day in the campaign's zone, (days since 1970-01-01,
        YYYY-MM-DD), and its points month (YYYY-MM, Asia/Shanghai: scangate.points);
        kept in ``days`` by the second (every tz offset is whole seconds), so the
        decision asks ``days.get(time_ms // 1000)`` first."""
        number = self.clock.day_number(time_ms)
        today = number, self.clock.iso_day(number)
        value = today, period(time_ms, today[1] if self.month_from_day else None)
        if len(self.days) >= 10_000:
            self.days.clear()
        self.days[time_ms // 1000] = value
        return value

    def region_allowed(self, region: int | None) -> bool:
        allowed = self._regions.get(region)
        if allowed is None:
            if len(self._regions) >= 100_000:
                self._regions.clear()
            allowed = self._regions[region] = self.campaign.region_allowed(region)
        return allowed

    def odds_at(self, time_ms: int) -> int:
        """Campaign.odds_at for the instant, from the local minute of the day (slots
        start and end on whole minutes)."""
        if not self.slots:
            return self.campaign.odds_ppm
        minute = self.clock.minute(time_ms)
        for start, end, odds in self.slots:
            if (start <= minute < end) if start < end else (minute >= start or minute < end):
                return odds
        return self.campaign.odds_ppm


_cache: dict[tuple[bytes, bytes | None], Compiled] = {}


def compile_campaigns(records: list[tuple[bytes, bytes | None]]) -> list[Compiled]:
    """The stored campaigns (record, secret), in id order, compiled (parsed only
    when a record is new)."""
    out = []
    for raw, secret in records:
        live = _cache.get((raw, secret))
        if live is None:
            if len(_cache) >= 256:
                _cache.clear()
            live = _cache[(raw, secret)] = compile_record(raw, secret)
        out.append(live)
    return out


def compile_record(raw: bytes, secret: bytes | None) -> Compiled:
    """A stored campaign record compiled, with its revision (each ledger entry
    names the revision it was decided under). A campaign whose secret was revealed
    is closed: its window is empty (RW-N3), since anyone can now compute its draws."""
    record = json.loads(raw)
    live = Compiled(campaign_from_json(record["campaign"]), secret, record["revision"])
    if record.get("revealed_at_ms") is not None:
        live.end_us = live.start_us
    return live
