"""The draw: an HMAC of the campaign secret over the scan, its roll, the odds in force, and how a scan wins.

Deterministic given the secret and the scan, so every draw can be replayed
(scangate.audit recomputes it with the standard library's hmac) and, once the
secret is revealed, checked by anyone (docs/campaigns.md, "Verifying draws").
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Container

from .campaign import Compiled

__all__ = ["PPM", "draw", "roll_of", "slot_odds", "win_how"]

PPM = 1_000_000
_U64 = struct.Struct(">Q")


def draw_message(campaign_id: str, serial: int, actor: str, time_ms: int) -> str:
    """The draw input: what the HMAC covers."""
    return f"{campaign_id}|{serial}|{actor}|{time_ms}"


def draw(secret: bytes, campaign_id: str, serial: int, actor: str, time_ms: int) -> tuple[str, bytes]:
    """The auditable draw: HMAC-SHA256 of the campaign secret over the scan."""
    message = draw_message(campaign_id, serial, actor, time_ms)
    return message, hmac.new(secret, message.encode(), hashlib.sha256).digest()


def roll_of(mac: bytes) -> int:
    """The roll, 0..PPM-1, that the odds are compared with: the MAC's first 8 bytes."""
    first: int = _U64.unpack_from(mac)[0]     # int.from_bytes(mac[:8], "big")
    return first % PPM


def slot_odds(c: Compiled, time_ms: int) -> tuple[int, int | None]:
    """``c.odds_at(time_ms)``, and the index of the slot that gave them, None for
    the base odds: the ledger entry records where its odds came from."""
    if not c.slots:
        return c.odds, None
    minute = c.clock.minute(time_ms)
    for i, (start, end, odds) in enumerate(c.slots):
        if (start <= minute < end) if start < end else (minute >= start or minute < end):
            return odds, i
    return c.odds, None


def win_how(n: int, first_scan_wins: bool, nth: Container[int], roll: int, odds: float) -> str:
    """How the user's ``n``-th eligible scan in a campaign goes, before budgets:
    a guaranteed first or Nth scan win, else the draw (``roll`` below ``odds``)
    won or lost. The decision and the audit's replay (scangate.audit) both ask it."""
    if n == 1 and first_scan_wins:
        return "first_scan"
    if n in nth:
        return "nth_scan"
    return "draw" if roll < odds else "lost"
