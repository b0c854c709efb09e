from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CampaignStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CAMPAIGN_STATUS_UNSPECIFIED: _ClassVar[CampaignStatus]
    CAMPAIGN_STATUS_ACTIVE: _ClassVar[CampaignStatus]
    CAMPAIGN_STATUS_PAUSED: _ClassVar[CampaignStatus]
CAMPAIGN_STATUS_UNSPECIFIED: CampaignStatus
CAMPAIGN_STATUS_ACTIVE: CampaignStatus
CAMPAIGN_STATUS_PAUSED: CampaignStatus

class PutCampaignRequest(_message.Message):
    __slots__ = ("definition", "source")
    DEFINITION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    definition: str
    source: str
    def __init__(self, definition: _Optional[str] = ..., source: _Optional[str] = ...) -> None: ...

class GetCampaignRequest(_message.Message):
    __slots__ = ("campaign_id",)
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    def __init__(self, campaign_id: _Optional[str] = ...) -> None: ...

class ListCampaignsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListCampaignsReply(_message.Message):
    __slots__ = ("campaigns",)
    CAMPAIGNS_FIELD_NUMBER: _ClassVar[int]
    campaigns: _containers.RepeatedCompositeFieldContainer[Campaign]
    def __init__(self, campaigns: _Optional[_Iterable[_Union[Campaign, _Mapping]]] = ...) -> None: ...

class SetCampaignStatusRequest(_message.Message):
    __slots__ = ("campaign_id", "status")
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    status: CampaignStatus
    def __init__(self, campaign_id: _Optional[str] = ..., status: _Optional[_Union[CampaignStatus, str]] = ...) -> None: ...

class BudgetUse(_message.Message):
    __slots__ = ("prize_id", "count", "amount_fen")
    PRIZE_ID_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FEN_FIELD_NUMBER: _ClassVar[int]
    prize_id: str
    count: int
    amount_fen: int
    def __init__(self, prize_id: _Optional[str] = ..., count: _Optional[int] = ..., amount_fen: _Optional[int] = ...) -> None: ...

class Campaign(_message.Message):
    __slots__ = ("campaign_id", "name", "status", "revision", "commitment", "loaded_at_ms", "definition_json", "budgets")
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    COMMITMENT_FIELD_NUMBER: _ClassVar[int]
    LOADED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_JSON_FIELD_NUMBER: _ClassVar[int]
    BUDGETS_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    name: str
    status: CampaignStatus
    revision: int
    commitment: str
    loaded_at_ms: int
    definition_json: str
    budgets: _containers.RepeatedCompositeFieldContainer[BudgetUse]
    def __init__(self, campaign_id: _Optional[str] = ..., name: _Optional[str] = ..., status: _Optional[_Union[CampaignStatus, str]] = ..., revision: _Optional[int] = ..., commitment: _Optional[str] = ..., loaded_at_ms: _Optional[int] = ..., definition_json: _Optional[str] = ..., budgets: _Optional[_Iterable[_Union[BudgetUse, _Mapping]]] = ...) -> None: ...
