from scangate.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LinkAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LINK_ACTION_UNSPECIFIED: _ClassVar[LinkAction]
    LINK_ACTION_ADD: _ClassVar[LinkAction]
    LINK_ACTION_DELETE: _ClassVar[LinkAction]
LINK_ACTION_UNSPECIFIED: LinkAction
LINK_ACTION_ADD: LinkAction
LINK_ACTION_DELETE: LinkAction

class Link(_message.Message):
    __slots__ = ("parent", "child", "action")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    CHILD_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    parent: str
    child: str
    action: LinkAction
    def __init__(self, parent: _Optional[str] = ..., child: _Optional[str] = ..., action: _Optional[_Union[LinkAction, str]] = ...) -> None: ...

class UploadLinksRequest(_message.Message):
    __slots__ = ("links", "source")
    LINKS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    links: _containers.RepeatedCompositeFieldContainer[Link]
    source: str
    def __init__(self, links: _Optional[_Iterable[_Union[Link, _Mapping]]] = ..., source: _Optional[str] = ...) -> None: ...

class UploadLinksReply(_message.Message):
    __slots__ = ("rows", "added", "removed", "parents")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    ADDED_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    PARENTS_FIELD_NUMBER: _ClassVar[int]
    rows: int
    added: int
    removed: int
    parents: int
    def __init__(self, rows: _Optional[int] = ..., added: _Optional[int] = ..., removed: _Optional[int] = ..., parents: _Optional[int] = ...) -> None: ...

class ShipmentRow(_message.Message):
    __slots__ = ("unit", "dealer_id", "shipped_at_ms", "shipment_id")
    UNIT_FIELD_NUMBER: _ClassVar[int]
    DEALER_ID_FIELD_NUMBER: _ClassVar[int]
    SHIPPED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    SHIPMENT_ID_FIELD_NUMBER: _ClassVar[int]
    unit: str
    dealer_id: str
    shipped_at_ms: int
    shipment_id: str
    def __init__(self, unit: _Optional[str] = ..., dealer_id: _Optional[str] = ..., shipped_at_ms: _Optional[int] = ..., shipment_id: _Optional[str] = ...) -> None: ...

class UploadShipmentsRequest(_message.Message):
    __slots__ = ("shipments", "source")
    SHIPMENTS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    shipments: _containers.RepeatedCompositeFieldContainer[ShipmentRow]
    source: str
    def __init__(self, shipments: _Optional[_Iterable[_Union[ShipmentRow, _Mapping]]] = ..., source: _Optional[str] = ...) -> None: ...

class UploadShipmentsReply(_message.Message):
    __slots__ = ("shipments",)
    SHIPMENTS_FIELD_NUMBER: _ClassVar[int]
    shipments: int
    def __init__(self, shipments: _Optional[int] = ...) -> None: ...

class UploadEpcisRequest(_message.Message):
    __slots__ = ("document", "validate_schema", "source")
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    document: bytes
    validate_schema: bool
    source: str
    def __init__(self, document: _Optional[bytes] = ..., validate_schema: _Optional[bool] = ..., source: _Optional[str] = ...) -> None: ...

class UploadEpcisReply(_message.Message):
    __slots__ = ("events", "aggregations", "shipments", "added", "removed", "skipped")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    AGGREGATIONS_FIELD_NUMBER: _ClassVar[int]
    SHIPMENTS_FIELD_NUMBER: _ClassVar[int]
    ADDED_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    events: int
    aggregations: int
    shipments: int
    added: int
    removed: int
    skipped: int
    def __init__(self, events: _Optional[int] = ..., aggregations: _Optional[int] = ..., shipments: _Optional[int] = ..., added: _Optional[int] = ..., removed: _Optional[int] = ..., skipped: _Optional[int] = ...) -> None: ...

class Dealer(_message.Message):
    __slots__ = ("dealer_id", "name", "territory")
    DEALER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TERRITORY_FIELD_NUMBER: _ClassVar[int]
    dealer_id: str
    name: str
    territory: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, dealer_id: _Optional[str] = ..., name: _Optional[str] = ..., territory: _Optional[_Iterable[str]] = ...) -> None: ...

class PutDealersRequest(_message.Message):
    __slots__ = ("dealers",)
    DEALERS_FIELD_NUMBER: _ClassVar[int]
    dealers: _containers.RepeatedCompositeFieldContainer[Dealer]
    def __init__(self, dealers: _Optional[_Iterable[_Union[Dealer, _Mapping]]] = ...) -> None: ...

