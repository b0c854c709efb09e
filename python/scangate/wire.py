"""Conversions between the package's types and the ``scangate.v1`` messages, both
directions in one module, so that the two ends of a call agree by construction
(tests/test_proto.py checks the round trips):

- a scan: ``scangate.Client`` sends a ``ScanRequest`` as a message
  (``scan_request_to_proto``); the server's writer process, which decides every
  scan, reads it back (``scan_request_from_proto``) and answers with the
  ``Decision`` as a ``ScanDecision`` (``decision_to_proto``), serialised once
  there and sent on unchanged by the worker; the client turns it back
  (``decision_from_proto``);
- enums (verdicts, reasons, code statuses, levels): wire values both ways, for
  the workers' replies and the client's reading of them.

It imports only protobuf, the generated ``scangate.v1`` messages and the light
type modules (``decision``, ``enums``): an app that only calls a server loads no
LMDB, numpy or cryptography (tests/test_light_import.py).
"""

from __future__ import annotations

import enum

from typing import Any

from google.protobuf import json_format, struct_pb2

from .decision import Award, Decision, NoReward, ScanRequest
from .enums import CodeStatus, Level, Reason, Verdict
from .verdict import ScanVerdict
from .v1 import common_pb2 as common
from .v1 import scan_pb2 as scan_pb

__all__ = ["decision_to_proto", "decision_from_proto", "scan_request_to_proto", "scan_request_from_proto",
           "enum_to_proto", "enum_from_proto", "struct_to_dict"]

# package enum -> (proto enum, value prefix). Members map by name: Verdict.DIVERTED
# <-> VERDICT_DIVERTED; tests/test_proto.py checks that every member has its value.
_ENUMS: dict[type[enum.Enum], tuple[Any, str]] = {
    Verdict: (common.Verdict, "VERDICT_"),
    Reason: (common.VerdictReason, "VERDICT_REASON_"),
    NoReward: (common.NoRewardReason, "NO_REWARD_REASON_"),
    CodeStatus: (common.CodeStatus, "CODE_STATUS_"),
    Level: (common.Level, "LEVEL_"),
}


# keyed by (type, member): IntEnum members of different enums compare equal
_TO: dict[tuple[type, Any], Any] = {(kind, m): int(e.Value(prefix + m.name))
                                    for kind, (e, prefix) in _ENUMS.items() for m in kind}
_FROM: dict[tuple[type, int], Any] = {(kind, v): m for (kind, m), v in _TO.items()}
# the labels and documented codes that decisions carry, straight to wire values
_VERDICT_TO = {v: _TO[(Verdict, v)] for v in Verdict}
_STATUS_TO = {s: _TO[(CodeStatus, s)] for s in CodeStatus}
_REASON_TO = {r: _TO[(Reason, r)] for r in Reason}
_REASON_CODE = {r: r.value for r in Reason}


def enum_to_proto(member: Any) -> Any:
    """The wire value of a package enum member: an int, typed Any because each
    proto enum field's stub wants its own enum type (Level, NoRewardReason...)."""
    return _TO[(type(member), member)]


def enum_from_proto(kind: type, value: int) -> Any:
    try:
        return _FROM[(kind, value)]
    except KeyError:
        raise ValueError(f"{value} is not a known {kind.__name__}") from None


_ACTOR_TYPES = {"consumer": common.ACTOR_TYPE_CONSUMER, "store": common.ACTOR_TYPE_STORE}
_ACTOR_NAMES = {common.ACTOR_TYPE_UNSPECIFIED: "consumer", common.ACTOR_TYPE_CONSUMER: "consumer",
                common.ACTOR_TYPE_STORE: "store"}


def scan_request_to_proto(r: ScanRequest) -> scan_pb.ScanRequest:
    if r.actor_type not in _ACTOR_TYPES:
        raise ValueError(f"actor_type: {r.actor_type!r} is not consumer or store")
    msg = scan_pb.ScanRequest(request_id=r.request_id, code=r.code, actor=r.actor,
                              actor_type=_ACTOR_TYPES[r.actor_type], region=r.region or 0,
                              time_ms=r.time_ms or 0, actor_tags=list(r.actor_tags))
    if r.lat is not None:
        msg.lat = r.lat
    if r.lon is not None:
        msg.lon = r.lon
    return msg


