"""The records a decision writes, as JSON text: the decision (the reply and the
request's record), the ledger entry (every input audit needs to decide it again),
the claim and the payout request.

Written by templates, byte for byte what ``json.dumps`` writes for the same values
(tests/test_rewards_encoding.py holds them equal): a decision is thousands a
second, and the generic encoder's set-up per call is most of its cost.
"""

from __future__ import annotations

import json
from typing import Any

from ..decision import NO_REWARD_MESSAGES, Award, Decision, NoReward, ScanRequest
from ..decision import decision_message as _message
from ..enums import Verdict
from ..jsontext import esc as _esc
from ..jsontext import number as _num
from ..plugins import RuleResult
from ..verdict import ScanVerdict
from .campaign import Compiled

__all__ = ["award_decision", "claim_record", "ledger_entry", "no_reward", "payout_record", "plugin_json",
           "points_entry"]

_new, _set_attr = object.__new__, object.__setattr__
_MESSAGE_KEYS = {"zh-CN", "en"}
_V_GENUINE = Verdict.GENUINE
_NO_CLIENT = '""'
_NO_COUNTS = "[0, 0, 0, 0]"     # a user's first scan in a campaign: no counter record yet


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


def plugin_json(rule: RuleResult) -> str:
    """The plugins' merged output as the ledger entry records it (run_plugins has
    checked the types: ints, a str, a bool); json.dumps of the same dict."""
    odds, prize, pct = rule.odds_ppm, rule.prize_id, rule.points_multiplier_pct
    return (f'{{"odds_ppm": {"null" if odds is None else _num(odds)}, '
            f'"prize_id": {"null" if prize is None else _esc(prize)}, "veto": {"true" if rule.veto else "false"}, '
            f'"points_multiplier_pct": {"null" if pct is None else _num(pct)}}}')



def _message_json(message: dict[str, str]) -> str:
    if message.keys() != _MESSAGE_KEYS:
        return json.dumps(message)
    return f'{{"zh-CN": {_esc(message["zh-CN"])}, "en": {_esc(message["en"])}}}'


_NO_REWARD_JSON = {r: (_esc(r.value), _message_json({"zh-CN": zh, "en": en}))
                   for r, (zh, en) in NO_REWARD_MESSAGES.items()}
_award_message_json: dict[tuple[str, int, int], str] = {}


def no_reward(r: ScanRequest, v: ScanVerdict, verdict: dict[str, Any], reason: NoReward,
              campaign: Compiled | None) -> tuple[Decision, str]:
    """A decision without a reward, and its JSON."""
    cid = campaign.id if campaign is not None else None
    reason_json, message_json = _NO_REWARD_JSON[reason]
    if v.verdict is not _V_GENUINE or v.first_scan is not None:     # the verdict has its say (_message)
        message_json = _message_json(_message(None, reason, verdict))
    text = (f'{{"request_id": {_esc(r.request_id)}, "verdict": {v.json_text()}, "award": null, '
            f'"no_reward": {reason_json}, "campaign_id": {"null" if campaign is None else campaign.id_json}, '
            f'"message": {message_json}}}')
    return decision(r.request_id, verdict, None, reason, cid), text


def award_decision(r: ScanRequest, v: ScanVerdict, verdict: dict[str, Any], c: Compiled, a: Award,
                   points_json: str, seq_text: str, payout_json: str) -> tuple[Decision, str]:
    """A decision with an award, and its JSON."""
    key = (a.kind, a.amount_fen, a.points)
    message_json = _award_message_json.get(key)
    if message_json is None:
        if len(_award_message_json) >= 10_000:
            _award_message_json.clear()
        message_json = _award_message_json[key] = _message_json(_message(a, None, verdict))
    text = (f'{{"request_id": {_esc(r.request_id)}, "verdict": {v.json_text()}, '
            f'"award": {c.award_head[a.prize_id]}{points_json}, "how": "{a.how}", "ledger_seq": {seq_text}, '
            f'"payout_key": {payout_json}}}, "no_reward": null, "campaign_id": {c.id_json}, '
            f'"message": {message_json}}}')
    return decision(r.request_id, verdict, a, None, c.id), text


def claim_record(c: Compiled, seq_text: str) -> bytes:
    """A code's claim: the campaign and ledger entry that drew on it (one draw per code)."""
    return f'{{"campaign_id": {c.id_json}, "ledger_seq": {seq_text}}}'.encode()


def payout_record(payout_json: str, seq_text: str, actor_json: str, prize_json: str, kind: str, amount: int,
                  coupon_json: str, created_ms: int) -> bytes:
    """A payout request for the outbox (scangate.payouts), pending."""
    return (f'{{"key": {payout_json}, "state": "pending", "attempts": 0, "ledger_seq": {seq_text}, '
            f'"actor": {actor_json}, "prize_id": {prize_json}, "kind": "{kind}", '
            f'"amount_fen": {amount}, "coupon": {coupon_json}, '
            f'"created_ms": {created_ms}}}').encode()


def points_entry(delta: int, balance: int, seq_text: str, at_ms_json: str) -> bytes:
    """A points history entry of an award (scangate.points writes the same fields
    for redemptions): ints are their own JSON text; "award" and "ledger:<n>" need
    no escaping."""
    return (f'{{"delta": {delta}, "balance": {balance}, "reason": "award", "ref": "ledger:{seq_text}", '
            f'"at_ms": {at_ms_json}}}').encode()


def ledger_entry(seq_text: str, request_json: str, r: ScanRequest, c: Compiled, serial_text: str,
                 actor_json: str, time_json: str, message: str, mac: bytes, roll: int, odds_text: str, n: int,
                 counts: tuple[int, int, int, int] | None, how: str, budgets_json: str, prize_json: str,
                 amount: int, tier_json: str, points_json: str, payout_json: str, reason_json: str) -> bytes:
    """The ledger entry: the decision and every input audit needs to recompute it
    (scangate.audit, LEDGER_FIELDS there; docs/campaigns.md, "Audit")."""
    counts_json = _NO_COUNTS if counts is None else f"[{counts[0]}, {counts[1]}, {counts[2]}, {counts[3]}]"
    return (
        f'{{"seq": {seq_text}, "request_id": {request_json}, '
        f'"client": {_esc(r.client) if r.client else _NO_CLIENT}, {c.ledger_campaign}"serial": {serial_text}, '
        f'"actor": {actor_json}, "time_ms": {time_json}, "draw_input": {_esc(message)}, '
        f'"hmac": "{mac.hex()}", "roll": {roll}, {odds_text}, "scan_number": {n}, '
        f'"counters": {counts_json}, '
        f'"how": "{how}", "budgets": {budgets_json}, "prize_id": {prize_json}, "amount_fen": {amount}, '
        f'"tier_pct": {tier_json}, "points": {points_json}, "payout_key": {payout_json}, '
        f'"no_reward": {reason_json}}}').encode()


def reason_json(reason: NoReward | None) -> str:
    return "null" if reason is None else _NO_REWARD_JSON[reason][0]