class PutDealersReply(_message.Message):
    __slots__ = ("dealers",)
    DEALERS_FIELD_NUMBER: _ClassVar[int]
    dealers: int
    def __init__(self, dealers: _Optional[int] = ...) -> None: ...

class TraceRequest(_message.Message):
    __slots__ = ("codes",)
    CODES_FIELD_NUMBER: _ClassVar[int]
    codes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, codes: _Optional[_Iterable[str]] = ...) -> None: ...

class Shipment(_message.Message):
    __slots__ = ("unit_serial", "dealer_id", "shipped_at_ms", "shipment_id")
    UNIT_SERIAL_FIELD_NUMBER: _ClassVar[int]
    DEALER_ID_FIELD_NUMBER: _ClassVar[int]
    SHIPPED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    SHIPMENT_ID_FIELD_NUMBER: _ClassVar[int]
    unit_serial: int
    dealer_id: str
    shipped_at_ms: int
    shipment_id: str
    def __init__(self, unit_serial: _Optional[int] = ..., dealer_id: _Optional[str] = ..., shipped_at_ms: _Optional[int] = ..., shipment_id: _Optional[str] = ...) -> None: ...

class TraceResult(_message.Message):
    __slots__ = ("code", "found", "status", "serial", "ancestors", "shipment", "dealer", "recall")
    CODE_FIELD_NUMBER: _ClassVar[int]
    FOUND_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    ANCESTORS_FIELD_NUMBER: _ClassVar[int]
    SHIPMENT_FIELD_NUMBER: _ClassVar[int]
    DEALER_FIELD_NUMBER: _ClassVar[int]
    RECALL_FIELD_NUMBER: _ClassVar[int]
    code: str
    found: bool
    status: int
    serial: int
    ancestors: _containers.RepeatedScalarFieldContainer[int]
    shipment: Shipment
    dealer: Dealer
    recall: _common_pb2.Recall
    def __init__(self, code: _Optional[str] = ..., found: _Optional[bool] = ..., status: _Optional[int] = ..., serial: _Optional[int] = ..., ancestors: _Optional[_Iterable[int]] = ..., shipment: _Optional[_Union[Shipment, _Mapping]] = ..., dealer: _Optional[_Union[Dealer, _Mapping]] = ..., recall: _Optional[_Union[_common_pb2.Recall, _Mapping]] = ...) -> None: ...

class TraceReply(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[TraceResult]
    def __init__(self, results: _Optional[_Iterable[_Union[TraceResult, _Mapping]]] = ...) -> None: ...

class SerialRange(_message.Message):
    __slots__ = ("first", "last")
    FIRST_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    first: int
    last: int
    def __init__(self, first: _Optional[int] = ..., last: _Optional[int] = ...) -> None: ...

class RecallCodeList(_message.Message):
    __slots__ = ("codes",)
    CODES_FIELD_NUMBER: _ClassVar[int]
    codes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, codes: _Optional[_Iterable[str]] = ...) -> None: ...

class RecallCodesRequest(_message.Message):
    __slots__ = ("line_id", "range", "codes", "reason")
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    CODES_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    line_id: int
    range: SerialRange
    codes: RecallCodeList
    reason: str
    def __init__(self, line_id: _Optional[int] = ..., range: _Optional[_Union[SerialRange, _Mapping]] = ..., codes: _Optional[_Union[RecallCodeList, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class RecallCodesReply(_message.Message):
    __slots__ = ("recalls", "added", "codes")
    RECALLS_FIELD_NUMBER: _ClassVar[int]
    ADDED_FIELD_NUMBER: _ClassVar[int]
    CODES_FIELD_NUMBER: _ClassVar[int]
    recalls: _containers.RepeatedCompositeFieldContainer[_common_pb2.Recall]
    added: int
    codes: int
    def __init__(self, recalls: _Optional[_Iterable[_Union[_common_pb2.Recall, _Mapping]]] = ..., added: _Optional[int] = ..., codes: _Optional[int] = ...) -> None: ...

class ListRecallsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListRecallsReply(_message.Message):
    __slots__ = ("recalls",)
    RECALLS_FIELD_NUMBER: _ClassVar[int]
    recalls: _containers.RepeatedCompositeFieldContainer[_common_pb2.Recall]
    def __init__(self, recalls: _Optional[_Iterable[_Union[_common_pb2.Recall, _Mapping]]] = ...) -> None: ...
