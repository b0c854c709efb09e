from google.protobuf import struct_pb2 as _struct_pb2
from scangate.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Datum(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DATUM_UNSPECIFIED: _ClassVar[Datum]
    DATUM_WGS84: _ClassVar[Datum]
    DATUM_GCJ02: _ClassVar[Datum]
DATUM_UNSPECIFIED: Datum
DATUM_WGS84: Datum
DATUM_GCJ02: Datum

class ScanRequest(_message.Message):
    __slots__ = ("request_id", "code", "actor", "actor_type", "region", "lat", "lon", "time_ms", "actor_tags", "datum")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    ACTOR_TYPE_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    LAT_FIELD_NUMBER: _ClassVar[int]
    LON_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    ACTOR_TAGS_FIELD_NUMBER: _ClassVar[int]
    DATUM_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    code: str
    actor: str
    actor_type: _common_pb2.ActorType
    region: int
    lat: float
    lon: float
    time_ms: int
    actor_tags: _containers.RepeatedScalarFieldContainer[str]
    datum: Datum
    def __init__(self, request_id: _Optional[str] = ..., code: _Optional[str] = ..., actor: _Optional[str] = ..., actor_type: _Optional[_Union[_common_pb2.ActorType, str]] = ..., region: _Optional[int] = ..., lat: _Optional[float] = ..., lon: _Optional[float] = ..., time_ms: _Optional[int] = ..., actor_tags: _Optional[_Iterable[str]] = ..., datum: _Optional[_Union[Datum, str]] = ...) -> None: ...

class ScanBatch(_message.Message):
    __slots__ = ("scans",)
    SCANS_FIELD_NUMBER: _ClassVar[int]
    scans: _containers.RepeatedCompositeFieldContainer[ScanRequest]
    def __init__(self, scans: _Optional[_Iterable[_Union[ScanRequest, _Mapping]]] = ...) -> None: ...

class ScanDecisionBatch(_message.Message):
    __slots__ = ("decisions",)
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    decisions: _containers.RepeatedCompositeFieldContainer[ScanDecision]
    def __init__(self, decisions: _Optional[_Iterable[_Union[ScanDecision, _Mapping]]] = ...) -> None: ...

class ScanDecision(_message.Message):
    __slots__ = ("request_id", "verdict", "award", "no_reward", "no_reward_code", "campaign_id", "message")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    AWARD_FIELD_NUMBER: _ClassVar[int]
    NO_REWARD_FIELD_NUMBER: _ClassVar[int]
    NO_REWARD_CODE_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    verdict: VerdictInfo
    award: Award
    no_reward: _common_pb2.NoRewardReason
    no_reward_code: str
    campaign_id: str
    message: _common_pb2.LocalizedText
    def __init__(self, request_id: _Optional[str] = ..., verdict: _Optional[_Union[VerdictInfo, _Mapping]] = ..., award: _Optional[_Union[Award, _Mapping]] = ..., no_reward: _Optional[_Union[_common_pb2.NoRewardReason, str]] = ..., no_reward_code: _Optional[str] = ..., campaign_id: _Optional[str] = ..., message: _Optional[_Union[_common_pb2.LocalizedText, _Mapping]] = ...) -> None: ...

class VerdictInfo(_message.Message):
    __slots__ = ("verdict", "reasons", "reason_codes", "code_status", "region", "region_source", "clone_score", "first_scan", "scan_count", "evidence", "message")
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    REASON_CODES_FIELD_NUMBER: _ClassVar[int]
    CODE_STATUS_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    REGION_SOURCE_FIELD_NUMBER: _ClassVar[int]
    CLONE_SCORE_FIELD_NUMBER: _ClassVar[int]
    FIRST_SCAN_FIELD_NUMBER: _ClassVar[int]
    SCAN_COUNT_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    verdict: _common_pb2.Verdict
    reasons: _containers.RepeatedScalarFieldContainer[_common_pb2.VerdictReason]
    reason_codes: _containers.RepeatedScalarFieldContainer[str]
    code_status: _common_pb2.CodeStatus
    region: int
    region_source: str
    clone_score: float
    first_scan: FirstScan
    scan_count: int
    evidence: _struct_pb2.Struct
    message: _common_pb2.LocalizedText
    def __init__(self, verdict: _Optional[_Union[_common_pb2.Verdict, str]] = ..., reasons: _Optional[_Iterable[_Union[_common_pb2.VerdictReason, str]]] = ..., reason_codes: _Optional[_Iterable[str]] = ..., code_status: _Optional[_Union[_common_pb2.CodeStatus, str]] = ..., region: _Optional[int] = ..., region_source: _Optional[str] = ..., clone_score: _Optional[float] = ..., first_scan: _Optional[_Union[FirstScan, _Mapping]] = ..., scan_count: _Optional[int] = ..., evidence: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., message: _Optional[_Union[_common_pb2.LocalizedText, _Mapping]] = ...) -> None: ...

class FirstScan(_message.Message):
    __slots__ = ("time_ms", "region", "actor")
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    time_ms: int
    region: int
    actor: str
    def __init__(self, time_ms: _Optional[int] = ..., region: _Optional[int] = ..., actor: _Optional[str] = ...) -> None: ...

class Award(_message.Message):
    __slots__ = ("campaign_id", "prize_id", "kind", "amount_fen", "points", "how", "ledger_seq", "payout_key")
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    PRIZE_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FEN_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    HOW_FIELD_NUMBER: _ClassVar[int]
    LEDGER_SEQ_FIELD_NUMBER: _ClassVar[int]
    PAYOUT_KEY_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    prize_id: str
    kind: str
    amount_fen: int
    points: int
    how: str
    ledger_seq: int
    payout_key: str
    def __init__(self, campaign_id: _Optional[str] = ..., prize_id: _Optional[str] = ..., kind: _Optional[str] = ..., amount_fen: _Optional[int] = ..., points: _Optional[int] = ..., how: _Optional[str] = ..., ledger_seq: _Optional[int] = ..., payout_key: _Optional[str] = ...) -> None: ...
