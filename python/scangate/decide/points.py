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

__all__ = ["award_points", "points_for"]


def points_for(campaign: Campaign, tiers: bool, prize: Prize, earned: int, multiplier_pct: int | None
               ) -> tuple[int, int | None]:
    """The points a points prize credits: the prize's, scaled by the store tier of
    the actor's points earned so far and by a plugin's multiplier (a negative one
    counts as 0); and the tier's percentage (None without one). The engine credits
    them; the audit (scangate.audit) computes them again with this function."""
    points = prize.points
    tier_pct = None
    tier = campaign.tier_for(earned) if tiers else None
    if tier is not None:
        points = points * tier.multiplier_pct // 100
        tier_pct = tier.multiplier_pct
    if multiplier_pct is not None:
        points = points * max(multiplier_pct, 0) // 100
    return points, tier_pct


def award_points(campaign: Campaign, tiers: bool, prize: Prize, rule: RuleResult, snap: Snapshot, m: Mutations,
                 keys: tuple[bytes, bytes, bytes], seq: int, time_ms: int) -> tuple[int, int | None]:
    """Credit a points prize; returns (points credited, the tier's percentage,
    None without one). ``keys``: the actor's account, month and
    history prefix (scangate.points.award_keys)."""
    account_key, month_key, history_prefix = keys
    balance, earned = snap.accounts[account_key]
    points, tier_pct = points_for(campaign, tiers, prize, earned, rule.points_multiplier_pct)
    balance += points
    if points > 0:
        earned += points
        month = snap.months[month_key] + points
        snap.months[month_key] = m.months[month_key] = month
    snap.accounts[account_key] = m.accounts[account_key] = (balance, earned)
    m.points_history.append((history_prefix, PointsEntry(points, balance, "award", f"ledger:{seq}", time_ms)))
    return points, tier_pct
