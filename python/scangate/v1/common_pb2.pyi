from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Level(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LEVEL_UNSPECIFIED: _ClassVar[Level]
    LEVEL_ITEM: _ClassVar[Level]
    LEVEL_CASE: _ClassVar[Level]
    LEVEL_PALLET: _ClassVar[Level]

class ActorType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTOR_TYPE_UNSPECIFIED: _ClassVar[ActorType]
    ACTOR_TYPE_CONSUMER: _ClassVar[ActorType]
    ACTOR_TYPE_STORE: _ClassVar[ActorType]

class CodeStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CODE_STATUS_UNSPECIFIED: _ClassVar[CodeStatus]
    CODE_STATUS_GENUINE: _ClassVar[CodeStatus]
    CODE_STATUS_TYPO: _ClassVar[CodeStatus]
    CODE_STATUS_MALFORMED: _ClassVar[CodeStatus]
    CODE_STATUS_COUNTERFEIT: _ClassVar[CodeStatus]
    CODE_STATUS_UNKNOWN_KEY: _ClassVar[CodeStatus]
    CODE_STATUS_NOT_ISSUED: _ClassVar[CodeStatus]

class Verdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERDICT_UNSPECIFIED: _ClassVar[Verdict]
    VERDICT_GENUINE: _ClassVar[Verdict]
    VERDICT_COUNTERFEIT: _ClassVar[Verdict]
    VERDICT_REVOKED: _ClassVar[Verdict]
    VERDICT_SUSPECT_CLONE: _ClassVar[Verdict]
    VERDICT_DIVERTED: _ClassVar[Verdict]

class VerdictReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERDICT_REASON_UNSPECIFIED: _ClassVar[VerdictReason]
    VERDICT_REASON_GENUINE_FIRST_SCAN: _ClassVar[VerdictReason]
    VERDICT_REASON_GENUINE_REPEAT_SCAN: _ClassVar[VerdictReason]
    VERDICT_REASON_NOT_SHIPPED: _ClassVar[VerdictReason]
    VERDICT_REASON_MALFORMED: _ClassVar[VerdictReason]
    VERDICT_REASON_TYPO: _ClassVar[VerdictReason]
    VERDICT_REASON_COUNTERFEIT_TAG: _ClassVar[VerdictReason]
    VERDICT_REASON_UNKNOWN_KEY_VERSION: _ClassVar[VerdictReason]
    VERDICT_REASON_NOT_ISSUED: _ClassVar[VerdictReason]
    VERDICT_REASON_LINE_RECALLED: _ClassVar[VerdictReason]
    VERDICT_REASON_RANGE_RECALLED: _ClassVar[VerdictReason]
    VERDICT_REASON_CLONE_DISTINCT_ACTORS: _ClassVar[VerdictReason]
    VERDICT_REASON_CLONE_IMPOSSIBLE_TRAVEL: _ClassVar[VerdictReason]
    VERDICT_REASON_DIVERTED_OUTSIDE_TERRITORY: _ClassVar[VerdictReason]

class NoRewardReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NO_REWARD_REASON_UNSPECIFIED: _ClassVar[NoRewardReason]
    NO_REWARD_REASON_NO_CAMPAIGN: _ClassVar[NoRewardReason]
    NO_REWARD_REASON_CAMPAIGN_PAUSED: _ClassVar[NoRewardReason]
    NO_REWARD_REASON_OUTSIDE_WINDOW: _ClassVar[NoRewardReason]
    NO_REWARD_REASON_REGION_EXCLUDED: _ClassVar[NoRewardReason]
    NO_REWARD_REASON_VERDICT_NOT_ELIGIBLE: _ClassVar[NoRewardReason]
    NO_REWARD_REASON_BLACKLISTED: _ClassVar[NoRewardReason]
    NO_REWARD_REASON_ALREADY_CLAIMED: _ClassVar[NoRewardReason]
    NO_REWARD_REASON_DAILY_CAP_REACHED: _ClassVar[NoRewardReason]
    NO_REWARD_REASON_TOTAL_CAP_REACHED: _ClassVar[NoRewardReason]
    NO_REWARD_REASON_BUDGET_EXHAUSTED: _ClassVar[NoRewardReason]
    NO_REWARD_REASON_LOST_DRAW: _ClassVar[NoRewardReason]
    NO_REWARD_REASON_PLUGIN_VETO: _ClassVar[NoRewardReason]
    NO_REWARD_REASON_PLUGIN_FAILED: _ClassVar[NoRewardReason]

class RecallKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RECALL_KIND_UNSPECIFIED: _ClassVar[RecallKind]
    RECALL_KIND_LINE: _ClassVar[RecallKind]
    RECALL_KIND_RANGE: _ClassVar[RecallKind]
    RECALL_KIND_CODES: _ClassVar[RecallKind]
LEVEL_UNSPECIFIED: Level
LEVEL_ITEM: Level
LEVEL_CASE: Level
LEVEL_PALLET: Level
ACTOR_TYPE_UNSPECIFIED: ActorType
ACTOR_TYPE_CONSUMER: ActorType
ACTOR_TYPE_STORE: ActorType
CODE_STATUS_UNSPECIFIED: CodeStatus
CODE_STATUS_GENUINE: CodeStatus
CODE_STATUS_TYPO: CodeStatus
CODE_STATUS_MALFORMED: CodeStatus
CODE_STATUS_COUNTERFEIT: CodeStatus
CODE_STATUS_UNKNOWN_KEY: CodeStatus
CODE_STATUS_NOT_ISSUED: CodeStatus
VERDICT_UNSPECIFIED: Verdict
VERDICT_GENUINE: Verdict
VERDICT_COUNTERFEIT: Verdict
VERDICT_REVOKED: Verdict
VERDICT_SUSPECT_CLONE: Verdict
VERDICT_DIVERTED: Verdict
VERDICT_REASON_UNSPECIFIED: VerdictReason
VERDICT_REASON_GENUINE_FIRST_SCAN: VerdictReason
VERDICT_REASON_GENUINE_REPEAT_SCAN: VerdictReason
VERDICT_REASON_NOT_SHIPPED: VerdictReason
VERDICT_REASON_MALFORMED: VerdictReason
VERDICT_REASON_TYPO: VerdictReason
VERDICT_REASON_COUNTERFEIT_TAG: VerdictReason
VERDICT_REASON_UNKNOWN_KEY_VERSION: VerdictReason
VERDICT_REASON_NOT_ISSUED: VerdictReason
VERDICT_REASON_LINE_RECALLED: VerdictReason
VERDICT_REASON_RANGE_RECALLED: VerdictReason
VERDICT_REASON_CLONE_DISTINCT_ACTORS: VerdictReason
VERDICT_REASON_CLONE_IMPOSSIBLE_TRAVEL: VerdictReason
VERDICT_REASON_DIVERTED_OUTSIDE_TERRITORY: VerdictReason
NO_REWARD_REASON_UNSPECIFIED: NoRewardReason
NO_REWARD_REASON_NO_CAMPAIGN: NoRewardReason
NO_REWARD_REASON_CAMPAIGN_PAUSED: NoRewardReason
NO_REWARD_REASON_OUTSIDE_WINDOW: NoRewardReason
NO_REWARD_REASON_REGION_EXCLUDED: NoRewardReason
NO_REWARD_REASON_VERDICT_NOT_ELIGIBLE: NoRewardReason
NO_REWARD_REASON_BLACKLISTED: NoRewardReason
NO_REWARD_REASON_ALREADY_CLAIMED: NoRewardReason
NO_REWARD_REASON_DAILY_CAP_REACHED: NoRewardReason
NO_REWARD_REASON_TOTAL_CAP_REACHED: NoRewardReason
NO_REWARD_REASON_BUDGET_EXHAUSTED: NoRewardReason
NO_REWARD_REASON_LOST_DRAW: NoRewardReason
NO_REWARD_REASON_PLUGIN_VETO: NoRewardReason
NO_REWARD_REASON_PLUGIN_FAILED: NoRewardReason
RECALL_KIND_UNSPECIFIED: RecallKind
RECALL_KIND_LINE: RecallKind
RECALL_KIND_RANGE: RecallKind
RECALL_KIND_CODES: RecallKind

class LocalizedText(_message.Message):
    __slots__ = ("zh_cn", "en")
    ZH_CN_FIELD_NUMBER: _ClassVar[int]
    EN_FIELD_NUMBER: _ClassVar[int]
    zh_cn: str
    en: str
    def __init__(self, zh_cn: _Optional[str] = ..., en: _Optional[str] = ...) -> None: ...

class Recall(_message.Message):
    __slots__ = ("kind", "line_id", "first", "last", "reason", "at_ms")
    KIND_FIELD_NUMBER: _ClassVar[int]
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    FIRST_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    kind: RecallKind
    line_id: int
    first: int
    last: int
    reason: str
    at_ms: int
    def __init__(self, kind: _Optional[_Union[RecallKind, str]] = ..., line_id: _Optional[int] = ..., first: _Optional[int] = ..., last: _Optional[int] = ..., reason: _Optional[str] = ..., at_ms: _Optional[int] = ...) -> None: ...
