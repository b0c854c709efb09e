"""Eligibility: which campaign decides a scan, and whether the scan may win at all.

The stateless half of a reward decision: the campaign for the product, level and
actor type; its status, window and regions; the blacklist; the verdict policy
(a diverted or suspect scan wins only where the campaign says so). What it
returns names the state the stateful half reads (claim, counters, points).
"""

from __future__ import annotations

import datetime as dt

from .. import points as points_mod
from ..decision import NoReward, ScanRequest
from ..enums import Verdict
from ..errors import CorruptionError
from ..state import layout
from ..store import ProductLine
from ..verdict import ScanVerdict
from .campaign import Compiled
from .requests import MAX_DATETIME_MS, MIN_DATETIME_MS

__all__ = ["Eligible", "select"]

# Enum members read per scan, as module constants: on Python 3.11 each
# ``Enum.MEMBER`` lookup goes through EnumType.__getattr__'s slow attribute hook.
_BLACKLISTED = NoReward.BLACKLISTED
_CAMPAIGN_PAUSED = NoReward.CAMPAIGN_PAUSED
_NO_CAMPAIGN = NoReward.NO_CAMPAIGN
_OUTSIDE_WINDOW = NoReward.OUTSIDE_WINDOW
_REGION_EXCLUDED = NoReward.REGION_EXCLUDED
_VERDICT_NOT_ELIGIBLE = NoReward.VERDICT_NOT_ELIGIBLE
_V_COUNTERFEIT = Verdict.COUNTERFEIT
_V_DIVERTED = Verdict.DIVERTED
_V_REVOKED = Verdict.REVOKED
_V_SUSPECT_CLONE = Verdict.SUSPECT_CLONE

# A scan past the stateless checks: its campaign and the keys of the state its
# decision reads and writes: (campaign, claim key, the scan's local day (days since
# 1970-01-01, YYYY-MM-DD), total counter key, the keys of the points records an
# award would change, None when the campaign has no points prize).
Eligible = tuple[Compiled, bytes, tuple[int, str], bytes, "points_mod.AwardKeys | None"]


def select(campaigns: list[Compiled], candidates: dict[tuple[str, int], list[Compiled]], r: ScanRequest,
            time_ms: int, v: ScanVerdict, line: ProductLine | None, line_id: int,
            serial_key: bytes | None) -> Eligible | tuple[NoReward, Compiled | None]:
    """The stateless part of a decision: the deciding campaign and the state keys,
    or why there is no reward (and the campaign to name). ``serial_key``: the
    code's key (its claim's), None for a code that is not genuine."""
    verdict = v.verdict
    if verdict is _V_COUNTERFEIT or verdict is _V_REVOKED or line is None:
        return _VERDICT_NOT_ELIGIBLE, None
    matching = candidates.get((r.actor_type, line_id))
    if matching is None:
        sku, level = line.sku, line.level.label
        matching = candidates[(r.actor_type, line_id)] = [
            c for c in campaigns if c.actor == r.actor_type and c.campaign.matches_product(sku, level)]
    if not MIN_DATETIME_MS <= time_ms <= MAX_DATETIME_MS:
        dt.datetime.fromtimestamp(time_ms / 1000, dt.UTC)   # raises, as before
    at_us = time_ms * 1000
    region = v.region
    if len(matching) == 1:      # the usual case: one campaign for the product
        c = matching[0]
        if not c.active:
            return _CAMPAIGN_PAUSED, c
        if not c.start_us <= at_us < c.end_us:
            return _OUTSIDE_WINDOW, c
        if not c.region_allowed(region):
            return _REGION_EXCLUDED, c
    else:
        if not matching:
            return _NO_CAMPAIGN, None
        active = [c for c in matching if c.active]
        if not active:
            return _CAMPAIGN_PAUSED, matching[0]
        running = [c for c in active if c.start_us <= at_us < c.end_us]
        if not running:
            return _OUTSIDE_WINDOW, active[0]
        allowed = [c for c in running if c.region_allowed(region)]
        if not allowed:
            return _REGION_EXCLUDED, running[0]
        c = allowed[0]
    if c.secret is None:
        raise CorruptionError(f"campaign {c.id}: no secret stored")
    # precedence: blacklist > must-win > eligible
    if r.actor in c.blacklist:
        return _BLACKLISTED, c
    if (verdict is _V_DIVERTED and not c.diverted_ok) or \
            (verdict is _V_SUSPECT_CLONE and not c.clone_ok):
        return _VERDICT_NOT_ELIGIBLE, c
    actor = r.actor.encode()
    days = c.days.get(time_ms // 1000) or c.days_at(time_ms)    # (the local day, the points' month)
    point_keys = layout.award_keys(actor, days[1]) if c.has_points else None
    return c, serial_key, days[0], c.total_prefix + actor, point_keys  # type: ignore[return-value]  # genuine: keyed
