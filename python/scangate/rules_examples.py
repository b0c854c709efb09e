"""Two example rule plugins (see scangate.plugins for the contract).

Campaigns name them as ``scangate.rules_examples:member_day`` and
``scangate.rules_examples:vip_prize``, or by their entry-point names
``member-day-double-points`` and ``vip-prize``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .plugins import RuleContext, RuleResult

__all__ = ["MemberDayDoublePoints", "TagTargetedPrize", "member_day", "vip_prize"]


@dataclass(frozen=True)
class MemberDayDoublePoints:
    """Double points for members on member day (a day of the month, local time)."""

    name: str = "member-day-double-points"
    day_of_month: int = 8
    tag: str = "member"

    def evaluate(self, ctx: RuleContext) -> RuleResult | None:
        if ctx.local_time.day == self.day_of_month and self.tag in ctx.actor_tags:
            return RuleResult(points_multiplier_pct=200, note="member day: double points")
        return None


@dataclass(frozen=True)
class TagTargetedPrize:
    """Actors with a tag get a particular prize when they win (budget permitting)."""

    name: str = "tag-targeted-prize"
    tag: str = "vip"
    prize_id: str = "cny-20"

    def evaluate(self, ctx: RuleContext) -> RuleResult | None:
        if self.tag in ctx.actor_tags:
            return RuleResult(prize_id=self.prize_id, note=f"{self.tag}: {self.prize_id}")
        return None


member_day = MemberDayDoublePoints()
vip_prize = TagTargetedPrize()
