"""What a scan request and its decision are: the types ``decide_scans`` takes and
returns and ``scangate.Client`` hands back.

A light module (dataclasses, msgspec Structs and enums; scangate.verdict for the
typed verdict) so that an app that only calls a server through
``scangate.Client`` loads no LMDB, numpy or cryptography.

``Decision`` and ``Award`` are msgspec Structs: typed, frozen, made in a few
hundred instructions, and ``Decision`` is also the stored decision record
(scangate.state.records: an array led by its version tag, 2; the fields in this
order). ``scangate.rewards`` re-exports every name, where they have always
been importable from.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import msgspec

from .enums import Verdict
from .verdict import ScanVerdict

__all__ = ["Award", "Decision", "NO_REWARD_MESSAGES", "NoReward", "ScanRequest", "decision_message"]


class NoReward(str, enum.Enum):
    """Why a scan won nothing: stable codes (docs/campaigns.md)."""

    NO_CAMPAIGN = "RW-N1"
    CAMPAIGN_PAUSED = "RW-N2"
    OUTSIDE_WINDOW = "RW-N3"
    REGION_EXCLUDED = "RW-N4"
    VERDICT_NOT_ELIGIBLE = "RW-N5"
    BLACKLISTED = "RW-N6"
    ALREADY_CLAIMED = "RW-N7"
    DAILY_CAP_REACHED = "RW-N8"
    TOTAL_CAP_REACHED = "RW-N9"
    BUDGET_EXHAUSTED = "RW-N10"
    LOST_DRAW = "RW-N11"
    PLUGIN_VETO = "RW-N12"
    PLUGIN_FAILED = "RW-N13"


NO_REWARD_MESSAGES: dict[NoReward, tuple[str, str]] = {
    NoReward.NO_CAMPAIGN: ("本产品当前没有扫码活动。", "There is no campaign for this product right now."),
    NoReward.CAMPAIGN_PAUSED: ("活动已暂停。", "The campaign is paused."),
    NoReward.OUTSIDE_WINDOW: ("不在活动时间内。", "The campaign is not running at this time."),
    NoReward.REGION_EXCLUDED: ("您所在地区不参与本活动。", "Your region does not take part in this campaign."),
    NoReward.VERDICT_NOT_ELIGIBLE: ("此码不符合领奖条件。", "This code is not eligible for a reward."),
    NoReward.BLACKLISTED: ("您的账号暂不能参与活动。", "Your account cannot take part in this campaign."),
    NoReward.ALREADY_CLAIMED: ("此码已参与过抽奖。", "This code has already been used in the draw."),
    NoReward.DAILY_CAP_REACHED: ("今日扫码领奖次数已达上限。", "Scan limit reached for today."),
    NoReward.TOTAL_CAP_REACHED: ("您的领奖次数已达活动上限。", "You have reached this campaign's reward limit."),
    NoReward.BUDGET_EXHAUSTED: ("奖品已发完。", "All prizes have been given out."),
    NoReward.LOST_DRAW: ("很遗憾，未中奖，谢谢参与。", "No prize this time. Thank you for taking part."),
    NoReward.PLUGIN_VETO: ("此次扫码不参与抽奖。", "This scan does not take part in the draw."),
    NoReward.PLUGIN_FAILED: ("系统繁忙，本次未能参与抽奖，请稍后再扫。",
                             "The draw is unavailable right now; please scan again later."),
}
# Reasons the verdict's message already tells (a counterfeit is not eligible; a
# code no campaign covers has nothing to add): decision_message does not repeat them.
SAID_BY_VERDICT = frozenset({NoReward.VERDICT_NOT_ELIGIBLE, NoReward.NO_CAMPAIGN})


@dataclass(frozen=True)
class ScanRequest:
    """One scan as an upstream app sends it; ``request_id`` makes retries safe."""

    request_id: str
    code: str
    actor: str
    actor_type: str = "consumer"
    region: int | None = None
    lat: float | None = None
    lon: float | None = None
    time_ms: int | None = None
    actor_tags: tuple[str, ...] = ()   # from the upstream app (member, vip...), for rule plugins
    # the calling app (the server's token name; "": none): request ids are scoped to it,
    # so two apps may both send "req-1"
    client: str = ""


class Award(msgspec.Struct, frozen=True, array_like=True):
    campaign_id: str
    prize_id: str
    kind: str
    amount_fen: int
    points: int
    how: str                  # draw | first_scan | nth_scan | consolation
    ledger_seq: int
    payout_key: str | None    # idempotency key of the payout request (cash, coupon)


class Decision(msgspec.Struct, frozen=True, array_like=True, tag=2):
    """One request's decision: the verdict, and the award or why none. Tag 2: the
    decision record's version (1 held the verdict as its JSON: DecisionRecordV1)."""

    request_id: str
    verdict: ScanVerdict
    award: Award | None
    no_reward: NoReward | None
    campaign_id: str | None

    @property
    def message(self) -> dict[str, str]:
        return decision_message(self.award, self.no_reward, self.verdict)

    def to_json(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "verdict": self.verdict.to_json(),
                "award": msgspec.structs.asdict(self.award) if self.award else None,
                "no_reward": self.no_reward.value if self.no_reward else None,
                "campaign_id": self.campaign_id, "message": self.message}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Decision:
        return cls(d["request_id"], ScanVerdict.from_json(d["verdict"]), Award(**d["award"]) if d["award"] else None,
                   NoReward(d["no_reward"]) if d["no_reward"] else None, d["campaign_id"])


def decision_message(award: Award | None, no_reward: NoReward | None, verdict: ScanVerdict) -> dict[str, str]:
    """A decision's message: the award's; else for a code that is not plainly
    genuine (counterfeit, typo, recalled, clone, diverted) or a repeat scan, the
    verdict's own (a warning, "scan again", when and where it was first
    scanned), followed by why no reward when that is news; else why no reward."""
    if award is not None:
        if award.kind == "cash":
            zh = f"恭喜您获得 {award.amount_fen / 100:.2f} 元红包！"
            en = f"Congratulations! You won a {award.amount_fen / 100:.2f} CNY red packet."
        elif award.kind == "points":
            zh, en = f"恭喜您获得 {award.points} 积分！", f"You earned {award.points} points!"
        else:
            zh, en = "恭喜您获得一张优惠券！", "You won a coupon!"
        return {"zh-CN": zh, "en": en}
    told_zh, told_en = verdict.words()
    if verdict.verdict is not _V_GENUINE or verdict.first_scan:
        if no_reward is None or no_reward in SAID_BY_VERDICT:
            return {"zh-CN": told_zh, "en": told_en}
        zh, en = NO_REWARD_MESSAGES[no_reward]
        return {"zh-CN": told_zh + zh, "en": f"{told_en} {en}".lstrip()}
    if no_reward is not None:
        zh, en = NO_REWARD_MESSAGES[no_reward]
        return {"zh-CN": zh, "en": en}
    return {"zh-CN": told_zh, "en": told_en}


_V_GENUINE = Verdict.GENUINE
