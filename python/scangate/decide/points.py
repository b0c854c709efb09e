"""Points an award earns: the prize's points, scaled by the store's tier and a
plugin's multiplier, credited to the actor's balance, cumulative total and month.

Tiers follow cumulative points earned (redeeming does not demote). The account
and month records were read with the batch (``award_keys``); the history entry
is numbered when the batch is applied.
"""

from __future__ import annotations

from ..campaigns import Campaign, Prize
from ..plugins import RuleResult
from ..state.batch import Mutations, Snapshot
from ..state.records import PointsEntry

__all__ = ["award_points"]


def award_points(campaign: Campaign, tiers: bool, prize: Prize, rule: RuleResult, snap: Snapshot, m: Mutations,
                 keys: tuple[bytes, bytes, bytes], seq: int, time_ms: int) -> tuple[int, int | None]:
    """Credit a points prize; returns (points credited, the tier's percentage,
    None without one). ``keys``: the actor's account, month and
    history prefix (scangate.points.award_keys)."""
    points = prize.points
    tier_pct = None
    account_key, month_key, history_prefix = keys
    balance, earned = snap.accounts[account_key]
    tier = campaign.tier_for(earned) if tiers else None
    if tier is not None:
        points = points * tier.multiplier_pct // 100
        tier_pct = tier.multiplier_pct
    if rule.points_multiplier_pct is not None:
        points = points * max(rule.points_multiplier_pct, 0) // 100
    balance += points
    if points > 0:
        earned += points
        month = snap.months[month_key] + points
        snap.months[month_key] = m.months[month_key] = month
    snap.accounts[account_key] = m.accounts[account_key] = (balance, earned)
    m.points_history.append((history_prefix, PointsEntry(points, balance, "award", f"ledger:{seq}", time_ms)))
    return points, tier_pct
