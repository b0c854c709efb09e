"""The records a decision writes (scangate.state.records): the decision, returned
again to a retry; the ledger entry, every input audit needs to decide it again;
the claim; the payout request; and the Decision the caller gets.
"""

from __future__ import annotations

from typing import Any

from ..decision import Award, Decision, NoReward, ScanRequest
from ..plugins import RuleResult
from ..state.records import AwardRecord, Claim, DecisionRecord, LedgerEntry, Payout
from ..verdict import ScanVerdict
from .campaign import Compiled

__all__ = ["award", "claim_record", "decision", "decision_record", "from_record", "ledger_entry", "no_reward",
           "payout_record", "plugin_output"]

_new, _set_attr = object.__new__, object.__setattr__
_NO_REWARD = {r.value: r for r in NoReward}


def decision(request_id: str, verdict: dict[str, Any], award: Award | None, no_reward: NoReward | None,
             campaign_id: str | None) -> Decision:
    """``Decision(...)``, the same value, made without the frozen dataclass's
    field-by-field ``__init__`` (thousands a second: it shows)."""
    d = _new(Decision)
    _set_attr(d, "__dict__", {"request_id": request_id, "verdict": verdict, "award": award,
                              "no_reward": no_reward, "campaign_id": campaign_id})
    return d


def award(campaign_id: str, prize_id: str, kind: str, amount_fen: int, points: int, how: str, ledger_seq: int,
          payout_key: str | None) -> Award:
    """``Award(...)``, as ``decision``."""
    a = _new(Award)
    _set_attr(a, "__dict__", {"campaign_id": campaign_id, "prize_id": prize_id, "kind": kind,
                              "amount_fen": amount_fen, "points": points, "how": how, "ledger_seq": ledger_seq,
                              "payout_key": payout_key})
    return a


def decision_record(d: Decision) -> DecisionRecord:
    a = d.award
    return DecisionRecord(
        d.request_id, d.verdict,
        None if a is None else AwardRecord(a.campaign_id, a.prize_id, a.kind, a.amount_fen, a.points, a.how,
                                           a.ledger_seq, a.payout_key),
        None if d.no_reward is None else d.no_reward.value, d.campaign_id)


def from_record(r: DecisionRecord) -> Decision:
    """The Decision a stored record holds (a retry's answer)."""
    a = r.award
    return decision(r.request_id, r.verdict,
                    None if a is None else award(a.campaign_id, a.prize_id, a.kind, a.amount_fen, a.points, a.how,
                                                 a.ledger_seq, a.payout_key),
                    None if r.no_reward is None else _NO_REWARD[r.no_reward], r.campaign_id)


def no_reward(r: ScanRequest, verdict: dict[str, Any], reason: NoReward, campaign: Compiled | None) -> Decision:
    """A decision without a reward."""
    return decision(r.request_id, verdict, None, reason, campaign.id if campaign is not None else None)


def plugin_output(rule: RuleResult) -> dict[str, Any]:
    """The plugins' merged output as the ledger entry records it (audit cannot run
    them again; run_plugins has checked the types)."""
    return {"odds_ppm": rule.odds_ppm, "prize_id": rule.prize_id, "veto": rule.veto,
            "points_multiplier_pct": rule.points_multiplier_pct}


def claim_record(c: Compiled, seq: int) -> Claim:
    """A code's claim: the campaign and ledger entry that drew on it (one draw per code)."""
    return Claim(c.id, seq)


def payout_record(key: str, seq: int, actor: str, prize_id: str, kind: str, amount: int,
                  coupon: dict[str, Any] | None, created_ms: int) -> Payout:
    """A payout request for the outbox (scangate.payouts), pending."""
    return Payout(key, "pending", 0, seq, actor, prize_id, kind, amount, coupon, created_ms)


ledger_entry = LedgerEntry     # the fields, in LEDGER_FIELDS order (scangate.audit, docs/campaigns.md "Audit")
