"""The records a decision writes (scangate.state.records): the ledger entry, every
input audit needs to decide it again; the payout request (the claim is a records.Claim). The
decision itself, returned again to a retry, is stored as the Decision the caller
gets (scangate.decision: a typed record of its own).
"""

from __future__ import annotations

from typing import Any

from ..decision import Decision, NoReward, ScanRequest
from ..plugins import RuleResult
from ..state.records import LedgerEntry, Payout
from ..verdict import ScanVerdict
from .campaign import Compiled

__all__ = ["ledger_entry", "no_reward", "payout_record", "plugin_output"]


def no_reward(r: ScanRequest, verdict: ScanVerdict, reason: NoReward, campaign: Compiled | None) -> Decision:
    """A decision without a reward."""
    return Decision(r.request_id, verdict, None, reason, campaign.id if campaign is not None else None)


def plugin_output(rule: RuleResult) -> dict[str, Any]:
    """The plugins' merged output as the ledger entry records it (audit cannot run
    them again; run_plugins has checked the types)."""
    return {"odds_ppm": rule.odds_ppm, "prize_id": rule.prize_id, "veto": rule.veto,
            "points_multiplier_pct": rule.points_multiplier_pct}


def payout_record(key: str, seq: int, actor: str, prize_id: str, kind: str, amount: int,
                  coupon: dict[str, Any] | None, created_ms: int) -> Payout:
    """A payout request for the outbox (scangate.payouts), pending."""
    return Payout(key, "pending", 0, seq, actor, prize_id, kind, amount, coupon, created_ms)


ledger_entry = LedgerEntry     # the fields, in LEDGER_FIELDS order (scangate.audit, docs/campaigns.md "Audit")