def scan_request_from_proto(m: scan_pb.ScanRequest, client: str = "") -> ScanRequest:
    """The request as ``decide_scans`` takes it, from ``client`` (its request ids
    are its own; "": none); ``actor_type`` is checked by the caller."""
    return ScanRequest(
        request_id=m.request_id, code=m.code, actor=m.actor,
        actor_type=_ACTOR_NAMES.get(m.actor_type, f"<{m.actor_type}>"),
        region=m.region or None, lat=m.lat if m.HasField("lat") else None,
        lon=m.lon if m.HasField("lon") else None, time_ms=m.time_ms or None, actor_tags=tuple(m.actor_tags),
        client=client)


def _text(d: dict[str, str]) -> dict[str, str]:
    return {"zh_cn": d.get("zh-CN", ""), "en": d.get("en", "")}


def decision_to_proto(d: Decision) -> scan_pb.ScanDecision:
    v = d.verdict
    zh, en = v.words()
    info: dict[str, Any] = {
        "verdict": _VERDICT_TO[v.verdict], "reasons": [_REASON_TO[r] for r in v.reasons],
        "reason_codes": [_REASON_CODE[r] for r in v.reasons], "code_status": _STATUS_TO[v.code_status],
        "region": v.region or 0, "region_source": v.region_source,
        "clone_score": v.clone_score,
        "scan_count": v.scan_count, "message": {"zh_cn": zh, "en": en}}
    f = v.first_scan
    if f:
        info["first_scan"] = {"time_ms": f.get("time_ms") or 0, "region": f.get("region") or 0,
                              "actor": f.get("actor") or ""}
    msg = scan_pb.ScanDecision(request_id=d.request_id, verdict=info, campaign_id=d.campaign_id or "",
                               message=_text(d.message))
    if v.evidence:
        msg.verdict.evidence.update(v.evidence)
    a = d.award
    if a is not None:
        msg.award.campaign_id, msg.award.prize_id, msg.award.kind = a.campaign_id, a.prize_id, a.kind
        msg.award.amount_fen, msg.award.points, msg.award.how = a.amount_fen, a.points, a.how
        msg.award.ledger_seq, msg.award.payout_key = a.ledger_seq, a.payout_key or ""
    if d.no_reward is not None:
        msg.no_reward = _TO[(NoReward, d.no_reward)]
        msg.no_reward_code = d.no_reward.value
    return msg


def _plain(value: Any) -> Any:
    """Struct numbers are doubles: give whole numbers back as int."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(x) for k, x in value.items()}
    if isinstance(value, list):
        return [_plain(x) for x in value]
    return value


def struct_to_dict(s: struct_pb2.Struct) -> dict[str, Any]:
    return _plain(json_format.MessageToDict(s))  # type: ignore[no-any-return]


def decision_from_proto(m: scan_pb.ScanDecision) -> Decision:
    v = m.verdict
    first = None
    if v.HasField("first_scan"):
        first = {"time_ms": v.first_scan.time_ms, "region": v.first_scan.region or None,
                 "actor": v.first_scan.actor or None}
    verdict = ScanVerdict(enum_from_proto(Verdict, v.verdict), [enum_from_proto(Reason, r) for r in v.reasons],
                          enum_from_proto(CodeStatus, v.code_status), v.region or None, v.region_source,
                          v.clone_score, first, v.scan_count, struct_to_dict(v.evidence),
                          said=(v.message.zh_cn, v.message.en))
    award = None
    if m.HasField("award"):
        a = m.award
        award = Award(a.campaign_id, a.prize_id, a.kind, a.amount_fen, a.points, a.how, a.ledger_seq,
                      a.payout_key or None)
    no_reward = enum_from_proto(NoReward, m.no_reward) if m.no_reward else None
    return Decision(m.request_id, verdict, award, no_reward, m.campaign_id or None)
