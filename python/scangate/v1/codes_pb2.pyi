from scangate.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CodeForm(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CODE_FORM_UNSPECIFIED: _ClassVar[CodeForm]
    CODE_FORM_TEXT: _ClassVar[CodeForm]
    CODE_FORM_URL: _ClassVar[CodeForm]
CODE_FORM_UNSPECIFIED: CodeForm
CODE_FORM_TEXT: CodeForm
CODE_FORM_URL: CodeForm

class IssueCodesRequest(_message.Message):
    __slots__ = ("sku", "level", "count", "gtin", "batch", "form", "batch_size")
    SKU_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    GTIN_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    FORM_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    sku: str
    level: _common_pb2.Level
    count: int
    gtin: str
    batch: str
    form: CodeForm
    batch_size: int
    def __init__(self, sku: _Optional[str] = ..., level: _Optional[_Union[_common_pb2.Level, str]] = ..., count: _Optional[int] = ..., gtin: _Optional[str] = ..., batch: _Optional[str] = ..., form: _Optional[_Union[CodeForm, str]] = ..., batch_size: _Optional[int] = ...) -> None: ...

class IssuedCodeBatch(_message.Message):
    __slots__ = ("line_id", "key_version", "first_serial", "codes")
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    FIRST_SERIAL_FIELD_NUMBER: _ClassVar[int]
    CODES_FIELD_NUMBER: _ClassVar[int]
    line_id: int
    key_version: int
    first_serial: int
    codes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, line_id: _Optional[int] = ..., key_version: _Optional[int] = ..., first_serial: _Optional[int] = ..., codes: _Optional[_Iterable[str]] = ...) -> None: ...

class VerifyCodesRequest(_message.Message):
    __slots__ = ("codes",)
    CODES_FIELD_NUMBER: _ClassVar[int]
    codes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, codes: _Optional[_Iterable[str]] = ...) -> None: ...

class CodeCheck(_message.Message):
    __slots__ = ("status", "key_version", "serial", "level", "line_id", "sku", "recall")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    RECALL_FIELD_NUMBER: _ClassVar[int]
    status: _common_pb2.CodeStatus
    key_version: int
    serial: int
    level: _common_pb2.Level
    line_id: int
    sku: str
    recall: _common_pb2.Recall
    def __init__(self, status: _Optional[_Union[_common_pb2.CodeStatus, str]] = ..., key_version: _Optional[int] = ..., serial: _Optional[int] = ..., level: _Optional[_Union[_common_pb2.Level, str]] = ..., line_id: _Optional[int] = ..., sku: _Optional[str] = ..., recall: _Optional[_Union[_common_pb2.Recall, _Mapping]] = ...) -> None: ...

class VerifyCodesReply(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[CodeCheck]
    def __init__(self, results: _Optional[_Iterable[_Union[CodeCheck, _Mapping]]] = ...) -> None: ...
