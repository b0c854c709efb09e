from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PayoutState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PAYOUT_STATE_UNSPECIFIED: _ClassVar[PayoutState]
    PAYOUT_STATE_PENDING: _ClassVar[PayoutState]
    PAYOUT_STATE_SENDING: _ClassVar[PayoutState]
    PAYOUT_STATE_CONFIRMED: _ClassVar[PayoutState]
    PAYOUT_STATE_FAILED: _ClassVar[PayoutState]
PAYOUT_STATE_UNSPECIFIED: PayoutState
PAYOUT_STATE_PENDING: PayoutState
PAYOUT_STATE_SENDING: PayoutState
PAYOUT_STATE_CONFIRMED: PayoutState
PAYOUT_STATE_FAILED: PayoutState

class GetPointsRequest(_message.Message):
    __slots__ = ("actor", "history_limit")
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    HISTORY_LIMIT_FIELD_NUMBER: _ClassVar[int]
    actor: str
    history_limit: int
    def __init__(self, actor: _Optional[str] = ..., history_limit: _Optional[int] = ...) -> None: ...

class PointsEntry(_message.Message):
    __slots__ = ("delta", "balance", "reason", "ref", "at_ms")
    DELTA_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    delta: int
    balance: int
    reason: str
    ref: str
    at_ms: int
    def __init__(self, delta: _Optional[int] = ..., balance: _Optional[int] = ..., reason: _Optional[str] = ..., ref: _Optional[str] = ..., at_ms: _Optional[int] = ...) -> None: ...

class PointsReply(_message.Message):
    __slots__ = ("actor", "balance", "earned", "history")
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    EARNED_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    actor: str
    balance: int
    earned: int
    history: _containers.RepeatedCompositeFieldContainer[PointsEntry]
    def __init__(self, actor: _Optional[str] = ..., balance: _Optional[int] = ..., earned: _Optional[int] = ..., history: _Optional[_Iterable[_Union[PointsEntry, _Mapping]]] = ...) -> None: ...

class RedeemPointsRequest(_message.Message):
    __slots__ = ("request_id", "actor", "points", "note")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    actor: str
    points: int
    note: str
    def __init__(self, request_id: _Optional[str] = ..., actor: _Optional[str] = ..., points: _Optional[int] = ..., note: _Optional[str] = ...) -> None: ...

class RedeemPointsReply(_message.Message):
    __slots__ = ("ok", "balance", "reason")
    OK_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    balance: int
    reason: str
    def __init__(self, ok: _Optional[bool] = ..., balance: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class LeaderboardRequest(_message.Message):
    __slots__ = ("period", "top", "actor")
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    TOP_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    period: str
    top: int
    actor: str
    def __init__(self, period: _Optional[str] = ..., top: _Optional[int] = ..., actor: _Optional[str] = ...) -> None: ...

class LeaderboardEntry(_message.Message):
    __slots__ = ("rank", "actor", "points")
    RANK_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    rank: int
    actor: str
    points: int
    def __init__(self, rank: _Optional[int] = ..., actor: _Optional[str] = ..., points: _Optional[int] = ...) -> None: ...

class LeaderboardReply(_message.Message):
    __slots__ = ("period", "top", "actor", "ranked")
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    TOP_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    RANKED_FIELD_NUMBER: _ClassVar[int]
    period: str
    top: _containers.RepeatedCompositeFieldContainer[LeaderboardEntry]
    actor: LeaderboardEntry
    ranked: int
    def __init__(self, period: _Optional[str] = ..., top: _Optional[_Iterable[_Union[LeaderboardEntry, _Mapping]]] = ..., actor: _Optional[_Union[LeaderboardEntry, _Mapping]] = ..., ranked: _Optional[int] = ...) -> None: ...

class ListPayoutsRequest(_message.Message):
    __slots__ = ("state", "limit")
    STATE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    state: PayoutState
    limit: int
    def __init__(self, state: _Optional[_Union[PayoutState, str]] = ..., limit: _Optional[int] = ...) -> None: ...

class Payout(_message.Message):
    __slots__ = ("key", "state", "actor", "campaign_id", "prize_id", "kind", "amount_fen", "attempts", "confirmation", "error")
    KEY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    PRIZE_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FEN_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    CONFIRMATION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    key: str
    state: PayoutState
    actor: str
    campaign_id: str
    prize_id: str
    kind: str
    amount_fen: int
    attempts: int
    confirmation: str
    error: str
    def __init__(self, key: _Optional[str] = ..., state: _Optional[_Union[PayoutState, str]] = ..., actor: _Optional[str] = ..., campaign_id: _Optional[str] = ..., prize_id: _Optional[str] = ..., kind: _Optional[str] = ..., amount_fen: _Optional[int] = ..., attempts: _Optional[int] = ..., confirmation: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class ListPayoutsReply(_message.Message):
    __slots__ = ("payouts", "counts")
    class CountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    PAYOUTS_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    payouts: _containers.RepeatedCompositeFieldContainer[Payout]
    counts: _containers.ScalarMap[str, int]
    def __init__(self, payouts: _Optional[_Iterable[_Union[Payout, _Mapping]]] = ..., counts: _Optional[_Mapping[str, int]] = ...) -> None: ...
